//! The device plumbing every family's CUDA forward shares: options ([`GpuOptions`],
//! [`AttentionChoice`]), workspace sizing and growth, batch validation, weight uploads through
//! one staging buffer ([`Uploader`]) and the per-pass state (profiler, GEMM tuner). The gte
//! forward on top of it is `crate::arch::gte::cuda` (re-exported as `crate::cuda::GpuModel`),
//! the BERT / XLM-RoBERTa one `crate::arch::abs_encoder_cuda`; each picks its buffer shapes
//! with a [`WorkspaceLayout`].
//!
//! Memory (spec §2.3): the GEMM matrices (qkv, o, up_gate, down) and the word-embedding table
//! are uploaded once as fp16, converted chunk by chunk from the memory map through one
//! reusable staging buffer (there is never a second host copy of the model); the small vectors
//! the kernels read in fp32 (biases, LayerNorm gamma/beta, pooler, classifier) are fp32, the
//! token-type row is fp16 (embedding.cu reads it as fp16).
//!
//! Activations live in a `Workspace` sized once from the token budget: `x` (residual
//! stream), `qkv`, `ctx`, `proj` (o_proj / down_proj output), `ug` (up_gate output), `act`
//! (GeGLU output), the packed batch inputs and the logits. A batch larger than the capacity
//! (one sequence longer than the budget) grows it; nothing is allocated per batch otherwise.
//! When the device cannot hold the larger buffers, `forward` fails with
//! [`Error::DeviceOutOfMemory`] (the engine splits the batch and retries) and the workspace
//! goes back to its previous size.
//! The CLS-only last layer needs no extra buffers: its compact `[n_seqs, H]` rows live in the
//! first rows of `ctx`/`proj`/`ug`/`act` (a batch never has more sequences than tokens).

use cudarc::driver::{CudaSlice, CudaView, DevicePtr, DevicePtrMut};
use half::f16;

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::cuda::kernels::{self, KernelOrigin, MAX_REFERENCE_HEAD_DIM};
use crate::cuda::profile::{Op, Profiler};
use crate::cuda::runtime::Gpu;
use crate::cuda::tune::{GemmKind, GemmTuner};
use crate::error::{Error, Result};
use crate::weights::{LogicalTensor, ModelTensors, Param};

/// Tokens per forward batch unless the caller says otherwise: large enough that the GEMMs run
/// near peak (M = 16384 rows), small enough that activations stay under 0.5 GB.
pub const DEFAULT_BATCH_TOKENS: usize = 16384;
/// fp16 elements converted per host→device copy while uploading weights (8 MiB).
pub const STAGING_ELEMENTS: usize = 4 << 20;
/// Capacity is grown in steps of this many tokens.
pub const CAPACITY_STEP: usize = 256;

/// Which attention kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionChoice {
    /// Flash (+ CLS-only last layer) when head_dim is 32 or 64, else the reference kernel.
    Auto,
    /// Flash for every layer but the last, `attention_varlen_cls` for the last; needs head_dim
    /// 32 or 64.
    Flash,
    /// The fp32 reference kernel for every layer, all rows of the last layer, head reading the
    /// CLS rows through `cu_seqlens`: the slow, obviously correct path (tests, debugging).
    Reference,
}

impl AttentionChoice {
    /// `CROSSRANK_ATTENTION` = `auto` (default), `flash` or `reference`.
    pub fn from_env() -> Result<Self> {
        Self::parse(std::env::var("CROSSRANK_ATTENTION").ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("auto") => Ok(AttentionChoice::Auto),
            Some("flash") => Ok(AttentionChoice::Flash),
            Some("reference") => Ok(AttentionChoice::Reference),
            Some(other) => Err(Error::InvalidArgument(format!(
                "attention `{other}`: expected auto, flash or reference (CROSSRANK_ATTENTION / --attention)"
            ))),
        }
    }

