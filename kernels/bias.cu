// bias.cu: per-column bias epilogues of a GEMM output, in place on fp16 rows, two variants.
//
//   v1 add_bias_rows   x[r, c] = x[r, c] + bias[c]
//      The QKV bias of encoders without RoPE (BERT, XLM-RoBERTa): nothing else happens
//      between the QKV GEMM and attention. Twin: model::cpu::ops::add_bias_rows.
//   v2 bias_gelu       x[r, c] = gelu_erf( x[r, c] + bias[c] )
//      The plain MLP activation of BERT-style encoders (hidden_act = "gelu": the exact erf
//      GELU, cr_gelu_erf in common.cuh, the one gated_gelu.cu uses). Twin:
//      model::cpu::ops::bias_gelu.
//
// Both are one read and one write of the GEMM output (bias and GELU fused into one pass).
// Folding them into the GEMM itself (a cuBLASLt bias / GELU-bias epilogue) would save that
// pass; that is a later optimisation, to be measured against these kernels.
//
// Layouts (row-major):
//   x     f16 [n_rows, width]   in place (width = 3*hidden for QKV, intermediate for the MLP)
//   bias  f32 [width]
//
// Math: fp32 (x converted exactly, the add in fp32, erff the accurate one: no
// --use_fast_math, no tanh approximation), one rounding to fp16 per value.
//
// Launch (both variants: one thread per 8 values, 128-bit loads/stores, grid-stride loop):
//   block = 256 threads (any multiple of 32 up to 256 works: __launch_bounds__(256))
//   grid  = ceil(n_rows * width / 8 / 256)   (any grid >= 1 is correct)
//   dynamic shared memory = 0
// Preconditions: width % 8 == 0; n_rows * width / 8 < 2^31; x and bias 16-byte aligned.
// Every value is read and written by exactly one thread, so in-place is race-free.
#include "common.cuh"

template <bool GELU>
__device__ __forceinline__ void bias_rows_in_place(cr_half* __restrict__ x,
                                                   const float* __restrict__ bias,
                                                   int n_rows,
                                                   int width) {
    cr_require((width & 7) == 0 && width > 0);
    const unsigned int vecs_per_row = (unsigned int)width >> 3;
    const unsigned int total = (unsigned int)n_rows * vecs_per_row;
    for (unsigned int v = blockIdx.x * blockDim.x + threadIdx.x; v < total;
         v += gridDim.x * blockDim.x) {
        const unsigned int row = v / vecs_per_row;
        const unsigned int col = (v - row * vecs_per_row) * 8u;
        cr_half* p = x + (size_t)row * (size_t)width + col;
        float z[8], b[8];
        cr_load_half8(p, z);
        cr_load_float8_ro(bias + col, b);
#pragma unroll
        for (int k = 0; k < 8; ++k) z[k] = GELU ? cr_gelu_erf(z[k] + b[k]) : z[k] + b[k];
        cr_store_half8(p, z);
    }
}

extern "C" __global__ void __launch_bounds__(256)
add_bias_rows(cr_half* __restrict__ x, const float* __restrict__ bias, int n_rows, int width) {
    bias_rows_in_place<false>(x, bias, n_rows, width);
}

extern "C" __global__ void __launch_bounds__(256)
bias_gelu(cr_half* __restrict__ x, const float* __restrict__ bias, int n_rows, int width) {
    bias_rows_in_place<true>(x, bias, n_rows, width);
}
