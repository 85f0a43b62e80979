// embedding.cu: token embedding lookup fused with the embedding LayerNorm, two variants.
//
//   v1 embedding_layernorm (gte "new", spec section 3.1: no position table, every token type
//      id is 0, so the token-type row 0 is added to every token):
//        out[t, :] = LayerNorm( word_emb[token_ids[t], :] + type_emb_row0[:] ) * gamma + beta
//
//   v2 embedding_abs_layernorm (absolute-position encoders: BERT, XLM-RoBERTa), the twin of
//      model::cpu::ops::embedding_abs_layernorm:
//        out[t, :] = LayerNorm( word_emb[token_ids[t], :]
//                               + (position_emb[positions[t], :] + type_emb[type_ids[t], :]) )
//                    * gamma + beta
//      `positions` are whatever the family feeds its position table (BERT: 0-based inside the
//      sequence; XLM-R: past the padding index), computed by the host; this kernel knows no
//      family. The sum is taken in that order (position + type first), as the CPU twin does.
//
// Layouts (row-major, no padding):
//   token_ids      u32  [n_tokens]            packed tokens of all sequences
//   positions      u32  [n_tokens]            (v2) row of position_emb per token
//   type_ids       u32  [n_tokens]            (v2) segment id per token
//   word_emb       f16  [vocab_size, hidden]
//   position_emb   f16  [n_positions, hidden] (v2)
//   type_emb       f16  [n_types, hidden]     (v2)
//   type_emb_row0  f16  [hidden]              (v1) or NULL (type_vocab_size == 0: add nothing)
//   gamma, beta    f32  [hidden]
//   out            f16  [n_tokens, hidden]
//   error_flag     i32  [1]                   or NULL; see "out-of-range ids"
//
// Math: the adds and all statistics in fp32 (mean, population variance, rsqrt(var + eps);
// eps = 1e-12 is not representable in fp16), one rounding to fp16 at the end.
//
// Out-of-range ids: the row is NOT read; the kernel uses an all-zero vector in its place (the
// output stays finite, no NaN) and sets a bit of *error_flag when error_flag is not NULL:
//   bit 0 (1): token_ids[t] >= vocab_size (v1 and v2)
//   bit 1 (2): positions[t] >= n_positions (v2: a sequence longer than the position table)
//   bit 2 (4): type_ids[t] >= n_types (v2)
// The host should zero the flag before the launch and check it afterwards (or at least in
// debug builds). Any such id is a tokenizer/host bug, or a length the host should have refused.
//
// Launch (both variants: one warp per token row, row kept in registers):
//   block = 128 threads (4 warps; any multiple of 32 up to 128 works: __launch_bounds__(128))
//   grid  = ceil(n_tokens / (blockDim.x / 32))   (a smaller grid also works: grid-stride loop)
//   dynamic shared memory = 0
// Preconditions: hidden % 8 == 0, 8 <= hidden <= 1024; the tables and out 16-byte aligned
// (cudaMalloc'd base pointers are); gamma/beta 16-byte aligned.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(128)
embedding_layernorm(const unsigned int* __restrict__ token_ids,
                    const cr_half* __restrict__ word_emb,
                    const cr_half* __restrict__ type_emb_row0,
                    const float* __restrict__ gamma,
                    const float* __restrict__ beta,
                    cr_half* __restrict__ out,
                    int n_tokens,
                    int hidden,
                    unsigned int vocab_size,
                    float eps,
                    int* __restrict__ error_flag) {
    cr_require((blockDim.x & 31) == 0 && (hidden & 7) == 0 && hidden > 0 && hidden <= CR_LN_MAX_HIDDEN);
    const int lane = threadIdx.x & 31;
    const int warps_per_block = blockDim.x >> 5;
    const int n_chunks = hidden >> 3;

    for (int t = blockIdx.x * warps_per_block + (threadIdx.x >> 5); t < n_tokens;
         t += gridDim.x * warps_per_block) {
        const unsigned int id = token_ids[t];
        const bool id_ok = id < vocab_size;
        if (!id_ok && lane == 0 && error_flag != nullptr) atomicOr(error_flag, 1);
        // 64-bit row offset: vocab * hidden is 192M here, but stay safe for bigger tables.
        const cr_half* wrow = word_emb + (size_t)(id_ok ? id : 0u) * (size_t)hidden;

        float v[CR_LN_MAX_CHUNKS][8];
#pragma unroll
        for (int i = 0; i < CR_LN_MAX_CHUNKS; ++i) {
            const int c = lane + 32 * i;
#pragma unroll
            for (int k = 0; k < 8; ++k) v[i][k] = 0.0f;
            if (c < n_chunks) {
                if (id_ok) cr_load_half8_ro(wrow + c * 8, v[i]);
                if (type_emb_row0 != nullptr) {
                    float ty[8];
                    cr_load_half8_ro(type_emb_row0 + c * 8, ty);
#pragma unroll
                    for (int k = 0; k < 8; ++k) v[i][k] += ty[k];
                }
            }
        }
        cr_warp_layernorm_store(v, hidden, gamma, beta, eps, out + (size_t)t * (size_t)hidden);
    }
}

