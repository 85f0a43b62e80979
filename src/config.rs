//! `config.json` of a reranker checkpoint, validated into the family-neutral numbers the
//! engine runs on ([`ModelConfig`]).
//!
//! `model_type` / `architectures` pick the family ([`crate::arch::find`]); the keys every
//! family shares (sizes, LayerNorm eps, `hidden_act`, labels, the score activation) are
//! parsed here, the family's own keys by its [`ModelFamily::parse_config`]. Options that
//! change the math in ways the engine does not implement are refused with an error naming
//! the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::arch::ModelFamily;
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

/// Upper bounds on the sizes a config may declare. They are far above any supported reranker
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

/// RoPE frequencies: `inv_freq[j] = base^(-2j/head_dim) / divisor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub base: f64,
    pub divisor: f64,
}

/// The numbers of a checkpoint's config.json, the same for every family, plus the few
/// family fields (`rope`, `padding_idx`) a family fills in its `parse_config`.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// The family that reads this checkpoint.
    pub family: &'static dyn ModelFamily,
    /// `model_type` as written in config.json (or the family's first one when absent).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Rotary frequencies, for families with rotary positions (default: none).
    pub rope: Rope,
    /// `pad_token_id` where the family's positions depend on it (XLM-R), else `None`.
    pub padding_idx: Option<usize>,
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
        ConfigParser { path, obj: &obj }.parse()
    }

    /// Rotary inverse frequencies, computed in f64 (see spec §3.3); empty for families
    /// without rotary positions.
    pub fn inv_freq(&self) -> Vec<f64> {
        if self.rope.base <= 0.0 {
            return Vec::new();
        }
        let d = self.head_dim as f64;
        (0..self.head_dim / 2)
            .map(|j| self.rope.base.powf(-2.0 * j as f64 / d) / self.rope.divisor)
            .collect()
    }

    /// Number of parameters the checkpoint holds for this config (pooler and head included):
    /// the sum over the family's logical tensors.
    pub fn parameter_count(&self) -> usize {
        self.family
            .params(self)
            .into_iter()
            .map(|p| self.family.expected_shape(self, p).iter().product::<usize>())
            .sum()
    }

    /// Longest pair (special tokens included) the family's position table can embed.
    pub fn max_sequence_length(&self) -> usize {
        self.family.max_sequence_length(self)
    }
}

/// No rotary positions (families with learned absolute positions).
pub const NO_ROPE: Rope = Rope {
    base: 0.0,
    divisor: 1.0,
};

/// config.json as a JSON object, with typed getters whose errors name the key. Families
/// read their own keys through it.
pub struct ConfigParser<'a> {
    pub path: &'a Path,
    pub obj: &'a Map<String, Value>,
}