    /// The attention path for a model with `head_dim`, or why it cannot run. Flash (and the
    /// CLS-only last layer) run at the head sizes the flash kernels are instantiated for
    /// ([`kernels::FLASH_HEAD_DIMS`]: 32 and 64), the reference kernel at any other up to
    /// [`MAX_REFERENCE_HEAD_DIM`].
    pub fn resolve(self, head_dim: usize) -> Result<AttentionPath> {
        let flash = kernels::check_flash_head_dim("flash attention", head_dim);
        match (self, flash) {
            (AttentionChoice::Auto | AttentionChoice::Flash, Ok(())) => Ok(AttentionPath::Flash),
            (AttentionChoice::Flash, Err(e)) => Err(e),
            _ if head_dim <= MAX_REFERENCE_HEAD_DIM => Ok(AttentionPath::Reference),
            _ => Err(Error::Device(format!(
                "head_dim {head_dim} is not supported by the CUDA attention kernels (at most {MAX_REFERENCE_HEAD_DIM})"
            ))),
        }
    }
}

/// The resolved attention path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    Flash,
    Reference,
}

#[derive(Clone, Copy, Debug)]
pub struct GpuOptions {
    /// Token budget the workspace is sized for; `None`: [`DEFAULT_BATCH_TOKENS`].
    pub batch_tokens: Option<usize>,
    pub attention: AttentionChoice,
    pub kernels: KernelOrigin,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            batch_tokens: None,
            attention: AttentionChoice::Auto,
            kernels: KernelOrigin::Auto,
        }
    }
}

