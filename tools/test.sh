#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it after installing
# what it needs). Runs on a machine without a GPU; GPU tests are reported as ignored.
#
#   tools/test.sh
#
# Optional parts, each run when its prerequisite is present and reported as skipped when not:
# - the real XLM-R tokenizer golden ids: $CROSSRANK_XLMR_TOKENIZER, or ../shared/assets/xlmr-tokenizer.json
# - the kernel register/spill report: nvcc (tools/install-nvcc.sh puts one in .nvcc/)
# - the CUDA kernel sources run on a CPU emulator: g++ with C++20 (tools/kernel-emu/)
# - the C ABI header/export check (and valgrind on the C example when valgrind is installed)
# - the GPU scripts' dry run (tools/gpu-dry-run.sh): on a machine without a GPU only
# - the Python package (tools/test-python.sh): python3 with venv; CROSSRANK_REQUIRE_PYTHON=1
#   (set by .ci/run) makes a missing python3 a failure instead of a skip
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo test"
cargo test --locked

tokenizer="${CROSSRANK_XLMR_TOKENIZER:-}"
if [[ -z "$tokenizer" && -f ../shared/assets/xlmr-tokenizer.json ]]; then
  tokenizer="$(cd ../shared/assets && pwd)/xlmr-tokenizer.json"
fi
step "real XLM-R tokenizer vs Python tokenizers golden ids"
if [[ -n "$tokenizer" && -f "$tokenizer" ]]; then
  CROSSRANK_XLMR_TOKENIZER="$tokenizer" cargo test --locked --test tokenizer_golden --test long_doc_golden -- --ignored
else
  echo "SKIPPED: set CROSSRANK_XLMR_TOKENIZER to the XLM-R tokenizer.json"
fi

step "CUDA kernels: ptxas registers and spills"
if [[ -x .nvcc/bin/nvcc || -n "${NVCC:-}" ]] || command -v nvcc >/dev/null; then
  tools/ptxas-report.sh
else
  echo "SKIPPED: no nvcc (run tools/install-nvcc.sh)"
fi

step "CUDA kernels on the CPU emulator (tools/kernel-emu)"
if command -v "${CXX:-g++}" >/dev/null; then
  tools/kernel-emu/run.sh
else
  echo "SKIPPED: no C++ compiler (g++ with C++20)"
fi

if [[ -x tools/check-capi.sh ]]; then
  step "C ABI: header vs exported symbols, C example"
  if command -v valgrind >/dev/null; then
    tools/check-capi.sh --valgrind
  else
    tools/check-capi.sh
  fi
fi

step "GPU scripts: dry run without a GPU (tools/gpu-dry-run.sh)"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIPPED: a GPU is present here (run tools/gpu-check.sh and tools/gpu-perf.sh instead)"
else
  tools/gpu-dry-run.sh
fi

step "Python package: pip install ./python, pytest (Ray included)"
if command -v "${PYTHON:-python3}" >/dev/null; then
  tools/test-python.sh
elif [[ "${CROSSRANK_REQUIRE_PYTHON:-0}" == 1 ]]; then
  echo "FAILED: no ${PYTHON:-python3}, and CROSSRANK_REQUIRE_PYTHON=1" >&2
  exit 1
else
  echo "SKIPPED: no ${PYTHON:-python3}"
fi
echo
echo "tools/test.sh: all steps passed"
