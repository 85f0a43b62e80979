//! [`AbsEncoderGpu`]: the absolute-position post-LN encoder of [`crate::arch::abs_encoder`]
//! (BERT, XLM-RoBERTa) on one CUDA device, built on the shared device plumbing of
//! [`crate::cuda::model`] and the launch wrappers of [`crate::cuda::kernels`]. The GPU
//! twin of `AbsEncoderModel`: it stores fp16 exactly where that model's fp16 twin rounds.
//! Compiles; not yet run on a GPU.
//!
//! Forward, one stream: the family's positions and the segment ids computed on the host
//! ([`pack_inputs`]) and uploaded with the ids and cu_seqlens in one copy →
//! embedding_abs_layernorm → per layer: GEMM qkv → add_bias_rows → attention → GEMM o_proj →
//! bias_residual_layernorm → GEMM up → bias_gelu (in place) → GEMM down →
//! bias_residual_layernorm. With flash attention the last layer computes only what the first
//! (CLS / `<s>`) rows need (attention_varlen_cls, then o_proj, the residual LayerNorm and the
//! MLP on `n_seqs` rows), as the CPU forward does; the reference path runs the last layer on
//! every row and the head reads the first rows through cu_seqlens (same per-row math). Then
//! cls_pooler_classifier (dense → tanh → 1 logit, fp32) and one copy of the logits.
//!
//! Weights: the four GEMM matrices (q/k/v packed as the CPU path packs them) and the word,
//! position and segment tables in fp16; biases, LayerNorm gamma/beta and the head in fp32.

use std::sync::{Arc, Mutex};

use cudarc::driver::CudaSlice;
use half::f16;

use crate::arch::abs_encoder::PositionRule;
use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::cuda::kernels::{self, EmbeddingTableRows, MAX_REFERENCE_HEAD_DIM};
use crate::cuda::model::{
    grown_capacity, validate_batch, AttentionPath, AttentionShape, AttentionWeights, GpuOptions, Pass, State, Uploader,
    Workspace, WorkspaceLayout, DEFAULT_BATCH_TOKENS,
};
use crate::cuda::profile::{self, Op, Profiler};
use crate::cuda::runtime::{self, DeviceResultExt, Gpu};
use crate::cuda::tune::{self, GemmKind};
use crate::error::{Error, Result};
use crate::model::{Backend, ProfileReport};
use crate::weights::{LayerParam, ModelTensors, Param};

/// Bits the embedding kernel sets in the error flag (embedding.cu v2).
const BAD_TOKEN_ID: i32 = 1;
const BAD_POSITION: i32 = 2;
const BAD_SEGMENT: i32 = 4;

/// Checks that the CUDA kernels support this encoder's shapes, before a context is opened.
/// Every refusal is an [`Error::Device`] naming what is unsupported, so `Device::Auto` runs
/// the model on the CPU instead.
pub fn check_gpu_shape(cfg: &ModelConfig) -> Result<()> {
    kernels::check_hidden("embedding_abs_layernorm", cfg.hidden_size)?;
    kernels::check_bias_width("add_bias_rows", 3 * cfg.hidden_size)?;
    kernels::check_bias_width("bias_gelu", cfg.intermediate_size)?;
    if cfg.head_dim == 0 || cfg.head_dim > MAX_REFERENCE_HEAD_DIM || cfg.num_heads * cfg.head_dim != cfg.hidden_size {
        return Err(Error::Device(format!(
            "{} heads of {} (hidden {}) are not supported by the CUDA attention kernels",
            cfg.num_heads, cfg.head_dim, cfg.hidden_size
        )));
    }
    if cfg.num_layers == 0 {
        return Err(Error::Device("a model without layers is not supported on CUDA".into()));
    }
    for (what, rows) in [
        ("vocab size", cfg.vocab_size),
        ("max_position_embeddings", cfg.max_position_embeddings),
        ("type_vocab_size", cfg.type_vocab_size),
    ] {
        if u32::try_from(rows).is_err() {
            return Err(Error::Device(format!(
                "{what} {rows} is too large for the CUDA kernels"
            )));
        }
    }
    Ok(())
}