/// Checks that the CUDA kernels support this model's shapes.
pub fn check_model_shape(cfg: &ModelConfig) -> Result<()> {
    kernels::check_hidden("model", cfg.hidden_size)?;
    kernels::check_rope_shape(cfg.hidden_size, cfg.head_dim)?;
    if cfg.intermediate_size % 8 != 0 {
        return Err(Error::Device(format!(
            "intermediate size {} is not supported by the CUDA kernels (needs a multiple of 8)",
            cfg.intermediate_size
        )));
    }
    if u32::try_from(cfg.vocab_size).is_err() {
        return Err(Error::Device(format!("vocab size {} is too large", cfg.vocab_size)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Workspace sizing

/// Element counts of every activation buffer for a capacity of `tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkspaceSizes {
    pub tokens: usize,
    /// fp16 `[tokens, H]` each: x, ctx, proj.
    pub hidden_rows: usize,
    /// fp16 `[tokens, 3H]`.
    pub qkv: usize,
    /// fp16 `[tokens, 2I]`.
    pub ug: usize,
    /// fp16 `[tokens, I]`.
    pub act: usize,
    /// u32 `token_ids ++ positions ++ cu_seqlens`: `2·tokens + (tokens + 1)` (at most one
    /// sequence per token); `++ type_ids` before `cu_seqlens` in the plain-MLP layout.
    pub inputs: usize,
    /// f32 `[tokens]` (at most one sequence per token).
    pub logits: usize,
}

/// Per-token widths of the buffers whose shape depends on the family's forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkspaceLayout {
    pub hidden: usize,
    /// Elements per token of `ug` (the MLP's first GEMM output).
    pub ug_width: usize,
    /// Elements per token of `act` (0: the forward does not use it).
    pub act_width: usize,
    /// Per-token u32 arrays uploaded before `cu_seqlens` (ids, positions, ...).
    pub input_arrays: usize,
}

impl WorkspaceLayout {
    /// A gated MLP (up_gate `[2I]` then a separate GeGLU output `[I]`), ids and positions
    /// uploaded: the gte forward.
    pub fn gated_mlp(hidden: usize, inter: usize) -> Self {
        WorkspaceLayout {
            hidden,
            ug_width: 2 * inter,
            act_width: inter,
            input_arrays: 2,
        }
    }

    /// A plain MLP (up `[I]`, its activation applied in place, no `act`), ids, positions
    /// and segment ids uploaded: the absolute-position encoders.
    pub fn plain_mlp(hidden: usize, inter: usize) -> Self {
        WorkspaceLayout {
            hidden,
            ug_width: inter,
            act_width: 0,
            input_arrays: 3,
        }
    }
}

impl WorkspaceSizes {
    /// The gte forward's buffers ([`WorkspaceLayout::gated_mlp`]).
    pub fn new(tokens: usize, hidden: usize, inter: usize) -> Self {
        Self::for_layout(tokens, WorkspaceLayout::gated_mlp(hidden, inter))
    }

    pub fn for_layout(tokens: usize, layout: WorkspaceLayout) -> Self {
        WorkspaceSizes {
            tokens,
            hidden_rows: tokens * layout.hidden,
            qkv: tokens * 3 * layout.hidden,
            ug: tokens * layout.ug_width,
            act: tokens * layout.act_width,
            inputs: layout.input_arrays * tokens + tokens + 1,
            logits: tokens,
        }
    }

    pub fn bytes(&self) -> usize {
        2 * (3 * self.hidden_rows + self.qkv + self.ug + self.act) + 4 * (self.inputs + self.logits + 1)
    }
}

/// Capacity for a batch of `needed` tokens given the current one: unchanged when it fits, else
/// rounded up to a multiple of [`CAPACITY_STEP`].
pub fn grown_capacity(current: usize, needed: usize) -> usize {
    if needed <= current {
        current
    } else {
        needed.div_ceil(CAPACITY_STEP) * CAPACITY_STEP
    }
}

/// What a batch must satisfy before it is uploaded (the CPU reference checks the same).
pub fn validate_batch(batch: &PackedBatch, max_positions: usize) -> Result<()> {
    let n = batch.num_tokens();
    let n_seqs = batch.num_seqs();
    if batch.positions.len() != n || batch.cu_seqlens.first() != Some(&0) || batch.cu_seqlens[n_seqs] as usize != n {
        return Err(Error::Internal("inconsistent packed batch".into()));
    }
    if n >= i32::MAX as usize / 4 {
        return Err(Error::InvalidArgument(format!("batch of {n} tokens is too large")));
    }
    if (0..n_seqs).any(|s| batch.cu_seqlens[s] >= batch.cu_seqlens[s + 1]) {
        return Err(Error::InvalidArgument("empty sequence in batch".into()));
    }
    // The flash attention grid is sized from max_seqlen: a stale value would leave query tiles
    // unlaunched and their rows silently wrong, so it is recomputed, not trusted.
    let longest = batch
        .cu_seqlens
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize)
        .max()
        .unwrap_or(0);
    if longest != batch.max_seqlen {
        return Err(Error::Internal(format!(
            "packed batch says its longest sequence has {} tokens, it has {longest}",
            batch.max_seqlen
        )));
    }
    if longest > max_positions {
        return Err(Error::InvalidArgument(format!(
            "sequence of {longest} tokens exceeds max_position_embeddings ({max_positions})"
        )));
    }
    Ok(())
}

/// The device buffers of one batch.
pub(crate) struct Workspace {
    pub(crate) sizes: WorkspaceSizes,
    pub(crate) x: CudaSlice<f16>,
    pub(crate) qkv: CudaSlice<f16>,
    pub(crate) ctx: CudaSlice<f16>,
    pub(crate) proj: CudaSlice<f16>,
    pub(crate) ug: CudaSlice<f16>,
    pub(crate) act: CudaSlice<f16>,
    pub(crate) inputs: CudaSlice<u32>,
    pub(crate) logits: CudaSlice<f32>,
    pub(crate) error_flag: CudaSlice<i32>,
    /// Host staging of the packed inputs (one copy per batch).
    pub(crate) host_inputs: Vec<u32>,
}

impl Workspace {
    pub(crate) fn new(gpu: &Gpu, tokens: usize, hidden: usize, inter: usize) -> Result<Self> {
        Self::for_layout(gpu, tokens, WorkspaceLayout::gated_mlp(hidden, inter))
    }

    pub(crate) fn for_layout(gpu: &Gpu, tokens: usize, layout: WorkspaceLayout) -> Result<Self> {
        let sizes = WorkspaceSizes::for_layout(tokens, layout);
        Ok(Workspace {
            sizes,
            x: gpu.alloc_zeros(sizes.hidden_rows)?,
            qkv: gpu.alloc_zeros(sizes.qkv)?,
            ctx: gpu.alloc_zeros(sizes.hidden_rows)?,
            proj: gpu.alloc_zeros(sizes.hidden_rows)?,
            ug: gpu.alloc_zeros(sizes.ug)?,
            act: gpu.alloc_zeros(sizes.act)?,
            inputs: gpu.alloc_zeros(sizes.inputs)?,
            logits: gpu.alloc_zeros(sizes.logits)?,
            error_flag: gpu.alloc_zeros(1)?,
            host_inputs: Vec::with_capacity(sizes.inputs),
        })
    }
}

impl Workspace {
    /// Makes room for `needed` tokens ([`grown_capacity`]). The big buffers are freed before
    /// the larger ones are allocated; when those do not fit, the previous size is restored
    /// (best effort, so the halves of a batch the engine retries after an out-of-memory error
    /// do not each pay a reallocation) and the error returned.
    pub(crate) fn ensure_capacity(&mut self, gpu: &Gpu, needed: usize, layout: WorkspaceLayout) -> Result<()> {
        let cap = grown_capacity(self.sizes.tokens, needed);
        if cap == self.sizes.tokens {
            return Ok(());
        }
        let old_cap = self.sizes.tokens;
        *self = Workspace::for_layout(gpu, 1, layout)?;
        match Workspace::for_layout(gpu, cap, layout) {
            Ok(bigger) => {
                *self = bigger;
                Ok(())
            }
            Err(e) => {
                if let Ok(old) = Workspace::for_layout(gpu, old_cap, layout) {
                    *self = old;
                }
                Err(e)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Uploads

pub(crate) struct Uploader<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) tensors: &'a ModelTensors,
    pub(crate) staging: Vec<f16>,
    pub(crate) bytes: usize,
}

impl Uploader<'_> {
    pub(crate) fn f16(&mut self, param: Param) -> Result<CudaSlice<f16>> {
        let t = self.tensors.get(param)?;
        self.f16_rows(&t, t.len())
    }

    /// The first `len` elements of `t` as fp16, `STAGING_ELEMENTS` at a time.
    pub(crate) fn f16_rows(&mut self, t: &LogicalTensor<'_>, len: usize) -> Result<CudaSlice<f16>> {
        // SAFETY: every element is written by the copies below before any kernel reads it.
        let mut dst = unsafe { self.gpu.alloc_uninit::<f16>(len)? };
        let chunk = STAGING_ELEMENTS.min(len.max(1));
        if self.staging.len() < chunk {
            self.staging.resize(chunk, f16::ZERO);
        }
        let mut offset = 0;
        while offset < len {
            let m = chunk.min(len - offset);
            t.read_f16(offset, &mut self.staging[..m]);
            self.gpu
                .upload_into(&self.staging[..m], &mut dst.slice_mut(offset..offset + m))?;
            // The staging buffer is refilled next: wait until the driver is done with it.
            self.gpu.synchronize()?;
            offset += m;
        }
        self.bytes += 2 * len;
        Ok(dst)
    }

    pub(crate) fn f32(&mut self, param: Param) -> Result<CudaSlice<f32>> {
        let host = self.tensors.get(param)?.to_f32();
        self.bytes += 4 * host.len();
        self.gpu.upload(&host)
    }
}

// ---------------------------------------------------------------------------------------
// One forward pass

/// What a forward pass changes, one pass at a time (behind the model's mutex).
pub(crate) struct State {
    pub(crate) ws: Workspace,
    /// `CROSSRANK_PROFILE=1`: per-op CUDA events (see [`crate::cuda::profile`]).
    pub(crate) profiler: Option<Profiler>,
    /// `CROSSRANK_GEMM_TUNE=1`: the GEMM algorithm cache (see [`crate::cuda::tune`]).
    pub(crate) tuner: Option<GemmTuner>,
    /// Why tuning was asked for but is off (no cuBLASLt, no memory for its workspace).
    pub(crate) tune_note: Option<String>,
}

impl State {
    pub(crate) fn set_profiling(&mut self, gpu: &Gpu, on: bool) {
        match (on, self.profiler.is_some()) {
            (true, false) => self.profiler = Some(Profiler::new(gpu.context().clone())),
            (false, true) => self.profiler = None,
            _ => {}
        }
    }

    pub(crate) fn set_tuning(&mut self, gpu: &Gpu, on: bool) {
        self.tune_note = None;
        if !on {
            self.tuner = None;
        } else if self.tuner.is_none() {
            match GemmTuner::new(gpu) {
                Ok(mut t) => {
                    t.verbose = true;
                    self.tuner = Some(t);
                }
                Err(e) => self.tune_note = Some(format!("GEMM autotune unavailable: {e}")),
            }
        }
    }
}

/// What the ops of one forward pass share: the device, and the profiler and GEMM tuner when
/// they are on. Without them `mark` is one `Option` check and `linear` is `Gpu::linear`.
pub(crate) struct Pass<'a> {
    pub(crate) gpu: &'a Gpu,
    pub(crate) profiler: Option<&'a mut Profiler>,
    pub(crate) tuner: Option<&'a mut GemmTuner>,
    /// Marks are not recorded (the last layer's CLS rows are timed as one op).
    pub(crate) quiet: bool,
    /// The tuner ran during this pass.
    pub(crate) tuned: bool,
}

impl Pass<'_> {
    /// End of `op` on the stream's timeline (profiling only).
    pub(crate) fn mark(&mut self, op: Op) -> Result<()> {
        match self.profiler.as_deref_mut() {
            Some(p) if !self.quiet => p.mark(op, self.gpu.stream()),
            _ => Ok(()),
        }
    }

    /// `y = x · wᵀ`: the tuned algorithm for this GEMM and size when tuning is on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linear<Y: DevicePtr<f16> + DevicePtrMut<f16>>(
        &mut self,
        kind: GemmKind,
        x: &impl DevicePtr<f16>,
        w: &impl DevicePtr<f16>,
        y: &mut Y,
        n: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<()> {
        match self.tuner.as_deref_mut() {
            Some(t) => {
                self.tuned |= t.linear(self.gpu, kind, x, w, y, n, in_features, out_features)?;
                Ok(())
            }
            None => self.gpu.linear(x, w, y, n, in_features, out_features),
        }
    }
}

