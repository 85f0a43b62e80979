//! The fp16-faithful CPU reference: the CPU twin of the whole CUDA forward (`--precision fp16`).
//! This file holds the options, the rounding helpers and the shared fp16 ops (`ops16`); the
//! family forwards built from them live in `crate::arch` (gte: `arch/gte/cpu_fp16.rs`; XLM-R
//! and BERT: `arch/abs_encoder.rs`). The rounding points below are written for gte; the
//! absolute-position encoder rounds at the same kinds of points (see its module docs).
//!
//! The f32 reference ([`super::cpu`]) is the spec. The CUDA path computes the same model but
//! STORES fp16 at fixed points, and those roundings (not bugs) are most of what separates it
//! from the f32 reference: on random-weight checkpoints that drift is large (see
//! `crate::verify`'s gate derivation). This model rounds to fp16 exactly where the CUDA path
//! stores fp16 and computes in f32 where the kernels compute, so the GPU can be held to it
//! within accumulation-order noise only.
//!
//! Rounding points (each `round_f16` call below names the kernel it mirrors):
//! - weights: the four GEMM matrices and the word-embedding table and token-type row are fp16
//!   on the device (`cuda::model::Weights::upload`), rounded here once at load through the
//!   same `read_f16` conversion. Biases, LayerNorm gamma/beta, the pooler and the classifier
//!   stay fp32 (the kernels read them in fp32).
//! - every activation buffer between kernels is fp16: embedding output, QKV GEMM output, QKV
//!   after bias+RoPE, attention output, o_proj / up_gate / down GEMM outputs (cuBLAS fp16 in
//!   and out, fp32 accumulation: an f32 GEMM on fp16-valued inputs and one rounding of its
//!   output is the same arithmetic up to summation order), the GeGLU output, the residual
//!   stream after each LayerNorm.
//! - flash attention (`attention_varlen_flash` / `_d32`, every layer but the last when
//!   head_dim is 64 or 32): P is rounded to fp16 before P·V, and P is `exp2(s - m_j)` with
//!   `m_j` the running max after key tile `j` (64 keys): the tile order decides how P is
//!   rounded, so it is modelled tile by tile. The normalizer sums the unrounded P; O is
//!   divided by it once.
//! - kept in fp32 by the kernels, and here: LayerNorm statistics (two-pass mean/variance,
//!   eps as f32), the bias adds, RoPE (one fp32 angle product, `RopeTable::with_fp32_angles`),
//!   softmax, GeGLU, the CLS-only last-layer attention (`attention_varlen_cls`, fp32 P) and
//!   the reference attention kernel, the head (pooler + classifier, fp32 weights).
//!
//! Test-only hooks (`#[doc(hidden)]`, zero cost when off): [`Mutation`] applies one deliberate
//! bug, so a test can show the verify gate catches it; [`SumOrder::Alternate`] runs every GEMM
//! and attention reduction in a second summation order, which measures the order-only noise
//! the gate has to absorb.

use gemm::Parallelism;
use half::f16;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::model::cpu::{ops, RopeTable};

/// The gte fp16 twin, under the path tests and tools used before the family seam.
pub use crate::arch::gte::cpu_fp16::Fp16CpuModel;

/// Keys per tile of the flash kernel (`FA_BLOCK_N` in attention.cu).
pub const FLASH_KEY_TILE: usize = 64;
/// Keys per chunk of the reference and CLS attention kernels (`REF_CHUNK`, `CLS_CHUNK`).
pub const FP32_KEY_CHUNK: usize = 128;

/// Which CUDA attention kernel the twin mirrors for the layers before the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionModel {
    /// `attention_varlen_flash`: P rounded to fp16 per 64-key tile.
    Flash,
    /// `attention_varlen_reference`: fp32 P.
    Reference,
}

impl AttentionModel {
    /// What the GPU runs for `choice` on a model with `head_dim` (flash needs head_dim 32 or
    /// 64: [`crate::cuda::AttentionChoice::resolve`]).
    pub fn like_gpu(choice: crate::cuda::AttentionChoice, head_dim: usize) -> Self {
        match choice.resolve(head_dim) {
            Ok(crate::cuda::AttentionPath::Flash) => AttentionModel::Flash,
            _ => AttentionModel::Reference,
        }
    }
}

