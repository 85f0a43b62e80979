// attention.cu: bidirectional (non-causal) multi-head softmax attention over packed
// variable-length sequences (spec section 3.4).
//
//   ctx[t, h*D + d] = sum_k softmax_k( scale * q_t . k_k ) * v_k[d]
//   for t, k in the same sequence, q/k/v of head h
//
// Input is the packed QKV buffer after qkv_bias_rope (rope.cu): no padding anywhere.
//   qkv         f16 [n_tokens, 3*H]   cols [0,H) = q, [H,2H) = k, [2H,3H) = v; head h owns
//                                     cols h*D .. h*D+D-1 of each block; H = n_heads * D
//   cu_seqlens  i32 [n_seqs + 1]      prefix sums of sequence lengths, cu_seqlens[0] = 0,
//                                     n_tokens = cu_seqlens[n_seqs]
//   ctx         f16 [n_tokens, H]     head h written at cols h*D .. h*D+D-1
//   softmax_scale                     1/sqrt(D) (= 0.125 for D = 64), passed by the host
//
// Input is the same for encoders without RoPE (BERT, XLM-RoBERTa): the QKV buffer after the
// plain bias add (bias.cu add_bias_rows).
//
// Variants (all softmax math in fp32 with running-max subtraction):
//
//   v1 attention_varlen_reference   obviously-correct fp32 reference for tests: one CTA per
//      (query token, head), keys streamed in chunks of 128 with an online (rescaled)
//      softmax; any head_dim <= 128, any sequence length. Scores, exp (expf), weights and
//      the P.V sums all fp32; one rounding to fp16. Slow (K rows re-read per query).
//
//   v2 attention_varlen_flash       the fast path. FlashAttention-2 style, head_dim == 64
//      attention_varlen_flash_d32   (and its head_dim == 32 instantiation, e.g. MiniLM):
//      one CTA = 64 query rows of one (sequence, head), 4 warps x 16 rows; K/V tiles of 64
//      keys streamed through shared memory with cp.async double-buffering; S = Q K^T and
//      O += P V on tensor cores (mma.sync m16n8k16, f16 inputs, fp32 accumulators).
//      Numerics: q.k dot products accumulate in fp32 inside the MMA; the scale is folded with
//      log2(e) and applied in fp32 to the fp32 scores; exp2f (CUDA's, <= 2 ulp, not a
//      fast-math variant); running max / running sum in fp32; the probabilities P are
//      rounded to fp16 for the P.V MMA (the standard FA2 trade: relative error ~ 2^-11 per
//      weight, averaged over keys) while the normalizer l sums the UNROUNDED fp32
//      probabilities; O accumulates in fp32 and is divided by l once at the end, then
//      rounded to fp16 once. Expect
//      |flash - reference| ~ 1e-3 relative on O.
//      Masking: keys >= sequence length get score -inf (exp2 -> exactly 0); K/V/Q rows past
//      the end are zero-filled in shared memory (never read from global: nothing past
//      n_tokens or from the next sequence is touched); query rows past the end are computed
//      on zeros and not written. Every KV tile starts at a valid key, so the running max is
//      finite from the first tile on: no NaN, no all-masked rows.
//      A 40-token sequence costs exactly one CTA per head (one Q tile, one KV tile); warps
//      whose 16 rows all lie past the end skip their MMAs.
//
//   v3 attention_varlen_cls         only query row 0 (the CLS token) of every sequence, for
//      attention_varlen_cls_d32     (head_dim 64; the _d32 entry is head_dim 32)
//      the last layer (only the CLS row feeds the pooler). Keys of all tokens of the
//      sequence are used. Output is compact: ctx_cls f16 [n_seqs, H]. One CTA per (sequence,
//      head), keys in chunks of 128 (one key per thread for the scores), online softmax,
//      fp32 everywhere (exp2f with the log2e-folded scale), one rounding at the end. Its row
//      matches v1/v2 on row cu_seqlens[s] to fp32 rounding / the fp16-P error of v2.
//
// Launch configurations (dynamic shared memory is 0 for all three; all smem is static):
//   v1 reference: grid = (n_tokens, n_heads, 1), block = (128, 1, 1); static smem ~1.2 KB
//   v2 flash:     grid = (ceil(max_seqlen / 64), n_heads, n_seqs), block = (128, 1, 1);
//                 static smem 46,080 B (Q 64x72 + 2 x K 64x72 + 2 x V 64x72 halves);
//                 _d32: 25,600 B (the same tiles, rows of 40 halves)
//                 max_seqlen = the longest sequence of the batch (an upper bound is fine:
//                 CTAs whose q tile starts at or past their sequence's end exit at once)
//   v3 cls:       grid = (n_seqs, n_heads, 1), block = (128, 1, 1); static smem ~1.9 KB
//                 (_d32: ~1.3 KB)
//
// Block sizes are exact (checked: a wrong blockDim traps, "illegal instruction").
// Preconditions:
//   - every sequence length >= 1 (an empty sequence writes nothing in v1/v2 and zeros in v3);
//   - v2/v3: head_dim == 64 exactly, _d32 entries 32 exactly (not a parameter: H = n_heads * D);
//     v1: head_dim <= 128;
//   - v2: n_seqs <= 65535 (gridDim.z limit), ceil(max_seqlen/64) <= 2^31-1;
//   - qkv and ctx 16-byte aligned (cudaMalloc base pointers are) for v2/v3; since the qkv
//     row stride is 3*H halves, H % 8 == 0 keeps every row 16-byte aligned (H = 768: ok);
//   - n_tokens * 3 * H < 2^63 (64-bit offsets are used for rows);
//   - ctx / ctx_cls must not overlap qkv (read-only, __restrict__);
//   - sm_80 or newer for v2 (cp.async, ldmatrix, mma.sync m16n8k16).
#include "common.cuh"
#include "mma_sm80.cuh"