/// Offsets of the arrays [`pack_inputs`] writes: `ids ++ positions ++ type_ids ++
/// cu_seqlens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLayout {
    pub tokens: usize,
    pub seqs: usize,
}

impl InputLayout {
    pub fn of(batch: &PackedBatch) -> Self {
        InputLayout {
            tokens: batch.num_tokens(),
            seqs: batch.num_seqs(),
        }
    }
    pub fn ids(&self) -> std::ops::Range<usize> {
        0..self.tokens
    }
    pub fn positions(&self) -> std::ops::Range<usize> {
        self.tokens..2 * self.tokens
    }
    pub fn type_ids(&self) -> std::ops::Range<usize> {
        2 * self.tokens..3 * self.tokens
    }
    pub fn cu_seqlens(&self) -> std::ops::Range<usize> {
        3 * self.tokens..3 * self.tokens + self.seqs + 1
    }
}

/// The batch's host-side inputs in one buffer (one host→device copy): token ids, the rows
/// of the position table the family's `rule` picks, the segment ids (`segments`: the
/// batch's `token_type_ids`, else row 0 for every token), cu_seqlens. A position or segment
/// id past its table is an [`Error::InvalidArgument`], as on the CPU.
pub fn pack_inputs(
    batch: &PackedBatch,
    cfg: &ModelConfig,
    rule: PositionRule,
    segments: bool,
    out: &mut Vec<u32>,
) -> Result<InputLayout> {
    let layout = InputLayout::of(batch);
    let positions = rule(batch, cfg);
    if positions.len() != layout.tokens || (segments && batch.token_type_ids.len() != layout.tokens) {
        return Err(Error::Internal("inconsistent packed batch".into()));
    }
    if let Some(&p) = positions.iter().find(|&&p| p as usize >= cfg.max_position_embeddings) {
        return Err(Error::InvalidArgument(format!(
            "position {p} is outside the position table ({} rows, max_position_embeddings)",
            cfg.max_position_embeddings
        )));
    }
    if segments {
        if let Some(&ty) = batch
            .token_type_ids
            .iter()
            .find(|&&t| t as usize >= cfg.type_vocab_size)
        {
            return Err(Error::InvalidArgument(format!(
                "segment id {ty} is outside the token-type table ({} rows)",
                cfg.type_vocab_size
            )));
        }
    }
    out.clear();
    out.extend_from_slice(&batch.token_ids);
    out.extend_from_slice(&positions);
    if segments {
        out.extend_from_slice(&batch.token_type_ids);
    } else {
        out.resize(3 * layout.tokens, 0);
    }
    out.extend_from_slice(&batch.cu_seqlens);
    Ok(layout)
}

/// What the embedding kernel's error flag says, for the error message.
fn embedding_error(flag: i32, batch: &PackedBatch, cfg: &ModelConfig) -> Error {
    if flag & BAD_TOKEN_ID != 0 {
        if let Some(id) = batch.token_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Error::InvalidArgument(format!(
                "token id {id} is outside the embedding table ({} rows)",
                cfg.vocab_size
            ));
        }
    }
    let what = [
        (BAD_TOKEN_ID, "token id"),
        (BAD_POSITION, "position"),
        (BAD_SEGMENT, "segment id"),
    ]
    .iter()
    .filter(|(bit, _)| flag & bit != 0)
    .map(|(_, w)| *w)
    .collect::<Vec<_>>()
    .join(", ");
    Error::InvalidArgument(format!(
        "the embedding kernel reported an out-of-range {what} (error flag {flag})"
    ))
}