/// The attention weights of one post-LN layer: `o_proj` and the LayerNorm after it.
pub(crate) struct AttentionWeights<'w> {
    pub(crate) o_w: &'w CudaSlice<f16>,
    pub(crate) o_b: &'w CudaSlice<f32>,
    pub(crate) ln_g: &'w CudaSlice<f32>,
    pub(crate) ln_b: &'w CudaSlice<f32>,
}

/// The shapes of one packed batch that the attention sub-layer needs.
pub(crate) struct AttentionShape {
    pub(crate) tokens: usize,
    pub(crate) seqs: usize,
    pub(crate) max_seqlen: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) eps: f32,
}

impl Pass<'_> {
    /// The attention sub-layer of a post-LN encoder, from the biased (and, for gte, rotated)
    /// `qkv` to `LN(x + o_proj(attention) + b_o)`; every family's forward is this between its
    /// QKV epilogue and its MLP. On the `last` layer with the flash path only the first row
    /// of each sequence is computed (keys and values of every token), compacted into the
    /// first `seqs` rows of `ctx`, and marks go quiet so that the rest of the layer is timed
    /// as one op: returns true, and the caller runs its MLP on those rows of `ctx`, then
    /// clears `quiet` and marks `Op::ClsRows`. Otherwise `x` is updated in place (false).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_sublayer(
        &mut self,
        path: AttentionPath,
        last: bool,
        qkv: &CudaSlice<f16>,
        x: &mut CudaSlice<f16>,
        ctx: &mut CudaSlice<f16>,
        proj: &mut CudaSlice<f16>,
        cu: &CudaView<'_, u32>,
        w: &AttentionWeights<'_>,
        b: &AttentionShape,
    ) -> Result<bool> {
        let gpu = self.gpu;
        let (n, s, heads, d) = (b.tokens, b.seqs, b.heads, b.head_dim);
        let h = heads * d;
        if last && path == AttentionPath::Flash {
            gpu.attention_cls_with_head_dim(
                &qkv.slice(0..n * 3 * h),
                &mut ctx.slice_mut(0..s * h),
                cu,
                s,
                n,
                heads,
                d,
            )?;
            self.mark(Op::ClsAttention)?;
            self.quiet = true;
            self.linear(
                GemmKind::OProj,
                &ctx.slice(0..s * h),
                w.o_w,
                &mut proj.slice_mut(0..s * h),
                s,
                h,
                h,
            )?;
            // The first rows of x, compacted into ctx (its attention output was consumed).
            gpu.bias_residual_layernorm_rows(
                &x.slice(0..n * h),
                cu,
                n - 1,
                &proj.slice(0..s * h),
                Some(&w.o_b.as_view()),
                w.ln_g,
                w.ln_b,
                &mut ctx.slice_mut(0..s * h),
                s,
                h,
                b.eps,
            )?;
            return Ok(true);
        }
        match path {
            AttentionPath::Flash => gpu.attention_flash_with_head_dim(
                &qkv.slice(0..n * 3 * h),
                &mut ctx.slice_mut(0..n * h),
                cu,
                s,
                n,
                b.max_seqlen,
                heads,
                d,
            )?,
            AttentionPath::Reference => gpu.attention_reference(
                &qkv.slice(0..n * 3 * h),
                &mut ctx.slice_mut(0..n * h),
                cu,
                s,
                n,
                heads,
                d,
            )?,
        }
        self.mark(Op::Attention)?;
        self.linear(
            GemmKind::OProj,
            &ctx.slice(0..n * h),
            w.o_w,
            &mut proj.slice_mut(0..n * h),
            n,
            h,
            h,
        )?;
        self.mark(Op::OProjGemm)?;
        gpu.bias_residual_layernorm(
            &mut x.slice_mut(0..n * h),
            &proj.slice(0..n * h),
            Some(&w.o_b.as_view()),
            w.ln_g,
            w.ln_b,
            n,
            h,
            b.eps,
        )?;
        self.mark(Op::AttnLayerNorm)?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_choice_parsing_and_resolution() {
        assert_eq!(AttentionChoice::parse(None).unwrap(), AttentionChoice::Auto);
        assert_eq!(
            AttentionChoice::parse(Some("reference")).unwrap(),
            AttentionChoice::Reference
        );
        assert_eq!(AttentionChoice::parse(Some("flash")).unwrap(), AttentionChoice::Flash);
        assert!(AttentionChoice::parse(Some("fast")).is_err());
        assert_eq!(AttentionChoice::Auto.resolve(64).unwrap(), AttentionPath::Flash);
        assert_eq!(AttentionChoice::Auto.resolve(16).unwrap(), AttentionPath::Reference);
        assert_eq!(
            AttentionChoice::Reference.resolve(64).unwrap(),
            AttentionPath::Reference
        );
        assert!(matches!(AttentionChoice::Flash.resolve(16), Err(Error::Device(_))));
        // Head dim 32 (MiniLM) has its own flash / CLS instantiations.
        assert_eq!(AttentionChoice::Auto.resolve(32).unwrap(), AttentionPath::Flash);
        assert_eq!(AttentionChoice::Flash.resolve(32).unwrap(), AttentionPath::Flash);
        assert_eq!(
            AttentionChoice::Reference.resolve(32).unwrap(),
            AttentionPath::Reference
        );
        let err = AttentionChoice::Flash.resolve(48).unwrap_err().to_string();
        assert!(err.contains("head_dim 48") && err.contains("[32, 64]"), "{err}");
        assert!(matches!(AttentionChoice::Auto.resolve(256), Err(Error::Device(_))));
    }

    #[test]
    fn workspace_sizes_for_the_real_model() {
        let s = WorkspaceSizes::new(16384, 768, 3072);
        assert_eq!(s.hidden_rows, 16384 * 768);
        assert_eq!(s.qkv, 16384 * 2304);
        assert_eq!(s.ug, 16384 * 6144);
        assert_eq!(s.act, 16384 * 3072);
        assert_eq!(s.inputs, 3 * 16384 + 1);
        assert_eq!(s.logits, 16384);
        // x, ctx, proj, qkv, ug, act in fp16: 16384 · (3·768 + 2304 + 6144 + 3072) · 2 bytes.
        let activations = 16384 * (3 * 768 + 2304 + 6144 + 3072) * 2;
        assert_eq!(s.bytes(), activations + 4 * (3 * 16384 + 1 + 16384 + 1));
        assert!(s.bytes() < 512 << 20, "{} bytes", s.bytes());
    }

    #[test]
    fn plain_mlp_workspace_has_no_gated_buffers_and_room_for_segment_ids() {
        // bge-reranker-v2-m3: hidden 1024, intermediate 4096.
        let s = WorkspaceSizes::for_layout(16384, WorkspaceLayout::plain_mlp(1024, 4096));
        assert_eq!(s.hidden_rows, 16384 * 1024);
        assert_eq!(s.qkv, 16384 * 3072);
        assert_eq!(s.ug, 16384 * 4096);
        assert_eq!(s.act, 0);
        // ids, positions, type ids, then cu_seqlens (at most one sequence per token).
        assert_eq!(s.inputs, 3 * 16384 + 16384 + 1);
        assert_eq!(
            WorkspaceSizes::for_layout(100, WorkspaceLayout::gated_mlp(768, 3072)),
            WorkspaceSizes::new(100, 768, 3072)
        );
    }

    #[test]
    fn capacity_grows_only_when_needed() {
        assert_eq!(grown_capacity(0, 16384), 16384);
        assert_eq!(grown_capacity(0, 1), CAPACITY_STEP);
        assert_eq!(grown_capacity(16384, 100), 16384);
        assert_eq!(grown_capacity(16384, 16384), 16384);
        assert_eq!(grown_capacity(4096, 8192), 8192);
        assert_eq!(grown_capacity(4096, 8193), 8192 + CAPACITY_STEP);
    }

    #[test]
    fn batches_are_validated() {
        let ok = PackedBatch::from_sequences([&[0u32, 5, 2][..], &[0, 2][..]]);
        assert!(validate_batch(&ok, 8192).is_ok());
        assert!(matches!(validate_batch(&ok, 2), Err(Error::InvalidArgument(_))));
        let mut empty = ok.clone();
        empty.push(&[]);
        assert!(matches!(validate_batch(&empty, 8192), Err(Error::InvalidArgument(_))));
        let mut broken = ok.clone();
        broken.positions.pop();
        assert!(matches!(validate_batch(&broken, 8192), Err(Error::Internal(_))));
        let mut stale = ok.clone();
        stale.max_seqlen = 2;
        assert!(matches!(validate_batch(&stale, 8192), Err(Error::Internal(_))));
        assert!(validate_batch(&PackedBatch::default(), 8192).is_err());
    }

    #[test]
    fn model_shapes_the_kernels_support() {
        let cfg = |h: usize, heads: usize, inter: usize| {
            let json = format!(
                r#"{{"model_type": "new", "vocab_size": 100, "hidden_size": {h}, "num_hidden_layers": 1,
                    "num_attention_heads": {heads}, "intermediate_size": {inter}}}"#
            );
            ModelConfig::from_json_str(&json, std::path::Path::new("config.json")).unwrap()
        };
        assert!(check_model_shape(&cfg(768, 12, 3072)).is_ok());
        assert!(check_model_shape(&cfg(64, 4, 128)).is_ok());
        assert!(matches!(check_model_shape(&cfg(2048, 32, 8192)), Err(Error::Device(_))));
        assert!(matches!(check_model_shape(&cfg(96, 12, 128)), Err(Error::Device(_))));
        assert!(matches!(check_model_shape(&cfg(64, 4, 100)), Err(Error::Device(_))));
    }
}