#define CR_LOG2E 1.4426950408889634f

// =======================================================================================
// v1: reference

#define REF_THREADS 128
#define REF_CHUNK 128   // keys per chunk == threads per block: one score per thread
#define REF_MAX_HEAD_DIM 128

extern "C" __global__ void __launch_bounds__(REF_THREADS)
attention_varlen_reference(const cr_half* __restrict__ qkv,
                           cr_half* __restrict__ ctx,
                           const int* __restrict__ cu_seqlens,
                           int n_seqs,
                           int n_heads,
                           int head_dim,
                           float softmax_scale) {
    __shared__ float q_s[REF_MAX_HEAD_DIM];
    __shared__ float p_s[REF_CHUNK];
    __shared__ float red[32];

    const int t = blockIdx.x;       // query token (global packed index)
    const int head = blockIdx.y;
    const int tid = threadIdx.x;
    cr_require(blockDim.x == REF_THREADS && head_dim > 0 && head_dim <= REF_MAX_HEAD_DIM);
    if (t >= cu_seqlens[n_seqs]) return;  // uniform per CTA

    // Which sequence holds token t: largest s with cu_seqlens[s] <= t (binary search).
    int lo = 0, hi = n_seqs;  // invariant: cu_seqlens[lo] <= t < cu_seqlens[hi]
    while (hi - lo > 1) {
        const int mid = (lo + hi) >> 1;
        if (cu_seqlens[mid] <= t) lo = mid; else hi = mid;
    }
    const int start = cu_seqlens[lo];
    const int len = cu_seqlens[lo + 1] - start;

    const int H = n_heads * head_dim;
    const size_t stride = 3 * (size_t)H;
    const cr_half* q = qkv + (size_t)t * stride + (size_t)head * head_dim;
    const cr_half* k_base = qkv + (size_t)start * stride + H + (size_t)head * head_dim;
    const cr_half* v_base = k_base + H;

    if (tid < head_dim) q_s[tid] = cr_half_to_float(q[tid]);
    __syncthreads();

    float m = cr_neg_inf();  // running max of the scaled scores (uniform across the CTA)
    float l = 0.0f;          // running sum of exp(score - m)
    float acc = 0.0f;        // thread d < head_dim owns output dim d
    for (int c0 = 0; c0 < len; c0 += REF_CHUNK) {
        const int k = c0 + tid;
        float s = cr_neg_inf();
        if (k < len) {
            const cr_half* krow = k_base + (size_t)k * stride;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; ++d) dot = fmaf(q_s[d], cr_half_to_float(krow[d]), dot);
            s = dot * softmax_scale;
        }
        const float m_new = fmaxf(m, cr_block_max(s, red));  // finite: key c0 is valid
        const float p = (k < len) ? expf(s - m_new) : 0.0f;
        p_s[tid] = p;
        const float chunk_sum = cr_block_sum(p, red);  // its __syncthreads publish p_s
        const float alpha = expf(m - m_new);           // m = -inf on the first chunk -> 0
        l = l * alpha + chunk_sum;
        m = m_new;
        if (tid < head_dim) {
            const int n_in = min(REF_CHUNK, len - c0);
            float a = acc * alpha;
            for (int kk = 0; kk < n_in; ++kk)
                a = fmaf(p_s[kk], cr_half_to_float(v_base[(size_t)(c0 + kk) * stride + tid]), a);
            acc = a;
        }
        __syncthreads();  // p_s is rewritten by the next chunk
    }
    if (tid < head_dim) ctx[(size_t)t * H + (size_t)head * head_dim + tid] = cr_float_to_half(acc / l);
}

