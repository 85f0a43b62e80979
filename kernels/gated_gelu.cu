// gated_gelu.cu: the GeGLU activation between the two MLP GEMMs (spec section 3.6).
//
//   out[t, i] = gelu_erf( ug[t, I + i] ) * ug[t, i]        for i < I
//   gelu_erf(g) = 0.5 * g * (1 + erf(g / sqrt(2)))          (exact erf GELU, as HF / vLLM)
//
// ug is the output of the fused up_gate GEMM (no bias): FIRST half = up (linear), SECOND
// half = gate (activated). Getting the halves backwards still "works" numerically but gives a
// different model, so mind the order.
//
// Layouts (row-major):
//   ug   f16 [n_rows, 2*inter]
//   out  f16 [n_rows, inter]
//
// Math: fp32 with the accurate erff (cr_gelu_erf in common.cuh; no --use_fast_math, no tanh
// approximation), the product in fp32, one rounding to fp16. This is the largest-magnitude intermediate of the block,
// hence no fp16 arithmetic here.
//
// Launch (variant 1: one thread per 8 outputs, 128-bit loads/stores, grid-stride loop):
//   block = 256 threads (any multiple of 32 up to 256 works: __launch_bounds__(256))
//   grid  = ceil(n_rows * inter / 8 / 256)   (any grid >= 1 is correct; this one covers the
//           work in one pass)
//   dynamic shared memory = 0
// Preconditions: inter % 8 == 0; n_rows * inter / 8 < 2^31; ug and out 16-byte aligned and
// must not overlap.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
gated_gelu(const cr_half* __restrict__ ug, cr_half* __restrict__ out, int n_rows, int inter) {
    cr_require((inter & 7) == 0 && inter > 0);
    const unsigned int vecs_per_row = (unsigned int)inter >> 3;
    const unsigned int total = (unsigned int)n_rows * vecs_per_row;
    for (unsigned int v = blockIdx.x * blockDim.x + threadIdx.x; v < total;
         v += gridDim.x * blockDim.x) {
        const unsigned int row = v / vecs_per_row;
        const unsigned int col = (v - row * vecs_per_row) * 8u;
        const cr_half* src = ug + (size_t)row * (size_t)(2 * inter) + col;
        float up[8], gate[8], o[8];
        cr_load_half8_ro(src, up);
        cr_load_half8_ro(src + inter, gate);
#pragma unroll
        for (int k = 0; k < 8; ++k) o[k] = cr_gelu_erf(gate[k]) * up[k];
        cr_store_half8(out + (size_t)row * (size_t)inter + col, o);
    }
}
