//! The hand-written kernels of `kernels/*.cu`: launch configurations, and one checked wrapper
//! per kernel (loading the modules is [`crate::cuda::module`]).
//!
//! Each wrapper mirrors the kernel's signature (read the header comment of its `.cu` file for
//! the exact math and preconditions), checks on the host what the kernel would otherwise trap
//! on or silently get wrong (shapes, buffer lengths, grid limits), and launches on the
//! [`Gpu`]'s stream. Buffers are cudarc's [`CudaSlice`](cudarc::driver::CudaSlice)/[`CudaView`]/[`CudaViewMut`]; fp16
//! data is `half::f16` (the kernels' `cr_half`, same bits). `cu_seqlens`, `x_rows` and
//! `cls_rows` are `u32` buffers here and `const int*` in the kernels: same bits, as every value
//! is checked to be below 2^31.
//!
//! Launch configurations are plain functions of the shapes ([`LaunchConfig`] values), unit
//! tested on the CPU; the wrappers are exercised by `tests/gpu_kernels.rs` on a GPU.

use cudarc::driver::{CudaFunction, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use half::f16;

use crate::cuda::device_error::DeviceResultExt;
// The loading side of the kernels (where their code comes from, the function table) is
// crate::cuda::module; these names stay reachable here for the wrappers' users.
pub use crate::cuda::module::{generated, KernelOrigin, KERNEL_FUNCTIONS};
use crate::cuda::runtime::Gpu;
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------
// Launch configurations and limits

/// Largest `gridDim.x`.
pub const MAX_GRID_X: u32 = i32::MAX as u32;
/// Largest `gridDim.y` / `gridDim.z`.
pub const MAX_GRID_YZ: u32 = 65535;
/// Widest hidden size of the warp-per-row kernels (LayerNorms, embedding, head).
pub const MAX_HIDDEN: usize = 1024;
/// Widest head of the reference attention kernel.
pub const MAX_REFERENCE_HEAD_DIM: usize = 128;
/// The head size of the original flash and CLS attention entries (`attention_flash`,
/// `attention_cls`); [`FLASH_HEAD_DIMS`] lists every instantiation.
pub const FLASH_HEAD_DIM: usize = 64;
/// Head sizes the flash and CLS attention kernels are instantiated for (attention.cu).
pub const FLASH_HEAD_DIMS: [usize; 2] = [32, 64];
/// Query rows per flash CTA.
pub const FLASH_BLOCK_M: usize = 64;
/// Sequences per CLS-pooler CTA.
pub const HEAD_SEQS_PER_BLOCK: usize = 8;

fn config(grid: (u32, u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `ceil(items / per_block)` blocks, at least 1, at most `MAX_GRID_X` (the grid-stride kernels
/// cover the rest).
fn stride_grid(items: usize, per_block: usize) -> u32 {
    items.div_ceil(per_block).clamp(1, MAX_GRID_X as usize) as u32
}

/// One warp per row, 4 warps per block: embedding_layernorm and both residual LayerNorms.
pub fn warp_per_row_config(n_rows: usize) -> LaunchConfig {
    config((stride_grid(n_rows, 4), 1, 1), 128)
}

/// One thread per 8 (q,k) pairs or 8 v values: `n_tokens · hidden/4` items, 256 per block.
pub fn rope_config(n_tokens: usize, hidden: usize) -> LaunchConfig {
    config((stride_grid(n_tokens * (hidden / 4), 256), 1, 1), 256)
}

/// One thread per 8 outputs, 256 per block.
pub fn gated_gelu_config(n_rows: usize, inter: usize) -> LaunchConfig {
    config((stride_grid(n_rows * (inter / 8), 256), 1, 1), 256)
}

/// One CTA per (query token, head).
pub fn attention_reference_config(n_tokens: usize, n_heads: usize) -> Result<LaunchConfig> {
    if n_tokens > MAX_GRID_X as usize || n_heads > MAX_GRID_YZ as usize {
        return Err(Error::InvalidArgument(format!(
            "attention_varlen_reference: grid ({n_tokens}, {n_heads}) exceeds the CUDA grid limits"
        )));
    }
    Ok(config((n_tokens as u32, n_heads as u32, 1), 128))
}

/// One CTA per (64-query tile, head, sequence) for up to [`MAX_GRID_YZ`] sequences.
pub fn attention_flash_config(max_seqlen: usize, n_heads: usize, n_seqs: usize) -> Result<LaunchConfig> {
    let tiles = max_seqlen.div_ceil(FLASH_BLOCK_M).max(1);
    if tiles > MAX_GRID_X as usize || n_heads > MAX_GRID_YZ as usize || n_seqs > MAX_GRID_YZ as usize || n_seqs == 0 {
        return Err(Error::InvalidArgument(format!(
            "attention_varlen_flash: grid ({tiles}, {n_heads}, {n_seqs}) outside the CUDA grid limits"
        )));
    }
    Ok(config((tiles as u32, n_heads as u32, n_seqs as u32), 128))
}

/// One CTA per (sequence, head).
pub fn attention_cls_config(n_seqs: usize, n_heads: usize) -> Result<LaunchConfig> {
    if n_seqs > MAX_GRID_X as usize || n_heads > MAX_GRID_YZ as usize {
        return Err(Error::InvalidArgument(format!(
            "attention_varlen_cls: grid ({n_seqs}, {n_heads}) exceeds the CUDA grid limits"
        )));
    }
    Ok(config((n_seqs as u32, n_heads as u32, 1), 128))
}

/// One CTA of 256 threads per 8 sequences.
pub fn head_config(n_seqs: usize) -> LaunchConfig {
    config((stride_grid(n_seqs, HEAD_SEQS_PER_BLOCK), 1, 1), 256)
}

/// `(first sequence, count)` chunks of at most `max_per_launch` sequences (the flash kernel
/// puts sequences on `gridDim.z`).
pub fn sequence_chunks(n_seqs: usize, max_per_launch: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = max_per_launch.max(1);
    (0..n_seqs).step_by(step).map(move |s| (s, step.min(n_seqs - s)))
}

/// Shapes the warp-per-row kernels accept (hidden % 8 == 0, 8 <= hidden <= 1024).
pub fn check_hidden(kernel: &str, hidden: usize) -> Result<()> {
    if hidden == 0 || hidden % 8 != 0 || hidden > MAX_HIDDEN {
        return Err(Error::Device(format!(
            "{kernel}: hidden size {hidden} is not supported by the CUDA kernels (needs a multiple of 8, at most {MAX_HIDDEN})"
        )));
    }
    Ok(())
}

/// Shapes the RoPE kernel accepts.
pub fn check_rope_shape(hidden: usize, head_dim: usize) -> Result<()> {
    if head_dim == 0 || head_dim % 16 != 0 || hidden % head_dim != 0 || hidden % 8 != 0 {
        return Err(Error::Device(format!(
            "qkv_bias_rope: head_dim {head_dim} / hidden {hidden} not supported by the CUDA kernels (head_dim must be a multiple of 16)"
        )));
    }
    Ok(())
}

/// Head sizes the flash and CLS-only attention kernels accept ([`FLASH_HEAD_DIMS`]); any
/// other head size can only run on the reference kernel (up to [`MAX_REFERENCE_HEAD_DIM`]).
pub fn check_flash_head_dim(kernel: &str, head_dim: usize) -> Result<()> {
    if !FLASH_HEAD_DIMS.contains(&head_dim) {
        return Err(Error::Device(format!(
            "{kernel}: head_dim {head_dim} is not supported by the flash / CLS attention kernels (they take {FLASH_HEAD_DIMS:?}; \
             the reference kernel takes up to {MAX_REFERENCE_HEAD_DIM})"
        )));
    }
    Ok(())
}

/// Row widths the bias epilogues (bias.cu) accept: a multiple of 8.
pub fn check_bias_width(kernel: &str, width: usize) -> Result<()> {
    if width == 0 || width % 8 != 0 {
        return Err(Error::Device(format!(
            "{kernel}: row width {width} is not supported by the CUDA kernels (needs a multiple of 8)"
        )));
    }
    Ok(())
}

/// One thread per 8 values, 256 per block: add_bias_rows and bias_gelu.
pub fn bias_rows_config(n_rows: usize, width: usize) -> LaunchConfig {
    config((stride_grid(n_rows * (width / 8), 256), 1, 1), 256)
}

/// `n` must fit the kernels' 32-bit signed counts.
fn check_i32(kernel: &str, what: &str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{kernel}: {what} = {n} exceeds 2^31 - 1")))
}

/// A buffer must hold at least `want` elements.
fn check_len(kernel: &str, what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        return Err(Error::Internal(format!(
            "{kernel}: `{what}` holds {have} elements, needs {want}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Wrappers

/// Raw device address of an optional buffer (0 = NULL).
///
/// The cudarc guard is dropped at once, before the launch. That is sound only because
/// [`Gpu::new`] disables event tracking and everything runs on one stream (the guards record
/// nothing); with tracking on or a second stream, keep the guards alive across the launch.
macro_rules! opt_ptr {
    ($gpu:expr, $opt:expr) => {
        match $opt {
            Some(v) => v.device_ptr($gpu.stream()).0,
            None => 0u64,
        }
    };
}

impl Gpu {
    /// `out[t] = LayerNorm(word_emb[token_ids[t]] + type_row) · gamma + beta` (embedding.cu).
    ///
    /// Ids `>= vocab_size` read a zero word row and set `*error_flag |= 1` (the caller zeroes
    /// the flag before and checks it after).
    #[allow(clippy::too_many_arguments)]
    pub fn embedding_layernorm(
        &self,
        token_ids: &impl DevicePtr<u32>,
        word_emb: &impl DevicePtr<f16>,
        type_row: Option<&CudaView<'_, f16>>,
        gamma: &impl DevicePtr<f32>,
        beta: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<f16>,
        n_tokens: usize,
        hidden: usize,
        vocab_size: usize,
        eps: f32,
        error_flag: Option<&mut CudaViewMut<'_, i32>>,
    ) -> Result<()> {
        const K: &str = "embedding_layernorm";
        check_hidden(K, hidden)?;
        check_len(K, "token_ids", token_ids.len(), n_tokens)?;
        check_len(K, "word_emb", word_emb.len(), vocab_size * hidden)?;
        if let Some(t) = &type_row {
            check_len(K, "type_row", t.len(), hidden)?;
        }
        check_len(K, "gamma", gamma.len(), hidden)?;
        check_len(K, "beta", beta.len(), hidden)?;
        check_len(K, "out", out.len(), n_tokens * hidden)?;
        let n = check_i32(K, "n_tokens", n_tokens)?;
        let vocab = u32::try_from(vocab_size).map_err(|_| Error::InvalidArgument(format!("{K}: vocab too large")))?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (ids, _g0) = token_ids.device_ptr(stream);
        let (word, _g1) = word_emb.device_ptr(stream);
        let ty = opt_ptr!(self, type_row);
        let (g, _g2) = gamma.device_ptr(stream);
        let (b, _g3) = beta.device_ptr(stream);
        let (o, _g4) = out.device_ptr_mut(stream);
        let flag = match error_flag {
            Some(f) => f.device_ptr_mut(stream).0,
            None => 0u64,
        };
        let h = hidden as i32;
        let mut launch = stream.launch_builder(&self.kernels.embedding_layernorm);
        launch
            .arg(&ids)
            .arg(&word)
            .arg(&ty)
            .arg(&g)
            .arg(&b)
            .arg(&o)
            .arg(&n)
            .arg(&h)
            .arg(&vocab)
            .arg(&eps)
            .arg(&flag);
        // SAFETY: argument order and types follow embedding.cu; every buffer was checked to
        // hold what the kernel reads or writes for these shapes.
        unsafe { launch.launch(warp_per_row_config(n_tokens)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// Adds the QKV bias and rotates q and k in place (rope.cu).
    #[allow(clippy::too_many_arguments)]
    pub fn qkv_bias_rope(
        &self,
        qkv: &mut impl DevicePtrMut<f16>,
        bias: Option<&CudaView<'_, f32>>,
        positions: &impl DevicePtr<u32>,
        inv_freq: &impl DevicePtr<f32>,
        n_tokens: usize,
        hidden: usize,
        head_dim: usize,
    ) -> Result<()> {
        const K: &str = "qkv_bias_rope";
        check_rope_shape(hidden, head_dim)?;
        check_len(K, "qkv", qkv.len(), n_tokens * 3 * hidden)?;
        if let Some(b) = &bias {
            check_len(K, "bias", b.len(), 3 * hidden)?;
        }
        check_len(K, "positions", positions.len(), n_tokens)?;
        check_len(K, "inv_freq", inv_freq.len(), head_dim / 2)?;
        let n = check_i32(K, "n_tokens", n_tokens)?;
        check_i32(K, "n_tokens * hidden", n_tokens * hidden)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (q, _g0) = qkv.device_ptr_mut(stream);
        let b = opt_ptr!(self, bias);
        let (p, _g1) = positions.device_ptr(stream);
        let (f, _g2) = inv_freq.device_ptr(stream);
        let (h, d) = (hidden as i32, head_dim as i32);
        let mut launch = stream.launch_builder(&self.kernels.qkv_bias_rope);
        launch.arg(&q).arg(&b).arg(&p).arg(&f).arg(&n).arg(&h).arg(&d);
        // SAFETY: see embedding_layernorm; rope.cu's signature.
        unsafe { launch.launch(rope_config(n_tokens, hidden)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// fp32 reference attention over packed sequences, any head_dim <= 128 (attention.cu v1).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_reference(
        &self,
        qkv: &impl DevicePtr<f16>,
        ctx: &mut impl DevicePtrMut<f16>,
        cu_seqlens: &impl DevicePtr<u32>,
        n_seqs: usize,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        const K: &str = "attention_varlen_reference";
        if head_dim == 0 || head_dim > MAX_REFERENCE_HEAD_DIM {
            return Err(Error::InvalidArgument(format!(
                "{K}: head_dim {head_dim} is not in 1..={MAX_REFERENCE_HEAD_DIM}"
            )));
        }
        let h = n_heads * head_dim;
        check_len(K, "qkv", qkv.len(), n_tokens * 3 * h)?;
        check_len(K, "ctx", ctx.len(), n_tokens * h)?;
        check_len(K, "cu_seqlens", cu_seqlens.len(), n_seqs + 1)?;
        let s = check_i32(K, "n_seqs", n_seqs)?;
        if n_tokens == 0 || n_seqs == 0 {
            return Ok(());
        }
        let cfg = attention_reference_config(n_tokens, n_heads)?;
        let stream = self.stream();
        let (q, _g0) = qkv.device_ptr(stream);
        let (c, _g1) = ctx.device_ptr_mut(stream);
        let (cu, _g2) = cu_seqlens.device_ptr(stream);
        let (nh, d) = (n_heads as i32, head_dim as i32);
        let scale = softmax_scale(head_dim);
        let mut launch = stream.launch_builder(&self.kernels.attention_reference);
        launch.arg(&q).arg(&c).arg(&cu).arg(&s).arg(&nh).arg(&d).arg(&scale);
        // SAFETY: attention.cu v1 signature; buffers checked above.
        unsafe { launch.launch(cfg) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// Flash attention (tensor cores, head_dim 64) over packed sequences (attention.cu v2):
    /// [`Gpu::attention_flash_with_head_dim`] at [`FLASH_HEAD_DIM`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_flash(
        &self,
        qkv: &CudaView<'_, f16>,
        ctx: &mut CudaViewMut<'_, f16>,
        cu_seqlens: &CudaView<'_, u32>,
        n_seqs: usize,
        n_tokens: usize,
        max_seqlen: usize,
        n_heads: usize,
    ) -> Result<()> {
        self.attention_flash_with_head_dim(
            qkv,
            ctx,
            cu_seqlens,
            n_seqs,
            n_tokens,
            max_seqlen,
            n_heads,
            FLASH_HEAD_DIM,
        )
    }

    /// Attention of the first (CLS) query of every sequence against all its keys, head_dim 64
    /// (attention.cu v3): [`Gpu::attention_cls_with_head_dim`] at [`FLASH_HEAD_DIM`].
    pub fn attention_cls(
        &self,
        qkv: &impl DevicePtr<f16>,
        ctx_cls: &mut impl DevicePtrMut<f16>,
        cu_seqlens: &impl DevicePtr<u32>,
        n_seqs: usize,
        n_tokens: usize,
        n_heads: usize,
    ) -> Result<()> {
        self.attention_cls_with_head_dim(qkv, ctx_cls, cu_seqlens, n_seqs, n_tokens, n_heads, FLASH_HEAD_DIM)
    }

    /// `x = LayerNorm(x + y + bias) · gamma + beta`, in place, row by row (layernorm.cu v1).
    #[allow(clippy::too_many_arguments)]
    pub fn bias_residual_layernorm(
        &self,
        x: &mut impl DevicePtrMut<f16>,
        y: &impl DevicePtr<f16>,
        bias: Option<&CudaView<'_, f32>>,
        gamma: &impl DevicePtr<f32>,
        beta: &impl DevicePtr<f32>,
        n_rows: usize,
        hidden: usize,
        eps: f32,
    ) -> Result<()> {
        const K: &str = "bias_residual_layernorm";
        check_hidden(K, hidden)?;
        check_len(K, "x", x.len(), n_rows * hidden)?;
        check_len(K, "y", y.len(), n_rows * hidden)?;
        if let Some(b) = &bias {
            check_len(K, "bias", b.len(), hidden)?;
        }
        check_len(K, "gamma", gamma.len(), hidden)?;
        check_len(K, "beta", beta.len(), hidden)?;
        let n = check_i32(K, "n_rows", n_rows)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (xp, _g0) = x.device_ptr_mut(stream);
        let (yp, _g1) = y.device_ptr(stream);
        let bp = opt_ptr!(self, bias);
        let (g, _g2) = gamma.device_ptr(stream);
        let (b, _g3) = beta.device_ptr(stream);
        let h = hidden as i32;
        let mut launch = stream.launch_builder(&self.kernels.bias_residual_layernorm);
        launch
            .arg(&xp)
            .arg(&yp)
            .arg(&bp)
            .arg(&g)
            .arg(&b)
            .arg(&n)
            .arg(&h)
            .arg(&eps);
        // SAFETY: layernorm.cu v1 signature; buffers checked above.
        unsafe { launch.launch(warp_per_row_config(n_rows)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// `out[r] = LayerNorm(x[x_rows[r]] + y[r] + bias) · gamma + beta` into a compact `out`
    /// that must not overlap `x` (layernorm.cu v2). `x_rows` = `cu_seqlens` picks the CLS rows.
    /// `x_rows` entries must be valid rows of `x` (`x_rows_max` is their upper bound, checked
    /// against `x`'s length).
    #[allow(clippy::too_many_arguments)]
    pub fn bias_residual_layernorm_rows(
        &self,
        x: &impl DevicePtr<f16>,
        x_rows: &impl DevicePtr<u32>,
        x_rows_max: usize,
        y: &impl DevicePtr<f16>,
        bias: Option<&CudaView<'_, f32>>,
        gamma: &impl DevicePtr<f32>,
        beta: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<f16>,
        n_rows: usize,
        hidden: usize,
        eps: f32,
    ) -> Result<()> {
        const K: &str = "bias_residual_layernorm_rows";
        check_hidden(K, hidden)?;
        check_len(K, "x", x.len(), (x_rows_max + 1) * hidden)?;
        check_len(K, "x_rows", x_rows.len(), n_rows)?;
        check_len(K, "y", y.len(), n_rows * hidden)?;
        if let Some(b) = &bias {
            check_len(K, "bias", b.len(), hidden)?;
        }
        check_len(K, "gamma", gamma.len(), hidden)?;
        check_len(K, "beta", beta.len(), hidden)?;
        check_len(K, "out", out.len(), n_rows * hidden)?;
        let n = check_i32(K, "n_rows", n_rows)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (xp, _g0) = x.device_ptr(stream);
        let (rows, _g1) = x_rows.device_ptr(stream);
        let (yp, _g2) = y.device_ptr(stream);
        let bp = opt_ptr!(self, bias);
        let (g, _g3) = gamma.device_ptr(stream);
        let (b, _g4) = beta.device_ptr(stream);
        let (o, _g5) = out.device_ptr_mut(stream);
        let h = hidden as i32;
        let mut launch = stream.launch_builder(&self.kernels.bias_residual_layernorm_rows);
        launch
            .arg(&xp)
            .arg(&rows)
            .arg(&yp)
            .arg(&bp)
            .arg(&g)
            .arg(&b)
            .arg(&o)
            .arg(&n)
            .arg(&h)
            .arg(&eps);
        // SAFETY: layernorm.cu v2 signature; buffers checked above.
        unsafe { launch.launch(warp_per_row_config(n_rows)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// `out[t, i] = gelu_erf(ug[t, I + i]) · ug[t, i]` (gated_gelu.cu).
    pub fn gated_gelu(
        &self,
        ug: &impl DevicePtr<f16>,
        out: &mut impl DevicePtrMut<f16>,
        n_rows: usize,
        inter: usize,
    ) -> Result<()> {
        const K: &str = "gated_gelu";
        if inter == 0 || inter % 8 != 0 {
            return Err(Error::Device(format!(
                "{K}: intermediate size {inter} is not a multiple of 8"
            )));
        }
        check_len(K, "ug", ug.len(), n_rows * 2 * inter)?;
        check_len(K, "out", out.len(), n_rows * inter)?;
        let n = check_i32(K, "n_rows", n_rows)?;
        check_i32(K, "n_rows * inter / 8", n_rows * inter / 8)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (u, _g0) = ug.device_ptr(stream);
        let (o, _g1) = out.device_ptr_mut(stream);
        let i = inter as i32;
        let mut launch = stream.launch_builder(&self.kernels.gated_gelu);
        launch.arg(&u).arg(&o).arg(&n).arg(&i);
        // SAFETY: gated_gelu.cu signature; buffers checked above.
        unsafe { launch.launch(gated_gelu_config(n_rows, inter)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// `logit = w_cls · tanh(W_pool · x[row(s)] + b_pool) + b_cls` in fp32 (head.cu), with
    /// `row(s) = cls_rows[s]` (e.g. `cu_seqlens`) or `s` when `cls_rows` is `None`.
    /// `activation`: 0 identity, 1 sigmoid (for `scores`).
    #[allow(clippy::too_many_arguments)]
    pub fn cls_pooler_classifier(
        &self,
        x: &impl DevicePtr<f16>,
        x_rows: usize,
        cls_rows: Option<&CudaView<'_, u32>>,
        pooler: Option<(&CudaView<'_, f32>, &CudaView<'_, f32>)>,
        w_cls: &impl DevicePtr<f32>,
        b_cls: Option<&CudaView<'_, f32>>,
        activation: i32,
        logits: Option<&mut CudaViewMut<'_, f32>>,
        scores: Option<&mut CudaViewMut<'_, f32>>,
        n_seqs: usize,
        hidden: usize,
    ) -> Result<()> {
        const K: &str = "cls_pooler_classifier";
        check_hidden(K, hidden)?;
        check_len(K, "x", x.len(), x_rows * hidden)?;
        match &cls_rows {
            Some(r) => check_len(K, "cls_rows", r.len(), n_seqs)?,
            None => check_len(K, "x (rows)", x_rows, n_seqs)?,
        }
        if let Some((w, b)) = &pooler {
            check_len(K, "w_pool", w.len(), hidden * hidden)?;
            check_len(K, "b_pool", b.len(), hidden)?;
        }
        check_len(K, "w_cls", w_cls.len(), hidden)?;
        if let Some(b) = &b_cls {
            check_len(K, "b_cls", b.len(), 1)?;
        }
        if let Some(l) = &logits {
            check_len(K, "logits", l.len(), n_seqs)?;
        }
        if let Some(s) = &scores {
            check_len(K, "scores", s.len(), n_seqs)?;
        }
        let n = check_i32(K, "n_seqs", n_seqs)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (xp, _g0) = x.device_ptr(stream);
        let rows = opt_ptr!(self, cls_rows);
        let (wp, bp) = match pooler {
            Some((w, b)) => (w.device_ptr(stream).0, b.device_ptr(stream).0),
            None => (0u64, 0u64),
        };
        let (wc, _g1) = w_cls.device_ptr(stream);
        let bc = opt_ptr!(self, b_cls);
        let lp = match logits {
            Some(l) => l.device_ptr_mut(stream).0,
            None => 0u64,
        };
        let sp = match scores {
            Some(s) => s.device_ptr_mut(stream).0,
            None => 0u64,
        };
        let h = hidden as i32;
        let mut launch = stream.launch_builder(&self.kernels.cls_pooler_classifier);
        launch
            .arg(&xp)
            .arg(&rows)
            .arg(&wp)
            .arg(&bp)
            .arg(&wc)
            .arg(&bc)
            .arg(&activation)
            .arg(&lp)
            .arg(&sp)
            .arg(&n)
            .arg(&h);
        // SAFETY: head.cu signature; buffers checked above; blockDim is exactly 256.
        unsafe { launch.launch(head_config(n_seqs)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Wrappers for absolute-position encoders (BERT, XLM-RoBERTa) and head_dim 32

impl Gpu {
    /// `out[t] = LayerNorm(word_emb[token_ids[t]] + (position_emb[positions[t]] +
    /// type_emb[type_ids[t]])) · gamma + beta` (embedding.cu v2; CPU twin
    /// `ops::embedding_abs_layernorm`). `positions` are the rows of the position table the
    /// family wants (computed on the host), `type_ids` the segment ids, one of each per token.
    ///
    /// An id, position or type past its table reads a zero row and sets bit 0, 1 or 2 of
    /// `*error_flag` (the caller zeroes the flag before and checks it after).
    #[allow(clippy::too_many_arguments)]
    pub fn embedding_abs_layernorm(
        &self,
        token_ids: &impl DevicePtr<u32>,
        positions: &impl DevicePtr<u32>,
        type_ids: &impl DevicePtr<u32>,
        word_emb: &impl DevicePtr<f16>,
        position_emb: &impl DevicePtr<f16>,
        type_emb: &impl DevicePtr<f16>,
        gamma: &impl DevicePtr<f32>,
        beta: &impl DevicePtr<f32>,
        out: &mut impl DevicePtrMut<f16>,
        n_tokens: usize,
        hidden: usize,
        table_rows: EmbeddingTableRows,
        eps: f32,
        error_flag: Option<&mut CudaViewMut<'_, i32>>,
    ) -> Result<()> {
        const K: &str = "embedding_abs_layernorm";
        check_hidden(K, hidden)?;
        let EmbeddingTableRows {
            vocab,
            positions: n_positions,
            types: n_types,
        } = table_rows;
        check_len(K, "token_ids", token_ids.len(), n_tokens)?;
        check_len(K, "positions", positions.len(), n_tokens)?;
        check_len(K, "type_ids", type_ids.len(), n_tokens)?;
        check_len(K, "word_emb", word_emb.len(), vocab * hidden)?;
        check_len(K, "position_emb", position_emb.len(), n_positions * hidden)?;
        check_len(K, "type_emb", type_emb.len(), n_types * hidden)?;
        check_len(K, "gamma", gamma.len(), hidden)?;
        check_len(K, "beta", beta.len(), hidden)?;
        check_len(K, "out", out.len(), n_tokens * hidden)?;
        let n = check_i32(K, "n_tokens", n_tokens)?;
        let rows = |what: &str, r: usize| {
            u32::try_from(r).map_err(|_| Error::InvalidArgument(format!("{K}: {what} = {r} exceeds 2^32 - 1")))
        };
        let (vocab, n_positions, n_types) = (
            rows("vocab", vocab)?,
            rows("positions", n_positions)?,
            rows("types", n_types)?,
        );
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (ids, _g0) = token_ids.device_ptr(stream);
        let (pos, _g1) = positions.device_ptr(stream);
        let (ty, _g2) = type_ids.device_ptr(stream);
        let (word, _g3) = word_emb.device_ptr(stream);
        let (pos_emb, _g4) = position_emb.device_ptr(stream);
        let (ty_emb, _g5) = type_emb.device_ptr(stream);
        let (g, _g6) = gamma.device_ptr(stream);
        let (b, _g7) = beta.device_ptr(stream);
        let (o, _g8) = out.device_ptr_mut(stream);
        let flag = match error_flag {
            Some(f) => f.device_ptr_mut(stream).0,
            None => 0u64,
        };
        let h = hidden as i32;
        let mut launch = stream.launch_builder(&self.kernels.embedding_abs_layernorm);
        launch
            .arg(&ids)
            .arg(&pos)
            .arg(&ty)
            .arg(&word)
            .arg(&pos_emb)
            .arg(&ty_emb)
            .arg(&g)
            .arg(&b)
            .arg(&o)
            .arg(&n)
            .arg(&h)
            .arg(&vocab)
            .arg(&n_positions)
            .arg(&n_types)
            .arg(&eps)
            .arg(&flag);
        // SAFETY: argument order and types follow embedding.cu v2; every buffer was checked to
        // hold what the kernel reads or writes for these shapes (out-of-range rows are not read).
        unsafe { launch.launch(warp_per_row_config(n_tokens)) }.device(|| format!("launching {K}"))?;
        Ok(())
    }

    /// `x[r, c] += bias[c]` in place on `[n_rows, width]` fp16 rows (bias.cu v1; CPU twin
    /// `ops::add_bias_rows`): the QKV bias of encoders without RoPE, `width = 3·hidden`.
    pub fn add_bias_rows(
        &self,
        x: &mut impl DevicePtrMut<f16>,
        bias: &impl DevicePtr<f32>,
        n_rows: usize,
        width: usize,
    ) -> Result<()> {
        self.bias_rows("add_bias_rows", &self.kernels.add_bias_rows, x, bias, n_rows, width)
    }

    /// `x[r, c] = gelu_erf(x[r, c] + bias[c])` in place on `[n_rows, width]` fp16 rows (bias.cu
    /// v2; CPU twin `ops::bias_gelu`): the MLP activation of BERT-style encoders,
    /// `width = intermediate`.
    pub fn bias_gelu(
        &self,
        x: &mut impl DevicePtrMut<f16>,
        bias: &impl DevicePtr<f32>,
        n_rows: usize,
        width: usize,
    ) -> Result<()> {
        self.bias_rows("bias_gelu", &self.kernels.bias_gelu, x, bias, n_rows, width)
    }

    /// The two bias.cu kernels share a signature and a launch configuration.
    fn bias_rows(
        &self,
        kernel: &str,
        function: &CudaFunction,
        x: &mut impl DevicePtrMut<f16>,
        bias: &impl DevicePtr<f32>,
        n_rows: usize,
        width: usize,
    ) -> Result<()> {
        check_bias_width(kernel, width)?;
        check_len(kernel, "x", x.len(), n_rows * width)?;
        check_len(kernel, "bias", bias.len(), width)?;
        let n = check_i32(kernel, "n_rows", n_rows)?;
        check_i32(kernel, "n_rows * width / 8", n_rows * width / 8)?;
        let w = check_i32(kernel, "width", width)?;
        if n == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (xp, _g0) = x.device_ptr_mut(stream);
        let (bp, _g1) = bias.device_ptr(stream);
        let mut launch = stream.launch_builder(function);
        launch.arg(&xp).arg(&bp).arg(&n).arg(&w);
        // SAFETY: bias.cu signature (both variants); buffers checked above.
        unsafe { launch.launch(bias_rows_config(n_rows, width)) }.device(|| format!("launching {kernel}"))?;
        Ok(())
    }

    /// Flash attention (tensor cores) over packed sequences for head_dim 32 or 64
    /// ([`FLASH_HEAD_DIMS`]; attention.cu v2: `attention_varlen_flash` /
    /// `attention_varlen_flash_d32`; CPU twin `ops::attention`). More than 65,535 sequences
    /// are split over several launches.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_flash_with_head_dim(
        &self,
        qkv: &CudaView<'_, f16>,
        ctx: &mut CudaViewMut<'_, f16>,
        cu_seqlens: &CudaView<'_, u32>,
        n_seqs: usize,
        n_tokens: usize,
        max_seqlen: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        check_flash_head_dim("attention_varlen_flash", head_dim)?;
        let (k, function) = match head_dim {
            32 => ("attention_varlen_flash_d32", &self.kernels.attention_flash_d32),
            _ => ("attention_varlen_flash", &self.kernels.attention_flash),
        };
        let h = n_heads * head_dim;
        check_len(k, "qkv", qkv.len(), n_tokens * 3 * h)?;
        check_len(k, "ctx", ctx.len(), n_tokens * h)?;
        check_len(k, "cu_seqlens", cu_seqlens.len(), n_seqs + 1)?;
        check_i32(k, "n_tokens", n_tokens)?;
        if n_tokens == 0 || n_seqs == 0 {
            return Ok(());
        }
        let stream = self.stream();
        let (q, _g0) = qkv.device_ptr(stream);
        let (c, _g1) = ctx.device_ptr_mut(stream);
        let nh = n_heads as i32;
        let scale = softmax_scale(head_dim);
        for (first, count) in sequence_chunks(n_seqs, MAX_GRID_YZ as usize) {
            let cfg = attention_flash_config(max_seqlen, n_heads, count)?;
            // cu_seqlens holds absolute token offsets, so a chunk only moves the array start.
            let cu_chunk = cu_seqlens.slice(first..first + count + 1);
            let (cu, _g2) = cu_chunk.device_ptr(stream);
            let mut launch = stream.launch_builder(function);
            launch.arg(&q).arg(&c).arg(&cu).arg(&nh).arg(&scale);
            // SAFETY: attention.cu v2 signature (both instantiations); buffers checked above;
            // blockDim is exactly 128.
            unsafe { launch.launch(cfg) }.device(|| format!("launching {k}"))?;
        }
        Ok(())
    }

    /// Attention of the first (CLS) query of every sequence against all its keys, head_dim 32
    /// or 64 ([`FLASH_HEAD_DIMS`]; attention.cu v3: `attention_varlen_cls` /
    /// `attention_varlen_cls_d32`; CPU twin `ops::attention_cls`). `ctx_cls` is compact:
    /// `[n_seqs, H]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_cls_with_head_dim(
        &self,
        qkv: &impl DevicePtr<f16>,
        ctx_cls: &mut impl DevicePtrMut<f16>,
        cu_seqlens: &impl DevicePtr<u32>,
        n_seqs: usize,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        check_flash_head_dim("attention_varlen_cls", head_dim)?;
        let (k, function) = match head_dim {
            32 => ("attention_varlen_cls_d32", &self.kernels.attention_cls_d32),
            _ => ("attention_varlen_cls", &self.kernels.attention_cls),
        };
        let h = n_heads * head_dim;
        check_len(k, "qkv", qkv.len(), n_tokens * 3 * h)?;
        check_len(k, "ctx_cls", ctx_cls.len(), n_seqs * h)?;
        check_len(k, "cu_seqlens", cu_seqlens.len(), n_seqs + 1)?;
        if n_seqs == 0 {
            return Ok(());
        }
        let cfg = attention_cls_config(n_seqs, n_heads)?;
        let stream = self.stream();
        let (q, _g0) = qkv.device_ptr(stream);
        let (c, _g1) = ctx_cls.device_ptr_mut(stream);
        let (cu, _g2) = cu_seqlens.device_ptr(stream);
        let nh = n_heads as i32;
        let scale = softmax_scale(head_dim);
        let mut launch = stream.launch_builder(function);
        launch.arg(&q).arg(&c).arg(&cu).arg(&nh).arg(&scale);
        // SAFETY: attention.cu v3 signature (both instantiations); buffers checked above;
        // blockDim is exactly 128.
        unsafe { launch.launch(cfg) }.device(|| format!("launching {k}"))?;
        Ok(())
    }
}

/// Row counts of the three tables of [`Gpu::embedding_abs_layernorm`] (`vocab_size`,
/// `max_position_embeddings`, `type_vocab_size`): rows at or past them are never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingTableRows {
    pub vocab: usize,
    pub positions: usize,
    pub types: usize,
}

/// `1/sqrt(head_dim)` in f32, exactly as the CPU reference computes it.
pub fn softmax_scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(c: &LaunchConfig) -> ((u32, u32, u32), (u32, u32, u32), u32) {
        (c.grid_dim, c.block_dim, c.shared_mem_bytes)
    }

    #[test]
    fn warp_per_row_and_grid_stride_configs() {
        assert_eq!(dims(&warp_per_row_config(1)), ((1, 1, 1), (128, 1, 1), 0));
        assert_eq!(dims(&warp_per_row_config(4)), ((1, 1, 1), (128, 1, 1), 0));
        assert_eq!(dims(&warp_per_row_config(5)), ((2, 1, 1), (128, 1, 1), 0));
        assert_eq!(dims(&warp_per_row_config(16384)), ((4096, 1, 1), (128, 1, 1), 0));
        // A zero-row launch is skipped by the wrappers, but the config stays valid.
        assert_eq!(warp_per_row_config(0).grid_dim.0, 1);
        // hidden 768: 192 items per token, 256 per block.
        assert_eq!(dims(&rope_config(1, 768)), ((1, 1, 1), (256, 1, 1), 0));
        assert_eq!(rope_config(17, 768).grid_dim.0, (17 * 192usize).div_ceil(256) as u32);
        assert_eq!(rope_config(16384, 768).grid_dim.0, 12288);
        // inter 3072: 384 vectors per row.
        assert_eq!(gated_gelu_config(1, 3072).grid_dim.0, 2);
        assert_eq!(gated_gelu_config(16384, 3072).grid_dim.0, 24576);
        assert_eq!(gated_gelu_config(3, 8).grid_dim.0, 1);
        // Huge inputs are capped (grid-stride loops cover the rest).
        assert_eq!(stride_grid(usize::MAX / 2, 1), MAX_GRID_X);
    }

    #[test]
    fn attention_configs() {
        let c = attention_reference_config(2048, 12).unwrap();
        assert_eq!(dims(&c), ((2048, 12, 1), (128, 1, 1), 0));
        assert!(attention_reference_config(1 << 31, 12).is_err());
        assert!(attention_reference_config(10, 70000).is_err());

        for (max_seqlen, tiles) in [(1, 1), (40, 1), (64, 1), (65, 2), (130, 3), (2048, 32), (8192, 128)] {
            let c = attention_flash_config(max_seqlen, 12, 7).unwrap();
            assert_eq!(dims(&c), ((tiles, 12, 7), (128, 1, 1), 0), "max_seqlen {max_seqlen}");
        }
        assert!(attention_flash_config(64, 12, 65535).is_ok());
        assert!(attention_flash_config(64, 12, 65536).is_err());
        assert!(attention_flash_config(64, 12, 0).is_err());

        assert_eq!(
            dims(&attention_cls_config(100, 12).unwrap()),
            ((100, 12, 1), (128, 1, 1), 0)
        );
        assert_eq!(dims(&head_config(1)), ((1, 1, 1), (256, 1, 1), 0));
        assert_eq!(head_config(8).grid_dim.0, 1);
        assert_eq!(head_config(9).grid_dim.0, 2);
        assert_eq!(head_config(1000).grid_dim.0, 125);
    }

    #[test]
    fn flash_sequence_chunks_cover_every_sequence_once() {
        assert_eq!(sequence_chunks(0, 65535).count(), 0);
        assert_eq!(sequence_chunks(5, 65535).collect::<Vec<_>>(), vec![(0, 5)]);
        assert_eq!(sequence_chunks(65535, 65535).collect::<Vec<_>>(), vec![(0, 65535)]);
        assert_eq!(
            sequence_chunks(140_000, 65535).collect::<Vec<_>>(),
            vec![(0, 65535), (65535, 65535), (131070, 8930)]
        );
        for n in [1, 2, 7, 100] {
            let total: usize = sequence_chunks(n, 3).map(|(_, c)| c).sum();
            assert_eq!(total, n);
        }
    }

    #[test]
    fn shape_checks() {
        assert!(check_hidden("k", 768).is_ok());
        assert!(check_hidden("k", 64).is_ok());
        assert!(check_hidden("k", 1024).is_ok());
        assert!(check_hidden("k", 8).is_ok());
        for bad in [0, 4, 12, 1032, 2048] {
            assert!(matches!(check_hidden("k", bad), Err(Error::Device(_))), "{bad}");
        }
        assert!(check_rope_shape(768, 64).is_ok());
        assert!(check_rope_shape(64, 16).is_ok());
        assert!(check_rope_shape(96, 32).is_ok());
        assert!(check_rope_shape(64, 8).is_err());
        assert!(check_rope_shape(72, 24).is_err());
        assert!(check_len("k", "x", 10, 11).is_err());
        assert!(check_len("k", "x", 11, 11).is_ok());
        assert_eq!(check_i32("k", "n", 5).unwrap(), 5);
        assert!(check_i32("k", "n", 1 << 31).is_err());
        assert_eq!(softmax_scale(64), 0.125);
    }

    #[test]
    fn checks_for_absolute_position_encoders_and_head_dim_32() {
        for d in FLASH_HEAD_DIMS {
            assert!(check_flash_head_dim("k", d).is_ok(), "{d}");
        }
        assert!(FLASH_HEAD_DIMS.contains(&FLASH_HEAD_DIM));
        for bad in [0, 16, 48, 80, 96, 128] {
            let err = check_flash_head_dim("attention_varlen_flash", bad).unwrap_err();
            assert!(matches!(err, Error::Device(_)), "{bad}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("head_dim {bad}")) && text.contains("reference"),
                "{text}"
            );
        }
        assert!(check_bias_width("k", 8).is_ok());
        assert!(check_bias_width("k", 3 * 384).is_ok());
        assert!(check_bias_width("k", 4096).is_ok());
        for bad in [0, 4, 12, 3 * 20] {
            assert!(matches!(check_bias_width("k", bad), Err(Error::Device(_))), "{bad}");
        }
        // One thread per 8 values, 256 per block: 3·384 = 1152 values = 144 threads per row.
        assert_eq!(dims(&bias_rows_config(1, 1152)), ((1, 1, 1), (256, 1, 1), 0));
        assert_eq!(
            bias_rows_config(17, 1152).grid_dim.0,
            (17 * 144usize).div_ceil(256) as u32
        );
        assert_eq!(bias_rows_config(16384, 4096).grid_dim.0, 32768);
        assert_eq!(bias_rows_config(0, 8).grid_dim.0, 1);
        // Every new entry point is registered under the module it lives in.
        for (module, function) in [
            ("embedding", "embedding_abs_layernorm"),
            ("bias", "add_bias_rows"),
            ("bias", "bias_gelu"),
            ("attention", "attention_varlen_flash_d32"),
            ("attention", "attention_varlen_cls_d32"),
        ] {
            assert!(KERNEL_FUNCTIONS.contains(&(module, function)), "{module}/{function}");
        }
    }
}
