//! The gte reranker's CPU reference forward pass, in plain f32 (spec §3), built from the
//! shared ops in [`crate::model::cpu::ops`].

use std::sync::Arc;

use crate::batch::PackedBatch;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::cpu::{gather_first_rows, ops, word_row, RopeTable};
use crate::model::Backend;
use crate::weights::{LayerParam, ModelTensors, Param};

struct CpuLayer {
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

/// The reference model: weights converted to f32 once, the word-embedding table read row by
/// row from the memory map.
pub struct CpuModel {
    tensors: Arc<ModelTensors>,
    type_row: Option<Vec<f32>>,
    emb_norm_w: Vec<f32>,
    emb_norm_b: Vec<f32>,
    layers: Vec<CpuLayer>,
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    classifier_w: Vec<f32>,
    classifier_b: f32,
    rope: RopeTable,
    pool: rayon::ThreadPool,
    threads: usize,
    /// Run the last layer on CLS rows only (exact; see [`ops::attention_cls`]).
    pub cls_only_last_layer: bool,
}

impl CpuModel {
    /// `threads` = 0 uses every core.
    pub fn new(tensors: Arc<ModelTensors>, threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let cfg = tensors.config.clone();
        let f32_of = |p: Param| -> Result<Vec<f32>> { Ok(tensors.get(p)?.to_f32()) };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let lp = |p: LayerParam| f32_of(Param::Layer(l, p));
            layers.push(CpuLayer {
                qkv_w: lp(LayerParam::QkvWeight)?,
                qkv_b: lp(LayerParam::QkvBias)?,
                out_w: lp(LayerParam::OutWeight)?,
                out_b: lp(LayerParam::OutBias)?,
                attn_norm_w: lp(LayerParam::AttnNormWeight)?,
                attn_norm_b: lp(LayerParam::AttnNormBias)?,
                up_gate_w: lp(LayerParam::UpGateWeight)?,
                down_w: lp(LayerParam::DownWeight)?,
                down_b: lp(LayerParam::DownBias)?,
                mlp_norm_w: lp(LayerParam::MlpNormWeight)?,
                mlp_norm_b: lp(LayerParam::MlpNormBias)?,
            });
        }
        // Validates the embedding table's shape and dtype now rather than on the first batch.
        tensors.get(Param::WordEmbeddings)?;
        let type_row = if cfg.type_vocab_size > 0 {
            let mut row = vec![0.0; cfg.hidden_size];
            tensors.get(Param::TypeEmbeddings)?.read_f32(0, &mut row);
            Some(row)
        } else {
            None
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("crossrank-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start CPU threads: {e}")))?;
        Ok(CpuModel {
            type_row,
            emb_norm_w: f32_of(Param::EmbeddingNormWeight)?,
            emb_norm_b: f32_of(Param::EmbeddingNormBias)?,
            layers,
            pooler_w: f32_of(Param::PoolerWeight)?,
            pooler_b: f32_of(Param::PoolerBias)?,
            classifier_w: f32_of(Param::ClassifierWeight)?,
            classifier_b: f32_of(Param::ClassifierBias)?[0],
            rope: RopeTable::new(&cfg.inv_freq(), cfg.max_position_embeddings),
            pool,
            threads,
            cls_only_last_layer: true,
            tensors,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.tensors.config
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// o_proj + residual LN, then the gated MLP + residual LN, on `x` rows given the
    /// attention context of those rows.
    fn attention_output_and_mlp(&self, layer: &CpuLayer, x: &mut [f32], ctx: &[f32]) {
        let cfg = self.config();
        let (h, inter, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let rows = x.len() / h;
        let mut projected = vec![0.0; rows * h];
        ops::matmul_wt(ctx, &layer.out_w, h, &mut projected, self.threads);
        ops::bias_residual_layernorm(x, &projected, &layer.out_b, &layer.attn_norm_w, &layer.attn_norm_b, eps);
        let mut up_gate = vec![0.0; rows * 2 * inter];
        ops::matmul_wt(x, &layer.up_gate_w, h, &mut up_gate, self.threads);
        let mut activated = vec![0.0; rows * inter];
        ops::gated_gelu(&up_gate, inter, &mut activated);
        drop(up_gate);
        ops::matmul_wt(&activated, &layer.down_w, inter, &mut projected, self.threads);
        ops::bias_residual_layernorm(x, &projected, &layer.down_b, &layer.mlp_norm_w, &layer.mlp_norm_b, eps);
    }

    fn forward_in_pool(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let cfg = self.config();
        let (h, heads, d) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim);
        let n = batch.num_tokens();
        let n_seqs = batch.num_seqs();
        if let Some(&id) = batch.token_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {id} is outside the embedding table ({} rows)",
                cfg.vocab_size
            )));
        }
        if batch.max_seqlen > self.rope.positions() {
            return Err(Error::InvalidArgument(format!(
                "sequence of {} tokens exceeds max_position_embeddings ({})",
                batch.max_seqlen,
                self.rope.positions()
            )));
        }
        if (0..n_seqs).any(|s| batch.seq_range(s).is_empty()) {
            return Err(Error::InvalidArgument("empty sequence in batch".into()));
        }

        let word = self.tensors.get(Param::WordEmbeddings)?;
        let mut x = vec![0.0f32; n * h];
        ops::embedding_layernorm(
            |id, dst| word_row(&word, h, id, dst),
            self.type_row.as_deref(),
            &batch.token_ids,
            &self.emb_norm_w,
            &self.emb_norm_b,
            cfg.layer_norm_eps,
            &mut x,
        );

        let mut qkv = vec![0.0f32; n * 3 * h];
        let mut ctx = vec![0.0f32; n * h];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            ops::matmul_wt(&x, &layer.qkv_w, h, &mut qkv, self.threads);
            ops::qkv_bias_rope(&mut qkv, &layer.qkv_b, &batch.positions, &self.rope, heads, d);
            if l == last && self.cls_only_last_layer {
                // Keys and values of every token, but queries, o_proj and MLP only for CLS.
                let mut cls_ctx = vec![0.0f32; n_seqs * h];
                ops::attention_cls(&qkv, &batch.cu_seqlens, heads, d, &mut cls_ctx);
                x = gather_first_rows(&x, &batch.cu_seqlens, h);
                self.attention_output_and_mlp(layer, &mut x, &cls_ctx);
            } else {
                ops::attention(&qkv, &batch.cu_seqlens, heads, d, &mut ctx);
                self.attention_output_and_mlp(layer, &mut x, &ctx);
            }
        }
        let cls = if self.cls_only_last_layer {
            x
        } else {
            gather_first_rows(&x, &batch.cu_seqlens, h)
        };
        Ok(ops::cls_pooler_classifier(
            &cls,
            &self.pooler_w,
            &self.pooler_b,
            &self.classifier_w,
            self.classifier_b,
            self.threads,
        ))
    }
}

impl Backend for CpuModel {
    fn describe(&self) -> String {
        format!("cpu (f32, {} threads)", self.threads)
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
