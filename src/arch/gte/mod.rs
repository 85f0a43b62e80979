//! gte "new" rerankers (Alibaba-NLP/new-impl `NewForSequenceClassification`, model_type
//! `new`; transformers-native `GteForSequenceClassification`, model_type `gte`): RoPE,
//! packed QKV, gated-GELU MLP, post-LayerNorm, CLS pooler + 1-logit head (spec §2, §3).
//!
//! Two spellings of the same architecture are accepted:
//! - model_type `new`: RoPE from `rope_theta` + `rope_scaling {type: "ntk", factor}` (static
//!   NTK), tensors `encoder.layer.{i}.attention.qkv_proj`, `mlp.up_gate_proj`, ...;
//! - model_type `gte`: RoPE from `rope_parameters {rope_type: "default" | "linear",
//!   rope_theta, factor}`, tensors `layers.{i}.self_attn.{q,k,v}_proj`, `mlp.{up,gate}_proj`
//!   (concatenated at load into the packed order).
//!
//! Both reduce to `inv_freq[j] = base^(-2j/d) / divisor` (spec §3.3).

use std::sync::Arc;

use serde_json::Value;

use crate::arch::ModelFamily;
use crate::bench::FlopModel;
use crate::config::{ConfigParser, ModelConfig, Rope, MAX_ROPE_TABLE};
use crate::cuda::GpuOptions;
use crate::error::{Error, Result};
use crate::model::cpu_fp16::Fp16Options;
use crate::model::Backend;
use crate::weights::{Checkpoint, LayerParam, ModelTensors, NameScheme, Param};

pub mod cpu;
pub mod cpu_fp16;
pub mod cuda;

/// The gte checkpoint layout: a [`ModelTensors`] of a gte config (the name before the
/// family seam).
pub type GteTensors = ModelTensors;

#[derive(Debug)]
pub struct Gte;

