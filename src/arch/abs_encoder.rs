//! The post-LayerNorm encoder with learned absolute positions that BERT and XLM-RoBERTa
//! share: embeddings `LN(word + position + segment)`, per layer a packed QKV projection
//! (separate q/k/v stored, concatenated at load), attention, `LN(x + o_proj)`, a plain
//! erf-GELU MLP, `LN(x + down)`, and a `dense -> tanh -> 1 logit` head on the first token.
//!
//! The two families differ only in their tensor names (backbone prefix, head names), their
//! position rule and whether segment ids are read; each family folder passes those in
//! ([`Layout`], [`PositionRule`]) and keeps its config keys. One forward, written once, so a
//! fix to it is a fix to both. Built from the shared ops of [`crate::model::cpu::ops`] (f32
//! reference) and [`crate::model::cpu_fp16::ops16`] (the fp16 twin).

use std::sync::Arc;

use half::f16;

use crate::batch::PackedBatch;
use crate::bench::FlopModel;
use crate::config::{ConfigParser, ModelConfig};
use crate::error::{Error, Result};
use crate::model::cpu::{gather_first_rows, ops, word_row};
use crate::model::cpu_fp16::{
    ops16, round_f16, AttentionModel, Fp16Options, Mutation, SumOrder, FLASH_KEY_TILE, FP32_KEY_CHUNK,
};
use crate::model::{Backend, Precision};
use crate::weights::{Checkpoint, LayerParam, ModelTensors, NameScheme, Param};

/// Largest sizes the absolute-position families are verified for (issue 10: head dims 32
/// and 64, hidden up to 1024, 24 layers, 8,192 positions).
pub const HEAD_DIMS: [usize; 2] = [32, 64];
pub const MAX_HIDDEN: usize = 1024;
pub const MAX_LAYERS: usize = 24;
pub const MAX_POSITIONS: usize = 8192;
/// More segment types than any checkpoint of these families has (BERT: 2, XLM-R: 1).
pub const MAX_TYPE_VOCAB: usize = 16;

/// Where the family's tensors live.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Backbone prefixes to try, with their dot (`bert.`, `roberta.`), then none.
    pub prefixes: &'static [&'static str],
    /// Stored names of the head's dense layer (before tanh) and of the logit projection,
    /// without `.weight` / `.bias`; `{p}` is replaced by the backbone prefix.
    pub head_dense: &'static str,
    pub head_out: &'static str,
}

/// How a family numbers positions for its position table.
pub type PositionRule = fn(&PackedBatch, &ModelConfig) -> Vec<u32>;

/// Shared config checks: sizes the forward is verified for, absolute positions, at least one
/// segment type. Errors name the key.
pub fn check_config(p: &ConfigParser<'_>, c: &ModelConfig) -> Result<()> {
    if !HEAD_DIMS.contains(&c.head_dim) {
        return Err(p.err(format!(
            "unsupported head dimension {} (`hidden_size` {} / `num_attention_heads` {}): crossrank supports head dims {HEAD_DIMS:?} for the {} family",
            c.head_dim,
            c.hidden_size,
            c.num_heads,
            c.family.name()
        )));
    }
    for (key, v, max) in [
        ("hidden_size", c.hidden_size, MAX_HIDDEN),
        ("num_hidden_layers", c.num_layers, MAX_LAYERS),
    ] {
        if v > max {
            return Err(p.err(format!(
                "unsupported option `{key}` = {v}: crossrank supports at most {max} for the {} family",
                c.family.name()
            )));
        }
    }
    if c.type_vocab_size == 0 || c.type_vocab_size > MAX_TYPE_VOCAB {
        return Err(p.err(format!(
            "unsupported option `type_vocab_size` = {}: expected 1 to {MAX_TYPE_VOCAB} segment types",
            c.type_vocab_size
        )));
    }
    p.require_str(
        "position_embedding_type",
        &["absolute"],
        "only learned \"absolute\" positions are implemented for this family",
    )?;
    Ok(())
}

