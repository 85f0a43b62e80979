//! The XLM-RoBERTa and BERT families on the CPU against transformers' float32 models, on the
//! seeded random-weight fixtures `tests/fixtures/xlmr-tiny` and `tests/fixtures/bert-tiny`
//! (tools/make_family_fixtures.py; `CROSSRANK_FAMILY_FIXTURES` points at another root with
//! the same two directories).
//!
//! The expected token ids and segment ids are fed straight to the backend, so most tests
//! check the forward alone (the tokenizer has its own golden tests); `*_engine_*` go
//! through the tokenizer too.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossrank::batch::PackedBatch;
use crossrank::config::ModelConfig;
use crossrank::engine::ModelFiles;
use crossrank::model::{Backend, Precision};
use crossrank::weights::{Checkpoint, ModelTensors};
use crossrank::{Engine, EngineOptions};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("CROSSRANK_FAMILY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    let dir = root.join(name);
    assert!(
        dir.join("expected.jsonl").is_file(),
        "fixture {} is missing",
        dir.display()
    );
    dir
}

struct Case {
    name: String,
    query: String,
    document: String,
    max_length: usize,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    logit: f32,
}

fn cases(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Case {
                name: v["case"].as_str().unwrap().to_string(),
                query: v["query"].as_str().unwrap().to_string(),
                document: v["document"].as_str().unwrap().to_string(),
                max_length: v["max_length"].as_u64().unwrap() as usize,
                ids: ids(&v["input_ids"]),
                type_ids: ids(&v["token_type_ids"]),
                logit: v["logit"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

/// Config and checkpoint only (no tokenizer: the ids come from expected.jsonl).
fn tensors(dir: &Path) -> Arc<ModelTensors> {
    let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let ckpt = Checkpoint::open_dir(dir).unwrap();
    let tensors = ModelTensors::new(Arc::new(ckpt), config).unwrap();
    tensors.validate().unwrap();
    Arc::new(tensors)
}

fn backend(dir: &Path, precision: Precision) -> Box<dyn Backend> {
    let tensors = tensors(dir);
    tensors
        .config
        .family
        .load_cpu(Arc::clone(&tensors), precision, 2)
        .unwrap()
}

/// Logits of `cases` in batches of about `batch_tokens` tokens, in case order.
fn logits(model: &dyn Backend, cases: &[&Case], batch_tokens: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let mut batch = PackedBatch::new();
    for case in cases {
        if batch.num_seqs() > 0 && batch.num_tokens() + case.ids.len() > batch_tokens {
            out.extend(model.forward(&batch).unwrap());
            batch.clear();
        }
        batch.push_typed(&case.ids, &case.type_ids);
    }
    if batch.num_seqs() > 0 {
        out.extend(model.forward(&batch).unwrap());
    }
    out
}

/// `|got - want| <= abs + rel·|want|` for every case; prints the first mismatches.
fn assert_close(what: &str, cases: &[&Case], got: &[f32], want: &[f32], abs: f32, rel: f32) -> f32 {
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    let mut bad = Vec::new();
    for ((case, &g), &w) in cases.iter().zip(got).zip(want) {
        let err = (g - w).abs();
        worst = worst.max(err);
        // NaN fails too.
        if err.is_nan() || err > abs + rel * w.abs() {
            bad.push(format!("  {}: got {g:.7}, want {w:.7} (|diff| {err:.2e})", case.name));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} outside {abs:e} + {rel:e}·|ref|; first:\n{}",
        bad.len(),
        got.len(),
        bad[..bad.len().min(8)].join("\n")
    );
    eprintln!("{what}: {} cases, max |diff| {worst:.2e}", got.len());
    worst
}

fn check_against_transformers(name: &str) {
    let dir = fixture(name);
    let all = cases(&dir);
    let model = backend(&dir, Precision::F32);
    let refs: Vec<&Case> = all.iter().collect();
    let want: Vec<f32> = all.iter().map(|c| c.logit).collect();
    let got = logits(model.as_ref(), &refs, 4096);
    assert_close(&format!("{name} f32 vs transformers"), &refs, &got, &want, 1e-4, 0.0);
    // The fixture covers what the acceptance names: --max-length 40 and the longest inputs.
    assert!(
        all.iter().any(|c| c.max_length == 40),
        "{name}: no --max-length 40 case"
    );
    let longest = all.iter().map(|c| c.ids.len()).max().unwrap();
    eprintln!("{name}: longest case {longest} tokens");
}

#[test]
fn xlmr_logits_match_transformers_f32() {
    check_against_transformers("xlmr-tiny");
    let longest = cases(&fixture("xlmr-tiny")).iter().map(|c| c.ids.len()).max().unwrap();
    assert!(
        longest > 2000,
        "XLM-R fixture lacks a case over 2,000 tokens ({longest})"
    );
}

#[test]
fn bert_logits_match_transformers_f32() {
    check_against_transformers("bert-tiny");
    let all = cases(&fixture("bert-tiny"));
    assert!(
        all.iter().any(|c| c.ids.len() == 512),
        "BERT fixture lacks a case cut at 512"
    );
    assert!(
        all.iter().any(|c| c.type_ids.contains(&1)),
        "BERT fixture has no segment-1 tokens"
    );
}

/// The same pairs one per batch, and all together in reverse order, give the same logits.
fn check_batch_invariance(name: &str) {
    let dir = fixture(name);
    let all = cases(&dir);
    let model = backend(&dir, Precision::F32);
    let forward: Vec<&Case> = all.iter().collect();
    let alone = logits(model.as_ref(), &forward, 1);
    let reversed: Vec<&Case> = all.iter().rev().collect();
    let mut together = logits(model.as_ref(), &reversed, usize::MAX);
    together.reverse();
    assert_close(
        &format!("{name} batched vs alone"),
        &forward,
        &together,
        &alone,
        1e-5,
        0.0,
    );
}

#[test]
fn xlmr_batch_invariance() {
    check_batch_invariance("xlmr-tiny");
}

#[test]
fn bert_batch_invariance() {
    check_batch_invariance("bert-tiny");
}

/// The fp16 twin (`--precision fp16`) stays near the f32 reference; the drift is printed.
fn check_fp16_twin(name: &str, budget: f32) {
    let dir = fixture(name);
    let all = cases(&dir);
    let refs: Vec<&Case> = all.iter().collect();
    let f32_logits = logits(backend(&dir, Precision::F32).as_ref(), &refs, 4096);
    let fp16_logits = logits(backend(&dir, Precision::Fp16).as_ref(), &refs, 4096);
    let worst = assert_close(
        &format!("{name} fp16 twin vs f32"),
        &refs,
        &fp16_logits,
        &f32_logits,
        budget,
        0.0,
    );
    // A twin that rounds nothing would be a second f32 model.
    assert!(worst > 0.0, "{name}: the fp16 twin equals the f32 reference exactly");
}

#[test]
fn xlmr_fp16_twin_tracks_f32() {
    check_fp16_twin("xlmr-tiny", 2e-2);
}

#[test]
fn bert_fp16_twin_tracks_f32() {
    check_fp16_twin("bert-tiny", 2e-2);
}

/// Through the engine (tokenizer with its pair template and segment ids, default max length,
/// batching): the whole path checked against transformers.
fn check_engine(name: &str) {
    let dir = fixture(name);
    let all = cases(&dir);
    let default_max = all.iter().map(|c| c.max_length).max().unwrap();
    let mut lengths: Vec<usize> = all.iter().map(|c| c.max_length).collect();
    lengths.sort();
    lengths.dedup();
    for max_length in lengths {
        let options = EngineOptions {
            device: crossrank::Device::Cpu,
            max_length: (max_length != default_max).then_some(max_length),
            threads: 2,
            ..EngineOptions::default()
        };
        let engine = Engine::load(&dir, &options).unwrap();
        assert_eq!(engine.max_length(), max_length);
        let subset: Vec<&Case> = all.iter().filter(|c| c.max_length == max_length).collect();
        let pairs: Vec<(&str, &str)> = subset.iter().map(|c| (c.query.as_str(), c.document.as_str())).collect();
        for (case, pair) in subset.iter().zip(&pairs) {
            let encoded = engine.encode(pair.0, pair.1).unwrap();
            assert_eq!(encoded.ids, case.ids, "{}: token ids", case.name);
            let type_ids = if encoded.type_ids.is_empty() {
                vec![0; encoded.ids.len()]
            } else {
                encoded.type_ids.clone()
            };
            assert_eq!(type_ids, case.type_ids, "{}: segment ids", case.name);
        }
        let got: Vec<f32> = engine.score_pairs(&pairs).unwrap().iter().map(|s| s.logit).collect();
        let want: Vec<f32> = subset.iter().map(|c| c.logit).collect();
        assert_close(
            &format!("{name} engine at max length {max_length}"),
            &subset,
            &got,
            &want,
            1e-4,
            0.0,
        );
    }
}

#[test]
fn xlmr_engine_scores_match_transformers() {
    check_engine("xlmr-tiny");
}

#[test]
fn bert_engine_scores_match_transformers() {
    check_engine("bert-tiny");
}

/// A copy of fixture `name` with config.json edited by `edit`.
fn with_config(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let src = fixture(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn unsupported_configs_name_the_key() {
    let cases: [(&str, &str, Value, &str); 12] = [
        ("xlmr-tiny", "num_labels", 2.into(), "num_labels"),
        ("bert-tiny", "num_labels", 3.into(), "num_labels"),
        // 128 / 8 = head dim 16.
        ("xlmr-tiny", "num_attention_heads", 8.into(), "num_attention_heads"),
        ("bert-tiny", "num_attention_heads", 2.into(), "num_attention_heads"),
        ("bert-tiny", "num_hidden_layers", 25.into(), "num_hidden_layers"),
        (
            "xlmr-tiny",
            "max_position_embeddings",
            9000.into(),
            "max_position_embeddings",
        ),
        (
            "bert-tiny",
            "max_position_embeddings",
            8193.into(),
            "max_position_embeddings",
        ),
        (
            "bert-tiny",
            "position_embedding_type",
            "relative_key".into(),
            "position_embedding_type",
        ),
        ("xlmr-tiny", "hidden_act", "gelu_new".into(), "hidden_act"),
        ("bert-tiny", "type_vocab_size", 0.into(), "type_vocab_size"),
        ("xlmr-tiny", "pad_token_id", 2099.into(), "pad_token_id"),
        (
            "bert-tiny",
            "sentence_transformers",
            serde_json::json!({"activation_fn": "torch.nn.modules.activation.Softmax"}),
            "activation_fn",
        ),
    ];
    for (name, key, value, named) in cases {
        let dir = with_config(name, |c| {
            c.insert(key.to_string(), value.clone());
        });
        let err = match ModelFiles::open(dir.path(), None) {
            Ok(_) => panic!("{name} with {key} = {value} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(named) && err.contains("config.json"),
            "{name} with {key} = {value}: the error does not name `{named}` and config.json: {err}"
        );
    }
    // A hidden size over 1024 (33 heads of 32).
    let dir = with_config("bert-tiny", |c| {
        c.insert("hidden_size".into(), 1056.into());
        c.insert("num_attention_heads".into(), 33.into());
    });
    let err = ModelFiles::open(dir.path(), None)
        .err()
        .expect("hidden 1056 accepted")
        .to_string();
    assert!(err.contains("hidden_size"), "{err}");
}

#[test]
fn activation_comes_from_the_config() {
    let dir = with_config("bert-tiny", |c| {
        c.insert(
            "sentence_transformers".into(),
            serde_json::json!({"activation_fn": "torch.nn.modules.linear.Identity"}),
        );
    });
    let config = ModelConfig::from_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(config.activation, crossrank::config::Activation::Identity);
    assert_eq!(
        tensors(&fixture("bert-tiny")).config.activation,
        crossrank::config::Activation::Sigmoid
    );
}

fn check_info(name: &str, family: &str) {
    let dir = fixture(name);
    let out = common::run(common::crossrank().args(["info", "--json", "--model"]).arg(&dir));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["family"], family, "{v}");
    assert_eq!(v["unused_tensors"], serde_json::json!([]), "{v}");
    let out = common::run(common::crossrank().args(["info", "--model"]).arg(&dir));
    let text = common::stdout(&out);
    assert!(text.contains(&format!("family           {family}")), "{text}");
}

#[test]
fn info_names_the_family() {
    check_info("xlmr-tiny", "xlm-roberta");
    let out = common::run(
        common::crossrank()
            .args(["info", "--json", "--model"])
            .arg(common::fixture_dir()),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["family"], "gte", "{v}");
}

#[test]
fn bert_info_names_the_family() {
    check_info("bert-tiny", "bert");
}

#[test]
fn default_activation_follows_cross_encoder_rules() {
    // No activation key at all: Sigmoid for one label.
    let dir = with_config("xlmr-tiny", |c| {
        c.remove("sentence_transformers");
        c.remove("sbert_ce_default_activation_function");
    });
    let config = ModelConfig::from_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(config.activation, crossrank::config::Activation::Sigmoid);
    // A `sentence_transformers` object without `activation_fn`: the legacy key still counts.
    let dir = with_config("xlmr-tiny", |c| {
        c.insert("sentence_transformers".into(), serde_json::json!({"version": "6.2.0"}));
        c.insert(
            "sbert_ce_default_activation_function".into(),
            serde_json::json!("torch.nn.modules.linear.Identity"),
        );
    });
    let config = ModelConfig::from_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(config.activation, crossrank::config::Activation::Identity);
}

#[test]
fn segment_ids_of_the_template_must_be_ones_the_model_embeds() {
    // XLM-R's config with BERT's tokenizer (vocab_size raised past its ids): XLM-R embeds no
    // segments, the template assigns segment 1.
    let dir = with_config("xlmr-tiny", |c| {
        c.insert("vocab_size".into(), serde_json::json!(8000));
    });
    std::fs::copy(
        fixture("bert-tiny").join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let err = ModelFiles::open_tokenizer(dir.path(), None)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("embeds none") && err.contains("tokenizer.json"), "{err}");
    // BERT with a single segment row: segment 1 has nothing to read.
    let dir = with_config("bert-tiny", |c| {
        c.insert("type_vocab_size".into(), serde_json::json!(1));
    });
    let err = ModelFiles::open_tokenizer(dir.path(), None)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("type_vocab_size (1)"), "{err}");
}