impl ModelFamily for Gte {
    fn name(&self) -> &'static str {
        "gte"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["new", "gte"]
    }

    fn architectures(&self) -> &'static [&'static str] {
        &["NewForSequenceClassification", "GteForSequenceClassification"]
    }

    fn summary(&self) -> &'static str {
        "gte reranker: RoPE, gated-GELU MLP, post-LN, CLS pooler"
    }

    fn size_default(&self, model_type: &str, key: &str) -> Option<usize> {
        // transformers-native GTE omits keys equal to GteConfig's defaults.
        let native = model_type == "gte";
        match key {
            "vocab_size" if native => Some(250048),
            "hidden_size" if native => Some(768),
            "num_hidden_layers" if native => Some(12),
            "num_attention_heads" if native => Some(12),
            "intermediate_size" if native => Some(3072),
            "max_position_embeddings" => Some(8192),
            "type_vocab_size" => Some(usize::from(native)),
            _ => None,
        }
    }

    fn parse_config(&self, p: &ConfigParser<'_>, c: &mut ModelConfig) -> Result<()> {
        let head_dim = c.head_dim;
        if head_dim % 2 != 0 {
            return Err(p.err(format!(
                "head dimension {head_dim} (`hidden_size` / `num_attention_heads`) must be even for RoPE"
            )));
        }
        let positions = c.max_position_embeddings;
        if positions.saturating_mul(head_dim / 2) > MAX_ROPE_TABLE {
            return Err(p.err(format!(
                "key `max_position_embeddings` = {positions} is out of range: RoPE tables of {positions} positions × {} frequencies exceed {MAX_ROPE_TABLE} entries",
                head_dim / 2
            )));
        }
        if c.type_vocab_size > 1 {
            return Err(p.err(format!(
                "unsupported option `type_vocab_size` = {}: gte's forward embeds token-type row 0 only (its template assigns no segments), so crossrank supports 0 or 1",
                c.type_vocab_size
            )));
        }
        p.require_str("position_embedding_type", &["rope"], "only \"rope\" is implemented")?;
        p.require_str("layer_norm_type", &["layer_norm"], "only \"layer_norm\" is implemented")?;
        p.require_bool(
            "logn_attention_scale",
            false,
            "log-n attention scaling is not implemented",
        )?;
        p.require_bool(
            "logn_attention_clip1",
            false,
            "log-n attention scaling is not implemented",
        )?;
        p.require_bool(
            "pack_qkv",
            true,
            "the checkpoint must hold one packed qkv_proj per layer",
        )?;
        let rope = if c.model_type == "gte" {
            rope_gte(p)?
        } else {
            rope_new(p, head_dim)?
        };
        // E.g. rope_theta × factor overflowing to infinity.
        if !(rope.base.is_finite() && rope.base > 1.0 && rope.divisor.is_finite() && rope.divisor > 0.0) {
            return Err(p.err(format!(
                "RoPE base {} / divisor {} out of range (keys `rope_theta`, `rope_scaling` / `rope_parameters`)",
                rope.base, rope.divisor
            )));
        }
        c.rope = rope;
        Ok(())
    }

    fn locate(&self, ckpt: &Checkpoint, config: &ModelConfig) -> Result<(String, NameScheme)> {
        let mut prefixes = vec!["new.", "", "gte."];
        if config.model_type == "gte" {
            prefixes.rotate_left(2);
        }
        let prefix = prefixes
            .into_iter()
            .find(|p| ckpt.contains(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| {
                Error::tensor(
                    ckpt.file_of("new.embeddings.word_embeddings.weight"),
                    "new.embeddings.word_embeddings.weight",
                    "missing from the checkpoint (also looked for `embeddings.word_embeddings.weight` and `gte.embeddings.word_embeddings.weight`): is this a gte reranker checkpoint?",
                )
            })?
            .to_string();
        let scheme = if ckpt.contains(&format!("{prefix}layers.0.self_attn.q_proj.weight")) {
            NameScheme::Native
        } else {
            NameScheme::Packed
        };
        Ok((prefix, scheme))
    }

    fn stored_names(&self, t: &ModelTensors, param: Param) -> Vec<String> {
        let p = &t.prefix;
        let one = |s: String| vec![s];
        match param {
            Param::WordEmbeddings => one(format!("{p}embeddings.word_embeddings.weight")),
            Param::PositionEmbeddings => one(format!("{p}embeddings.position_embeddings.weight")),
            Param::TypeEmbeddings => one(format!("{p}embeddings.token_type_embeddings.weight")),
            Param::EmbeddingNormWeight => one(format!("{p}embeddings.LayerNorm.weight")),
            Param::EmbeddingNormBias => one(format!("{p}embeddings.LayerNorm.bias")),
            Param::PoolerWeight => one(format!("{p}pooler.dense.weight")),
            Param::PoolerBias => one(format!("{p}pooler.dense.bias")),
            Param::ClassifierWeight => one("classifier.weight".to_string()),
            Param::ClassifierBias => one("classifier.bias".to_string()),
            Param::Layer(i, lp) => match t.scheme {
                NameScheme::Packed => {
                    let l = format!("{p}encoder.layer.{i}.");
                    one(match lp {
                        LayerParam::QkvWeight => format!("{l}attention.qkv_proj.weight"),
                        LayerParam::QkvBias => format!("{l}attention.qkv_proj.bias"),
                        LayerParam::OutWeight => format!("{l}attention.o_proj.weight"),
                        LayerParam::OutBias => format!("{l}attention.o_proj.bias"),
                        LayerParam::AttnNormWeight => format!("{l}attn_ln.weight"),
                        LayerParam::AttnNormBias => format!("{l}attn_ln.bias"),
                        LayerParam::UpGateWeight | LayerParam::UpWeight => format!("{l}mlp.up_gate_proj.weight"),
                        LayerParam::UpBias => format!("{l}mlp.up_gate_proj.bias"),
                        LayerParam::DownWeight => format!("{l}mlp.down_proj.weight"),
                        LayerParam::DownBias => format!("{l}mlp.down_proj.bias"),
                        LayerParam::MlpNormWeight => format!("{l}mlp_ln.weight"),
                        LayerParam::MlpNormBias => format!("{l}mlp_ln.bias"),
                    })
                }
                NameScheme::Native => {
                    let l = format!("{p}layers.{i}.");
                    let qkv = |kind: &str| {
                        ["q", "k", "v"]
                            .iter()
                            .map(|x| format!("{l}self_attn.{x}_proj.{kind}"))
                            .collect()
                    };
                    match lp {
                        LayerParam::QkvWeight => qkv("weight"),
                        LayerParam::QkvBias => qkv("bias"),
                        LayerParam::OutWeight => one(format!("{l}self_attn.o_proj.weight")),
                        LayerParam::OutBias => one(format!("{l}self_attn.o_proj.bias")),
                        LayerParam::AttnNormWeight => one(format!("{l}post_attention_layernorm.weight")),
                        LayerParam::AttnNormBias => one(format!("{l}post_attention_layernorm.bias")),
                        // Packed order is [up; gate] (spec §3.6).
                        LayerParam::UpGateWeight | LayerParam::UpWeight => {
                            vec![format!("{l}mlp.up_proj.weight"), format!("{l}mlp.gate_proj.weight")]
                        }
                        LayerParam::UpBias => one(format!("{l}mlp.up_proj.bias")),
                        LayerParam::DownWeight => one(format!("{l}mlp.down_proj.weight")),
                        LayerParam::DownBias => one(format!("{l}mlp.down_proj.bias")),
                        LayerParam::MlpNormWeight => one(format!("{l}post_mlp_layernorm.weight")),
                        LayerParam::MlpNormBias => one(format!("{l}post_mlp_layernorm.bias")),
                    }
                }
            },
        }
    }

    fn expected_shape(&self, c: &ModelConfig, param: Param) -> Vec<usize> {
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
                LayerParam::UpGateWeight | LayerParam::UpWeight => vec![2 * i, h],
                LayerParam::UpBias => vec![2 * i],
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

    fn params(&self, c: &ModelConfig) -> Vec<Param> {
        let mut out = vec![Param::WordEmbeddings];
        if c.type_vocab_size > 0 {
            out.push(Param::TypeEmbeddings);
        }
        out.extend([Param::EmbeddingNormWeight, Param::EmbeddingNormBias]);
        for l in 0..c.num_layers {
            for lp in [
                LayerParam::QkvWeight,
                LayerParam::QkvBias,
                LayerParam::OutWeight,
                LayerParam::OutBias,
                LayerParam::AttnNormWeight,
                LayerParam::AttnNormBias,
                LayerParam::UpGateWeight,
                LayerParam::DownWeight,
                LayerParam::DownBias,
                LayerParam::MlpNormWeight,
                LayerParam::MlpNormBias,
            ] {
                out.push(Param::Layer(l, lp));
            }
        }
        out.extend([
            Param::PoolerWeight,
            Param::PoolerBias,
            Param::ClassifierWeight,
            Param::ClassifierBias,
        ]);
        out
    }

    fn load_cpu_f32(&self, tensors: Arc<ModelTensors>, threads: usize) -> Result<Box<dyn Backend>> {
        Ok(Box::new(cpu::CpuModel::new(tensors, threads)?))
    }

    fn load_cpu_twin(&self, tensors: Arc<ModelTensors>, options: Fp16Options) -> Result<Box<dyn Backend>> {
        Ok(Box::new(cpu_fp16::Fp16CpuModel::new(tensors, options)?))
    }

    fn load_cuda(&self, tensors: Arc<ModelTensors>, index: usize, options: &GpuOptions) -> Result<Box<dyn Backend>> {
        Ok(Box::new(cuda::GpuModel::load(tensors, index, options)?))
    }

    /// FLOPs of one pair of `L` tokens, `a·L + b·L² + c`, counted from the shapes: every
    /// matmul is `2 · weights` per row; attention is `QKᵀ + PV = 4·L·hidden` per query row
    /// per layer. The last layer runs on the CLS row only (K and V for every token, but one
    /// query row, and o_proj and the MLP on that row), as both backends do.
    fn flop_model(&self, c: &ModelConfig) -> FlopModel {
        let (h, i, n) = (c.hidden_size as f64, c.intermediate_size as f64, c.num_layers as f64);
        // Matmul weights of one layer: qkv 3h², o h², up+gate 2ih, down ih.
        let layer_weights = 4.0 * h * h + 3.0 * i * h;
        let full_layers = (n - 1.0).max(0.0);
        FlopModel {
            // Full layers: all GEMMs on every token; last layer: the QKV GEMM on every token
            // and one CLS query against L keys (4·h·L).
            per_token: full_layers * 2.0 * layer_weights + 2.0 * 3.0 * h * h + 4.0 * h,
            per_token_sq: full_layers * 4.0 * h,
            // Last layer o_proj + MLP on the CLS row; pooler (h²) and classifier (h).
            per_pair: 2.0 * (h * h + 3.0 * i * h) + 2.0 * h * h + 2.0 * h,
        }
    }

    fn info_lines(&self, c: &ModelConfig) -> Vec<(&'static str, String)> {
        vec![(
            "rope",
            format!(
                "inv_freq = {}^(-2j/{}) / {:.7}",
                c.rope.base, c.head_dim, c.rope.divisor
            ),
        )]
    }
}

/// new-impl: `NTKScalingRotaryEmbedding` with static scaling (spec §3.3).
fn rope_new(p: &ConfigParser<'_>, head_dim: usize) -> Result<Rope> {
    let theta = p.f64_key("rope_theta", 10000.0)?;
    if theta <= 1.0 {
        return Err(p.err(format!("key `rope_theta` = {theta} must be > 1")));
    }
    let Some(scaling) = p.get("rope_scaling") else {
        return Ok(Rope {
            base: theta,
            divisor: 1.0,
        });
    };
    let Value::Object(scaling) = scaling else {
        return Err(p.err(format!("key `rope_scaling`: expected an object, found {scaling}")));
    };
    let kind = scaling
        .get("type")
        .or_else(|| scaling.get("rope_type"))
        .and_then(Value::as_str)
        .ok_or_else(|| p.err("key `rope_scaling.type` is missing"))?;
    if kind != "ntk" {
        return Err(p.err(format!(
            "unsupported option `rope_scaling.type` = \"{kind}\": only static \"ntk\" scaling is implemented"
        )));
    }
    if scaling.get("mixed_b").is_some_and(|v| !v.is_null()) {
        return Err(p.err("unsupported option `rope_scaling.mixed_b`: mixed NTK scaling is not implemented"));
    }
    let factor = scaling
        .get("factor")
        .and_then(Value::as_f64)
        .ok_or_else(|| p.err("key `rope_scaling.factor`: expected a number"))?;
    if factor < 1.0 {
        return Err(p.err(format!("key `rope_scaling.factor` = {factor} must be >= 1")));
    }
    Ok(Rope {
        base: theta * factor,
        divisor: factor.powf(2.0 / head_dim as f64),
    })
}

/// transformers-native GTE: `rope_parameters` (or legacy `rope_theta` + `rope_scaling`).
fn rope_gte(p: &ConfigParser<'_>) -> Result<Rope> {
    let (params, prefix) = match (p.get("rope_parameters"), p.get("rope_scaling")) {
        (Some(Value::Object(o)), _) => (Some(o), "rope_parameters"),
        (Some(v), _) => return Err(p.err(format!("key `rope_parameters`: expected an object, found {v}"))),
        (None, Some(Value::Object(o))) => (Some(o), "rope_scaling"),
        (None, Some(v)) => return Err(p.err(format!("key `rope_scaling`: expected an object, found {v}"))),
        (None, None) => (None, ""),
    };
    let top_theta = p.f64_key("rope_theta", 160000.0)?;
    let Some(params) = params else {
        if top_theta <= 1.0 {
            return Err(p.err(format!("key `rope_theta` = {top_theta} must be > 1")));
        }
        return Ok(Rope {
            base: top_theta,
            divisor: 1.0,
        });
    };
    let theta = params.get("rope_theta").and_then(Value::as_f64).unwrap_or(top_theta);
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let divisor = match kind {
        "default" => 1.0,
        "linear" => params
            .get("factor")
            .and_then(Value::as_f64)
            .ok_or_else(|| p.err(format!("key `{prefix}.factor`: expected a number")))?,
        other => {
            return Err(p.err(format!(
                "unsupported option `{prefix}.rope_type` = \"{other}\": only \"default\" and \"linear\" are implemented"
            )))
        }
    };
    if theta <= 1.0 || divisor <= 0.0 {
        return Err(p.err(format!("key `{prefix}`: rope_theta/factor out of range")));
    }
    Ok(Rope { base: theta, divisor })
}
