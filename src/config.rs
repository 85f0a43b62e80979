//! `config.json` of a gte reranker checkpoint, validated into the numbers the engine runs on.
//!
//! Two spellings of the same architecture are accepted:
//! - model_type `new` (Alibaba-NLP/new-impl remote code, `NewForSequenceClassification`):
//!   RoPE from `rope_theta` + `rope_scaling {type: "ntk", factor}` (static NTK);
//! - model_type `gte` (transformers-native `GteForSequenceClassification`): RoPE from
//!   `rope_parameters {rope_type: "default" | "linear", rope_theta, factor}`.
//!
//! Both reduce to `inv_freq[j] = base^(-2j/d) / divisor` (spec §3.3). Options that change the
//! math in ways the engine does not implement are refused with an error naming the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// What `score` is computed from `logit` with (sentence-transformers' `activation_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Sigmoid,
    Identity,
    Tanh,
}

impl Activation {
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            Activation::Sigmoid => sigmoid(logit),
            Activation::Identity => logit,
            Activation::Tanh => logit.tanh(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
            Activation::Tanh => "tanh",
        }
    }
}

/// Logistic function, written so neither branch overflows for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Upper bounds on the sizes a config may declare. They are far above any gte reranker
/// (vocab 250048, hidden 768–1024, 12–24 layers, intermediate 3072–4096, 8192 positions) and
/// keep every size derived from a config — tensor shapes, the parameter count, the list of
/// per-layer tensors, the RoPE cos/sin tables built at load for every position — far from
/// `usize` overflow and from absurd allocations, so a corrupt config.json is an error naming
/// the key instead of a panic or an out-of-memory abort later (found by fuzzing, fuzz/).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
pub const MAX_HIDDEN_SIZE: usize = 1 << 16;
pub const MAX_INTERMEDIATE_SIZE: usize = 1 << 18;
pub const MAX_LAYERS: usize = 1 << 10;
/// Entries of each RoPE table: `max_position_embeddings × head_dim / 2`.
pub const MAX_ROPE_TABLE: usize = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    /// Alibaba-NLP/new-impl remote code ("NewForSequenceClassification").
    New,
    /// transformers-native GTE ("GteForSequenceClassification").
    Gte,
}

/// RoPE frequencies: `inv_freq[j] = base^(-2j/head_dim) / divisor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub base: f64,
    pub divisor: f64,
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub rope: Rope,
    pub activation: Activation,
    /// `torch_dtype` / `dtype` as written in config.json (informational only).
    pub declared_dtype: Option<String>,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::config(path, format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(Error::config(path, "expected a JSON object"));
        };
        Parser { path, obj: &obj }.parse()
    }

    /// RoPE inverse frequencies, computed in f64 (see spec §3.3).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|j| self.rope.base.powf(-2.0 * j as f64 / d) / self.rope.divisor)
            .collect()
    }

    /// Number of parameters the checkpoint holds for this config (pooler and head included).
    pub fn parameter_count(&self) -> usize {
        let h = self.hidden_size;
        let i = self.intermediate_size;
        let embeddings = self.vocab_size * h + self.type_vocab_size * h + 2 * h;
        let layer = (h * 3 * h + 3 * h) + (h * h + h) + (2 * i * h) + (i * h + h) + 4 * h;
        let head = (h * h + h) + (h + 1);
        embeddings + self.num_layers * layer + head
    }
}