struct LayerWeights {
    qkv_w: CudaSlice<f16>,
    qkv_b: CudaSlice<f32>,
    o_w: CudaSlice<f16>,
    o_b: CudaSlice<f32>,
    attn_g: CudaSlice<f32>,
    attn_b: CudaSlice<f32>,
    up_w: CudaSlice<f16>,
    up_b: CudaSlice<f32>,
    down_w: CudaSlice<f16>,
    down_b: CudaSlice<f32>,
    mlp_g: CudaSlice<f32>,
    mlp_b: CudaSlice<f32>,
}

struct Weights {
    word: CudaSlice<f16>,
    position: CudaSlice<f16>,
    segment: CudaSlice<f16>,
    emb_g: CudaSlice<f32>,
    emb_b: CudaSlice<f32>,
    layers: Vec<LayerWeights>,
    pool_w: CudaSlice<f32>,
    pool_b: CudaSlice<f32>,
    cls_w: CudaSlice<f32>,
    cls_b: CudaSlice<f32>,
}

impl Weights {
    /// Uploads every tensor once through one reusable staging buffer.
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
                up_w: up.f16(p(LayerParam::UpWeight))?,
                up_b: up.f32(p(LayerParam::UpBias))?,
                down_w: up.f16(p(LayerParam::DownWeight))?,
                down_b: up.f32(p(LayerParam::DownBias))?,
                mlp_g: up.f32(p(LayerParam::MlpNormWeight))?,
                mlp_b: up.f32(p(LayerParam::MlpNormBias))?,
            });
        }
        let weights = Weights {
            word: up.f16(Param::WordEmbeddings)?,
            position: up.f16(Param::PositionEmbeddings)?,
            segment: up.f16(Param::TypeEmbeddings)?,
            emb_g: up.f32(Param::EmbeddingNormWeight)?,
            emb_b: up.f32(Param::EmbeddingNormBias)?,
            layers,
            pool_w: up.f32(Param::PoolerWeight)?,
            pool_b: up.f32(Param::PoolerBias)?,
            cls_w: up.f32(Param::ClassifierWeight)?,
            cls_b: up.f32(Param::ClassifierBias)?,
        };
        Ok((weights, up.bytes))
    }
}

/// The absolute-position encoder on one CUDA device.
pub struct AbsEncoderGpu {
    gpu: Arc<Gpu>,
    cfg: ModelConfig,
    positions: PositionRule,
    segments: bool,
    weights: Weights,
    weight_bytes: usize,
    attention: AttentionPath,
    batch_tokens: usize,
    layout: WorkspaceLayout,
    state: Mutex<State>,
}

impl AbsEncoderGpu {
    /// Opens device `index` and uploads the model; `positions` is the family's position
    /// rule. Every failure is an [`Error::Device`] (out of memory included), so
    /// `Device::Auto` can fall back to the CPU.
    pub fn load(
        tensors: Arc<ModelTensors>,
        positions: PositionRule,
        index: usize,
        options: &GpuOptions,
    ) -> Result<Self> {
        // Shape support first: an unsupported model must not cost a context and an upload.
        check_gpu_shape(&tensors.config)?;
        options.attention.resolve(tensors.config.head_dim)?;
        let gpu = Gpu::new(index, options.kernels).map_err(runtime::load_error)?;
        Self::load_on(gpu, &tensors, positions, options)
    }

    /// Uploads the model onto an already opened device.
    pub fn load_on(
        gpu: Arc<Gpu>,
        tensors: &ModelTensors,
        positions: PositionRule,
        options: &GpuOptions,
    ) -> Result<Self> {
        Self::upload(gpu, tensors, positions, options).map_err(runtime::load_error)
    }