// =======================================================================================
// v2: flash (tensor cores), one body for both head sizes
//
// fa_flash<D> is the whole kernel; the entries attention_varlen_flash (D = 64) and
// attention_varlen_flash_d32 (D = 32) only instantiate it. Everything that depends on D is a
// compile-time constant: the smem row stride (D + 8 halves), the Q fragments (D/16 k-chunks
// of 16 dims), the K fragment loads (D/32 ldmatrix.x4 of 32 dims per key block), the O
// accumulator (D/8 blocks of 8 dims) and the chunks of a tile row (D/8 of 16 bytes). For
// D = 64 every constant has its old value, so that instantiation is the kernel it was.

#define FA_BLOCK_M 64                 // query rows per CTA (4 warps x 16)
#define FA_BLOCK_N 64                 // keys per KV tile
#define FA_THREADS 128

// Halves per smem row: D + 8 pad (144 B for D = 64, 80 B for D = 32). The 8 row addresses of
// one ldmatrix 8x8 matrix then fall in 8 disjoint 16-byte bank groups (row r starts at
// 16-byte group 9r resp. 5r mod 8: both permutations of 0..7): conflict-free.
template <int D> struct FaShape {
    static_assert(D == 32 || D == 64, "flash attention is instantiated for head_dim 32 and 64");
    static constexpr int STRIDE = D + 8;
    static constexpr int TILE_HALVES = 64 * STRIDE;
    static constexpr int ROW_CHUNKS_LOG2 = D == 64 ? 3 : 2;  // log2(D / 8): 16-byte chunks per row
    static constexpr int ROW_CHUNKS = 1 << ROW_CHUNKS_LOG2;
};

// Cooperative async load of a 64-row x D-col fp16 tile (rows `row_stride` halves apart in
// global memory) into padded shared memory. Rows >= rows_valid are zero-filled and not read.
// 64 * D/8 16-byte chunks, D/16 per thread; consecutive threads take consecutive chunks of a
// row so each warp reads full rows (128 B for D = 64, 64 B for D = 32) per instruction.
template <int D>
__device__ __forceinline__ void fa_load_tile_async(cr_half* smem_tile, const cr_half* gmem_row0,
                                                   int rows_valid, size_t row_stride) {
    typedef FaShape<D> Shape;
#pragma unroll
    for (int i = 0; i < 64 * Shape::ROW_CHUNKS / FA_THREADS; ++i) {
        const int c = threadIdx.x + FA_THREADS * i;
        const int row = c >> Shape::ROW_CHUNKS_LOG2;
        const int ch = c & (Shape::ROW_CHUNKS - 1);
        const bool valid = row < rows_valid;
        // Invalid rows point at row 0 (always a real row of this sequence); nothing is read.
        const cr_half* src = gmem_row0 + (valid ? (size_t)row * row_stride : (size_t)0) + ch * 8;
        cr_cp_async_16(smem_tile + row * Shape::STRIDE + ch * 8, src, valid);
    }
}

