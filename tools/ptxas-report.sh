#!/usr/bin/env bash
# Compile every kernels/*.cu to cubin with `-Xptxas -v` and print, per kernel and target:
# registers, static shared memory, stack frame, spill stores / loads.
# Exits 1 if any kernel spills (spill stores or loads > 0), 2 if nvcc is missing or a
# kernel does not compile. Needs no GPU.
#
# nvcc discovery is the same as build.rs: $NVCC, $CUDA_HOME/bin/nvcc, $CUDA_PATH/bin/nvcc,
# <repo>/.nvcc/bin/nvcc (tools/install-nvcc.sh; skipped if CROSSRANK_NO_LOCAL_NVCC=1),
# nvcc on PATH.
#
# Targets: $PTXAS_ARCHS (space-separated), default "sm_80 sm_90". CI: run
#   tools/install-nvcc.sh && tools/ptxas-report.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARCHS="${PTXAS_ARCHS:-sm_80 sm_90}"

find_nvcc() {
  local c
  if [[ -n "${NVCC:-}" && -x "${NVCC}" ]]; then echo "$NVCC"; return 0; fi
  for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
    if [[ -n "$c" && -x "$c/bin/nvcc" ]]; then echo "$c/bin/nvcc"; return 0; fi
  done
  if [[ "${CROSSRANK_NO_LOCAL_NVCC:-}" != "1" && -x "$ROOT/.nvcc/bin/nvcc" ]]; then
    echo "$ROOT/.nvcc/bin/nvcc"; return 0
  fi
  if c="$(command -v nvcc 2>/dev/null)"; then echo "$c"; return 0; fi
  return 1
}

if ! NVCC_BIN="$(find_nvcc)"; then
  echo "ptxas-report: nvcc not found (set NVCC or run tools/install-nvcc.sh)" >&2
  exit 2
fi
NVCC_VER="$("$NVCC_BIN" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
echo "nvcc: $NVCC_BIN (release ${NVCC_VER:-?})"

shopt -s nullglob
KERNELS=("$ROOT"/kernels/*.cu)
if [[ ${#KERNELS[@]} -eq 0 ]]; then
  echo "ptxas-report: no kernels/*.cu found" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ptxas-report.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

CCBIN_ARGS=()
if [[ -n "${NVCC_CCBIN:-}" ]]; then CCBIN_ARGS=(-ccbin "$NVCC_CCBIN"); fi

status=0
ROWS="$WORK/rows.tsv"
: > "$ROWS"
for arch in $ARCHS; do
  for cu in "${KERNELS[@]}"; do
    stem="$(basename "$cu" .cu)"
    log="$WORK/$stem.$arch.log"
    if ! "$NVCC_BIN" -O3 -cubin -arch="$arch" -std=c++17 -lineinfo -I "$ROOT/kernels" \
         "${CCBIN_ARGS[@]}" -Xptxas -v -o "$WORK/$stem.$arch.cubin" "$cu" >"$log" 2>&1; then
      echo "ptxas-report: $stem.cu failed to compile for $arch:" >&2
      cat "$log" >&2
      exit 2
    fi
    # ptxas -v prints, per entry function:
    #   ptxas info : Compiling entry function 'NAME' for 'sm_90'
    #   ptxas info : Function properties for NAME
    #       S bytes stack frame, SS bytes spill stores, SL bytes spill loads
    #   ptxas info : Used R registers, used B barriers, M bytes smem, ...
    awk -v arch="$arch" -v file="$stem.cu" '
      /Compiling entry function/ {
        fn = $0; sub(/.*entry function \047/, "", fn); sub(/\047.*/, "", fn)
        stack = 0; sst = 0; sld = 0
      }
      /bytes stack frame/ {
        for (i = 1; i <= NF; i++) {
          if ($(i+1) == "bytes" && $(i+2) == "stack") stack = $i
          if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) ~ /^stores/) sst = $i
          if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) ~ /^loads/) sld = $i
        }
      }
      /Used [0-9]+ registers/ && fn != "" {
        regs = 0; smem = 0
        for (i = 1; i <= NF; i++) {
          if ($i == "Used") regs = $(i+1)
          if ($(i+1) == "bytes" && $(i+2) ~ /^smem/) smem = $i
        }
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", arch, file, fn, regs, smem, stack, sst, sld
        fn = ""
      }' "$log" >> "$ROWS"
  done
done

printf '%-6s  %-14s  %-30s  %5s  %9s  %6s  %11s  %10s\n' \
  arch file kernel regs smem_B stack_B spill_st_B spill_ld_B
printf '%s\n' "-------------------------------------------------------------------------------------------------------"
while IFS=$'\t' read -r arch file fn regs smem stack sst sld; do
  flag=""
  if [[ "$sst" != "0" || "$sld" != "0" ]]; then flag="  <-- SPILL"; status=1; fi
  printf '%-6s  %-14s  %-30s  %5s  %9s  %6s  %11s  %10s%s\n' \
    "$arch" "$file" "$fn" "$regs" "$smem" "$stack" "$sst" "$sld" "$flag"
done < "$ROWS"

n_rows="$(wc -l < "$ROWS")"
if [[ "$n_rows" -eq 0 ]]; then
  echo "ptxas-report: parsed no kernel entries from ptxas output" >&2
  exit 2
fi
if [[ $status -ne 0 ]]; then
  echo "ptxas-report: FAIL: register spills found" >&2
else
  echo "ptxas-report: OK: $n_rows kernel/target combinations, no spills"
fi
exit $status
