#!/usr/bin/env bash
# Install a pinned CUDA 13.0 nvcc into <repo>/.nvcc/ from PyPI wheels.
#
# Why: CI and developer machines have no CUDA toolkit, but the kernels must still be
# compiled (to PTX for the build, to cubin for the register/spill report). NVIDIA publishes
# the compiler pieces as pip wheels; this script installs exactly these versions and lays
# them out like a normal toolkit:
#
#   .nvcc/bin/{nvcc,ptxas,cudafe++,fatbinary,nvlink,...}
#   .nvcc/nvvm/{bin/cicc,libdevice/libdevice.10.bc}
#   .nvcc/include/{cuda_fp16.h,crt/...,cccl/...}
#   .nvcc/lib/libnvvm.so.4
#   .nvcc/targets/x86_64-linux/{include,lib} -> ../../{include,lib}   (what nvcc.profile expects)
#
# The version is pinned on purpose: the GPU machine's driver cannot JIT PTX produced by a
# newer nvcc than 13.0, so never bump these without checking the driver.
#
# Needs only python3 with pip (and a host C++ compiler for nvcc itself: gcc <= 14).
# Idempotent: if .nvcc/ already holds this exact set, it only prints the nvcc path.
# Usage: tools/install-nvcc.sh [--force]
set -euo pipefail

PINNED_PKGS=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
)
EXPECTED_NVCC_RELEASE="V13.0.88"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.nvcc"
STAMP="$DEST/.crossrank-nvcc-stamp"
WANT_STAMP="$(printf '%s\n' "${PINNED_PKGS[@]}")"

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; fi

nvcc_ok() {
  [[ -x "$DEST/bin/nvcc" ]] || return 1
  [[ -f "$STAMP" ]] || return 1
  [[ "$(cat "$STAMP")" == "$WANT_STAMP" ]] || return 1
  # grep reads a captured string: `nvcc | grep -q` can die of SIGPIPE under pipefail.
  grep -q "$EXPECTED_NVCC_RELEASE" <<<"$("$DEST/bin/nvcc" --version 2>/dev/null)"
}

if [[ $force -eq 0 ]] && nvcc_ok; then
  echo "install-nvcc: already installed ($EXPECTED_NVCC_RELEASE)" >&2
  echo "$DEST/bin/nvcc"
  exit 0
fi

PY="${PYTHON:-python3}"
if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "install-nvcc: error: '$PY -m pip' is not available; install python3-pip" >&2
  exit 1
fi

# Stage in a temp dir and move into place at the end: a half-finished install never sits
# at .nvcc/ (an interrupted run leaves nothing in the work tree).
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/crossrank-nvcc.XXXXXX")"
cleanup() { rm -rf "$STAGE"; }
trap cleanup EXIT

echo "install-nvcc: installing ${PINNED_PKGS[*]}" >&2
# --no-deps: the wheels declare no deps we need; --target keeps it out of any environment.
# pip preserves executable bits (a plain unzip would not).
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --disable-pip-version-check --no-input --quiet \
  --no-deps --no-compile --only-binary=:all: \
  --target "$STAGE/pip" "${PINNED_PKGS[@]}" >&2

CU="$STAGE/pip/nvidia/cu13"
if [[ ! -x "$CU/bin/nvcc" ]]; then
  echo "install-nvcc: error: wheel layout unexpected: $CU/bin/nvcc missing" >&2
  exit 1
fi

TK="$STAGE/toolkit"
mkdir -p "$TK"
# Every wheel unpacks into nvidia/cu13/{bin,include,lib,nvvm}: move that tree up.
for d in "$CU"/* "$CU"/.[!.]*; do
  [[ -e "$d" ]] || continue
  mv "$d" "$TK/"
done
# nvcc.profile adds -I$(TOP)/targets/x86_64-linux/include and -isystem .../include/cccl.
mkdir -p "$TK/targets/x86_64-linux"
ln -s ../../include "$TK/targets/x86_64-linux/include"
mkdir -p "$TK/lib"
ln -s ../../lib "$TK/targets/x86_64-linux/lib"
# Some tools look for lib64/ (the classic toolkit name).
[[ -e "$TK/lib64" ]] || ln -s lib "$TK/lib64"
# libnvvm is also looked up as nvvm/lib64/libnvvm.so by some consumers.
if [[ -f "$TK/lib/libnvvm.so.4" ]]; then
  mkdir -p "$TK/nvvm/lib64"
  ln -sf ../../lib/libnvvm.so.4 "$TK/nvvm/lib64/libnvvm.so.4"
  ln -sf libnvvm.so.4 "$TK/nvvm/lib64/libnvvm.so"
  ln -sf libnvvm.so.4 "$TK/lib/libnvvm.so"
fi
chmod +x "$TK"/bin/* "$TK"/nvvm/bin/* 2>/dev/null || true
printf '%s' "$WANT_STAMP" > "$TK/.crossrank-nvcc-stamp"

if ! grep -q "$EXPECTED_NVCC_RELEASE" <<<"$("$TK/bin/nvcc" --version 2>&1)"; then
  echo "install-nvcc: error: staged nvcc does not report $EXPECTED_NVCC_RELEASE:" >&2
  "$TK/bin/nvcc" --version >&2 || true
  exit 1
fi

# Smoke test: the toolkit must turn a cuda_fp16.h kernel into PTX (needs a host compiler).
cat > "$STAGE/smoke.cu" <<'EOF'
#include <cuda_fp16.h>
extern "C" __global__ void smoke(__half* p) { p[threadIdx.x] = __float2half(erff(1.0f)); }
EOF
if ! "$TK/bin/nvcc" -ptx -arch=compute_80 -o "$STAGE/smoke.ptx" "$STAGE/smoke.cu" >&2; then
  echo "install-nvcc: error: smoke compile failed (is a host g++ <= 14 installed?)" >&2
  exit 1
fi

rm -rf "$DEST.old"
if [[ -e "$DEST" ]]; then mv "$DEST" "$DEST.old"; fi
mv "$TK" "$DEST"
rm -rf "$DEST.old"

# build.rs only watches .nvcc/ once it exists (cargo re-runs a build script on every build
# for a watched path that is missing), so bump build.rs's mtime (content untouched) to make
# the next cargo build pick up the new toolkit instead of keeping the NVRTC-only output.
if [[ -f "$ROOT/build.rs" ]]; then touch "$ROOT/build.rs"; fi

"$DEST/bin/nvcc" --version | tail -n 2 >&2
echo "$DEST/bin/nvcc"