    fn upload(gpu: Arc<Gpu>, tensors: &ModelTensors, positions: PositionRule, options: &GpuOptions) -> Result<Self> {
        let cfg = tensors.config.clone();
        check_gpu_shape(&cfg)?;
        tensors.validate()?;
        let attention = options.attention.resolve(cfg.head_dim)?;
        // Read before anything is uploaded: a malformed value is an error, not a slow load.
        let profile = profile::profile_from_env()?;
        let tune = tune::tune_from_env()?;
        let batch_tokens = options.batch_tokens.unwrap_or(DEFAULT_BATCH_TOKENS).max(1);
        let (weights, weight_bytes) = Weights::upload(&gpu, tensors)?;
        let layout = WorkspaceLayout::plain_mlp(cfg.hidden_size, cfg.intermediate_size);
        let workspace = Workspace::for_layout(&gpu, grown_capacity(0, batch_tokens), layout)?;
        let mut state = State {
            ws: workspace,
            profiler: None,
            tuner: None,
            tune_note: None,
        };
        state.set_profiling(&gpu, profile);
        state.set_tuning(&gpu, tune);
        Ok(AbsEncoderGpu {
            gpu,
            segments: cfg.family.uses_segment_ids(&cfg),
            cfg,
            positions,
            weights,
            weight_bytes,
            attention,
            batch_tokens,
            layout,
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
        validate_batch(batch, cfg.max_sequence_length())?;
        let mut guard = self.state()?;
        let gpu = &*self.gpu;
        gpu.bind()?;
        let (n, s) = (batch.num_tokens(), batch.num_seqs());
        let (h, heads, d) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim);
        let eps = cfg.layer_norm_eps as f32;
        let State {
            ws, profiler, tuner, ..
        } = &mut *guard;
        // Growth first: a regrown workspace comes with a fresh host staging buffer.
        ws.ensure_capacity(gpu, n, self.layout)?;
        let io = pack_inputs(batch, cfg, self.positions, self.segments, &mut ws.host_inputs)?;
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
            inputs,
            logits,
            error_flag,
            ..
        } = ws;
        let w = &self.weights;
        let cu = inputs.slice(io.cu_seqlens());
        gpu.embedding_abs_layernorm(
            &inputs.slice(io.ids()),
            &inputs.slice(io.positions()),
            &inputs.slice(io.type_ids()),
            &w.word,
            &w.position,
            &w.segment,
            &w.emb_g,
            &w.emb_b,
            &mut x.slice_mut(0..n * h),
            n,
            h,
            EmbeddingTableRows {
                vocab: cfg.vocab_size,
                positions: cfg.max_position_embeddings,
                types: cfg.type_vocab_size,
            },
            eps,
            Some(&mut error_flag.as_view_mut()),
        )?;
        pass.mark(Op::Embedding)?;

        let shape = AttentionShape {
            tokens: n,
            seqs: s,
            max_seqlen: batch.max_seqlen,
            heads,
            head_dim: d,
            eps,
        };
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
            gpu.add_bias_rows(&mut qkv.slice_mut(0..n * 3 * h), &lw.qkv_b, n, 3 * h)?;
            pass.mark(Op::QkvBias)?;
            let rows_only = pass.attention_sublayer(
                self.attention,
                last,
                qkv,
                x,
                ctx,
                proj,
                &cu,
                &AttentionWeights {
                    o_w: &lw.o_w,
                    o_b: &lw.o_b,
                    ln_g: &lw.attn_g,
                    ln_b: &lw.attn_b,
                },
                &shape,
            )?;
            if rows_only {
                // The MLP and the head on the first rows only, as the CPU forward.
                cls_only = true;
                self.mlp(&mut pass, lw, ctx, proj, ug, s)?;
                pass.quiet = false;
                pass.mark(Op::ClsRows)?;
            } else {
                self.mlp(&mut pass, lw, x, proj, ug, n)?;
            }
        }

