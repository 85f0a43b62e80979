//! The shared ops of the CPU reference forward passes, in plain f32: the executable spec of
//! the models (spec §3). Each family's forward (`crate::arch::<family>`) is built from them.
//!
//! One function per op in [`ops`], written to be read next to the spec. Each op is also the
//! CPU twin of a CUDA kernel (the GPU tests compare them), so ops take the same inputs the
//! kernels do: GEMMs without bias, with the bias folded into the op that follows (RoPE for
//! gte's QKV projection, `add_bias_rows` for the absolute-position encoders', `bias_gelu` for
//! their MLP up projection, the residual LayerNorm for `o_proj` and `down_proj`).
//!
//! GEMMs go through the `gemm` crate (blocked, SIMD, multithreaded); everything else runs
//! on rows in parallel with rayon. A batch is packed without padding (see [`PackedBatch`]).

use gemm::Parallelism;
use rayon::prelude::*;

use crate::weights::LogicalTensor;

/// The gte f32 model, under the path tests and tools used before the family seam.
pub use crate::arch::gte::cpu::CpuModel;

/// cos/sin of every (position, frequency) pair, from angles computed in f64.
///
/// Angles reach ~7.7e3 rad at position 8191; an f32 product `p * inv_freq` is off by up to
/// ~5e-4 rad there, so angles and their cos/sin are computed in f64 and rounded once.
pub struct RopeTable {
    half_dim: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(inv_freq: &[f64], positions: usize) -> Self {
        let half_dim = inv_freq.len();
        let mut cos = Vec::with_capacity(positions * half_dim);
        let mut sin = Vec::with_capacity(positions * half_dim);
        for p in 0..positions {
            for f in inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTable { half_dim, cos, sin }
    }

    /// The table the CUDA kernel effectively uses (rope.cu): the angle is ONE fp32 product
    /// `(float)p * inv_freq_f32[j]`, then an accurate sincosf. cos/sin of that fp32 angle are
    /// computed in f64 and rounded once (accurate sincosf is within an ulp of that).
    /// Used by the fp16 twin of the GPU path ([`super::cpu_fp16`]), not by the f32 reference.
    pub fn with_fp32_angles(inv_freq: &[f64], positions: usize) -> Self {
        let half_dim = inv_freq.len();
        let mut cos = Vec::with_capacity(positions * half_dim);
        let mut sin = Vec::with_capacity(positions * half_dim);
        for p in 0..positions {
            for &f in inv_freq {
                let angle = (p as f32 * f as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTable { half_dim, cos, sin }
    }

    pub fn positions(&self) -> usize {
        self.cos.len() / self.half_dim.max(1)
    }

    pub fn half_dim(&self) -> usize {
        self.half_dim
    }

    /// `(cos, sin)` rows for one position, `half_dim` values each.
    pub fn row(&self, position: usize) -> (&[f32], &[f32]) {
        let r = position * self.half_dim..(position + 1) * self.half_dim;
        (&self.cos[r.clone()], &self.sin[r])
    }

    /// The whole tables, position-major (`[positions, half_dim]`), for device upload.
    pub fn tables(&self) -> (&[f32], &[f32]) {
        (&self.cos, &self.sin)
    }
}

/// The reference ops. Shapes are row-major; `n` rows of `H = num_heads * head_dim`.
pub mod ops {
    use super::*;

    /// A raw pointer that parallel tasks write through, each to its own disjoint rows.
    #[derive(Clone, Copy)]
    struct DisjointWrites(*mut f32);
    // SAFETY: tasks built on it write non-overlapping regions (documented at each use).
    unsafe impl Send for DisjointWrites {}
    unsafe impl Sync for DisjointWrites {}

    /// `out[n, out_features] = x[n, in_features] · w[out_features, in_features]ᵀ` (no bias).
    pub fn matmul_wt(x: &[f32], w: &[f32], in_features: usize, out: &mut [f32], threads: usize) {
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
        // SAFETY: the three matrices are in bounds for the strides given (asserted above):
        // dst [n, out] row-major, lhs [n, in] row-major, rhs = wᵀ viewed through w's strides.
        unsafe {
            gemm::gemm(
                n,
                out_features,
                in_features,
                out.as_mut_ptr(),
                1,
                out_features as isize,
                false,
                x.as_ptr(),
                1,
                in_features as isize,
                w.as_ptr(),
                in_features as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    }

    /// `x = (x - mean) / sqrt(var + eps) * gamma + beta`, population variance, f64 statistics.
    pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f64) {
        let h = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / h;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h;
        let inv_std = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
            *v = ((*v as f64 - mean) * inv_std) as f32 * g + b;
        }
    }

    /// Kernel (a): `out[t] = LayerNorm(word_emb[ids[t]] + type_row)`. `word_row(id, dst)`
    /// fetches one embedding row in f32 (from the memory map, so the 250k-row table is never
    /// converted as a whole).
    pub fn embedding_layernorm(
        word_row: impl Fn(usize, &mut [f32]) + Sync,
        type_row: Option<&[f32]>,
        ids: &[u32],
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        out: &mut [f32],
    ) {
        let h = gamma.len();
        out.par_chunks_mut(h).zip(ids.par_iter()).for_each(|(row, &id)| {
            word_row(id as usize, row);
            if let Some(t) = type_row {
                for (v, tv) in row.iter_mut().zip(t) {
                    *v += tv;
                }
            }
            layer_norm(row, gamma, beta, eps);
        });
    }

    /// Embedding of absolute-position encoders (BERT, XLM-RoBERTa): for each token,
    /// `word[id] + position_table[positions[t]] + type_table[type_ids[t]]`, then LayerNorm.
    /// `positions` are whatever the family feeds its position table (BERT: 0-based per
    /// sequence; XLM-R: offset past the padding index), `type_ids` the segment ids (one per
    /// token). Tables are row-major, `hidden` wide; rows are read as f32.
    #[allow(clippy::too_many_arguments)]
    pub fn embedding_abs_layernorm(
        word_row: impl Fn(usize, &mut [f32]) + Sync,
        position_table: &[f32],
        type_table: &[f32],
        ids: &[u32],
        positions: &[u32],
        type_ids: &[u32],
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        out: &mut [f32],
    ) {
        let h = gamma.len();
        out.par_chunks_mut(h)
            .zip(ids.par_iter().zip(positions.par_iter().zip(type_ids.par_iter())))
            .for_each(|(row, (&id, (&pos, &ty)))| {
                word_row(id as usize, row);
                let p = &position_table[pos as usize * h..(pos as usize + 1) * h];
                let t = &type_table[ty as usize * h..(ty as usize + 1) * h];
                for ((v, pv), tv) in row.iter_mut().zip(p).zip(t) {
                    *v += pv + tv;
                }
                layer_norm(row, gamma, beta, eps);
            });
    }

    /// Adds `bias` (one value per column) to every row of `x` (rows `bias.len()` wide): the
    /// QKV bias of encoders without RoPE, where nothing else happens between the QKV GEMM
    /// and attention.
    pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
        x.par_chunks_mut(bias.len()).for_each(|row| {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        });
    }

    /// Kernel (b): adds the QKV bias, then rotates q and k (rotate-half RoPE) in place.
    /// `qkv` rows are `[q | k | v]`, each `num_heads × head_dim`, head-contiguous.
    pub fn qkv_bias_rope(
        qkv: &mut [f32],
        bias: &[f32],
        positions: &[u32],
        rope: &RopeTable,
        num_heads: usize,
        head_dim: usize,
    ) {
        let h = num_heads * head_dim;
        let half = head_dim / 2;
        qkv.par_chunks_mut(3 * h)
            .zip(positions.par_iter())
            .for_each(|(row, &pos)| {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
                let (cos, sin) = rope.row(pos as usize);
                // q and k only; v is not rotated.
                for head in row[..2 * h].chunks_mut(head_dim) {
                    for j in 0..half {
                        let (a, b) = (head[j], head[j + half]);
                        head[j] = a * cos[j] - b * sin[j];
                        head[j + half] = b * cos[j] + a * sin[j];
                    }
                }
            });
    }

    /// Softmax of each `len`-wide row, max-subtracted, in place.
    pub fn softmax_rows(scores: &mut [f32], len: usize) {
        for row in scores.chunks_mut(len) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v as f64;
            }
            let inv = (1.0 / sum) as f32;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }

    /// Query rows per block: bounds the score buffer to `QUERY_BLOCK × len` floats.
    const QUERY_BLOCK: usize = 256;

    /// Attention of query rows `q_rows` of one (sequence, head) against all its keys:
    /// `out = softmax(q kᵀ / sqrt(d)) v`, written at row stride `out_stride`.
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
        out: *mut f32,
        out_stride: usize,
    ) {
        let h = num_heads * head_dim;
        let row_stride = 3 * h as isize;
        let base = seq_start * 3 * h + head * head_dim;
        let (k, v) = (&qkv[base + h..], &qkv[base + 2 * h..]);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut scores = vec![0.0f32; QUERY_BLOCK.min(q_rows.len()) * len];
        let mut block_start = q_rows.start;
        while block_start < q_rows.end {
            let m = QUERY_BLOCK.min(q_rows.end - block_start);
            let q = &qkv[base + block_start * 3 * h..];
            let s = &mut scores[..m * len];
            // scores[m, len] = scale · q[m, d] · kᵀ
            gemm::gemm(
                m,
                len,
                head_dim,
                s.as_mut_ptr(),
                1,
                len as isize,
                false,
                q.as_ptr(),
                1,
                row_stride,
                k.as_ptr(),
                row_stride,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
            softmax_rows(s, len);
            // out[m, d] = scores[m, len] · v[len, d]
            let dst = out.add((block_start - q_rows.start) * out_stride);
            gemm::gemm(
                m,
                head_dim,
                len,
                dst,
                1,
                out_stride as isize,
                false,
                s.as_ptr(),
                1,
                len as isize,
                v.as_ptr(),
                1,
                row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
            block_start += m;
        }
    }

    /// Kernel (c): bidirectional attention of every token over the keys of its own
    /// sequence. `qkv` [n, 3H] (after [`qkv_bias_rope`]), `out` [n, H].
    pub fn attention(qkv: &[f32], cu_seqlens: &[u32], num_heads: usize, head_dim: usize, out: &mut [f32]) {
        let h = num_heads * head_dim;
        let n_seqs = cu_seqlens.len() - 1;
        assert_eq!(out.len() * 3, qkv.len());
        assert_eq!(out.len(), cu_seqlens[n_seqs] as usize * h);
        let dst = DisjointWrites(out.as_mut_ptr());
        (0..n_seqs * num_heads).into_par_iter().for_each(|task| {
            #[allow(clippy::redundant_locals)] // captures the whole (Send) wrapper, not its raw-pointer field
            let dst = dst;
            let (s, head) = (task / num_heads, task % num_heads);
            let start = cu_seqlens[s] as usize;
            let len = cu_seqlens[s + 1] as usize - start;
            // SAFETY: task (s, head) writes rows start..start+len, columns of `head` only.
            unsafe {
                attend_head(
                    qkv,
                    start,
                    len,
                    0..len,
                    head,
                    num_heads,
                    head_dim,
                    dst.0.add(start * h + head * head_dim),
                    h,
                )
            };
        });
    }

    /// Attention for the first (CLS) query of each sequence only; `out` [n_seqs, H].
    /// The last layer needs nothing else, because only the CLS row feeds the head.
    pub fn attention_cls(qkv: &[f32], cu_seqlens: &[u32], num_heads: usize, head_dim: usize, out: &mut [f32]) {
        let h = num_heads * head_dim;
        let n_seqs = cu_seqlens.len() - 1;
        assert_eq!(out.len(), n_seqs * h);
        let dst = DisjointWrites(out.as_mut_ptr());
        (0..n_seqs * num_heads).into_par_iter().for_each(|task| {
            #[allow(clippy::redundant_locals)] // captures the whole (Send) wrapper, not its raw-pointer field
            let dst = dst;
            let (s, head) = (task / num_heads, task % num_heads);
            let start = cu_seqlens[s] as usize;
            let len = cu_seqlens[s + 1] as usize - start;
            if len == 0 {
                return;
            }
            // SAFETY: task (s, head) writes row s, columns of `head` only.
            unsafe {
                attend_head(
                    qkv,
                    start,
                    len,
                    0..1,
                    head,
                    num_heads,
                    head_dim,
                    dst.0.add(s * h + head * head_dim),
                    h,
                )
            };
        });
    }

    /// Kernel (d): `x = LayerNorm(x + y + bias)` row by row (post-LN residual).
    pub fn bias_residual_layernorm(x: &mut [f32], y: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f64) {
        let h = gamma.len();
        x.par_chunks_mut(h).zip(y.par_chunks(h)).for_each(|(xr, yr)| {
            for ((v, y), b) in xr.iter_mut().zip(yr).zip(bias) {
                *v += y + b;
            }
            layer_norm(xr, gamma, beta, eps);
        });
    }

    /// Numerator and denominator of `erf(x) ≈ x·P(x²)/Q(x²)` on |x| ≤ [`ERF_SATURATION`]
    /// (fitted by tools/fit_erf.py; within 0.54 ulp of the correctly rounded f32 erf).
    const ERF_P: [f64; 7] = [
        1.1283791691362806,
        0.18513523220598516,
        0.0542439329292799,
        0.0038386144167788607,
        0.00037675698160280155,
        4.6091824648711376e-06,
        -1.2799523738176373e-08,
    ];
    const ERF_Q: [f64; 6] = [
        1.0,
        0.49740523389871294,
        0.11387369869732193,
        0.015430025019489696,
        0.0013015205402070766,
        6.239868859639808e-05,
    ];
    /// Beyond this |x|, erf(x) rounds to ±1 in f32.
    const ERF_SATURATION: f64 = 3.92;

    /// erf in f32 precision: a branch-free rational approximation evaluated in f64, so loops
    /// over it vectorize (a libm erff is a chain of branches and costs ~10x more per call).
    #[inline(always)]
    pub fn erf(x: f32) -> f32 {
        let x = (x as f64).clamp(-ERF_SATURATION, ERF_SATURATION);
        let t = x * x;
        let p = ERF_P.iter().rev().fold(0.0, |acc, c| acc * t + c);
        let q = ERF_Q.iter().rev().fold(0.0, |acc, c| acc * t + c);
        (x * p / q).clamp(-1.0, 1.0) as f32
    }

    /// Exact (erf) GELU: `0.5·x·(1 + erf(x/√2))`, not the tanh approximation.
    #[inline(always)]
    pub fn gelu_erf(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
    }

    /// Kernel (e): `out[t, i] = gelu(ug[t, I + i]) · ug[t, i]` — the first half of the
    /// fused up/gate projection is "up", the second half "gate" (spec §3.6).
    pub fn gated_gelu(ug: &[f32], intermediate: usize, out: &mut [f32]) {
        out.par_chunks_mut(intermediate)
            .zip(ug.par_chunks(2 * intermediate))
            .for_each(|(o, row)| {
                let (up, gate) = row.split_at(intermediate);
                for ((o, u), g) in o.iter_mut().zip(up).zip(gate) {
                    *o = gelu_erf(*g) * u;
                }
            });
    }

    /// The plain MLP activation of BERT-style encoders: `x[t, i] = gelu(x[t, i] + bias[i])`
    /// (erf GELU, as `hidden_act = "gelu"`), in place on rows `bias.len()` wide.
    pub fn bias_gelu(x: &mut [f32], bias: &[f32]) {
        x.par_chunks_mut(bias.len()).for_each(|row| {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = gelu_erf(*v + b);
            }
        });
    }

    /// Kernel (f): `logit = w_cls · tanh(W_pool · cls + b_pool) + b_cls` for each CLS row.
    pub fn cls_pooler_classifier(
        cls_rows: &[f32],
        pooler_w: &[f32],
        pooler_b: &[f32],
        classifier_w: &[f32],
        classifier_b: f32,
        threads: usize,
    ) -> Vec<f32> {
        let h = pooler_b.len();
        let mut pooled = vec![0.0; cls_rows.len()];
        matmul_wt(cls_rows, pooler_w, h, &mut pooled, threads);
        pooled
            .chunks(h)
            .map(|row| {
                let dot: f64 = row
                    .iter()
                    .zip(pooler_b)
                    .zip(classifier_w)
                    .map(|((v, b), w)| ((v + b).tanh() * w) as f64)
                    .sum();
                dot as f32 + classifier_b
            })
            .collect()
    }
}

/// Row `id` of the word-embedding table, converted to f32.
pub fn word_row(table: &LogicalTensor<'_>, h: usize, id: usize, dst: &mut [f32]) {
    table.read_f32(id * h, dst);
}

/// The first row of each sequence (its CLS token), `[n_seqs, h]`.
pub fn gather_first_rows(x: &[f32], cu_seqlens: &[u32], h: usize) -> Vec<f32> {
    cu_seqlens[..cu_seqlens.len() - 1]
        .iter()
        .flat_map(|&start| &x[start as usize * h..(start as usize + 1) * h])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ops;

    #[test]
    fn erf_is_within_one_ulp_of_the_exact_value() {
        let mut worst = 0.0f64;
        for i in -600_000..=600_000 {
            let x = i as f32 * 1e-5;
            let exact = libm::erf(x as f64);
            let got = ops::erf(x) as f64;
            let ulp = (exact.abs() as f32).max(f32::MIN_POSITIVE);
            let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
            worst = worst.max((got - exact).abs() / ulp);
        }
        assert!(worst <= 1.0, "max error {worst} ulp");
        assert_eq!(ops::erf(10.0), 1.0);
        assert_eq!(ops::erf(-10.0), -1.0);
        assert_eq!(ops::erf(0.0), 0.0);
    }

    #[test]
    fn embedding_abs_layernorm_sums_the_three_rows_before_layer_norm() {
        // hidden 2: LayerNorm of [a, b] with gamma 1, beta 0 is [-1, 1] when a < b.
        let word = [[1.0f32, 0.0], [0.0, 5.0]];
        let positions = [0.0f32, 0.0, 0.0, 10.0]; // row 1 flips the order
        let types = [0.0f32, 0.0, 0.0, -20.0];
        let mut out = [0.0f32; 6];
        ops::embedding_abs_layernorm(
            |id, row: &mut [f32]| row.copy_from_slice(&word[id]),
            &positions,
            &types,
            &[0, 1, 1],
            &[0, 0, 1],
            &[0, 0, 1],
            &[1.0, 1.0],
            &[0.0, 0.0],
            0.0,
            &mut out,
        );
        // token 0: [1, 0] -> [1, -1]; token 1: [0, 5] -> [-1, 1];
        // token 2: [0, 5] + [0, 10] + [0, -20] = [0, -5] -> [1, -1].
        assert_eq!(out, [1.0, -1.0, -1.0, 1.0, 1.0, -1.0]);
    }

    #[test]
    fn bias_gelu_adds_the_bias_before_the_activation() {
        let mut x = [0.5f32, -1.0, 2.0, 0.0];
        ops::bias_gelu(&mut x, &[0.5, 1.0]);
        assert_eq!(x, [ops::gelu_erf(1.0), 0.0, ops::gelu_erf(2.5), ops::gelu_erf(1.0)]);
        let mut y = [1.0f32, 2.0, 3.0, 4.0];
        ops::add_bias_rows(&mut y, &[10.0, 20.0]);
        assert_eq!(y, [11.0, 22.0, 13.0, 24.0]);
    }

    #[test]
    fn gated_gelu_uses_first_half_as_up_and_second_as_gate() {
        let ug = [2.0f32, -1.0, 0.5, 3.0];
        let mut out = [0.0f32; 2];
        ops::gated_gelu(&ug, 2, &mut out);
        assert_eq!(out[0], ops::gelu_erf(0.5) * 2.0);
        assert_eq!(out[1], -ops::gelu_erf(3.0));
        assert!((ops::gelu_erf(1.0) - 0.841_344_7).abs() < 1e-7);
    }
}
