//! [`GpuModel`]: the gte reranker on one CUDA device, built on the shared device plumbing of
//! [`crate::cuda::model`] (workspace, uploads, per-pass state) and the launch wrappers of
//! [`crate::cuda::kernels`]. Compiles; not yet run on a GPU.
//!
//! Forward (spec §3), one stream: upload ids/positions/cu_seqlens in one copy →
//! embedding_layernorm → per layer: GEMM qkv → qkv_bias_rope → attention → GEMM o_proj →
//! bias_residual_layernorm → GEMM up_gate → gated_gelu → GEMM down → bias_residual_layernorm.
//! The last layer computes only what the CLS rows need (attention_varlen_cls, then o_proj, the
//! residual LayerNorm and the MLP on `n_seqs` rows), then cls_pooler_classifier (fp32 head)
//! and one copy of the logits to the host.

use std::sync::{Arc, Mutex};

use cudarc::driver::CudaSlice;
use half::f16;

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::cuda::kernels;
use crate::cuda::model::{
    check_model_shape, grown_capacity, validate_batch, AttentionPath, AttentionShape, AttentionWeights, GpuOptions,
    Pass, State, Uploader, Workspace, WorkspaceLayout, DEFAULT_BATCH_TOKENS,
};
use crate::cuda::profile::{self, Op, Profiler};
use crate::cuda::runtime::{self, DeviceResultExt, Gpu};
use crate::cuda::tune::{self, GemmKind};
use crate::error::{Error, Result};
use crate::model::{Backend, ProfileReport};
use crate::weights::{LayerParam, ModelTensors, Param};

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
        ws.ensure_capacity(gpu, n, WorkspaceLayout::gated_mlp(h, inter))?;
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
                self.mlp(&mut pass, lw, ctx, proj, ug, act, s)?;
                pass.quiet = false;
                pass.mark(Op::ClsRows)?;
            } else {
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