template <int D>
__device__ __forceinline__ void fa_flash(const cr_half* __restrict__ qkv,
                                         cr_half* __restrict__ ctx,
                                         const int* __restrict__ cu_seqlens,
                                         int n_heads,
                                         float softmax_scale) {
    typedef FaShape<D> Shape;
    constexpr int KC = D / 16;  // 16-dim k-chunks of q.k
    constexpr int DB = D / 8;   // 8-dim blocks of O
    __shared__ __align__(16) cr_half sQ[Shape::TILE_HALVES];
    __shared__ __align__(16) cr_half sK[2][Shape::TILE_HALVES];
    __shared__ __align__(16) cr_half sV[2][Shape::TILE_HALVES];

    cr_require(blockDim.x == FA_THREADS);
    const int seq = blockIdx.z;
    const int head = blockIdx.y;
    const int q0 = blockIdx.x * FA_BLOCK_M;
    const int start = cu_seqlens[seq];
    const int len = cu_seqlens[seq + 1] - start;
    if (q0 >= len) return;  // uniform per CTA, before any barrier

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int g = lane >> 2;  // row inside the 8-row half of an MMA tile
    const int c = lane & 3;   // column pair inside an 8-column MMA tile

    const int H = n_heads * D;
    const size_t stride = 3 * (size_t)H;
    const cr_half* q_base = qkv + (size_t)(start + q0) * stride + (size_t)head * D;
    const cr_half* k_base = qkv + (size_t)start * stride + H + (size_t)head * D;
    const cr_half* v_base = k_base + H;
    const int n_kv_tiles = (len + FA_BLOCK_N - 1) / FA_BLOCK_N;

    // Stage 0: Q tile and KV tile 0 in one async group.
    fa_load_tile_async<D>(sQ, q_base, len - q0, stride);
    fa_load_tile_async<D>(sK[0], k_base, len, stride);
    fa_load_tile_async<D>(sV[0], v_base, len, stride);
    cr_cp_async_commit();

    const float scale_log2 = softmax_scale * CR_LOG2E;
    const bool warp_active = (q0 + warp * 16) < len;  // does this warp own any real row?

    float o[DB][4];  // O accumulator: 16 rows x D dims per warp; o[db] = dims db*8..db*8+7
#pragma unroll
    for (int db = 0; db < DB; ++db)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[db][e] = 0.0f;
    float m_r0 = cr_neg_inf(), m_r1 = cr_neg_inf();  // running max, rows g and g+8 (log2 units)
    float l_r0 = 0.0f, l_r1 = 0.0f;                  // this thread's partial running sums
    unsigned int qf[KC][4];                          // Q fragments, D/16 k-chunks of 16 dims

    for (int j = 0; j < n_kv_tiles; ++j) {
        const int buf = j & 1;
        if (j + 1 < n_kv_tiles) {
            // Prefetch tile j+1 into the other buffer (freed by the barrier that ended
            // iteration j-1), then wait for everything but that newest group.
            const int kv_next = (j + 1) * FA_BLOCK_N;
            fa_load_tile_async<D>(sK[buf ^ 1], k_base + (size_t)kv_next * stride, len - kv_next, stride);
            fa_load_tile_async<D>(sV[buf ^ 1], v_base + (size_t)kv_next * stride, len - kv_next, stride);
            cr_cp_async_commit();
            cr_cp_async_wait<1>();
        } else {
            cr_cp_async_wait<0>();
        }
        __syncthreads();  // tile j (and Q) visible to all warps

        if (warp_active) {
            if (j == 0) {
#pragma unroll
                for (int kc = 0; kc < KC; ++kc)
                    cr_ldmatrix_x4(qf[kc], sQ + (warp * 16 + (lane & 15)) * Shape::STRIDE +
                                               kc * 16 + (lane >> 4) * 8);
            }
            const cr_half* sKb = sK[buf];
            const cr_half* sVb = sV[buf];
            const int kv0 = j * FA_BLOCK_N;

            // ---- S = Q K^T (raw dot products, fp32) ----
            float s[8][4];  // s[nb] = keys nb*8..nb*8+7
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
                for (int e = 0; e < 4; ++e) s[nb][e] = 0.0f;
                // K smem is [key][dim]; a non-transposed 8x8 ldmatrix of K rows gives
                // exactly the "col" B fragment (B[k=dim][n=key]). Matrices: dims
                // 0-7, 8-15, 16-23, 24-31 (then 32..63 for D = 64) of keys nb*8..nb*8+7.
                unsigned int kf[4];
                const cr_half* krow = sKb + (nb * 8 + (lane & 7)) * Shape::STRIDE + (lane >> 3) * 8;
#pragma unroll
                for (int kh = 0; kh < D / 32; ++kh) {
                    cr_ldmatrix_x4(kf, krow + kh * 32);
                    cr_mma_16816(s[nb], qf[2 * kh], kf[0], kf[1]);
                    cr_mma_16816(s[nb], qf[2 * kh + 1], kf[2], kf[3]);
                }
            }

            // ---- scale (log2 domain) and mask keys past the end ----
            const bool need_mask = kv0 + FA_BLOCK_N > len;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[nb][e] *= scale_log2;
                    if (need_mask && kv0 + nb * 8 + 2 * c + (e & 1) >= len) s[nb][e] = cr_neg_inf();
                }
            }

            // ---- online softmax: row max over the 4 threads of a quad ----
            float mx0 = cr_neg_inf(), mx1 = cr_neg_inf();
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                mx0 = fmaxf(mx0, fmaxf(s[nb][0], s[nb][1]));
                mx1 = fmaxf(mx1, fmaxf(s[nb][2], s[nb][3]));
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(CR_FULL_MASK, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(CR_FULL_MASK, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(CR_FULL_MASK, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(CR_FULL_MASK, mx1, 2));
            // Key kv0 is always valid, so mx0/mx1 are finite and so are the new maxima.
            const float mn0 = fmaxf(m_r0, mx0);
            const float mn1 = fmaxf(m_r1, mx1);
            const float alpha0 = exp2f(m_r0 - mn0);  // first tile: exp2(-inf) = 0
            const float alpha1 = exp2f(m_r1 - mn1);
            m_r0 = mn0;
            m_r1 = mn1;

            float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                s[nb][0] = exp2f(s[nb][0] - mn0);  // masked: exp2(-inf) = 0
                s[nb][1] = exp2f(s[nb][1] - mn0);
                s[nb][2] = exp2f(s[nb][2] - mn1);
                s[nb][3] = exp2f(s[nb][3] - mn1);
                rs0 += s[nb][0] + s[nb][1];
                rs1 += s[nb][2] + s[nb][3];
            }
            l_r0 = l_r0 * alpha0 + rs0;
            l_r1 = l_r1 * alpha1 + rs1;
#pragma unroll
            for (int db = 0; db < DB; ++db) {
                o[db][0] *= alpha0; o[db][1] *= alpha0;
                o[db][2] *= alpha1; o[db][3] *= alpha1;
            }

            // ---- O += P V ----
            // The S accumulator layout of key blocks 2kc and 2kc+1 is exactly the A fragment
            // of a 16x16 P chunk (keys kc*16..kc*16+15): no shuffles needed.
#pragma unroll
            for (int kc = 0; kc < 4; ++kc) {
                unsigned int pa[4];
                pa[0] = cr_float2_to_u32(s[2 * kc][0], s[2 * kc][1]);
                pa[1] = cr_float2_to_u32(s[2 * kc][2], s[2 * kc][3]);
                pa[2] = cr_float2_to_u32(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[3] = cr_float2_to_u32(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    // V smem is [key][dim]; B[k=key][n=dim] needs keys paired per thread, so
                    // transpose on load. Matrices: (keys +0..7, dims dp*16+0..7),
                    // (keys +8..15, same dims), (keys +0..7, dims +8..15), (keys +8..15, +8..15).
                    unsigned int vf[4];
                    cr_ldmatrix_x4_trans(vf, sVb + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * Shape::STRIDE +
                                                 dp * 16 + (lane >> 4) * 8);
                    cr_mma_16816(o[2 * dp], pa, vf[0], vf[1]);
                    cr_mma_16816(o[2 * dp + 1], pa, vf[2], vf[3]);
                }
            }
        }
        __syncthreads();  // all warps done with buffer `buf` before it is refilled
    }

    if (!warp_active) return;

    // ---- epilogue: normalize, stage through this warp's own 16 Q rows, 128-bit stores ----
    l_r0 += __shfl_xor_sync(CR_FULL_MASK, l_r0, 1);
    l_r0 += __shfl_xor_sync(CR_FULL_MASK, l_r0, 2);
    l_r1 += __shfl_xor_sync(CR_FULL_MASK, l_r1, 1);
    l_r1 += __shfl_xor_sync(CR_FULL_MASK, l_r1, 2);
    const float inv0 = 1.0f / l_r0;  // l >= 1: the max element contributes exp2(0) = 1
    const float inv1 = 1.0f / l_r1;

    // Only this warp ever reads rows warp*16..warp*16+15 of sQ (its Q fragments, loaded at
    // j == 0 and long consumed), so reusing them needs no block barrier.
    cr_half* sO = sQ + warp * 16 * Shape::STRIDE;
    __syncwarp();
