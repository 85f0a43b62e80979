// half.cuh: the fp16 storage type and the two conversions the kernels need, WITHOUT
// <cuda_fp16.h>.
//
// Why not cuda_fp16.h: NVRTC 13.0 does not have it built in (verified: "could not open source
// file cuda_fp16.h (no directories in search list)"), so the run-time NVRTC fallback would
// need a CUDA toolkit include directory on the GPU machine. With this header every kernel
// source is fully self-contained: nvcc and NVRTC need no include path at all.
//
// Activations never need fp16 arithmetic here (all math is fp32), only conversions:
//   cr_half            IEEE binary16 bits (the same 2 bytes as __half / Rust half::f16)
//   cr_half_to_float   exact              (PTX cvt.f32.f16)
//   cr_float_to_half   round to nearest even, overflow -> +-inf, NaN stays NaN
//                      (PTX cvt.rn.f16.f32; identical to __float2half_rn)
//   cr_u32_to_float2 / cr_float2_to_u32: two halves packed in 32 bits, low 16 bits = the
//                      element at the lower address (x), like __half2.
#pragma once

typedef unsigned short cr_half;

__device__ __forceinline__ float cr_half_to_float(cr_half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ cr_half cr_float_to_half(float f) {
    cr_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float2 cr_u32_to_float2(unsigned int u) {
    float2 r;
    r.x = cr_half_to_float((cr_half)(u & 0xffffu));
    r.y = cr_half_to_float((cr_half)(u >> 16));
    return r;
}

__device__ __forceinline__ unsigned int cr_float2_to_u32(float lo, float hi) {
    return (unsigned int)cr_float_to_half(lo) | ((unsigned int)cr_float_to_half(hi) << 16);
}
