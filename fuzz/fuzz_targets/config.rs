//! Fuzzes `ModelConfig::from_json_str` (config.json) and `read_model_max_length`
//! (tokenizer_config.json).
//!
//! Every input is used twice:
//! 1. as text (lossy UTF-8) handed to the parsers as is;
//! 2. as a script of mutations (via `arbitrary`) applied to the tiny fixture's valid
//!    config.json — known keys set to edge-case values or removed — so the fuzzer spends its
//!    time past the JSON syntax, in the validation logic. With FUZZ_PRINT_CONFIG set in the
//!    environment the mutated text is printed to stderr (to keep a crash as a plain
//!    config.json regression input).
//!
//! Invariants: `check_config` in fuzz/src/checks.rs. Seeds: fuzz/seeds/config.

#![no_main]

#[path = "../src/checks.rs"]
mod checks;

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    checks::check_config(&String::from_utf8_lossy(data));
    checks::check_tokenizer_config(data);

    let mut u = Unstructured::new(data);
    if let Ok(text) = mutated_config(&mut u) {
        static PRINT: OnceLock<bool> = OnceLock::new();
        if *PRINT.get_or_init(|| std::env::var_os("FUZZ_PRINT_CONFIG").is_some()) {
            eprintln!("mutated config: {text}");
        }
        checks::check_config(&text);
    }
});

const KEYS: &[&str] = &[
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "head_dim",
    "hidden_act",
    "position_embedding_type",
    "layer_norm_type",
    "logn_attention_scale",
    "logn_attention_clip1",
    "pack_qkv",
    "is_decoder",
    "num_labels",
    "id2label",
    "rope_theta",
    "rope_scaling",
    "rope_scaling.type",
    "rope_scaling.rope_type",
    "rope_scaling.factor",
    "rope_scaling.mixed_b",
    "rope_scaling.rope_theta",
    "rope_parameters",
    "rope_parameters.rope_type",
    "rope_parameters.type",
    "rope_parameters.factor",
    "rope_parameters.rope_theta",
    "sentence_transformers",
    "sentence_transformers.activation_fn",
    "sbert_ce_default_activation_function",
    "torch_dtype",
    "dtype",
];

const STRINGS: &[&str] = &[
    "new",
    "gte",
    "bert",
    "ntk",
    "dynamic",
    "linear",
    "default",
    "gelu",
    "gelu_new",
    "rope",
    "absolute",
    "layer_norm",
    "rms_norm",
    "Sigmoid",
    "torch.nn.modules.activation.Sigmoid",
    "torch.nn.modules.linear.Identity",
    "torch.nn.Tanh",
    "Softmax",
    ".",
    "",
    "float16",
];

const INTS: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    8,
    12,
    16,
    64,
    128,
    768,
    1024,
    4032,
    8192,
    250048,
    1 << 20,
    1 << 31,
    1 << 32,
    (1 << 32) + 2,
    1 << 40,
    1 << 62,
    (1 << 63) + 2,
    u64::MAX - 1,
    u64::MAX,
];

const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    -1.0,
    0.5,
    1.0,
    1.0000001,
    2.0,
    8.0,
    1e-12,
    1e-2,
    1e-300,
    5e-324,
    1e300,
    1.7976931348623157e308,
    -1e300,
    10000.0,
    160000.0,
];

fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=10u8)? {
        0 => Value::from(*u.choose(INTS)?),
        1 => Value::from(u64::arbitrary(u)?),
        2 => Value::from(-(u.int_in_range(1..=i64::MAX)?)),
        3 => Value::from(*u.choose(FLOATS)?),
        // Non-finite floats become null.
        4 => Value::from(f64::arbitrary(u)?),
        5 => Value::from(*u.choose(STRINGS)?),
        6 => Value::from(String::arbitrary(u)?),
        7 => Value::Bool(bool::arbitrary(u)?),
        8 => Value::Null,
        9 if depth < 2 => {
            let n = u.int_in_range(0..=3u8)?;
            let mut m = Map::new();
            for _ in 0..n {
                let key = if bool::arbitrary(u)? {
                    (*u.choose(&["type", "rope_type", "factor", "rope_theta", "activation_fn", "0", "1"])?).to_string()
                } else {
                    String::arbitrary(u)?
                };
                m.insert(key, value(u, depth + 1)?);
            }
            Value::Object(m)
        }
        _ if depth < 2 => {
            let n = u.int_in_range(0..=2u8)?;
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect::<Result<_>>()?)
        }
        _ => Value::Null,
    })
}

fn mutated_config(u: &mut Unstructured<'_>) -> Result<String> {
    let Value::Object(mut obj) = serde_json::from_str(checks::TINY_CONFIG).expect("fixture config is JSON") else {
        unreachable!("fixture config is an object")
    };
    if bool::arbitrary(u)? {
        // Start from the transformers-native spelling instead.
        obj.insert("model_type".into(), Value::from("gte"));
        obj.shift_remove("rope_scaling");
        obj.insert("rope_theta".into(), Value::from(160000));
    }
    let ops = u.int_in_range(1..=8u8)?;
    for _ in 0..ops {
        if u.is_empty() {
            break;
        }
        let key = if u.ratio(1, 16)? {
            String::arbitrary(u)?
        } else {
            (*u.choose(KEYS)?).to_string()
        };
        let remove = u.ratio(1, 5)?;
        let new = if remove { None } else { Some(value(u, 0)?) };
        set(&mut obj, &key, new);
    }
    Ok(serde_json::to_string(&obj).expect("a JSON map serializes"))
}

/// Sets (or removes) `key`, or `parent.child` inside the object `parent` (created if absent).
fn set(obj: &mut Map<String, Value>, key: &str, new: Option<Value>) {
    if let Some((parent, child)) = key.split_once('.').filter(|(p, _)| KEYS.contains(p)) {
        let entry = obj
            .entry(parent.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else { unreachable!() };
        match new {
            Some(v) => inner.insert(child.to_string(), v),
            None => inner.shift_remove(child),
        };
        return;
    }
    match new {
        Some(v) => obj.insert(key.to_string(), v),
        None => obj.shift_remove(key),
    };
}
