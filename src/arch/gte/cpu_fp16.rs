//! The gte reranker's fp16 twin of the CUDA forward on the CPU (`--precision fp16`), built
//! from the shared fp16 ops in [`crate::model::cpu_fp16::ops16`]; see that module for the
//! rounding points.

use std::sync::Arc;

use half::f16;

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::cpu::{ops, RopeTable};
use crate::model::cpu_fp16::{
    ops16, AttentionModel, Fp16Options, Mutation, SumOrder, FLASH_KEY_TILE, FP32_KEY_CHUNK, WRONG_LAYER_NORM_EPS,
};
use crate::model::Backend;
use crate::weights::{LayerParam, ModelTensors, Param};

struct Layer16 {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    attn_norm_w: Vec<f32>,
    attn_norm_b: Vec<f32>,
    up_gate_w: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    mlp_norm_w: Vec<f32>,
    mlp_norm_b: Vec<f32>,
}

/// The fp16 twin of the CUDA model on the CPU.
pub struct Fp16CpuModel {
    tensors: Arc<ModelTensors>,
    options: Fp16Options,
    type_row16: Option<Vec<f32>>,
    emb_norm_w: Vec<f32>,
    emb_norm_b: Vec<f32>,
    layers: Vec<Layer16>,
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    classifier_w: Vec<f32>,
    classifier_b: f32,
    rope: RopeTable,
    pool: rayon::ThreadPool,
    threads: usize,
}

/// A tensor as the device holds it in fp16 (`Uploader::f16`: the same `read_f16`
/// conversion), widened back to f32.
fn fp16_of(tensors: &ModelTensors, p: Param) -> Result<Vec<f32>> {
    Ok(tensors.get(p)?.to_f16().into_iter().map(f16::to_f32).collect())
}

