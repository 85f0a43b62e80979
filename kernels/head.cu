// head.cu: CLS pooler + 1-logit classifier + score activation (spec section 3.7 / 3.8).
//
// For each sequence s:
//   c      = x[row(s), :]                            (fp16 -> fp32)
//   pooled = tanh( W_pool c + b_pool )               (BERT pooler, W_pool row-major [out, in])
//   logit  = w_cls . pooled + b_cls
//   score  = activation(logit)    0 = identity, 1 = sigmoid (any other code: identity)
//
// Row selection (documented "index mode"):
//   cls_rows != NULL  ->  row(s) = cls_rows[s].  Pass cu_seqlens to read the CLS (first)
//                         token of each sequence straight out of the packed [n_tokens, H]
//                         hidden states.
//   cls_rows == NULL  ->  row(s) = s.  For a compact [n_seqs, H] CLS matrix (the CLS-only
//                         last layer produces one).
//   Rows are `hidden` halves apart in both modes.
//
// Layouts:
//   x        f16 [*, hidden]
//   w_pool   f32 [hidden, hidden] row-major (out x in), or NULL: no pooler (pooled = c, no
//            tanh; TEI's behaviour for checkpoints without a pooler; NOT this model's)
//   b_pool   f32 [hidden] (ignored when w_pool is NULL; may be NULL = zero bias)
//   w_cls    f32 [hidden]
//   b_cls    f32 [1] (device pointer; may be NULL = 0)
//   logits   f32 [n_seqs]  (may be NULL: not written)
//   scores   f32 [n_seqs]  (may be NULL: not written)
//
// Numerics: fp32 throughout (the head is 1.2 MFLOP per pair, and an fp16 logit/sigmoid
// produces ties that flip rankings). Accurate tanhf/expf. The sigmoid never overflows:
// 1/(1+exp(-z)) for z >= 0, exp(z)/(1+exp(z)) for z < 0.
//
// Work split: one CTA handles HEAD_SEQS_PER_BLOCK = 8 sequences so every W_pool row it
// reads (from L2) is reused 8 times; warp w computes pooler outputs o = w, w+8, ... with a
// coalesced float4 sweep of row o, and folds w_cls[o] * tanh(.) into a per-sequence partial
// logit, so the pooled vector is never stored.
//
// Launch:
//   block = 256 threads (exactly: 8 warps; checked, a wrong blockDim traps)
//   grid  = ceil(n_seqs / 8)
//   dynamic shared memory = 0 (static: 8 x 1024 floats + 64 floats = 33,024 B)
// Preconditions: hidden % 8 == 0, hidden <= 1024; x 16-byte aligned; w_pool 16-byte
// aligned; cls_rows[s] valid row indices (a sequence must be non-empty when cls_rows =
// cu_seqlens).
#include "common.cuh"

#define HEAD_THREADS 256
#define HEAD_WARPS (HEAD_THREADS / 32)
#define HEAD_SEQS_PER_BLOCK 8
#define HEAD_MAX_HIDDEN 1024

extern "C" __global__ void __launch_bounds__(HEAD_THREADS)
cls_pooler_classifier(const cr_half* __restrict__ x,
                      const int* __restrict__ cls_rows,
                      const float* __restrict__ w_pool,
                      const float* __restrict__ b_pool,
                      const float* __restrict__ w_cls,
                      const float* __restrict__ b_cls,
                      int activation,
                      float* __restrict__ logits,
                      float* __restrict__ scores,
                      int n_seqs,
                      int hidden) {
    __shared__ __align__(16) float c_s[HEAD_SEQS_PER_BLOCK][HEAD_MAX_HIDDEN];
    __shared__ float part_s[HEAD_WARPS][HEAD_SEQS_PER_BLOCK];

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int s0 = blockIdx.x * HEAD_SEQS_PER_BLOCK;
    cr_require(blockDim.x == HEAD_THREADS && (hidden & 7) == 0 && hidden > 0 && hidden <= HEAD_MAX_HIDDEN);

    // ---- gather the CLS rows (fp32) into shared memory; missing sequences -> zeros ----
    const int n_chunks = hidden >> 3;
    for (int idx = tid; idx < HEAD_SEQS_PER_BLOCK * n_chunks; idx += HEAD_THREADS) {
        const int si = idx / n_chunks;
        const int ch = idx - si * n_chunks;
        const int s = s0 + si;
        float f[8];
        if (s < n_seqs) {
            const size_t row = (size_t)(cls_rows != nullptr ? cls_rows[s] : s);
            cr_load_half8_ro(x + row * (size_t)hidden + ch * 8, f);
        } else {
#pragma unroll
            for (int k = 0; k < 8; ++k) f[k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) c_s[si][ch * 8 + k] = f[k];
    }
    __syncthreads();

    float part[HEAD_SEQS_PER_BLOCK];  // this warp's share of w_cls . pooled, per sequence
#pragma unroll
    for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) part[si] = 0.0f;

    if (w_pool != nullptr) {
        for (int o = warp; o < hidden; o += HEAD_WARPS) {
            const float* wrow = w_pool + (size_t)o * (size_t)hidden;
            float acc[HEAD_SEQS_PER_BLOCK];
#pragma unroll
            for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) acc[si] = 0.0f;
            for (int i = lane * 4; i < hidden; i += 128) {
                const float4 w = __ldg(reinterpret_cast<const float4*>(wrow + i));
#pragma unroll
                for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) {
                    const float4 cv = *reinterpret_cast<const float4*>(&c_s[si][i]);
                    acc[si] = fmaf(w.x, cv.x, acc[si]);
                    acc[si] = fmaf(w.y, cv.y, acc[si]);
                    acc[si] = fmaf(w.z, cv.z, acc[si]);
                    acc[si] = fmaf(w.w, cv.w, acc[si]);
                }
            }
            const float bo = (b_pool != nullptr) ? __ldg(b_pool + o) : 0.0f;
            const float wc = __ldg(w_cls + o);
#pragma unroll
            for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) {
                const float z = cr_warp_sum(acc[si]);  // every lane gets the full dot product
                part[si] = fmaf(wc, tanhf(z + bo), part[si]);
            }
        }
    } else {
        // No pooler: logit = w_cls . c. Warp w takes dims w, w+8, ... (same partial layout).
        for (int o = warp; o < hidden; o += HEAD_WARPS) {
            const float wc = __ldg(w_cls + o);
#pragma unroll
            for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) part[si] = fmaf(wc, c_s[si][o], part[si]);
        }
    }

    if (lane == 0) {
#pragma unroll
        for (int si = 0; si < HEAD_SEQS_PER_BLOCK; ++si) part_s[warp][si] = part[si];
    }
    __syncthreads();

    if (tid < HEAD_SEQS_PER_BLOCK) {
        const int s = s0 + tid;
        if (s < n_seqs) {
            float logit = (b_cls != nullptr) ? __ldg(b_cls) : 0.0f;
#pragma unroll
            for (int w = 0; w < HEAD_WARPS; ++w) logit += part_s[w][tid];  // fixed order
            float score = logit;
            if (activation == 1) {
                if (logit >= 0.0f) {
                    score = 1.0f / (1.0f + expf(-logit));
                } else {
                    const float e = expf(logit);
                    score = e / (1.0f + e);
                }
            }
            if (logits != nullptr) logits[s] = logit;
            if (scores != nullptr) scores[s] = score;
        }
    }
}