/// A deliberate bug (tests of the verify gate only).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    None,
    /// RoPE rotates the keys of token p by the angle of position p + 1 (queries by p). A
    /// uniform shift of q and k together would be no bug at all: RoPE scores depend on
    /// relative positions only, so that "mutation" is invisible by construction.
    RopePositionOffByOne,
    /// The o_proj bias is not added (every layer).
    DroppedOutBias,
    /// Every LayerNorm uses [`WRONG_LAYER_NORM_EPS`] instead of the config's eps.
    WrongLayerNormEps,
    /// The last head's attention output is zero (every layer), as if its CTAs never ran.
    ZeroedLastHead,
    /// Flash attention skips the last key tile of sequences with more than one tile.
    SkippedLastKeyTile,
}

impl Mutation {
    pub const ALL: [Mutation; 5] = [
        Mutation::RopePositionOffByOne,
        Mutation::DroppedOutBias,
        Mutation::WrongLayerNormEps,
        Mutation::ZeroedLastHead,
        Mutation::SkippedLastKeyTile,
    ];
}

/// The eps of [`Mutation::WrongLayerNormEps`]. An eps bug only matters where it is not
/// negligible next to the row variance (~1 here): eps 1e-5 instead of 1e-12 changes every
/// LayerNorm output by ~5e-6 relative, 100x below one fp16 rounding, and is harmless; no
/// fp16 comparison can or needs to see it. 1e-2 (~0.5% on every output) is a bug that changes
/// scores.
#[doc(hidden)]
pub const WRONG_LAYER_NORM_EPS: f32 = 1e-2;

/// Summation order of the GEMMs and attention reductions (measurement hook).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumOrder {
    /// One GEMM over the whole inner dimension; LayerNorm statistics in f32, like the kernels.
    Default,
    /// Every GEMM (linear layers, q·k, P·V) as two GEMMs over the two halves of its inner
    /// dimension, added; LayerNorm statistics in f64. Same math, different rounding order,
    /// like cuBLAS's tiles / split-K and the kernels' reduction trees differ from ours.
    Alternate,
    /// As `Alternate` with the inner dimension in three parts: a third, independent order.
    AlternateThirds,
}

