// cuda_emu.h: just enough of CUDA C++ to run crossrank's kernels/*.cu unmodified on a CPU.
//
// One std::thread per CUDA thread, blocks one after another; __syncthreads and __syncwarp are
// real barriers, warp shuffles go through per-warp slots. Static __shared__ arrays become
// function statics, which is correct because blocks never run concurrently. Slow (thousands
// of threads per launch) but exact about indexing, masking, barriers and fragment layouts:
// the point is to execute the kernel sources in CI, where there is no GPU.
// The fp16 type and the tensor-core primitives come from shim/half.cuh and shim/mma_sm80.cuh.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <barrier>
#include <thread>
#include <vector>
#include <algorithm>
#include <functional>
struct dim3 { unsigned x=1, y=1, z=1; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
using std::min; using std::max;
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __int_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline void __trap() { fprintf(stderr, "TRAP\n"); abort(); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline void sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }

// ---- block / warp sync ----
struct WarpCtx {
    std::barrier<> bar{32};
    uint64_t slot[32][16];
};
inline std::barrier<>* g_block_bar = nullptr;
inline WarpCtx* g_warps = nullptr;
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
inline WarpCtx& my_warp() { return g_warps[threadIdx.x / 32]; }
inline void __syncwarp() { my_warp().bar.arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int off) {
    WarpCtx& w = my_warp(); int lane = threadIdx.x & 31;
    memcpy(&w.slot[lane][0], &v, 4);
    w.bar.arrive_and_wait();
    float r; memcpy(&r, &w.slot[lane ^ off][0], 4);
    w.bar.arrive_and_wait();
    return r;
}

template <class F>
void launch(dim3 grid, dim3 block, F kernel) {
    gridDim = grid; blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> bar(block.x);
        std::vector<WarpCtx> warps(block.x / 32);
        g_block_bar = &bar; g_warps = warps.data();
        std::vector<std::thread> th;
        for (unsigned t = 0; t < block.x; ++t)
            th.emplace_back([=] { threadIdx.x = t; blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz; kernel(); });
        for (auto& x : th) x.join();
    }
}
inline int atomicOr(int* p, int v) { int o = *p; *p |= v; return o; }