impl ConfigParser<'_> {
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::config(self.path, msg)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn usize_key(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("missing key `{key}`"))),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.err(format!("key `{key}`: expected a non-negative integer, found {v}"))),
        }
    }

    pub fn f64_key(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("key `{key}`: expected a number, found {v}"))),
        }
    }

    pub fn str_key(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(format!("key `{key}`: expected a string, found {v}"))),
        }
    }

    /// A boolean option that must be absent or hold `expected`.
    pub fn require_bool(&self, key: &str, expected: bool, why: &str) -> Result<()> {
        match self.get(key) {
            None => Ok(()),
            Some(Value::Bool(b)) if *b == expected => Ok(()),
            Some(v) => Err(self.err(format!(
                "unsupported option `{key}` = {v}: crossrank requires {expected} ({why})"
            ))),
        }
    }

    /// A string option that must be absent or one of `allowed`.
    pub fn require_str(&self, key: &str, allowed: &[&str], why: &str) -> Result<()> {
        match self.str_key(key)? {
            None => Ok(()),
            Some(v) if allowed.contains(&v) => Ok(()),
            Some(other) => Err(self.err(format!("unsupported option `{key}` = \"{other}\": {why}"))),
        }
    }

    fn architectures(&self) -> Vec<&str> {
        match self.get("architectures") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    fn parse(&self) -> Result<ModelConfig> {
        let model_type = self.str_key("model_type")?;
        let architectures = self.architectures();
        let Some(family) = crate::arch::find(model_type, &architectures) else {
            return Err(match model_type {
                Some(other) => self.err(format!(
                    "unsupported `model_type` \"{other}\": crossrank runs model_type {}",
                    crate::arch::supported_model_types()
                )),
                None => self.err("missing key `model_type`"),
            });
        };
        let model_type = model_type.unwrap_or(family.model_types()[0]).to_string();
        let default = |key: &str| family.size_default(&model_type, key);
        // A missing size says which family needed it.
        let size = |key: &str| {
            self.usize_key(key, default(key)).map_err(|e| match self.get(key) {
                None => self.err(format!(
                    "missing key `{key}` (required for model_type \"{model_type}\")"
                )),
                Some(_) => e,
            })
        };

        let vocab_size = size("vocab_size")?;
        let hidden_size = size("hidden_size")?;
        let num_layers = size("num_hidden_layers")?;
        let num_heads = size("num_attention_heads")?;
        let intermediate_size = size("intermediate_size")?;
        let max_position_embeddings = size("max_position_embeddings")?;
        let type_vocab_size = size("type_vocab_size")?;
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
        if let Some(d) = self.get("head_dim") {
            if d.as_u64() != Some(head_dim as u64) {
                return Err(self.err(format!(
                    "unsupported option `head_dim` = {d}: must equal hidden_size / num_attention_heads = {head_dim}"
                )));
            }
        }
        if !(layer_norm_eps > 0.0 && layer_norm_eps < 1e-2) {
            return Err(self.err(format!("key `layer_norm_eps` = {layer_norm_eps} is out of range")));
        }
        self.require_str(
            "hidden_act",
            &["gelu"],
            "crossrank implements the exact erf GELU (\"gelu\")",
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
        let activation = self.activation()?;
        let declared_dtype = self
            .str_key("torch_dtype")
            .ok()
            .flatten()
            .or(self.str_key("dtype").ok().flatten())
            .map(str::to_owned);

        let mut config = ModelConfig {
            path: self.path.to_path_buf(),
            family,
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
            rope: NO_ROPE,
            padding_idx: None,
            activation,
            declared_dtype,
        };
        family.parse_config(self, &mut config)?;
        Ok(config)
    }

    /// sentence-transformers' `activation_fn` (v4+) or the legacy key; Sigmoid by default
    /// for a single label, as `CrossEncoder.get_default_activation_fn` does: the legacy key is
    /// read whenever `sentence_transformers` has no `activation_fn` key (an object without
    /// it included), and an explicit `null` means the default.
    fn activation(&self) -> Result<Activation> {
        let legacy = || -> Result<(&'static str, Option<&str>)> {
            let key = "sbert_ce_default_activation_function";
            match self.get(key) {
                Some(Value::Null) => Ok((key, None)),
                _ => Ok((key, self.str_key(key)?)),
            }
        };
        let (key, name) = match self.get("sentence_transformers") {
            Some(Value::Object(st)) => match st.get("activation_fn") {
                Some(Value::String(s)) => ("sentence_transformers.activation_fn", Some(s.as_str())),
                Some(Value::Null) => ("", None),
                None => legacy()?,
                Some(v) => {
                    return Err(self.err(format!(
                        "key `sentence_transformers.activation_fn`: expected a string, found {v}"
                    )))
                }
            },
            Some(v) => return Err(self.err(format!("key `sentence_transformers`: expected an object, found {v}"))),
            None => legacy()?,
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
    fn activation_follows_cross_encoders_default_rules() {
        let with = |extra: &str| {
            parse(&BASE.replace("\"type_vocab_size\": 1,", &format!("\"type_vocab_size\": 1, {extra},")))
                .unwrap()
                .activation
        };
        let legacy = r#""sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity""#;
        // The legacy key counts whenever `sentence_transformers` has no `activation_fn` key.
        assert_eq!(with(legacy), Activation::Identity);
        assert_eq!(
            with(&format!(r#"{legacy}, "sentence_transformers": {{"version": "5.0.0"}}"#)),
            Activation::Identity
        );
        // `activation_fn` wins over the legacy key; an explicit null means the default.
        let tanh = r#""sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Tanh"}"#;
        assert_eq!(with(&format!("{legacy}, {tanh}")), Activation::Tanh);
        let null = r#""sentence_transformers": {"activation_fn": null}"#;
        assert_eq!(with(&format!("{legacy}, {null}")), Activation::Sigmoid);
        assert_eq!(
            with(r#""sbert_ce_default_activation_function": null"#),
            Activation::Sigmoid
        );
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