/// The positions a config allows, checked against [`MAX_POSITIONS`] (names the key).
pub fn check_positions(p: &ConfigParser<'_>, c: &ModelConfig) -> Result<()> {
    let usable = c.max_sequence_length();
    if usable == 0 || usable > MAX_POSITIONS {
        return Err(p.err(format!(
            "unsupported option `max_position_embeddings` = {}: {usable} usable positions, crossrank supports 1 to {MAX_POSITIONS}",
            c.max_position_embeddings
        )));
    }
    Ok(())
}

/// Backbone prefix of a checkpoint; separate q/k/v are always packed at load.
pub fn locate(layout: &Layout, ckpt: &Checkpoint, family: &str) -> Result<(String, NameScheme)> {
    let mut tried = Vec::new();
    for p in layout.prefixes.iter().copied().chain([""]) {
        let name = format!("{p}embeddings.word_embeddings.weight");
        if ckpt.contains(&name) {
            return Ok((p.to_string(), NameScheme::Native));
        }
        tried.push(name);
    }
    Err(Error::tensor(
        ckpt.file_of(&tried[0]),
        &tried[0],
        format!(
            "missing from the checkpoint (also looked for {}): is this a {family} checkpoint?",
            tried[1..]
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

pub fn stored_names(layout: &Layout, t: &ModelTensors, param: Param) -> Vec<String> {
    let p = &t.prefix;
    let one = |s: String| vec![s];
    let head = |name: &str, kind: &str| vec![format!("{}.{kind}", name.replace("{p}", p))];
    match param {
        Param::WordEmbeddings => one(format!("{p}embeddings.word_embeddings.weight")),
        Param::PositionEmbeddings => one(format!("{p}embeddings.position_embeddings.weight")),
        Param::TypeEmbeddings => one(format!("{p}embeddings.token_type_embeddings.weight")),
        Param::EmbeddingNormWeight => one(format!("{p}embeddings.LayerNorm.weight")),
        Param::EmbeddingNormBias => one(format!("{p}embeddings.LayerNorm.bias")),
        Param::PoolerWeight => head(layout.head_dense, "weight"),
        Param::PoolerBias => head(layout.head_dense, "bias"),
        Param::ClassifierWeight => head(layout.head_out, "weight"),
        Param::ClassifierBias => head(layout.head_out, "bias"),
        Param::Layer(i, lp) => {
            let l = format!("{p}encoder.layer.{i}.");
            let qkv = |kind: &str| {
                ["query", "key", "value"]
                    .iter()
                    .map(|x| format!("{l}attention.self.{x}.{kind}"))
                    .collect()
            };
            match lp {
                LayerParam::QkvWeight => qkv("weight"),
                LayerParam::QkvBias => qkv("bias"),
                LayerParam::OutWeight => one(format!("{l}attention.output.dense.weight")),
                LayerParam::OutBias => one(format!("{l}attention.output.dense.bias")),
                LayerParam::AttnNormWeight => one(format!("{l}attention.output.LayerNorm.weight")),
                LayerParam::AttnNormBias => one(format!("{l}attention.output.LayerNorm.bias")),
                LayerParam::UpWeight | LayerParam::UpGateWeight => one(format!("{l}intermediate.dense.weight")),
                LayerParam::UpBias => one(format!("{l}intermediate.dense.bias")),
                LayerParam::DownWeight => one(format!("{l}output.dense.weight")),
                LayerParam::DownBias => one(format!("{l}output.dense.bias")),
                LayerParam::MlpNormWeight => one(format!("{l}output.LayerNorm.weight")),
                LayerParam::MlpNormBias => one(format!("{l}output.LayerNorm.bias")),
            }
        }
    }
}

pub fn expected_shape(c: &ModelConfig, param: Param) -> Vec<usize> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    match param {
        Param::WordEmbeddings => vec![c.vocab_size, h],
        Param::PositionEmbeddings => vec![c.max_position_embeddings, h],
        Param::TypeEmbeddings => vec![c.type_vocab_size, h],
        Param::EmbeddingNormWeight | Param::EmbeddingNormBias | Param::PoolerBias => vec![h],
        Param::PoolerWeight => vec![h, h],
        Param::ClassifierWeight => vec![1, h],
        Param::ClassifierBias => vec![1],
        Param::Layer(_, lp) => match lp {
            LayerParam::QkvWeight => vec![3 * h, h],
            LayerParam::QkvBias => vec![3 * h],
            LayerParam::OutWeight => vec![h, h],
            LayerParam::UpWeight | LayerParam::UpGateWeight => vec![i, h],
            LayerParam::UpBias => vec![i],
            LayerParam::DownWeight => vec![h, i],
            LayerParam::OutBias
            | LayerParam::AttnNormWeight
            | LayerParam::AttnNormBias
            | LayerParam::DownBias
            | LayerParam::MlpNormWeight
            | LayerParam::MlpNormBias => vec![h],
        },
    }
}

const LAYER_PARAMS: [LayerParam; 12] = [
    LayerParam::QkvWeight,
    LayerParam::QkvBias,
    LayerParam::OutWeight,
    LayerParam::OutBias,
    LayerParam::AttnNormWeight,
    LayerParam::AttnNormBias,
    LayerParam::UpWeight,
    LayerParam::UpBias,
    LayerParam::DownWeight,
    LayerParam::DownBias,
    LayerParam::MlpNormWeight,
    LayerParam::MlpNormBias,
];

pub fn params(c: &ModelConfig) -> Vec<Param> {
    let mut out = vec![
        Param::WordEmbeddings,
        Param::PositionEmbeddings,
        Param::TypeEmbeddings,
        Param::EmbeddingNormWeight,
        Param::EmbeddingNormBias,
    ];
    for l in 0..c.num_layers {
        out.extend(LAYER_PARAMS.iter().map(|&lp| Param::Layer(l, lp)));
    }
    out.extend([
        Param::PoolerWeight,
        Param::PoolerBias,
        Param::ClassifierWeight,
        Param::ClassifierBias,
    ]);
    out
}

/// FLOPs per pair as [`crate::arch::gte`] counts them, with a plain MLP (up `ih`, not the
/// gated `2ih`): full layers on every token, the last layer's queries, o_proj and MLP on the
/// first token only, as the forward runs them.
pub fn flop_model(c: &ModelConfig) -> FlopModel {
    let (h, i, n) = (c.hidden_size as f64, c.intermediate_size as f64, c.num_layers as f64);
    // Matmul weights of one layer: qkv 3h², o h², up ih, down ih.
    let layer_weights = 4.0 * h * h + 2.0 * i * h;
    let full_layers = (n - 1.0).max(0.0);
    FlopModel {
        per_token: full_layers * 2.0 * layer_weights + 2.0 * 3.0 * h * h + 4.0 * h,
        per_token_sq: full_layers * 4.0 * h,
        per_pair: 2.0 * (h * h + 2.0 * i * h) + 2.0 * h * h + 2.0 * h,
    }
}

struct Layer {
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    attn_norm_w: Vec<f32>,
    attn_norm_b: Vec<f32>,
    up_w: Vec<f32>,
    up_b: Vec<f32>,
    down_w: Vec<f32>,
    down_b: Vec<f32>,
    mlp_norm_w: Vec<f32>,
    mlp_norm_b: Vec<f32>,
}

/// The encoder on the CPU, in f32 (the reference) or as the fp16 twin of a CUDA forward:
/// fp16 GEMM matrices and embedding tables, every activation between ops rounded to fp16,
/// LayerNorm statistics, bias adds, GELU, softmax and the head in fp32.
pub struct AbsEncoderModel {
    tensors: Arc<ModelTensors>,
    positions: PositionRule,
    segments: bool,
    precision: Precision,
    /// The twin's attention model and summation order (unused by the f32 reference).
    attention: AttentionModel,
    order: SumOrder,
    /// Position and segment tables, `[rows, hidden]` (fp16-valued in the twin).
    position_table: Vec<f32>,
    type_table: Vec<f32>,
    emb_norm_w: Vec<f32>,
    emb_norm_b: Vec<f32>,
    layers: Vec<Layer>,
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    classifier_w: Vec<f32>,
    classifier_b: f32,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl AbsEncoderModel {
    /// The f32 reference. `positions`: the family's position rule. Segment ids are read
    /// where the family says so ([`crate::arch::ModelFamily::uses_segment_ids`]), else every
    /// token takes segment row 0. `threads` = 0 uses every core.
    pub fn f32(tensors: Arc<ModelTensors>, positions: PositionRule, threads: usize) -> Result<Self> {
        let options = Fp16Options::like_gpu(&tensors.config, threads);
        Self::new(tensors, positions, Precision::F32, options)
    }

    /// The fp16 twin of the CUDA forward. The deliberate-bug [`Mutation`]s are hooks of the
    /// gte twin's tests and are refused here.
    pub fn fp16_twin(tensors: Arc<ModelTensors>, positions: PositionRule, options: Fp16Options) -> Result<Self> {
        if options.mutation != Mutation::None {
            return Err(Error::InvalidArgument(format!(
                "mutation {:?} is not implemented for the {} family",
                options.mutation,
                tensors.config.family.name()
            )));
        }
        Self::new(tensors, positions, Precision::Fp16, options)
    }

    fn new(
        tensors: Arc<ModelTensors>,
        positions: PositionRule,
        precision: Precision,
        options: Fp16Options,
    ) -> Result<Self> {
        let threads = options.threads;
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let cfg = tensors.config.clone();
        let f32_of = |p: Param| -> Result<Vec<f32>> { Ok(tensors.get(p)?.to_f32()) };
        // GEMM matrices and tables as the device holds them: fp16 in the twin.
        let matrix = |p: Param| -> Result<Vec<f32>> {
            match precision {
                Precision::F32 => f32_of(p),
                Precision::Fp16 => Ok(tensors.get(p)?.to_f16().into_iter().map(f16::to_f32).collect()),
            }
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let lp = |p: LayerParam| Param::Layer(l, p);
            layers.push(Layer {
                qkv_w: matrix(lp(LayerParam::QkvWeight))?,
                qkv_b: f32_of(lp(LayerParam::QkvBias))?,
                out_w: matrix(lp(LayerParam::OutWeight))?,
                out_b: f32_of(lp(LayerParam::OutBias))?,
                attn_norm_w: f32_of(lp(LayerParam::AttnNormWeight))?,
                attn_norm_b: f32_of(lp(LayerParam::AttnNormBias))?,
                up_w: matrix(lp(LayerParam::UpWeight))?,
                up_b: f32_of(lp(LayerParam::UpBias))?,
                down_w: matrix(lp(LayerParam::DownWeight))?,
                down_b: f32_of(lp(LayerParam::DownBias))?,
                mlp_norm_w: f32_of(lp(LayerParam::MlpNormWeight))?,
                mlp_norm_b: f32_of(lp(LayerParam::MlpNormBias))?,
            });
        }
        tensors.get(Param::WordEmbeddings)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("crossrank-cpu-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start CPU threads: {e}")))?;
        Ok(AbsEncoderModel {
            positions,
            segments: cfg.family.uses_segment_ids(&cfg),
            precision,
            attention: options.attention,
            order: options.sum_order,
            position_table: matrix(Param::PositionEmbeddings)?,
            type_table: matrix(Param::TypeEmbeddings)?,
            emb_norm_w: f32_of(Param::EmbeddingNormWeight)?,
            emb_norm_b: f32_of(Param::EmbeddingNormBias)?,
            layers,
            pooler_w: f32_of(Param::PoolerWeight)?,
            pooler_b: f32_of(Param::PoolerBias)?,
            classifier_w: f32_of(Param::ClassifierWeight)?,
            classifier_b: f32_of(Param::ClassifierBias)?[0],
            pool,
            threads,
            tensors,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.tensors.config
    }

    fn fp16(&self) -> bool {
        self.precision == Precision::Fp16
    }

    /// Rounds an activation buffer to fp16 in the twin (where the device stores fp16).
    fn store(&self, v: &mut [f32]) {
        if self.fp16() {
            round_f16(v);
        }
    }

    fn linear(&self, x: &[f32], w: &[f32], in_features: usize, out: &mut [f32]) {
        match self.precision {
            Precision::F32 => ops::matmul_wt(x, w, in_features, out, self.threads),
            Precision::Fp16 => ops16::linear(x, w, in_features, out, self.threads, self.order),
        }
    }

    fn residual_layernorm(&self, x: &mut [f32], y: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32]) {
        let eps = self.config().layer_norm_eps;
        match self.precision {
            Precision::F32 => ops::bias_residual_layernorm(x, y, bias, gamma, beta, eps),
            Precision::Fp16 => ops16::bias_residual_layernorm(x, y, Some(bias), gamma, beta, eps as f32, self.order),
        }
    }

    /// Attention of every query row, or (`cls_only`) of the first row of each sequence.
    fn attention(&self, qkv: &[f32], cu_seqlens: &[u32], cls_only: bool, out: &mut [f32]) {
        let cfg = self.config();
        let (heads, d) = (cfg.num_heads, cfg.head_dim);
        match (self.precision, cls_only) {
            (Precision::F32, false) => ops::attention(qkv, cu_seqlens, heads, d, out),
            (Precision::F32, true) => ops::attention_cls(qkv, cu_seqlens, heads, d, out),
            (Precision::Fp16, _) => {
                let flash = !cls_only && self.attention == AttentionModel::Flash;
                let num = ops16::AttentionNumerics {
                    key_tile: if flash { FLASH_KEY_TILE } else { FP32_KEY_CHUNK },
                    round_p: flash,
                    skip_last_tile: false,
                    order: self.order,
                };
                ops16::attention(qkv, cu_seqlens, heads, d, cls_only, &num, out);
            }
        }
    }

    /// o_proj + residual LN, then the GELU MLP + residual LN, on `x` rows given the attention
    /// context of those rows.
    fn attention_output_and_mlp(&self, layer: &Layer, x: &mut [f32], ctx: &[f32]) {
        let cfg = self.config();
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let rows = x.len() / h;
        let mut projected = vec![0.0; rows * h];
        self.linear(ctx, &layer.out_w, h, &mut projected);
        self.residual_layernorm(x, &projected, &layer.out_b, &layer.attn_norm_w, &layer.attn_norm_b);
        let mut up = vec![0.0; rows * inter];
        self.linear(x, &layer.up_w, h, &mut up);
        ops::bias_gelu(&mut up, &layer.up_b);
        self.store(&mut up);
        self.linear(&up, &layer.down_w, inter, &mut projected);
        self.residual_layernorm(x, &projected, &layer.down_b, &layer.mlp_norm_w, &layer.mlp_norm_b);
    }

    fn embed(&self, batch: &PackedBatch, positions: &[u32], type_ids: &[u32], x: &mut [f32]) -> Result<()> {
        let cfg = self.config();
        let h = cfg.hidden_size;
        let word = self.tensors.get(Param::WordEmbeddings)?;
        let fp16 = self.fp16();
        let word_row = |id: usize, dst: &mut [f32]| {
            if fp16 {
                let mut row16 = vec![f16::ZERO; h];
                word.read_f16(id * h, &mut row16);
                for (o, v) in dst.iter_mut().zip(row16) {
                    *o = v.to_f32();
                }
            } else {
                word_row(&word, h, id, dst);
            }
        };
        match self.precision {
            Precision::F32 => ops::embedding_abs_layernorm(
                word_row,
                &self.position_table,
                &self.type_table,
                &batch.token_ids,
                positions,
                type_ids,
                &self.emb_norm_w,
                &self.emb_norm_b,
                cfg.layer_norm_eps,
                x,
            ),
            Precision::Fp16 => {
                // The sum of the three fp16 rows in fp32, then the kernels' fp32 LayerNorm
                // with an fp16 store.
                for (t, row) in x.chunks_mut(h).enumerate() {
                    word_row(batch.token_ids[t] as usize, row);
                    let (p, ty) = (positions[t] as usize, type_ids[t] as usize);
                    let pos = &self.position_table[p * h..(p + 1) * h];
                    let seg = &self.type_table[ty * h..(ty + 1) * h];
                    for ((v, pv), tv) in row.iter_mut().zip(pos).zip(seg) {
                        *v += pv + tv;
                    }
                    ops16::layer_norm_to_f16(
                        row,
                        &self.emb_norm_w,
                        &self.emb_norm_b,
                        cfg.layer_norm_eps as f32,
                        self.order,
                    );
                }
            }
        }
        Ok(())
    }

    fn forward_in_pool(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let cfg = self.config();
        let h = cfg.hidden_size;
        let (n, n_seqs) = (batch.num_tokens(), batch.num_seqs());
        if let Some(&id) = batch.token_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {id} is outside the embedding table ({} rows)",
                cfg.vocab_size
            )));
        }
        if batch.max_seqlen > cfg.max_sequence_length() {
            return Err(Error::InvalidArgument(format!(
                "sequence of {} tokens exceeds the {} positions of the model (max_position_embeddings {})",
                batch.max_seqlen,
                cfg.max_sequence_length(),
                cfg.max_position_embeddings
            )));
        }
        if (0..n_seqs).any(|s| batch.seq_range(s).is_empty()) {
            return Err(Error::InvalidArgument("empty sequence in batch".into()));
        }
        let positions = (self.positions)(batch, cfg);
        let type_ids: Vec<u32> = if self.segments {
            batch.token_type_ids.clone()
        } else {
            vec![0; n]
        };
        if let Some(&ty) = type_ids.iter().find(|&&t| t as usize >= cfg.type_vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "segment id {ty} is outside the token-type table ({} rows)",
                cfg.type_vocab_size
            )));
        }

        let mut x = vec![0.0f32; n * h];
        self.embed(batch, &positions, &type_ids, &mut x)?;
        let mut qkv = vec![0.0f32; n * 3 * h];
        let mut ctx = vec![0.0f32; n * h];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            self.linear(&x, &layer.qkv_w, h, &mut qkv);
            ops::add_bias_rows(&mut qkv, &layer.qkv_b);
            self.store(&mut qkv);
            if l == last {
                // Keys and values of every token, but queries, o_proj and MLP only for the
                // first token, the only row the head reads (exact).
                let mut cls_ctx = vec![0.0f32; n_seqs * h];
                self.attention(&qkv, &batch.cu_seqlens, true, &mut cls_ctx);
                self.store(&mut cls_ctx);
                x = gather_first_rows(&x, &batch.cu_seqlens, h);
                self.attention_output_and_mlp(layer, &mut x, &cls_ctx);
            } else {
                self.attention(&qkv, &batch.cu_seqlens, false, &mut ctx);
                self.store(&mut ctx);
                self.attention_output_and_mlp(layer, &mut x, &ctx);
            }
        }
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

impl Backend for AbsEncoderModel {
    fn describe(&self) -> String {
        let precision = match (self.precision, self.attention) {
            (Precision::F32, _) => "f32",
            (Precision::Fp16, AttentionModel::Flash) => "fp16 twin of the CUDA path, flash attention",
            (Precision::Fp16, AttentionModel::Reference) => "fp16 twin of the CUDA path, reference attention",
        };
        let order = if self.order == SumOrder::Default {
            String::new()
        } else {
            format!(", summation order {:?}", self.order)
        };
        format!(
            "cpu ({precision}, {} family, {} threads{order})",
            self.config().family.name(),
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
