// common.cuh: helpers shared by every kernels/*.cu file.
//
// What is here:
//   - the fp16 storage type cr_half and its conversions (half.cuh);
//   - warp and block reductions (sum / max) in fp32;
//   - 128-bit vector load/store of 8 fp16 values converted to/from 8 fp32 values;
//   - 2 x float4 load of 8 fp32 values (biases, LayerNorm gamma/beta);
//   - the exact erf GELU (gated_gelu.cu, bias.cu);
//   - -inf without <math.h>.
//
// NVRTC rule for this whole directory: include nothing but our own .cuh files. NVRTC ships
// no libc/libstdc++ headers and (13.0) not even cuda_fp16.h without an include path, and
// build.rs inlines "*.cuh" includes into each kernel's source for the run-time NVRTC
// fallback (KERNEL_SOURCES). So: no <cuda_fp16.h> (see half.cuh), no <cstdint>, no
// <math.h> macros (INFINITY, M_SQRT1_2), no std::. Builtins (__shfl_xor_sync, __ldg, erff,
// sincosf, uint4, float4, ...) need no header in either compiler.
//
// Every helper name starts with cr_ (crossrank) to stay clear of CUDA builtins.
#pragma once

#include "half.cuh"

#define CR_WARP_SIZE 32
#define CR_FULL_MASK 0xffffffffu

// Precondition check for launch-configuration and shape mistakes (wrong block size, hidden too
// large, ...): trap instead of silently writing garbage. The launch then fails with "illegal
// instruction" (a sticky context error: loud, which is the point). Uniform and cheap: one
// compare per thread, on values that are kernel arguments or blockDim.
__device__ __forceinline__ void cr_require(bool ok) {
    if (!ok) __trap();
}

// -inf as a float, bit-exact (0xff800000), without <math.h>'s INFINITY.
__device__ __forceinline__ float cr_neg_inf() { return __int_as_float(0xff800000); }

// ---------------------------------------------------------------------------------------
// Reductions

__device__ __forceinline__ float cr_warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(CR_FULL_MASK, v, off);
    return v;  // every lane holds the total
}

__device__ __forceinline__ float cr_warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(CR_FULL_MASK, v, off));
    return v;  // every lane holds the max
}

// Block-wide reductions. Must be called by every thread of the block (uniform control flow).
// `scratch` is a __shared__ float[32]. The result is returned to every thread. The trailing
// __syncthreads() lets the caller call again with the same scratch right away.
// Requires blockDim.x to be a multiple of 32 (all our launches are).
__device__ __forceinline__ float cr_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    v = cr_warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < n_warps; ++w) total += scratch[w];  // same order in every thread
    __syncthreads();
    return total;
}

__device__ __forceinline__ float cr_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    v = cr_warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = cr_neg_inf();
    for (int w = 0; w < n_warps; ++w) m = fmaxf(m, scratch[w]);
    __syncthreads();
    return m;
}

// ---------------------------------------------------------------------------------------
// Vector memory access. All pointers must be 16-byte aligned (8 halves / 4 floats).

// 8 x fp16 -> 8 x fp32 (one 128-bit load).
__device__ __forceinline__ void cr_load_half8(const cr_half* p, float f[8]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    float2 a = cr_u32_to_float2(u.x), b = cr_u32_to_float2(u.y);
    float2 c = cr_u32_to_float2(u.z), d = cr_u32_to_float2(u.w);
    f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
    f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

// Same through the read-only (non-coherent) path: only for data the kernel never writes.
__device__ __forceinline__ void cr_load_half8_ro(const cr_half* p, float f[8]) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    float2 a = cr_u32_to_float2(u.x), b = cr_u32_to_float2(u.y);
    float2 c = cr_u32_to_float2(u.z), d = cr_u32_to_float2(u.w);
    f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
    f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

// 8 x fp32 -> 8 x fp16 (round to nearest even, once) -> one 128-bit store.
__device__ __forceinline__ void cr_store_half8(cr_half* p, const float f[8]) {
    uint4 u;
    u.x = cr_float2_to_u32(f[0], f[1]);
    u.y = cr_float2_to_u32(f[2], f[3]);
    u.z = cr_float2_to_u32(f[4], f[5]);
    u.w = cr_float2_to_u32(f[6], f[7]);
    *reinterpret_cast<uint4*>(p) = u;
}

// 8 x fp32 (two 128-bit read-only loads). Used for bias / gamma / beta / inv_freq.
__device__ __forceinline__ void cr_load_float8_ro(const float* p, float f[8]) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

// ---------------------------------------------------------------------------------------
// GELU

// gelu_erf(g) = 0.5 * g * (1 + erf(g / sqrt(2))): the exact erf GELU (HF "gelu"), with the
// accurate erff. 0.70710678118654752 = 1/sqrt(2).
__device__ __forceinline__ float cr_gelu_erf(float g) {
    return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
}

// ---------------------------------------------------------------------------------------
// Warp-per-row LayerNorm over a row held in registers.
//
// Layout of a row inside one warp: the row has hidden/8 "chunks" of 8 consecutive values;
// lane `l` owns chunks l, l+32, l+64, ... (so one warp-wide 128-bit access covers 512
// contiguous bytes: fully coalesced). v[i][0..7] holds chunk (l + 32*i); entries whose chunk
// index is >= hidden/8 are ignored. CR_LN_MAX_CHUNKS = 4 caps hidden at 4*32*8 = 1024.
//
// Statistics are fp32 and two-pass over the registers (mean first, then the mean of squared
// deviations): no E[x^2]-E[x]^2 cancellation. Population variance, rsqrt(var + eps) in fp32
// (eps = 1e-12 underflows in fp16, so it must be fp32). Output rounded to fp16 once.
#define CR_LN_MAX_CHUNKS 4
#define CR_LN_MAX_HIDDEN (CR_LN_MAX_CHUNKS * CR_WARP_SIZE * 8)

__device__ __forceinline__ void cr_warp_layernorm_store(float (&v)[CR_LN_MAX_CHUNKS][8],
                                                        int hidden,
                                                        const float* __restrict__ gamma,
                                                        const float* __restrict__ beta,
                                                        float eps,
                                                        cr_half* out_row) {
    const int lane = threadIdx.x & 31;
    const int n_chunks = hidden >> 3;
    const float inv_h = 1.0f / (float)hidden;

    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < CR_LN_MAX_CHUNKS; ++i) {
        if (lane + 32 * i < n_chunks) {
#pragma unroll
            for (int k = 0; k < 8; ++k) s += v[i][k];
        }
    }
    const float mean = cr_warp_sum(s) * inv_h;

    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < CR_LN_MAX_CHUNKS; ++i) {
        if (lane + 32 * i < n_chunks) {
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const float d = v[i][k] - mean;
                ss = fmaf(d, d, ss);
            }
        }
    }
    const float var = cr_warp_sum(ss) * inv_h;
    const float rstd = rsqrtf(var + eps);

#pragma unroll
    for (int i = 0; i < CR_LN_MAX_CHUNKS; ++i) {
        const int c = lane + 32 * i;
        if (c < n_chunks) {
            float g[8], b[8], o[8];
            cr_load_float8_ro(gamma + c * 8, g);
            cr_load_float8_ro(beta + c * 8, b);
#pragma unroll
            for (int k = 0; k < 8; ++k) o[k] = fmaf((v[i][k] - mean) * rstd, g[k], b[k]);
            cr_store_half8(out_row + c * 8, o);
        }
    }
}