impl Fp16CpuModel {
    pub fn new(tensors: Arc<ModelTensors>, options: Fp16Options) -> Result<Self> {
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        let cfg = tensors.config.clone();
        let f32_of = |p: Param| -> Result<Vec<f32>> { Ok(tensors.get(p)?.to_f32()) };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |lp: LayerParam| Param::Layer(l, lp);
            layers.push(Layer16 {
                qkv_w: fp16_of(&tensors, p(LayerParam::QkvWeight))?,
                qkv_b: f32_of(p(LayerParam::QkvBias))?,
                out_w: fp16_of(&tensors, p(LayerParam::OutWeight))?,
                out_b: f32_of(p(LayerParam::OutBias))?,
                attn_norm_w: f32_of(p(LayerParam::AttnNormWeight))?,
                attn_norm_b: f32_of(p(LayerParam::AttnNormBias))?,
                up_gate_w: fp16_of(&tensors, p(LayerParam::UpGateWeight))?,
                down_w: fp16_of(&tensors, p(LayerParam::DownWeight))?,
                down_b: f32_of(p(LayerParam::DownBias))?,
                mlp_norm_w: f32_of(p(LayerParam::MlpNormWeight))?,
                mlp_norm_b: f32_of(p(LayerParam::MlpNormBias))?,
            });
        }
        tensors.get(Param::WordEmbeddings)?;
        let type_row16 = if cfg.type_vocab_size > 0 {
            let mut row = vec![f16::ZERO; cfg.hidden_size];
            tensors.get(Param::TypeEmbeddings)?.read_f16(0, &mut row);
            Some(row.into_iter().map(f16::to_f32).collect())
        } else {
            None
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("crossrank-cpu16-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start CPU threads: {e}")))?;
        // One extra position so the off-by-one mutation stays in bounds.
        let positions = cfg.max_position_embeddings + usize::from(options.mutation == Mutation::RopePositionOffByOne);
        Ok(Fp16CpuModel {
            type_row16,
            emb_norm_w: f32_of(Param::EmbeddingNormWeight)?,
            emb_norm_b: f32_of(Param::EmbeddingNormBias)?,
            layers,
            pooler_w: f32_of(Param::PoolerWeight)?,
            pooler_b: f32_of(Param::PoolerBias)?,
            classifier_w: f32_of(Param::ClassifierWeight)?,
            classifier_b: f32_of(Param::ClassifierBias)?[0],
            rope: RopeTable::with_fp32_angles(&cfg.inv_freq(), positions),
            pool,
            threads,
            options,
            tensors,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.tensors.config
    }

    pub fn options(&self) -> &Fp16Options {
        &self.options
    }

    fn eps(&self) -> f32 {
        match self.options.mutation {
            Mutation::WrongLayerNormEps => WRONG_LAYER_NORM_EPS,
            _ => self.config().layer_norm_eps as f32, // the kernels take eps as f32
        }
    }

    fn attention_numerics(&self, cls_layer: bool) -> ops16::AttentionNumerics {
        let flash = !cls_layer && self.options.attention == AttentionModel::Flash;
        ops16::AttentionNumerics {
            key_tile: if flash { FLASH_KEY_TILE } else { FP32_KEY_CHUNK },
            round_p: flash,
            skip_last_tile: flash && self.options.mutation == Mutation::SkippedLastKeyTile,
            order: self.options.sum_order,
        }
    }

    fn zero_last_head(&self, ctx: &mut [f32]) {
        if self.options.mutation == Mutation::ZeroedLastHead {
            let (h, d) = (self.config().hidden_size, self.config().head_dim);
            for row in ctx.chunks_mut(h) {
                row[h - d..].fill(0.0);
            }
        }
    }

    /// GPU `forward_batch` o_proj → residual LN, then `GpuModel::mlp`, on the rows of `x`.
    fn attention_output_and_mlp(&self, layer: &Layer16, x: &mut [f32], ctx: &[f32]) {
        let cfg = self.config();
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let (eps, order, threads) = (self.eps(), self.options.sum_order, self.threads);
        let rows = x.len() / h;
        let mut projected = vec![0.0; rows * h];
        ops16::linear(ctx, &layer.out_w, h, &mut projected, threads, order);
        let out_bias = (self.options.mutation != Mutation::DroppedOutBias).then_some(&layer.out_b[..]);
        ops16::bias_residual_layernorm(
            x,
            &projected,
            out_bias,
            &layer.attn_norm_w,
            &layer.attn_norm_b,
            eps,
            order,
        );
        let mut up_gate = vec![0.0; rows * 2 * inter];
        ops16::linear(x, &layer.up_gate_w, h, &mut up_gate, threads, order);
        let mut activated = vec![0.0; rows * inter];
        ops16::gated_gelu(&up_gate, inter, &mut activated);
        drop(up_gate);
        ops16::linear(&activated, &layer.down_w, inter, &mut projected, threads, order);
        ops16::bias_residual_layernorm(
            x,
            &projected,
            Some(&layer.down_b),
            &layer.mlp_norm_w,
            &layer.mlp_norm_b,
            eps,
            order,
        );
    }

    fn forward_in_pool(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let cfg = self.config();
        let (h, heads, d) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim);
        let (n, n_seqs) = (batch.num_tokens(), batch.num_seqs());
        if let Some(&id) = batch.token_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {id} is outside the embedding table ({} rows)",
                cfg.vocab_size
            )));
        }
        if batch.max_seqlen > cfg.max_position_embeddings {
            return Err(Error::InvalidArgument(format!(
                "sequence of {} tokens exceeds max_position_embeddings ({})",
                batch.max_seqlen, cfg.max_position_embeddings
            )));
        }
        if (0..n_seqs).any(|s| batch.seq_range(s).is_empty()) {
            return Err(Error::InvalidArgument("empty sequence in batch".into()));
        }
        let order = self.options.sum_order;

        let word = self.tensors.get(Param::WordEmbeddings)?;
        let mut x = vec![0.0f32; n * h];
        ops16::embedding_layernorm(
            |id, dst| {
                let mut row16 = vec![f16::ZERO; h];
                word.read_f16(id * h, &mut row16);
                for (o, v) in dst.iter_mut().zip(row16) {
                    *o = v.to_f32();
                }
            },
            self.type_row16.as_deref(),
            &batch.token_ids,
            &self.emb_norm_w,
            &self.emb_norm_b,
            self.eps(),
            order,
            &mut x,
        );

        let shift = usize::from(self.options.mutation == Mutation::RopePositionOffByOne);
        let mut qkv = vec![0.0f32; n * 3 * h];
        let mut ctx = vec![0.0f32; n * h];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            ops16::linear(&x, &layer.qkv_w, h, &mut qkv, self.threads, order);
            ops16::qkv_bias_rope(&mut qkv, &layer.qkv_b, &batch.positions, &self.rope, heads, d, shift);
            if l == last {
                // attention_varlen_cls, then o_proj, the residual LN and the MLP on CLS rows.
                let num = self.attention_numerics(true);
                let mut cls_ctx = vec![0.0f32; n_seqs * h];
                ops16::attention(&qkv, &batch.cu_seqlens, heads, d, true, &num, &mut cls_ctx);
                self.zero_last_head(&mut cls_ctx);
                x = cu_first_rows(&x, &batch.cu_seqlens, h);
                self.attention_output_and_mlp(layer, &mut x, &cls_ctx);
            } else {
                let num = self.attention_numerics(false);
                ops16::attention(&qkv, &batch.cu_seqlens, heads, d, false, &num, &mut ctx);
                self.zero_last_head(&mut ctx);
                self.attention_output_and_mlp(layer, &mut x, &ctx);
            }
        }
        // cls_pooler_classifier (head.cu): fp32 pooler and classifier on the fp16 CLS rows.
        Ok(ops::cls_pooler_classifier(
            &x,
            &self.pooler_w,
            &self.pooler_b,
            &self.classifier_w,
            self.classifier_b,
            self.threads,
        ))
    }
}

/// The first row of each sequence (its CLS token), `[n_seqs, h]`.
fn cu_first_rows(x: &[f32], cu_seqlens: &[u32], h: usize) -> Vec<f32> {
    cu_seqlens[..cu_seqlens.len() - 1]
        .iter()
        .flat_map(|&start| &x[start as usize * h..(start as usize + 1) * h])
        .copied()
        .collect()
}

impl Backend for Fp16CpuModel {
    fn describe(&self) -> String {
        let attention = match self.options.attention {
            AttentionModel::Flash => "flash",
            AttentionModel::Reference => "reference",
        };
        let mut extra = String::new();
        if self.options.mutation != Mutation::None {
            extra += &format!(", MUTATED: {:?}", self.options.mutation);
        }
        if self.options.sum_order != SumOrder::Default {
            extra += &format!(", summation order {:?}", self.options.sum_order);
        }
        format!(
            "cpu (fp16 twin of the CUDA path, {attention} attention, {} threads{extra})",
            self.threads
        )
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        if batch.num_seqs() == 0 {
            return Ok(Vec::new());
        }
        self.pool.install(|| self.forward_in_pool(batch))
    }

    fn default_batch_tokens(&self) -> usize {
        4096
    }
}
