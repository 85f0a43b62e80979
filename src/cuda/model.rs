//! [`GpuModel`]: the gte reranker on one CUDA device.
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
//!
//! Forward (spec §3), one stream: upload ids/positions/cu_seqlens in one copy →
//! embedding_layernorm → per layer: GEMM qkv → qkv_bias_rope → attention → GEMM o_proj →
//! bias_residual_layernorm → GEMM up_gate → gated_gelu → GEMM down → bias_residual_layernorm.
//! The last layer computes only what the CLS rows need (attention_varlen_cls, then o_proj, the
//! residual LayerNorm and the MLP on `n_seqs` rows), then cls_pooler_classifier (fp32 head)
//! and one copy of the logits to the host.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::f16;

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::cuda::kernels::{self, KernelOrigin, FLASH_HEAD_DIM, MAX_REFERENCE_HEAD_DIM};
use crate::cuda::profile::{self, Op, Profiler};
use crate::cuda::runtime::{self, DeviceResultExt, Gpu};
use crate::cuda::tune::{self, GemmKind, GemmTuner};
use crate::error::{Error, Result};
use crate::model::{Backend, ProfileReport};
use crate::weights::{LayerParam, LogicalTensor, ModelTensors, Param};

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
    /// Flash (+ CLS-only last layer) when head_dim is 64, else the reference kernel.
    Auto,
    /// Flash for every layer but the last, `attention_varlen_cls` for the last; needs head_dim 64.
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

    /// The attention path for a model with `head_dim`, or why it cannot run.
    pub fn resolve(self, head_dim: usize) -> Result<AttentionPath> {
        let flash_ok = head_dim == FLASH_HEAD_DIM;
        match self {
            AttentionChoice::Auto if flash_ok => Ok(AttentionPath::Flash),
            AttentionChoice::Flash if flash_ok => Ok(AttentionPath::Flash),
            AttentionChoice::Flash => Err(Error::Device(format!(
                "flash attention needs head_dim {FLASH_HEAD_DIM}; this model has {head_dim} (use auto or reference)"
            ))),
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
    /// sequence per token).
    pub inputs: usize,
    /// f32 `[tokens]` (at most one sequence per token).
    pub logits: usize,
}

impl WorkspaceSizes {
    pub fn new(tokens: usize, hidden: usize, inter: usize) -> Self {
        WorkspaceSizes {
            tokens,
            hidden_rows: tokens * hidden,
            qkv: tokens * 3 * hidden,
            ug: tokens * 2 * inter,
            act: tokens * inter,
            inputs: 3 * tokens + 1,
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
struct Workspace {
    sizes: WorkspaceSizes,
    x: CudaSlice<f16>,
    qkv: CudaSlice<f16>,
    ctx: CudaSlice<f16>,
    proj: CudaSlice<f16>,
    ug: CudaSlice<f16>,
    act: CudaSlice<f16>,
    inputs: CudaSlice<u32>,
    logits: CudaSlice<f32>,
    error_flag: CudaSlice<i32>,
    /// Host staging of the packed inputs (one copy per batch).
    host_inputs: Vec<u32>,
}

impl Workspace {
    fn new(gpu: &Gpu, tokens: usize, hidden: usize, inter: usize) -> Result<Self> {
        let sizes = WorkspaceSizes::new(tokens, hidden, inter);
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

// ---------------------------------------------------------------------------------------
// Weights

struct LayerWeights {
    qkv_w: CudaSlice<f16>,
    qkv_b: CudaSlice<f32>,
    o_w: CudaSlice<f16>,
    o_b: CudaSlice<f32>,
    attn_g: CudaSlice<f32>,
    attn_b: CudaSlice<f32>,
    ug_w: CudaSlice<f16>,
    down_w: CudaSlice<f16>,
    down_b: CudaSlice<f32>,
    mlp_g: CudaSlice<f32>,
    mlp_b: CudaSlice<f32>,
}

struct Weights {
    word: CudaSlice<f16>,
    type_row: Option<CudaSlice<f16>>,
    emb_g: CudaSlice<f32>,
    emb_b: CudaSlice<f32>,
    layers: Vec<LayerWeights>,
    pool_w: CudaSlice<f32>,
    pool_b: CudaSlice<f32>,
    cls_w: CudaSlice<f32>,
    cls_b: CudaSlice<f32>,
    /// RoPE inverse frequencies (f64 → f32), `[head_dim / 2]`.
    inv_freq: CudaSlice<f32>,
}

/// Uploads tensors through one reusable staging buffer.
struct Uploader<'a> {
    gpu: &'a Gpu,
    tensors: &'a ModelTensors,
    staging: Vec<f16>,
    bytes: usize,
}

impl Uploader<'_> {
    fn f16(&mut self, param: Param) -> Result<CudaSlice<f16>> {
        let t = self.tensors.get(param)?;
        self.f16_rows(&t, t.len())
    }

    /// The first `len` elements of `t` as fp16, `STAGING_ELEMENTS` at a time.
    fn f16_rows(&mut self, t: &LogicalTensor<'_>, len: usize) -> Result<CudaSlice<f16>> {
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

    fn f32(&mut self, param: Param) -> Result<CudaSlice<f32>> {
        let host = self.tensors.get(param)?.to_f32();
        self.bytes += 4 * host.len();
        self.gpu.upload(&host)
    }
}

impl Weights {
    fn upload(gpu: &Gpu, tensors: &ModelTensors) -> Result<(Weights, usize)> {
        let cfg = &tensors.config;
        let mut up = Uploader {
            gpu,
            tensors,
            staging: Vec::new(),
            bytes: 0,
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |lp| Param::Layer(l, lp);
            layers.push(LayerWeights {
                qkv_w: up.f16(p(LayerParam::QkvWeight))?,
                qkv_b: up.f32(p(LayerParam::QkvBias))?,
                o_w: up.f16(p(LayerParam::OutWeight))?,
                o_b: up.f32(p(LayerParam::OutBias))?,
                attn_g: up.f32(p(LayerParam::AttnNormWeight))?,
                attn_b: up.f32(p(LayerParam::AttnNormBias))?,
                ug_w: up.f16(p(LayerParam::UpGateWeight))?,
                down_w: up.f16(p(LayerParam::DownWeight))?,
                down_b: up.f32(p(LayerParam::DownBias))?,
                mlp_g: up.f32(p(LayerParam::MlpNormWeight))?,
                mlp_b: up.f32(p(LayerParam::MlpNormBias))?,
            });
        }
        let type_row = if cfg.type_vocab_size > 0 {
            let t = tensors.get(Param::TypeEmbeddings)?;
            Some(up.f16_rows(&t, cfg.hidden_size)?)
        } else {
            None
        };
        let inv_freq: Vec<f32> = cfg.inv_freq().iter().map(|&f| f as f32).collect();
        let weights = Weights {
            word: up.f16(Param::WordEmbeddings)?,
            type_row,
            emb_g: up.f32(Param::EmbeddingNormWeight)?,
            emb_b: up.f32(Param::EmbeddingNormBias)?,
            layers,
            pool_w: up.f32(Param::PoolerWeight)?,
            pool_b: up.f32(Param::PoolerBias)?,
            cls_w: up.f32(Param::ClassifierWeight)?,
            cls_b: up.f32(Param::ClassifierBias)?,
            inv_freq: gpu.upload(&inv_freq)?,
        };
        Ok((weights, up.bytes))
    }
}

// ---------------------------------------------------------------------------------------
// The model

/// What a forward pass changes, one pass at a time (behind the model's mutex).
struct State {
    ws: Workspace,
    /// `CROSSRANK_PROFILE=1`: per-op CUDA events (see [`crate::cuda::profile`]).
    profiler: Option<Profiler>,
    /// `CROSSRANK_GEMM_TUNE=1`: the GEMM algorithm cache (see [`crate::cuda::tune`]).
    tuner: Option<GemmTuner>,
    /// Why tuning was asked for but is off (no cuBLASLt, no memory for its workspace).
    tune_note: Option<String>,
}

impl State {
    fn set_profiling(&mut self, gpu: &Gpu, on: bool) {
        match (on, self.profiler.is_some()) {
            (true, false) => self.profiler = Some(Profiler::new(gpu.context().clone())),
            (false, true) => self.profiler = None,
            _ => {}
        }
    }

    fn set_tuning(&mut self, gpu: &Gpu, on: bool) {
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
struct Pass<'a> {
    gpu: &'a Gpu,
    profiler: Option<&'a mut Profiler>,
    tuner: Option<&'a mut GemmTuner>,
    /// Marks are not recorded (the last layer's CLS rows are timed as one op).
    quiet: bool,
    /// The tuner ran during this pass.
    tuned: bool,
}

impl Pass<'_> {
    /// End of `op` on the stream's timeline (profiling only).
    fn mark(&mut self, op: Op) -> Result<()> {
        match self.profiler.as_deref_mut() {
            Some(p) if !self.quiet => p.mark(op, self.gpu.stream()),
            _ => Ok(()),
        }
    }

    /// `y = x · wᵀ`: the tuned algorithm for this GEMM and size when tuning is on.
    #[allow(clippy::too_many_arguments)]
    fn linear<Y: DevicePtr<f16> + DevicePtrMut<f16>>(
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

/// The reranker on one CUDA device.
pub struct GpuModel {
    gpu: Arc<Gpu>,
    cfg: ModelConfig,
    weights: Weights,
    weight_bytes: usize,
    attention: AttentionPath,
    batch_tokens: usize,
    state: Mutex<State>,
}

impl GpuModel {
    /// Opens device `index` and uploads the model.
    /// Every failure is an [`Error::Device`] (out of memory included: see
    /// [`runtime::load_error`]), so `Device::Auto` can fall back to the CPU.
    pub fn load(tensors: Arc<ModelTensors>, index: usize, options: &GpuOptions) -> Result<Self> {
        // Shape support first: an unsupported model must not cost a context and an upload.
        check_model_shape(&tensors.config)?;
        options.attention.resolve(tensors.config.head_dim)?;
        let gpu = Gpu::new(index, options.kernels).map_err(runtime::load_error)?;
        Self::load_on(gpu, &tensors, options)
    }

    /// Uploads the model onto an already opened device.
    pub fn load_on(gpu: Arc<Gpu>, tensors: &ModelTensors, options: &GpuOptions) -> Result<Self> {
        Self::upload(gpu, tensors, options).map_err(runtime::load_error)
    }

    fn upload(gpu: Arc<Gpu>, tensors: &ModelTensors, options: &GpuOptions) -> Result<Self> {
        let cfg = tensors.config.clone();
        check_model_shape(&cfg)?;
        tensors.validate()?;
        let attention = options.attention.resolve(cfg.head_dim)?;
        // Read before anything is uploaded: a malformed value is an error, not a slow load.
        let profile = profile::profile_from_env()?;
        let tune = tune::tune_from_env()?;
        let batch_tokens = options.batch_tokens.unwrap_or(DEFAULT_BATCH_TOKENS).max(1);
        let (weights, weight_bytes) = Weights::upload(&gpu, tensors)?;
        let capacity = grown_capacity(0, batch_tokens);
        let workspace = Workspace::new(&gpu, capacity, cfg.hidden_size, cfg.intermediate_size)?;
        let mut state = State {
            ws: workspace,
            profiler: None,
            tuner: None,
            tune_note: None,
        };
        state.set_profiling(&gpu, profile);
        state.set_tuning(&gpu, tune);
        Ok(GpuModel {
            gpu,
            cfg,
            weights,
            weight_bytes,
            attention,
            batch_tokens,
            state: Mutex::new(state),
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn attention(&self) -> AttentionPath {
        self.attention
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Token capacity of the activation buffers right now.
    pub fn capacity_tokens(&self) -> usize {
        self.state.lock().map_or(0, |s| s.ws.sizes.tokens)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Internal("GPU model state poisoned by an earlier panic".into()))
    }

    fn forward_batch(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        validate_batch(batch, cfg.max_position_embeddings)?;
        let mut guard = self.state()?;
        let gpu = &*self.gpu;
        gpu.bind()?;
        let n = batch.num_tokens();
        let s = batch.num_seqs();
        let (h, inter, heads, d) = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.head_dim);
        let eps = cfg.layer_norm_eps as f32;
        let State {
            ws, profiler, tuner, ..
        } = &mut *guard;
        let cap = grown_capacity(ws.sizes.tokens, n);
        if cap != ws.sizes.tokens {
            // Free the big buffers before allocating the larger ones; when the larger ones do not
            // fit, get the old size back (best effort) so the split halves of the batch that
            // `forward_split_on_oom` retries do not each pay a reallocation.
            let old_cap = ws.sizes.tokens;
            *ws = Workspace::new(gpu, 1, h, inter)?;
            match Workspace::new(gpu, cap, h, inter) {
                Ok(bigger) => *ws = bigger,
                Err(e) => {
                    if let Ok(old) = Workspace::new(gpu, old_cap, h, inter) {
                        *ws = old;
                    }
                    return Err(e);
                }
            }
        }
        let mut pass = Pass {
            gpu,
            profiler: profiler.as_mut(),
            tuner: tuner.as_mut(),
            quiet: false,
            tuned: false,
        };
        if let Some(p) = pass.profiler.as_deref_mut() {
            p.begin(gpu.stream())?;
        }

        // One host→device copy for the batch: token_ids ++ positions ++ cu_seqlens.
        ws.host_inputs.clear();
        ws.host_inputs.extend_from_slice(&batch.token_ids);
        ws.host_inputs.extend_from_slice(&batch.positions);
        ws.host_inputs.extend_from_slice(&batch.cu_seqlens);
        gpu.upload_into(&ws.host_inputs, &mut ws.inputs)?;
        gpu.stream()
            .memset_zeros(&mut ws.error_flag)
            .device(|| "clearing the error flag".into())?;
        pass.mark(Op::HostToDevice)?;

        let Workspace {
            x,
            qkv,
            ctx,
            proj,
            ug,
            act,
            inputs,
            logits,
            error_flag,
            ..
        } = ws;
        let w = &self.weights;
        let ids = inputs.slice(0..n);
        let pos = inputs.slice(n..2 * n);
        let cu = inputs.slice(2 * n..2 * n + s + 1);

        gpu.embedding_layernorm(
            &ids,
            &w.word,
            w.type_row.as_ref().map(|t| t.as_view()).as_ref(),
            &w.emb_g,
            &w.emb_b,
            &mut x.slice_mut(0..n * h),
            n,
            h,
            cfg.vocab_size,
            eps,
            Some(&mut error_flag.as_view_mut()),
        )?;
        pass.mark(Op::Embedding)?;

        let n_layers = w.layers.len();
        let mut cls_only = false;
        for (l, lw) in w.layers.iter().enumerate() {
            let last = l + 1 == n_layers;
            pass.linear(
                GemmKind::Qkv,
                &x.slice(0..n * h),
                &lw.qkv_w,
                &mut qkv.slice_mut(0..n * 3 * h),
                n,
                h,
                3 * h,
            )?;
            pass.mark(Op::QkvGemm)?;
            gpu.qkv_bias_rope(
                &mut qkv.slice_mut(0..n * 3 * h),
                Some(&lw.qkv_b.as_view()),
                &pos,
                &w.inv_freq,
                n,
                h,
                d,
            )?;
            pass.mark(Op::QkvBiasRope)?;
            if last && self.attention == AttentionPath::Flash {
                // Keys and values of every token, the query, o_proj and MLP of CLS rows only.
                cls_only = true;
                gpu.attention_cls(&qkv.slice(0..n * 3 * h), &mut ctx.slice_mut(0..s * h), &cu, s, n, heads)?;
                pass.mark(Op::ClsAttention)?;
                // The rest of the last layer is timed as one op.
                pass.quiet = true;
                pass.linear(
                    GemmKind::OProj,
                    &ctx.slice(0..s * h),
                    &lw.o_w,
                    &mut proj.slice_mut(0..s * h),
                    s,
                    h,
                    h,
                )?;
                // Compact CLS rows into ctx (its attention output was consumed by o_proj).
                gpu.bias_residual_layernorm_rows(
                    &x.slice(0..n * h),
                    &cu,
                    n - 1,
                    &proj.slice(0..s * h),
                    Some(&lw.o_b.as_view()),
                    &lw.attn_g,
                    &lw.attn_b,
                    &mut ctx.slice_mut(0..s * h),
                    s,
                    h,
                    eps,
                )?;
                self.mlp(&mut pass, lw, ctx, proj, ug, act, s)?;
                pass.quiet = false;
                pass.mark(Op::ClsRows)?;
            } else {
                match self.attention {
                    AttentionPath::Flash => gpu.attention_flash(
                        &qkv.slice(0..n * 3 * h),
                        &mut ctx.slice_mut(0..n * h),
                        &cu,
                        s,
                        n,
                        batch.max_seqlen,
                        heads,
                    )?,
                    AttentionPath::Reference => gpu.attention_reference(
                        &qkv.slice(0..n * 3 * h),
                        &mut ctx.slice_mut(0..n * h),
                        &cu,
                        s,
                        n,
                        heads,
                        d,
                    )?,
                }
                pass.mark(Op::Attention)?;
                pass.linear(
                    GemmKind::OProj,
                    &ctx.slice(0..n * h),
                    &lw.o_w,
                    &mut proj.slice_mut(0..n * h),
                    n,
                    h,
                    h,
                )?;
                pass.mark(Op::OProjGemm)?;
                gpu.bias_residual_layernorm(
                    &mut x.slice_mut(0..n * h),
                    &proj.slice(0..n * h),
                    Some(&lw.o_b.as_view()),
                    &lw.attn_g,
                    &lw.attn_b,
                    n,
                    h,
                    eps,
                )?;
                pass.mark(Op::AttnLayerNorm)?;
                self.mlp(&mut pass, lw, x, proj, ug, act, n)?;
            }
        }

        // Pooler + classifier in fp32 on the CLS rows: compact rows of ctx after the CLS-only
        // last layer, else row cu_seqlens[s] of x.
        let (head_x, head_rows, cls_rows) = if cls_only {
            (&*ctx, s, None)
        } else {
            (&*x, n, Some(&cu))
        };
        gpu.cls_pooler_classifier(
            &head_x.slice(0..head_rows * h),
            head_rows,
            cls_rows,
            Some((&w.pool_w.as_view(), &w.pool_b.as_view())),
            &w.cls_w,
            Some(&w.cls_b.as_view()),
            0,
            Some(&mut logits.slice_mut(0..s)),
            None,
            s,
            h,
        )?;
        pass.mark(Op::Head)?;
        // Both copies, then one synchronization (which also surfaces kernel faults).
        let mut out = vec![0.0f32; s];
        gpu.copy_to_host(&logits.slice(0..s), &mut out)?;
        let mut flag = [0i32];
        gpu.copy_to_host(&*error_flag, &mut flag)?;
        pass.mark(Op::DeviceToHost)?;
        let tuned = pass.tuned;
        gpu.synchronize()?;
        if let Some(p) = profiler.as_mut() {
            if tuned {
                p.discard();
            } else {
                p.finish()?;
            }
            if let Some(t) = tuner.as_ref() {
                p.totals_mut()
                    .set_extra("gemm_autotune_wall", t.tunings, t.tune_seconds);
            }
        }
        if flag[0] != 0 {
            let bad = batch.token_ids.iter().find(|&&id| id as usize >= cfg.vocab_size);
            return Err(Error::InvalidArgument(match bad {
                Some(id) => format!("token id {id} is outside the embedding table ({} rows)", cfg.vocab_size),
                None => "the embedding kernel reported an out-of-range token id".into(),
            }));
        }
        Ok(out)
    }

    /// `rows` of `x` ← LN(x + down(gelu(up_gate(x))) + b_down), in place.
    #[allow(clippy::too_many_arguments)]
    fn mlp(
        &self,
        pass: &mut Pass<'_>,
        lw: &LayerWeights,
        x: &mut CudaSlice<f16>,
        proj: &mut CudaSlice<f16>,
        ug: &mut CudaSlice<f16>,
        act: &mut CudaSlice<f16>,
        rows: usize,
    ) -> Result<()> {
        let gpu = &*self.gpu;
        let (h, inter) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let eps = self.cfg.layer_norm_eps as f32;
        pass.linear(
            GemmKind::UpGate,
            &x.slice(0..rows * h),
            &lw.ug_w,
            &mut ug.slice_mut(0..rows * 2 * inter),
            rows,
            h,
            2 * inter,
        )?;
        pass.mark(Op::UpGateGemm)?;
        gpu.gated_gelu(
            &ug.slice(0..rows * 2 * inter),
            &mut act.slice_mut(0..rows * inter),
            rows,
            inter,
        )?;
        pass.mark(Op::GatedGelu)?;
        pass.linear(
            GemmKind::Down,
            &act.slice(0..rows * inter),
            &lw.down_w,
            &mut proj.slice_mut(0..rows * h),
            rows,
            inter,
            h,
        )?;
        pass.mark(Op::DownGemm)?;
        gpu.bias_residual_layernorm(
            &mut x.slice_mut(0..rows * h),
            &proj.slice(0..rows * h),
            Some(&lw.down_b.as_view()),
            &lw.mlp_g,
            &lw.mlp_b,
            rows,
            h,
            eps,
        )?;
        pass.mark(Op::MlpLayerNorm)
    }
}

impl Backend for GpuModel {
    fn describe(&self) -> String {
        let info = self.gpu.info();
        let mut extra = String::new();
        if let Ok(state) = self.state.lock() {
            if state.profiler.is_some() {
                extra.push_str("; profiling");
            }
            if let Some(t) = &state.tuner {
                extra.push_str(&format!("; GEMM autotune: {}", t.summary()));
            }
            if let Some(note) = &state.tune_note {
                extra.push_str(&format!("; {note}"));
            }
        }
        format!(
            "{} (fp16, {} attention, kernels {} {}{extra})",
            info.describe(),
            match self.attention {
                AttentionPath::Flash => "flash",
                AttentionPath::Reference => "reference",
            },
            info.kernels.name(),
            kernels::generated::KERNEL_ARCH
        )
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        if batch.num_seqs() == 0 {
            return Ok(Vec::new());
        }
        self.forward_batch(batch)
    }

    fn default_batch_tokens(&self) -> usize {
        self.batch_tokens
    }

    /// Per-op profiling on or off (what `CROSSRANK_PROFILE=1` does at load). Off drops the
    /// totals; on when already on keeps them.
    fn set_profiling(&self, on: bool) -> Result<()> {
        self.state()?.set_profiling(&self.gpu, on);
        Ok(())
    }

    fn profile_report(&self) -> Option<ProfileReport> {
        let state = self.state.lock().ok()?;
        state.profiler.as_ref().map(Profiler::report)
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
