// rope.cu: QKV bias add + rotary position embedding, in place on the packed QKV GEMM output
// (spec sections 3.2 and 3.3).
//
// qkv[t, :] is the fused qkv_proj output WITHOUT bias: columns [0, H) = q, [H, 2H) = k,
// [2H, 3H) = v; head h owns columns h*D .. h*D+D-1 inside each of the three blocks.
// For every token t, head h, and j < D/2, with p = positions[t] (0-based position inside the
// token's own sequence) and angle = (float)p * inv_freq[j]:
//   q, k:  z = column block + bias (fp32)
//          z'[j]       = z[j]       * cos(angle) - z[j + D/2] * sin(angle)
//          z'[j + D/2] = z[j + D/2] * cos(angle) + z[j]       * sin(angle)
//   v:     z' = z + bias                      (no rotation)
// "rotate_half" / GPT-NeoX pairing (j with j + D/2), NOT the interleaved (2j, 2j+1) one.
//
// Layouts:
//   qkv        f16 [n_tokens, 3*hidden]   in place
//   bias       f32 [3*hidden]             or NULL (no bias)
//   positions  u32 [n_tokens]
//   inv_freq   f32 [head_dim / 2]         computed on the host (gte: 8^(-1/32) * 160000^(-j/32))
//
// Numerics: everything in fp32 and ACCURATE sincosf (angles reach ~7.7e3 rad at p = 8191;
// __sinf/__cosf lose all accuracy there). The angle is one fp32 product p * inv_freq[j],
// exactly as torch builds its table. Each output is rounded to fp16 once. (HF rounds cos/sin
// to fp16 and rotates in fp16; we are slightly more accurate than the reference, well within
// the fp16 tolerance.)
//
// Work decomposition: per token there are H/16 "rotary items" in q, H/16 in k (each = 8
// consecutive pairs: 8 values at j0..j0+7 and their 8 partners at j0+D/2.., two 128-bit
// loads) and H/8 "bias items" in v (8 values). So H/4 items per token.
//
// Launch (variant 1, grid-stride over all items):
//   block = 256 threads (any multiple of 32 up to 256 works: __launch_bounds__(256))
//   grid  = ceil(n_tokens * (hidden / 4) / 256)   (any grid >= 1 is correct)
//   dynamic shared memory = 0
// Preconditions: head_dim % 16 == 0 (pairs handled 8 at a time), hidden % head_dim == 0,
// hidden % 8 == 0, n_tokens * hidden < 2^31, positions < 2^24 (exact in fp32); qkv, bias and
// inv_freq 16-byte aligned. Every (token, column) is read and written by exactly one
// thread, so in-place is race-free.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
qkv_bias_rope(cr_half* __restrict__ qkv,
              const float* __restrict__ bias,
              const unsigned int* __restrict__ positions,
              const float* __restrict__ inv_freq,
              int n_tokens,
              int hidden,
              int head_dim) {
    cr_require(head_dim > 0 && (head_dim & 15) == 0 && hidden > 0 && hidden % head_dim == 0);
    const unsigned int items_per_token = (unsigned int)hidden >> 2;        // H/4
    const unsigned int rot_items_per_block = (unsigned int)hidden >> 4;    // H/16 (q or k)
    const unsigned int rot_items_per_head = (unsigned int)head_dim >> 4;   // D/16
    const unsigned int half_d = (unsigned int)head_dim >> 1;
    const unsigned int total = (unsigned int)n_tokens * items_per_token;
    const size_t row_stride = 3 * (size_t)hidden;

    for (unsigned int it = blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += gridDim.x * blockDim.x) {
        const unsigned int t = it / items_per_token;
        const unsigned int r = it - t * items_per_token;
        cr_half* row = qkv + (size_t)t * row_stride;

        if (r < 2u * rot_items_per_block) {
            // q (which = 0) or k (which = 1): rotate 8 pairs.
            const unsigned int which = r / rot_items_per_block;
            const unsigned int within = r - which * rot_items_per_block;
            const unsigned int head = within / rot_items_per_head;
            const unsigned int j0 = (within - head * rot_items_per_head) * 8u;  // < D/2
            const unsigned int col_lo = which * (unsigned int)hidden + head * (unsigned int)head_dim + j0;
            const unsigned int col_hi = col_lo + half_d;

            float lo[8], hi[8], f[8];
            cr_load_half8(row + col_lo, lo);
            cr_load_half8(row + col_hi, hi);
            if (bias != nullptr) {
                float blo[8], bhi[8];
                cr_load_float8_ro(bias + col_lo, blo);
                cr_load_float8_ro(bias + col_hi, bhi);
#pragma unroll
                for (int k = 0; k < 8; ++k) { lo[k] += blo[k]; hi[k] += bhi[k]; }
            }
            cr_load_float8_ro(inv_freq + j0, f);
            const float p = (float)positions[t];
            float out_lo[8], out_hi[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                float s, c;
                sincosf(p * f[k], &s, &c);  // accurate version on purpose (see header)
                out_lo[k] = lo[k] * c - hi[k] * s;
                out_hi[k] = hi[k] * c + lo[k] * s;
            }
            cr_store_half8(row + col_lo, out_lo);
            cr_store_half8(row + col_hi, out_hi);
        } else {
            // v: bias only.
            if (bias == nullptr) continue;
            const unsigned int col = 2u * (unsigned int)hidden + (r - 2u * rot_items_per_block) * 8u;
            float z[8], b[8];
            cr_load_half8(row + col, z);
            cr_load_float8_ro(bias + col, b);
#pragma unroll
            for (int k = 0; k < 8; ++k) z[k] += b[k];
            cr_store_half8(row + col, z);
        }
    }
}