struct Parser<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::config(self.path, msg)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize_key(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("missing key `{key}`"))),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.err(format!("key `{key}`: expected a non-negative integer, found {v}"))),
        }
    }

    fn f64_key(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("key `{key}`: expected a number, found {v}"))),
        }
    }

    fn str_key(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!("key `{key}`: expected a string, found {v}"))),
        }
    }

    /// A boolean option that must be absent or hold `expected`.
    fn require_bool(&self, key: &str, expected: bool, why: &str) -> Result<()> {
        match self.get(key) {
            None => Ok(()),
            Some(Value::Bool(b)) if *b == expected => Ok(()),
            Some(v) => Err(self.err(format!(
                "unsupported option `{key}` = {v}: crossrank requires {expected} ({why})"
            ))),
        }
    }

    fn parse(&self) -> Result<ModelConfig> {
        let model_type = match self.str_key("model_type")? {
            Some("new") => ModelType::New,
            Some("gte") => ModelType::Gte,
            Some(other) => {
                return Err(self.err(format!(
                    "unsupported `model_type` \"{other}\": crossrank runs gte rerankers (model_type \"new\" or \"gte\")"
                )))
            }
            None => return Err(self.err("missing key `model_type`")),
        };
        // transformers-native GTE omits keys equal to GteConfig's defaults.
        let native = |n: usize| (model_type == ModelType::Gte).then_some(n);

        let vocab_size = self.usize_key("vocab_size", native(250048))?;
        let hidden_size = self.usize_key("hidden_size", native(768))?;
        let num_layers = self.usize_key("num_hidden_layers", native(12))?;
        let num_heads = self.usize_key("num_attention_heads", native(12))?;
        let intermediate_size = self.usize_key("intermediate_size", native(3072))?;
        let max_position_embeddings = self.usize_key("max_position_embeddings", Some(8192))?;
        let type_vocab_size = self.usize_key(
            "type_vocab_size",
            Some(if model_type == ModelType::Gte { 1 } else { 0 }),
        )?;
        let layer_norm_eps = self.f64_key("layer_norm_eps", 1e-12)?;

        for (key, v) in [
            ("vocab_size", vocab_size),
            ("hidden_size", hidden_size),
            ("num_hidden_layers", num_layers),
            ("num_attention_heads", num_heads),
            ("intermediate_size", intermediate_size),
            ("max_position_embeddings", max_position_embeddings),
        ] {
            if v == 0 {
                return Err(self.err(format!("key `{key}` must be positive")));
            }
        }
        for (key, v, max) in [
            ("vocab_size", vocab_size, MAX_VOCAB_SIZE),
            ("hidden_size", hidden_size, MAX_HIDDEN_SIZE),
            ("num_hidden_layers", num_layers, MAX_LAYERS),
            ("intermediate_size", intermediate_size, MAX_INTERMEDIATE_SIZE),
        ] {
            if v > max {
                return Err(self.err(format!("key `{key}` = {v} is out of range (at most {max})")));
            }
        }
        if hidden_size % num_heads != 0 {
            return Err(self.err(format!(
                "key `hidden_size` ({hidden_size}) is not a multiple of `num_attention_heads` ({num_heads})"
            )));
        }
        let head_dim = hidden_size / num_heads;
        if head_dim % 2 != 0 {
            return Err(self.err(format!(
                "head dimension {head_dim} (`hidden_size` / `num_attention_heads`) must be even for RoPE"
            )));
        }
        if max_position_embeddings.saturating_mul(head_dim / 2) > MAX_ROPE_TABLE {
            return Err(self.err(format!(
                "key `max_position_embeddings` = {max_position_embeddings} is out of range: RoPE tables of {max_position_embeddings} positions × {} frequencies exceed {MAX_ROPE_TABLE} entries",
                head_dim / 2
            )));
        }
        if let Some(d) = self.get("head_dim") {
            if d.as_u64() != Some(head_dim as u64) {
                return Err(self.err(format!(
                    "unsupported option `head_dim` = {d}: must equal hidden_size / num_attention_heads = {head_dim}"
                )));
            }
        }
        if type_vocab_size > 1 {
            return Err(self.err(format!(
                "unsupported option `type_vocab_size` = {type_vocab_size}: the pair template uses type id 0 only, so crossrank supports 0 or 1"
            )));
        }
        if !(layer_norm_eps > 0.0 && layer_norm_eps < 1e-2) {
            return Err(self.err(format!("key `layer_norm_eps` = {layer_norm_eps} is out of range")));
        }

        match self.str_key("hidden_act")? {
            None | Some("gelu") => {}
            Some(other) => {
                return Err(self.err(format!(
                    "unsupported option `hidden_act` = \"{other}\": crossrank implements the exact erf GELU (\"gelu\")"
                )))
            }
        }
        match self.str_key("position_embedding_type")? {
            None | Some("rope") => {}
            Some(other) => {
                return Err(self.err(format!(
                    "unsupported option `position_embedding_type` = \"{other}\": only \"rope\" is implemented"
                )))
            }
        }
        match self.str_key("layer_norm_type")? {
            None | Some("layer_norm") => {}
            Some(other) => {
                return Err(self.err(format!(
                    "unsupported option `layer_norm_type` = \"{other}\": only \"layer_norm\" is implemented"
                )))
            }
        }
        self.require_bool(
            "logn_attention_scale",
            false,
            "log-n attention scaling is not implemented",
        )?;
        self.require_bool(
            "logn_attention_clip1",
            false,
            "log-n attention scaling is not implemented",
        )?;
        self.require_bool(
            "pack_qkv",
            true,
            "the checkpoint must hold one packed qkv_proj per layer",
        )?;
        self.require_bool("is_decoder", false, "attention is bidirectional")?;

        let num_labels = match (self.get("num_labels"), self.get("id2label")) {
            (Some(v), _) => v
                .as_u64()
                .ok_or_else(|| self.err(format!("key `num_labels`: expected an integer, found {v}")))?
                as usize,
            (None, Some(Value::Object(m))) => m.len(),
            (None, Some(v)) => return Err(self.err(format!("key `id2label`: expected an object, found {v}"))),
            (None, None) => 1,
        };
        if num_labels != 1 {
            let key = if self.get("num_labels").is_some() {
                "num_labels"
            } else {
                "id2label"
            };
            return Err(self.err(format!(
                "unsupported option `{key}`: {num_labels} labels; crossrank scores rerankers with exactly 1 output label"
            )));
        }

        let rope = match model_type {
            ModelType::New => self.rope_new(head_dim)?,
            ModelType::Gte => self.rope_gte()?,
        };
        // E.g. rope_theta × factor overflowing to infinity.
        if !(rope.base.is_finite() && rope.base > 1.0 && rope.divisor.is_finite() && rope.divisor > 0.0) {
            return Err(self.err(format!(
                "RoPE base {} / divisor {} out of range (keys `rope_theta`, `rope_scaling` / `rope_parameters`)",
                rope.base, rope.divisor
            )));
        }
        let activation = self.activation()?;
        let declared_dtype = self
            .str_key("torch_dtype")
            .ok()
            .flatten()
            .or(self.str_key("dtype").ok().flatten())
            .map(str::to_owned);

        Ok(ModelConfig {
            path: self.path.to_path_buf(),
            model_type,
            vocab_size,
            hidden_size,
            num_layers,
            num_heads,
            head_dim,
            intermediate_size,
            max_position_embeddings,
            type_vocab_size,
            layer_norm_eps,
            rope,
            activation,
            declared_dtype,
        })
    }

    /// new-impl: `NTKScalingRotaryEmbedding` with static scaling (spec §3.3).
    fn rope_new(&self, head_dim: usize) -> Result<Rope> {
        let theta = self.f64_key("rope_theta", 10000.0)?;
        if theta <= 1.0 {
            return Err(self.err(format!("key `rope_theta` = {theta} must be > 1")));
        }
        let Some(scaling) = self.get("rope_scaling") else {
            return Ok(Rope {
                base: theta,
                divisor: 1.0,
            });
        };
        let Value::Object(scaling) = scaling else {
            return Err(self.err(format!("key `rope_scaling`: expected an object, found {scaling}")));
        };
        let kind = scaling
            .get("type")
            .or_else(|| scaling.get("rope_type"))
            .and_then(Value::as_str)
            .ok_or_else(|| self.err("key `rope_scaling.type` is missing"))?;
        if kind != "ntk" {
            return Err(self.err(format!(
                "unsupported option `rope_scaling.type` = \"{kind}\": only static \"ntk\" scaling is implemented"
            )));
        }
        if scaling.get("mixed_b").is_some_and(|v| !v.is_null()) {
            return Err(self.err("unsupported option `rope_scaling.mixed_b`: mixed NTK scaling is not implemented"));
        }
        let factor = scaling
            .get("factor")
            .and_then(Value::as_f64)
            .ok_or_else(|| self.err("key `rope_scaling.factor`: expected a number"))?;
        if factor < 1.0 {
            return Err(self.err(format!("key `rope_scaling.factor` = {factor} must be >= 1")));
        }
        Ok(Rope {
            base: theta * factor,
            divisor: factor.powf(2.0 / head_dim as f64),
        })
    }

    /// transformers-native GTE: `rope_parameters` (or legacy `rope_theta` + `rope_scaling`).
    fn rope_gte(&self) -> Result<Rope> {
        let (params, prefix) = match (self.get("rope_parameters"), self.get("rope_scaling")) {
            (Some(Value::Object(p)), _) => (Some(p), "rope_parameters"),
            (Some(v), _) => return Err(self.err(format!("key `rope_parameters`: expected an object, found {v}"))),
            (None, Some(Value::Object(p))) => (Some(p), "rope_scaling"),
            (None, Some(v)) => return Err(self.err(format!("key `rope_scaling`: expected an object, found {v}"))),
            (None, None) => (None, ""),
        };
        let top_theta = self.f64_key("rope_theta", 160000.0)?;
        let Some(params) = params else {
            if top_theta <= 1.0 {
                return Err(self.err(format!("key `rope_theta` = {top_theta} must be > 1")));
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
                .ok_or_else(|| self.err(format!("key `{prefix}.factor`: expected a number")))?,
            other => {
                return Err(self.err(format!(
                    "unsupported option `{prefix}.rope_type` = \"{other}\": only \"default\" and \"linear\" are implemented"
                )))
            }
        };
        if theta <= 1.0 || divisor <= 0.0 {
            return Err(self.err(format!("key `{prefix}`: rope_theta/factor out of range")));
        }
        Ok(Rope { base: theta, divisor })
    }

    /// sentence-transformers' `activation_fn` (v4+) or the legacy key; Sigmoid by default
    /// for a single label, as `CrossEncoder` does.
    fn activation(&self) -> Result<Activation> {
        let (key, name) = match self.get("sentence_transformers") {
            Some(Value::Object(st)) => match st.get("activation_fn") {
                Some(Value::String(s)) => ("sentence_transformers.activation_fn", Some(s.as_str())),
                None | Some(Value::Null) => ("", None),
                Some(v) => {
                    return Err(self.err(format!(
                        "key `sentence_transformers.activation_fn`: expected a string, found {v}"
                    )))
                }
            },
            Some(v) => return Err(self.err(format!("key `sentence_transformers`: expected an object, found {v}"))),
            None => (
                "sbert_ce_default_activation_function",
                self.str_key("sbert_ce_default_activation_function")?,
            ),
        };
        let Some(name) = name else {
            return Ok(Activation::Sigmoid);
        };
        match name.rsplit('.').next().unwrap_or(name) {
            "Sigmoid" => Ok(Activation::Sigmoid),
            "Identity" => Ok(Activation::Identity),
            "Tanh" => Ok(Activation::Tanh),
            _ => Err(self.err(format!(
                "unsupported option `{key}` = \"{name}\": crossrank knows Sigmoid, Identity and Tanh"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_json_str(text, Path::new("config.json"))
    }

    const BASE: &str = r#"{"model_type": "new", "vocab_size": 250048, "hidden_size": 768,
        "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_position_embeddings": 8192, "rope_theta": 20000, "rope_scaling": {"type": "ntk", "factor": 8.0},
        "layer_norm_eps": 1e-12, "type_vocab_size": 1, "id2label": {"0": "LABEL_0"}}"#;

    #[test]
    fn ntk_frequencies_match_spec_reference_values() {
        let cfg = parse(BASE).unwrap();
        let f = cfg.inv_freq();
        // spec §3.3 reference values (fp32 torch): [0] 0.93708384, [1] 0.64439136, [31] 8.5170113e-06
        assert!((f[0] - 0.93708384).abs() < 1e-7, "{}", f[0]);
        assert!((f[1] - 0.64439136).abs() < 1e-7, "{}", f[1]);
        assert!((f[15] - 0.0034068043).abs() < 1e-9, "{}", f[15]);
        assert!((f[31] - 8.5170113e-06).abs() < 1e-12, "{}", f[31]);
        assert_eq!(cfg.parameter_count(), 305_959_681);
        assert_eq!(cfg.activation, Activation::Sigmoid);
    }

    #[test]
    fn native_gte_linear_rope_is_the_same_math() {
        let cfg = parse(
            r#"{"model_type": "gte", "rope_parameters": {"rope_type": "linear", "factor": 1.0671404006768237, "rope_theta": 160000}}"#,
        )
        .unwrap();
        let reference = parse(BASE).unwrap();
        for (a, b) in cfg.inv_freq().iter().zip(reference.inv_freq()) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-30) + 1e-15, "{a} vs {b}");
        }
    }

    #[test]
    fn unsupported_options_name_their_key() {
        let cases = [
            (r#""logn_attention_scale": true"#, "logn_attention_scale"),
            (r#""position_embedding_type": "absolute""#, "position_embedding_type"),
            (r#""layer_norm_type": "rms_norm""#, "layer_norm_type"),
            (r#""num_labels": 3"#, "num_labels"),
            (r#""hidden_act": "gelu_new""#, "hidden_act"),
            (r#""pack_qkv": false"#, "pack_qkv"),
            (
                r#""rope_scaling": {"type": "dynamic", "factor": 2.0}"#,
                "rope_scaling.type",
            ),
            (
                r#""sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Softmax"}"#,
                "activation_fn",
            ),
        ];
        for (extra, key) in cases {
            // Appended last so it overrides the same key in BASE.
            let text = format!("{}, {extra}}}", &BASE[..BASE.rfind('}').unwrap()]);
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "error for {extra} does not name `{key}`: {err}");
        }
    }

    #[test]
    fn malformed_config_is_a_clear_error() {
        let err = parse("{\"model_type\": \"new\", ").unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("not valid JSON"), "{err}");
        let err = parse(r#"{"model_type": "gte", "hidden_size": "768"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`hidden_size`"), "{err}");
        let err = parse(r#"{"model_type": "bert"}"#).unwrap_err().to_string();
        assert!(err.contains("model_type"), "{err}");
    }
}