impl SumOrder {
    /// Parts the inner dimension of a GEMM is summed in.
    fn parts(self) -> usize {
        match self {
            SumOrder::Default => 1,
            SumOrder::Alternate => 2,
            SumOrder::AlternateThirds => 3,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Fp16Options {
    /// 0: every core.
    pub threads: usize,
    pub attention: AttentionModel,
    #[doc(hidden)]
    pub mutation: Mutation,
    #[doc(hidden)]
    pub sum_order: SumOrder,
}

impl Fp16Options {
    /// The twin of what the GPU runs by default (flash attention when head_dim is 32 or 64).
    pub fn like_gpu(cfg: &ModelConfig, threads: usize) -> Self {
        Fp16Options {
            threads,
            attention: AttentionModel::like_gpu(crate::cuda::AttentionChoice::Auto, cfg.head_dim),
            mutation: Mutation::None,
            sum_order: SumOrder::Default,
        }
    }
}

/// Rounds every value to the nearest fp16 (ties to even, overflow to ±inf, like
/// `__float2half_rn`), keeping it in an f32.
pub fn round_f16(v: &mut [f32]) {
    v.par_chunks_mut(4096).for_each(|c| {
        for x in c {
            *x = f16::from_f32(*x).to_f32();
        }
    });
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` through the `gemm` crate with explicit strides
/// (lhs row stride `lhs_rs`, rhs element (k, n) at `k * rhs_rs + n * rhs_cs`).
///
/// # Safety
/// All three matrices must be in bounds for the strides given.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    parallelism: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

/// [`gemm_strided`] in the given summation order: the whole inner dimension, or
/// `order.parts()` consecutive parts of it, each accumulated onto the previous ones.
///
/// # Safety
/// As [`gemm_strided`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_in_order(
    order: SumOrder,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    parallelism: Parallelism,
) {
    let parts = order.parts().min(k.max(1));
    let mut start = 0;
    for part in 0..parts {
        let end = k * (part + 1) / parts;
        gemm_strided(
            m,
            n,
            end - start,
            dst,
            dst_rs,
            part > 0,
            lhs.add(start),
            lhs_rs,
            rhs.add(start * rhs_rs),
            rhs_rs,
            rhs_cs,
            parallelism,
        );
        start = end;
    }
}

/// The ops of the twin, one per CUDA kernel (or cuBLAS call). Activations are f32 vectors
/// holding fp16 values.
pub mod ops16 {
    use super::*;

    /// cuBLAS `y = x · wᵀ`, fp16 in/out, fp32 accumulation (`Gpu::linear`): the f32 GEMM of
    /// the fp16-valued inputs, then ONE rounding of each output to fp16.
    pub fn linear(x: &[f32], w: &[f32], in_features: usize, out: &mut [f32], threads: usize, order: SumOrder) {
        let n = x.len() / in_features;
        let out_features = w.len() / in_features;
        assert_eq!(x.len(), n * in_features);
        assert_eq!(w.len(), out_features * in_features);
        assert_eq!(out.len(), n * out_features);
        if n == 0 || out_features == 0 {
            return;
        }
        let parallelism = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        // SAFETY: shapes asserted above; rhs = wᵀ: element (k, o) at o * in_features + k.
        unsafe {
            gemm_in_order(
                order,
                n,
                out_features,
                in_features,
                out.as_mut_ptr(),
                out_features,
                x.as_ptr(),
                in_features,
                w.as_ptr(),
                1,
                in_features,
                parallelism,
            )
        };
        round_f16(out); // cuBLAS writes its fp32 accumulators as fp16
    }

    /// `cr_warp_layernorm_store` (common.cuh): fp32 two-pass statistics, `rsqrt(var + eps)`,
    /// `(v - mean) * rstd * gamma + beta`, rounded to fp16. `SumOrder::Alternate` takes the
    /// statistics in f64 instead.
    pub fn layer_norm_to_f16(v: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32, order: SumOrder) {
        let (mean, rstd) = match order {
            SumOrder::Default => {
                let inv_h = 1.0 / v.len() as f32;
                let mean = v.iter().sum::<f32>() * inv_h;
                let var = v.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() * inv_h;
                (mean, 1.0 / (var + eps).sqrt())
            }
            SumOrder::Alternate | SumOrder::AlternateThirds => {
                let h = v.len() as f64;
                let mean = v.iter().map(|&x| x as f64).sum::<f64>() / h;
                let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / h;
                (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
            }
        };
        for ((x, g), b) in v.iter_mut().zip(gamma).zip(beta) {
            // store as fp16 (cr_store_half8)
            *x = f16::from_f32((*x - mean) * rstd * g + b).to_f32();
        }
    }

    /// `embedding_layernorm` (embedding.cu): fp16 word row + fp16 type row in fp32, LayerNorm,
    /// fp16 out. `word16` holds the fp16-rounded word rows.
    #[allow(clippy::too_many_arguments)]
    pub fn embedding_layernorm(
        word_row16: impl Fn(usize, &mut [f32]) + Sync,
        type_row16: Option<&[f32]>,
        ids: &[u32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        order: SumOrder,
        out: &mut [f32],
    ) {
        let h = gamma.len();
        out.par_chunks_mut(h).zip(ids.par_iter()).for_each(|(row, &id)| {
            word_row16(id as usize, row);
            if let Some(t) = type_row16 {
                for (v, tv) in row.iter_mut().zip(t) {
                    *v += tv;
                }
            }
            layer_norm_to_f16(row, gamma, beta, eps, order);
        });
    }

    /// `qkv_bias_rope` (rope.cu): bias added in fp32, q and k rotated in fp32 with the
    /// kernel's fp32-angle table, each output rounded to fp16 once. `key_position_shift` is 0
    /// except under [`Mutation::RopePositionOffByOne`].
    pub fn qkv_bias_rope(
        qkv: &mut [f32],
        bias: &[f32],
        positions: &[u32],
        rope: &RopeTable,
        num_heads: usize,
        head_dim: usize,
        key_position_shift: usize,
    ) {
        let h = num_heads * head_dim;
        let half = head_dim / 2;
        qkv.par_chunks_mut(3 * h)
            .zip(positions.par_iter())
            .for_each(|(row, &pos)| {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
                for (i, head) in row[..2 * h].chunks_mut(head_dim).enumerate() {
                    let shift = if i < num_heads { 0 } else { key_position_shift };
                    let (cos, sin) = rope.row(pos as usize + shift);
                    for j in 0..half {
                        let (a, b) = (head[j], head[j + half]);
                        head[j] = a * cos[j] - b * sin[j];
                        head[j + half] = b * cos[j] + a * sin[j];
                    }
                }
                // cr_store_half8 of q, k (rotated) and v (bias only)
                for v in row.iter_mut() {
                    *v = f16::from_f32(*v).to_f32();
                }
            });
    }

    /// How one attention call is computed.
    #[derive(Clone, Copy, Debug)]
    pub struct AttentionNumerics {
        /// Keys per online-softmax tile.
        pub key_tile: usize,
        /// Round P to fp16 before P·V (the flash kernel's tensor-core MMA).
        pub round_p: bool,
        /// Skip the last key tile when there is more than one ([`Mutation::SkippedLastKeyTile`]).
        pub skip_last_tile: bool,
        pub order: SumOrder,
    }

    /// Query rows per block: bounds the score buffer to `QUERY_BLOCK × len` floats.
    const QUERY_BLOCK: usize = 256;

    /// Softmax weights of one query row, as the kernels form them: scores `s` (already in the
    /// log2 domain, fp32) are processed in key tiles with a running max; tile `j`'s
    /// probabilities are `exp2(s - m_j)` with `m_j` the running max after tile `j`, rounded to
    /// fp16 when `round_p` (what the MMA consumes), and then carried to the final max by
    /// `exp2(m_j - m_final)` (the kernel's repeated `o *= alpha`). Returns the normalizer `l`
    /// (sum of the UNROUNDED probabilities, rescaled the same way); `p` gets the weights P·V
    /// uses, zero for keys not used.
    pub fn tiled_softmax_weights(s: &[f32], p: &mut [f32], num: &AttentionNumerics) -> f32 {
        let len = s.len();
        let n_tiles = len.div_ceil(num.key_tile);
        let used_tiles = if num.skip_last_tile && n_tiles > 1 {
            n_tiles - 1
        } else {
            n_tiles
        };
        let used = (used_tiles * num.key_tile).min(len);
        // Running max after each tile.
        let mut tile_max = Vec::with_capacity(used_tiles);
        let mut m = f32::NEG_INFINITY;
        for tile in s[..used].chunks(num.key_tile) {
            m = tile.iter().copied().fold(m, f32::max);
            tile_max.push(m);
        }
        let m_final = m;
        let mut l = 0.0f32;
        let mut m_prev = f32::NEG_INFINITY;
        for (j, (st, pt)) in s[..used]
            .chunks(num.key_tile)
            .zip(p[..used].chunks_mut(num.key_tile))
            .enumerate()
        {
            let m_j = tile_max[j];
            let carry = (m_j - m_final).exp2();
            let mut tile_sum = 0.0f32;
            for (sv, pv) in st.iter().zip(pt.iter_mut()) {
                let e = (sv - m_j).exp2();
                tile_sum += e;
                let e = if num.round_p { f16::from_f32(e).to_f32() } else { e };
                *pv = e * carry;
            }
            // l_j = l_{j-1} * exp2(m_{j-1} - m_j) + rowsum_j  (m_{-1} = -inf: alpha 0)
            l = l * (m_prev - m_j).exp2() + tile_sum;
            m_prev = m_j;
        }
        p[used..].fill(0.0);
        l
    }

    /// Attention of query rows `q_rows` of one (sequence, head) against all its keys, as the
    /// kernel given by `num` computes it, written (rounded to fp16) at row stride `out_stride`.
    ///
    /// # Safety
    /// `out` must be valid for `q_rows.len()` rows of `head_dim` floats at `out_stride`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn attend_head(
        qkv: &[f32],
        seq_start: usize,
        len: usize,
        q_rows: std::ops::Range<usize>,
        head: usize,
        num_heads: usize,
        head_dim: usize,
        num: &AttentionNumerics,
        out: *mut f32,
        out_stride: usize,
    ) {
        let h = num_heads * head_dim;
        let row_stride = 3 * h;
        let base = seq_start * row_stride + head * head_dim;
        let (k, v) = (&qkv[base + h..], &qkv[base + 2 * h..]);
        // The kernels fold log2(e) into the fp32 scale and use exp2f.
        let scale_log2 = (1.0 / (head_dim as f32).sqrt()) * std::f32::consts::LOG2_E;
        let block = QUERY_BLOCK.min(q_rows.len());
        let mut scores = vec![0.0f32; block * len];
        let mut weights = vec![0.0f32; block * len];
        let mut row_out = vec![0.0f32; block * head_dim];
        let mut block_start = q_rows.start;
        while block_start < q_rows.end {
            let m = QUERY_BLOCK.min(q_rows.end - block_start);
            let q = &qkv[base + block_start * row_stride..];
            let s = &mut scores[..m * len];
            // s[m, len] = q[m, d] · kᵀ (raw fp32 dot products, like the MMA / fmaf loops)
            gemm_in_order(
                num.order,
                m,
                len,
                head_dim,
                s.as_mut_ptr(),
                len,
                q.as_ptr(),
                row_stride,
                k.as_ptr(),
                1,
                row_stride,
                Parallelism::None,
            );
            let w = &mut weights[..m * len];
            let mut inv_l = [0.0f32; QUERY_BLOCK];
            for ((srow, wrow), il) in s.chunks_mut(len).zip(w.chunks_mut(len)).zip(inv_l.iter_mut()) {
                for x in srow.iter_mut() {
                    *x *= scale_log2;
                }
                *il = 1.0 / tiled_softmax_weights(srow, wrow, num);
            }
            // o[m, d] = P[m, len] · v[len, d], then o / l, rounded to fp16 once.
            let o = &mut row_out[..m * head_dim];
            gemm_in_order(
                num.order,
                m,
                head_dim,
                len,
                o.as_mut_ptr(),
                head_dim,
                w.as_ptr(),
                len,
                v.as_ptr(),
                row_stride,
                1,
                Parallelism::None,
            );
            for (r, (orow, il)) in o.chunks(head_dim).zip(&inv_l).enumerate() {
                let dst = out.add((block_start - q_rows.start + r) * out_stride);
                for (d, x) in orow.iter().enumerate() {
                    *dst.add(d) = f16::from_f32(x * il).to_f32();
                }
            }
            block_start += m;
        }
    }

    /// A raw pointer that parallel tasks write through, each to its own disjoint rows.
    #[derive(Clone, Copy)]
    struct DisjointWrites(*mut f32);
    // SAFETY: tasks built on it write non-overlapping regions (documented at each use).
    unsafe impl Send for DisjointWrites {}
    unsafe impl Sync for DisjointWrites {}

    /// `attention_varlen_flash` / `attention_varlen_reference` (every query row, `out` [n, H])
    /// or, with `cls_only`, `attention_varlen_cls` (row 0 of each sequence, `out` [n_seqs, H]).
    pub fn attention(
        qkv: &[f32],
        cu_seqlens: &[u32],
        num_heads: usize,
        head_dim: usize,
        cls_only: bool,
        num: &AttentionNumerics,
        out: &mut [f32],
    ) {
        let h = num_heads * head_dim;
        let n_seqs = cu_seqlens.len() - 1;
        let rows = if cls_only { n_seqs } else { cu_seqlens[n_seqs] as usize };
        assert_eq!(out.len(), rows * h);
        let dst = DisjointWrites(out.as_mut_ptr());
        (0..n_seqs * num_heads).into_par_iter().for_each(|task| {
            #[allow(clippy::redundant_locals)] // captures the whole (Send) wrapper
            let dst = dst;
            let (s, head) = (task / num_heads, task % num_heads);
            let start = cu_seqlens[s] as usize;
            let len = cu_seqlens[s + 1] as usize - start;
            let (q_rows, first_out_row) = if cls_only { (0..1, s) } else { (0..len, start) };
            // SAFETY: task (s, head) writes its own rows, columns of `head` only.
            unsafe {
                attend_head(
                    qkv,
                    start,
                    len,
                    q_rows,
                    head,
                    num_heads,
                    head_dim,
                    num,
                    dst.0.add(first_out_row * h + head * head_dim),
                    h,
                )
            };
        });
    }

    /// `bias_residual_layernorm` (layernorm.cu): `LN((x + y) + bias)` in fp32, fp16 out.
    pub fn bias_residual_layernorm(
        x: &mut [f32],
        y: &[f32],
        bias: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        order: SumOrder,
    ) {
        let h = gamma.len();
        x.par_chunks_mut(h).zip(y.par_chunks(h)).for_each(|(xr, yr)| {
            match bias {
                Some(bias) => {
                    for ((v, y), b) in xr.iter_mut().zip(yr).zip(bias) {
                        *v = (*v + y) + b;
                    }
                }
                None => {
                    for (v, y) in xr.iter_mut().zip(yr) {
                        *v += y;
                    }
                }
            }
            layer_norm_to_f16(xr, gamma, beta, eps, order);
        });
    }

    /// `gated_gelu` (gated_gelu.cu): fp32 erf GELU of the gate times up, fp16 out.
    pub fn gated_gelu(ug: &[f32], intermediate: usize, out: &mut [f32]) {
        ops::gated_gelu(ug, intermediate, out);
        round_f16(out);
    }
}

#[cfg(test)]
mod tests {
    use super::ops16::*;
    use super::*;

    fn plain_softmax(s: &[f32]) -> Vec<f64> {
        let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = s.iter().map(|&v| (v as f64 - m).exp2()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    fn numerics(key_tile: usize, round_p: bool, skip_last_tile: bool) -> AttentionNumerics {
        AttentionNumerics {
            key_tile,
            round_p,
            skip_last_tile,
            order: SumOrder::Default,
        }
    }

    #[test]
    fn tiled_weights_are_the_softmax_and_rounding_follows_the_running_max() {
        // Scores rising across tiles: the running max changes at every tile.
        let s: Vec<f32> = (0..200)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + i as f32 * 0.02)
            .collect();
        let want = plain_softmax(&s);
        for (tile, round) in [(64, false), (64, true), (128, false), (7, true)] {
            let mut p = vec![0.0; s.len()];
            let l = tiled_softmax_weights(&s, &mut p, &numerics(tile, round, false));
            let tol = if round { 1e-3 } else { 1e-6 };
            for (i, (pv, w)) in p.iter().zip(&want).enumerate() {
                let got = *pv as f64 / l as f64;
                assert!(
                    (got - w).abs() <= tol * w,
                    "tile {tile} round {round} key {i}: {got} vs {w}"
                );
            }
        }
        // Rounding happens relative to the tile's running max: key 0 of tile 0 has weight
        // exp2(s0 - m_0) rounded to fp16, then carried by exp2(m_0 - m_final).
        let mut p = vec![0.0; s.len()];
        tiled_softmax_weights(&s, &mut p, &numerics(64, true, false));
        let m0 = s[..64].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let m_final = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let expect = f16::from_f32((s[0] - m0).exp2()).to_f32() * (m0 - m_final).exp2();
        assert_eq!(p[0], expect);
    }

    #[test]
    fn skipping_the_last_tile_drops_exactly_its_keys() {
        let s: Vec<f32> = (0..130).map(|i| (i % 5) as f32).collect();
        let mut p = vec![1.0; s.len()];
        tiled_softmax_weights(&s, &mut p, &numerics(64, true, true));
        assert!(p[..128].iter().all(|&v| v > 0.0));
        assert!(p[128..].iter().all(|&v| v == 0.0));
        // A single tile is never skipped.
        let mut p = vec![0.0; 40];
        tiled_softmax_weights(&s[..40], &mut p, &numerics(64, true, true));
        assert!(p.iter().all(|&v| v > 0.0));
    }

    #[test]
    fn linear_rounds_its_outputs_to_fp16_once() {
        let x = [0.1f32, 0.2, 0.3, 0.4];
        let w = [1.0f32, 1.0, 1.0, 1.0, 0.5, -0.25, 2.0, 1.5];
        for order in [SumOrder::Default, SumOrder::Alternate, SumOrder::AlternateThirds] {
            let mut out = [0.0f32; 2];
            linear(&x, &w, 4, &mut out, 1, order);
            assert_eq!(out[0], f16::from_f32(1.0).to_f32());
            assert_eq!(out[1], f16::from_f32(0.05 - 0.05 + 0.6 + 0.6).to_f32());
            assert!(out.iter().all(|v| f16::from_f32(*v).to_f32() == *v));
        }
    }

    #[test]
    fn layer_norm_output_is_fp16_and_normalized() {
        let mut v: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
        let g = vec![1.0; 64];
        let b = vec![0.0; 64];
        layer_norm_to_f16(&mut v, &g, &b, 1e-12, SumOrder::Default);
        assert!(v.iter().all(|x| f16::from_f32(*x).to_f32() == *x));
        let mean: f32 = v.iter().sum::<f32>() / 64.0;
        let var: f32 = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 64.0;
        assert!(mean.abs() < 1e-3 && (var - 1.0).abs() < 2e-3, "{mean} {var}");
    }
}