        // dense -> tanh -> 1 logit in fp32 on the first rows: compact rows of ctx after the
        // CLS-only last layer, else row cu_seqlens[s] of x.
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
            return Err(embedding_error(flag[0], batch, cfg));
        }
        Ok(out)
    }

    /// `rows` of `x` ← LN(x + down(gelu(up(x) + b_up)) + b_down), in place; the GELU is
    /// applied in place on the up GEMM's output in `ug`.
    fn mlp(
        &self,
        pass: &mut Pass<'_>,
        lw: &LayerWeights,
        x: &mut CudaSlice<f16>,
        proj: &mut CudaSlice<f16>,
        ug: &mut CudaSlice<f16>,
        rows: usize,
    ) -> Result<()> {
        let gpu = &*self.gpu;
        let (h, inter) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let eps = self.cfg.layer_norm_eps as f32;
        pass.linear(
            GemmKind::Up,
            &x.slice(0..rows * h),
            &lw.up_w,
            &mut ug.slice_mut(0..rows * inter),
            rows,
            h,
            inter,
        )?;
        pass.mark(Op::UpGemm)?;
        gpu.bias_gelu(&mut ug.slice_mut(0..rows * inter), &lw.up_b, rows, inter)?;
        pass.mark(Op::BiasGelu)?;
        pass.linear(
            GemmKind::Down,
            &ug.slice(0..rows * inter),
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

impl Backend for AbsEncoderGpu {
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
            "{} (fp16, {} family, {} attention, kernels {} {}{extra})",
            info.describe(),
            self.cfg.family.name(),
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
    use crate::arch::{bert, xlm_roberta};

    fn config(json: &str) -> ModelConfig {
        ModelConfig::from_json_str(json, std::path::Path::new("config.json")).unwrap()
    }

    fn xlmr(hidden: usize, heads: usize, inter: usize) -> ModelConfig {
        config(&format!(
            r#"{{"model_type": "xlm-roberta", "vocab_size": 50, "hidden_size": {hidden}, "num_hidden_layers": 2,
                "num_attention_heads": {heads}, "intermediate_size": {inter}, "max_position_embeddings": 20,
                "type_vocab_size": 1, "pad_token_id": 1}}"#
        ))
    }

    fn bert_cfg() -> ModelConfig {
        config(
            r#"{"model_type": "bert", "vocab_size": 50, "hidden_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 72, "max_position_embeddings": 16,
                "type_vocab_size": 2}"#,
        )
    }

    #[test]
    fn xlmr_inputs_carry_the_family_positions_and_segment_row_zero() {
        let cfg = xlmr(128, 2, 160);
        let batch = PackedBatch::from_sequences([&[0u32, 5, 1, 6, 2][..], &[0, 7, 2][..]]);
        let mut out = vec![99; 3];
        let io = pack_inputs(&batch, &cfg, xlm_roberta::positions, false, &mut out).unwrap();
        assert_eq!(io, InputLayout { tokens: 8, seqs: 2 });
        assert_eq!(&out[io.ids()], &batch.token_ids[..]);
        // padding_idx + 1 onward; the pad id inside the text keeps padding_idx (1).
        assert_eq!(&out[io.positions()], &[2, 3, 1, 4, 5, 2, 3, 4]);
        assert_eq!(&out[io.type_ids()], &[0; 8]);
        assert_eq!(&out[io.cu_seqlens()], &[0, 5, 8]);
        assert_eq!(out.len(), io.cu_seqlens().end);
        // The buffer fits the plain-MLP workspace's inputs for a capacity of 8 tokens.
        let sizes = crate::cuda::model::WorkspaceSizes::for_layout(8, WorkspaceLayout::plain_mlp(128, 160));
        assert!(out.len() <= sizes.inputs);
    }

    #[test]
    fn bert_inputs_carry_positions_from_zero_and_the_segment_ids() {
        let cfg = bert_cfg();
        let mut batch = PackedBatch::new();
        batch.push_typed(&[101, 7, 102, 8, 9, 102], &[0, 0, 0, 1, 1, 1]);
        batch.push_typed(&[101, 102, 4, 102], &[0, 0, 1, 1]);
        let mut out = Vec::new();
        let io = pack_inputs(&batch, &cfg, bert::positions, true, &mut out).unwrap();
        assert_eq!(&out[io.positions()], &[0, 1, 2, 3, 4, 5, 0, 1, 2, 3]);
        assert_eq!(&out[io.type_ids()], &[0, 0, 0, 1, 1, 1, 0, 0, 1, 1]);
        assert_eq!(&out[io.cu_seqlens()], &[0, 6, 10]);
        // Segment ids are ignored where the family does not read them.
        pack_inputs(&batch, &cfg, bert::positions, false, &mut out).unwrap();
        assert_eq!(&out[io.type_ids()], &[0; 10]);
    }

    #[test]
    fn out_of_table_positions_and_segments_are_errors() {
        let cfg = bert_cfg();
        let mut batch = PackedBatch::new();
        batch.push_typed(&[1, 2, 3], &[0, 2, 1]);
        let err = pack_inputs(&batch, &cfg, bert::positions, true, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("segment id 2")),
            "{err}"
        );
        let long: Vec<u32> = (0..17).collect();
        let batch = PackedBatch::from_sequences([&long[..]]);
        let err = pack_inputs(&batch, &cfg, bert::positions, false, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("position 16") && m.contains("16 rows")),
            "{err}"
        );
    }

    #[test]
    fn embedding_errors_name_what_was_out_of_range() {
        let cfg = bert_cfg();
        let batch = PackedBatch::from_sequences([&[1u32, 70, 2][..]]);
        let msg = embedding_error(BAD_TOKEN_ID, &batch, &cfg).to_string();
        assert!(msg.contains("token id 70") && msg.contains("50 rows"), "{msg}");
        let msg = embedding_error(BAD_POSITION | BAD_SEGMENT, &batch, &cfg).to_string();
        assert!(msg.contains("position, segment id"), "{msg}");
    }

    /// Without a usable GPU, loading either family on CUDA is a device error (which
    /// `Device::Auto` turns into the CPU fallback), never another kind of failure.
    #[test]
    fn load_cuda_is_a_device_error_or_a_model() {
        for name in ["bert-tiny", "xlmr-tiny"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name);
            let files = crate::engine::ModelFiles::open(&dir, None).unwrap();
            let family = files.config.family;
            match family.load_cuda(Arc::clone(&files.tensors), 0, &GpuOptions::default()) {
                Ok(m) => assert!(m.describe().contains(family.name()), "{}", m.describe()),
                Err(Error::Device(msg)) => assert!(!msg.is_empty()),
                Err(other) => panic!("{name}: load_cuda failed with a non-device error: {other}"),
            }
        }
    }

    #[test]
    fn shapes_the_kernels_support() {
        // The fixtures (hidden 128 / 2 heads of 64 / MLP 160; hidden 96 / 3 of 32 / 200),
        // MiniLM (384 / 12 of 32 / 1536) and bge-reranker-v2-m3 (1024 / 16 of 64 / 4096).
        for (h, heads, inter) in [(128, 2, 160), (96, 3, 200), (384, 12, 1536), (1024, 16, 4096)] {
            check_gpu_shape(&xlmr(h, heads, inter)).unwrap();
        }
        // An intermediate size the bias kernels cannot take: a device error naming it.
        let err = check_gpu_shape(&xlmr(128, 2, 164)).unwrap_err();
        assert!(
            matches!(&err, Error::Device(m) if m.contains("bias_gelu") && m.contains("164")),
            "{err}"
        );
        check_gpu_shape(&bert_cfg()).unwrap();
    }

    /// The fp16 twin follows the GPU's attention choice at head_dim 32 (flash, as at 64).
    #[test]
    fn the_twin_models_flash_attention_at_head_dim_32() {
        use crate::cuda::AttentionChoice;
        use crate::model::cpu_fp16::{AttentionModel, Fp16Options};
        let bert = bert_cfg();
        assert_eq!(bert.head_dim, 32);
        assert_eq!(Fp16Options::like_gpu(&bert, 1).attention, AttentionModel::Flash);
        assert_eq!(
            AttentionModel::like_gpu(AttentionChoice::Reference, 32),
            AttentionModel::Reference
        );
        assert_eq!(
            AttentionChoice::Auto.resolve(bert.head_dim).unwrap(),
            AttentionPath::Flash
        );
    }
}