extern "C" __global__ void __launch_bounds__(128)
embedding_abs_layernorm(const unsigned int* __restrict__ token_ids,
                        const unsigned int* __restrict__ positions,
                        const unsigned int* __restrict__ type_ids,
                        const cr_half* __restrict__ word_emb,
                        const cr_half* __restrict__ position_emb,
                        const cr_half* __restrict__ type_emb,
                        const float* __restrict__ gamma,
                        const float* __restrict__ beta,
                        cr_half* __restrict__ out,
                        int n_tokens,
                        int hidden,
                        unsigned int vocab_size,
                        unsigned int n_positions,
                        unsigned int n_types,
                        float eps,
                        int* __restrict__ error_flag) {
    cr_require((blockDim.x & 31) == 0 && (hidden & 7) == 0 && hidden > 0 && hidden <= CR_LN_MAX_HIDDEN);
    const int lane = threadIdx.x & 31;
    const int warps_per_block = blockDim.x >> 5;
    const int n_chunks = hidden >> 3;

    for (int t = blockIdx.x * warps_per_block + (threadIdx.x >> 5); t < n_tokens;
         t += gridDim.x * warps_per_block) {
        const unsigned int id = token_ids[t], pos = positions[t], ty = type_ids[t];
        const bool id_ok = id < vocab_size, pos_ok = pos < n_positions, ty_ok = ty < n_types;
        const int bad = (id_ok ? 0 : 1) | (pos_ok ? 0 : 2) | (ty_ok ? 0 : 4);
        if (bad != 0 && lane == 0 && error_flag != nullptr) atomicOr(error_flag, bad);
        // 64-bit row offsets (vocab * hidden reaches 250k * 1024 for XLM-R large).
        const cr_half* wrow = word_emb + (size_t)(id_ok ? id : 0u) * (size_t)hidden;
        const cr_half* prow = position_emb + (size_t)(pos_ok ? pos : 0u) * (size_t)hidden;
        const cr_half* trow = type_emb + (size_t)(ty_ok ? ty : 0u) * (size_t)hidden;

        float v[CR_LN_MAX_CHUNKS][8];
#pragma unroll
        for (int i = 0; i < CR_LN_MAX_CHUNKS; ++i) {
            const int c = lane + 32 * i;
#pragma unroll
            for (int k = 0; k < 8; ++k) v[i][k] = 0.0f;
            if (c < n_chunks) {
                float w[8], p[8], y[8];
#pragma unroll
                for (int k = 0; k < 8; ++k) w[k] = p[k] = y[k] = 0.0f;
                if (id_ok) cr_load_half8_ro(wrow + c * 8, w);
                if (pos_ok) cr_load_half8_ro(prow + c * 8, p);
                if (ty_ok) cr_load_half8_ro(trow + c * 8, y);
#pragma unroll
                for (int k = 0; k < 8; ++k) v[i][k] = w[k] + (p[k] + y[k]);
            }
        }
        cr_warp_layernorm_store(v, hidden, gamma, beta, eps, out + (size_t)t * (size_t)hidden);
    }
}
