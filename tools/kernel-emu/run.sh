#!/usr/bin/env bash
# Runs the CUDA kernel sources (kernels/*.cu, unmodified) on a CPU emulator, so CI, which has
# no GPU, executes their indexing, masking, barriers and tensor-core fragment layouts against
# f64 references. Not a substitute for tests/gpu_kernels.rs on a real GPU: timing, the
# asynchronous cp.async pipeline, the PTX JIT and the driver are not modelled.
#
#   tools/kernel-emu/run.sh            (needs g++ with C++20: <barrier>, _Float16)
#
# How: kernels/*.cu and kernels/common.cuh are copied into a scratch folder next to
# cuda_emu.h and the shims shim/half.cuh and shim/mma_sm80.cuh, which take the place of
# kernels/half.cuh and kernels/mma_sm80.cuh; emu_attention.cpp and emu_kernels.cpp include the
# .cu files and compare every kernel with a reference. Exit status 1 on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tools/kernel-emu
CXX=${CXX:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp kernels/*.cu kernels/common.cuh "$here"/cuda_emu.h "$here"/shim/*.cuh "$here"/*.cpp "$work"/
status=0
for test in emu_kernels emu_attention; do
    echo "kernel-emu: $test"
    "$CXX" -std=c++20 -O2 -pthread -w -I"$work" "$work/$test.cpp" -o "$work/$test"
    "$work/$test" || status=1
done
if [[ $status -ne 0 ]]; then
    echo "kernel-emu: FAILED" >&2
    exit 1
fi
echo "kernel-emu: all kernels match their references"