#pragma unroll
    for (int db = 0; db < DB; ++db) {
        *reinterpret_cast<unsigned int*>(sO + g * Shape::STRIDE + db * 8 + 2 * c) =
            cr_float2_to_u32(o[db][0] * inv0, o[db][1] * inv0);
        *reinterpret_cast<unsigned int*>(sO + (g + 8) * Shape::STRIDE + db * 8 + 2 * c) =
            cr_float2_to_u32(o[db][2] * inv1, o[db][3] * inv1);
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 16 * Shape::ROW_CHUNKS / 32; ++i) {
        const int idx = lane + 32 * i;  // 16 rows x D/8 chunks of 16 bytes
        const int row = idx >> Shape::ROW_CHUNKS_LOG2;
        const int ch = idx & (Shape::ROW_CHUNKS - 1);
        const int q = q0 + warp * 16 + row;
        if (q < len) {
            *reinterpret_cast<uint4*>(ctx + (size_t)(start + q) * H + (size_t)head * D + ch * 8) =
                *reinterpret_cast<const uint4*>(sO + row * Shape::STRIDE + ch * 8);
        }
    }
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
attention_varlen_flash(const cr_half* __restrict__ qkv,
                       cr_half* __restrict__ ctx,
                       const int* __restrict__ cu_seqlens,
                       int n_heads,
                       float softmax_scale) {
    fa_flash<64>(qkv, ctx, cu_seqlens, n_heads, softmax_scale);
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
attention_varlen_flash_d32(const cr_half* __restrict__ qkv,
                           cr_half* __restrict__ ctx,
                           const int* __restrict__ cu_seqlens,
                           int n_heads,
                           float softmax_scale) {
    fa_flash<32>(qkv, ctx, cu_seqlens, n_heads, softmax_scale);
}

// =======================================================================================
// v3: CLS-only queries (last layer), one body for both head sizes
//
// cls_attention<D> is the whole kernel; attention_varlen_cls (D = 64) and
// attention_varlen_cls_d32 (D = 32) instantiate it. In the P.V loop each lane owns D/32
// consecutive dims (2 for D = 64: one 4-byte load per key, as before; 1 for D = 32: one
// 2-byte load), so one warp reads one key's V row in one coalesced access.

#define CLS_THREADS 128
#define CLS_CHUNK 128  // keys per chunk == threads per block

template <int D>
__device__ __forceinline__ void cls_attention(const cr_half* __restrict__ qkv,
                                              cr_half* __restrict__ ctx_cls,
                                              const int* __restrict__ cu_seqlens,
                                              int n_heads,
                                              float softmax_scale) {
    static_assert(D == 32 || D == 64, "CLS attention is instantiated for head_dim 32 and 64");
    constexpr int PER_LANE = D / 32;  // V dims per lane in the P.V loop
    __shared__ float q_s[D];
    __shared__ float p_s[CLS_CHUNK];
    __shared__ float acc_s[CLS_THREADS / 32][D];
    __shared__ float red[32];

    cr_require(blockDim.x == CLS_THREADS);
    const int seq = blockIdx.x;
    const int head = blockIdx.y;
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int start = cu_seqlens[seq];
    const int len = cu_seqlens[seq + 1] - start;

    const int H = n_heads * D;
    const size_t stride = 3 * (size_t)H;
    cr_half* out = ctx_cls + (size_t)seq * H + (size_t)head * D;
    if (len <= 0) {  // uniform per CTA
        if (tid < D) out[tid] = cr_float_to_half(0.0f);
        return;
    }
    const cr_half* k_base = qkv + (size_t)start * stride + H + (size_t)head * D;
    const cr_half* v_base = k_base + H;

    // q of the CLS row, pre-multiplied by scale*log2(e) (fp32) so exp2f applies directly.
    if (tid < D)
        q_s[tid] = cr_half_to_float(qkv[(size_t)start * stride + (size_t)head * D + tid]) *
                   (softmax_scale * CR_LOG2E);
    __syncthreads();

    float m = cr_neg_inf(), l = 0.0f;
    float acc[PER_LANE];  // dims PER_LANE*lane.., over the keys of this warp
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) acc[e] = 0.0f;
    for (int c0 = 0; c0 < len; c0 += CLS_CHUNK) {
        const int k = c0 + tid;
        float s = cr_neg_inf();
        if (k < len) {
            const cr_half* krow = k_base + (size_t)k * stride;
            float dot = 0.0f;
#pragma unroll
            for (int ch = 0; ch < D / 8; ++ch) {
                float kv[8];
                cr_load_half8_ro(krow + ch * 8, kv);
#pragma unroll
                for (int e = 0; e < 8; ++e) dot = fmaf(q_s[ch * 8 + e], kv[e], dot);
            }
            s = dot;
        }
        const float m_new = fmaxf(m, cr_block_max(s, red));  // finite: key c0 is valid
        const float p = (k < len) ? exp2f(s - m_new) : 0.0f;
        p_s[tid] = p;
        const float chunk_sum = cr_block_sum(p, red);  // its barriers publish p_s
        const float alpha = exp2f(m - m_new);
        l = l * alpha + chunk_sum;
        m = m_new;
#pragma unroll
        for (int e = 0; e < PER_LANE; ++e) acc[e] *= alpha;
        const int n_in = min(CLS_CHUNK, len - c0);
        // Warp w takes keys w, w+4, ...: each key's V row (2*D bytes) is read by one warp in
        // one coalesced access.
        for (int kk = warp; kk < n_in; kk += CLS_THREADS / 32) {
            const cr_half* vrow = v_base + (size_t)(c0 + kk) * stride;
            if (PER_LANE == 2) {
                const unsigned int v2 = __ldg(reinterpret_cast<const unsigned int*>(vrow) + lane);
                const float2 vf = cr_u32_to_float2(v2);
                const float pk = p_s[kk];
                acc[0] = fmaf(pk, vf.x, acc[0]);
                acc[PER_LANE - 1] = fmaf(pk, vf.y, acc[PER_LANE - 1]);
            } else {
                const float v = cr_half_to_float(__ldg(vrow + lane));
                const float pk = p_s[kk];
                acc[0] = fmaf(pk, v, acc[0]);
            }
        }
        __syncthreads();  // p_s is rewritten by the next chunk
    }
#pragma unroll
    for (int e = 0; e < PER_LANE; ++e) acc_s[warp][PER_LANE * lane + e] = acc[e];
    __syncthreads();
    if (tid < D) {
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < CLS_THREADS / 32; ++w) sum += acc_s[w][tid];
        out[tid] = cr_float_to_half(sum / l);
    }
}

extern "C" __global__ void __launch_bounds__(CLS_THREADS)
attention_varlen_cls(const cr_half* __restrict__ qkv,
                     cr_half* __restrict__ ctx_cls,
                     const int* __restrict__ cu_seqlens,
                     int n_heads,
                     float softmax_scale) {
    cls_attention<64>(qkv, ctx_cls, cu_seqlens, n_heads, softmax_scale);
}

extern "C" __global__ void __launch_bounds__(CLS_THREADS)
attention_varlen_cls_d32(const cr_half* __restrict__ qkv,
                         cr_half* __restrict__ ctx_cls,
                         const int* __restrict__ cu_seqlens,
                         int n_heads,
                         float softmax_scale) {
    cls_attention<32>(qkv, ctx_cls, cu_seqlens, n_heads, softmax_scale);
}
