//! The CPU reference against the transformers reference logits of a fixture
//! (tools/make_fixture.py): token ids, logits, batch invariance, storage dtypes, shards and
//! the transformers-native tensor layout.

mod common;

use std::path::Path;

use common::*;
use crossrank::engine::ModelFiles;
use crossrank::tokenize::EncodedPair;
use crossrank::{Device, Engine, EngineOptions};
use safetensors::Dtype;

/// Tolerance of the acceptance criterion: CPU logits within 1e-4 of transformers.
const LOGIT_TOL: f32 = 1e-4;

fn cpu_engine(dir: &Path, batch_tokens: Option<usize>) -> Engine {
    Engine::load(
        dir,
        &EngineOptions {
            device: Device::Cpu,
            batch_tokens,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Checks ids and logits of every case of `dir/expected.jsonl`; returns the max |Δlogit|.
fn check_fixture(dir: &Path) -> f32 {
    let cases = read_cases(dir);
    assert!(!cases.is_empty());
    let engine = cpu_engine(dir, None);
    let mut encoded = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (_, tokenizer) = ModelFiles::open_tokenizer(dir, Some(case.max_length)).unwrap();
        let pair = tokenizer.encode_pair(&case.query, &case.document).unwrap();
        assert_eq!(
            pair.ids, case.input_ids,
            "case {i}: token ids differ from Python tokenizers (max_length {})",
            case.max_length
        );
        encoded.push(pair);
    }
    let logits = engine.score_encoded(&encoded).unwrap();
    let want: Vec<f32> = cases.iter().map(|c| c.logit).collect();
    let longest = encoded.iter().map(EncodedPair::len).max().unwrap();
    assert_close(
        &format!(
            "{} logits vs transformers ({} cases, longest {longest} tokens)",
            dir.display(),
            cases.len()
        ),
        &logits,
        &want,
        LOGIT_TOL,
        0.0,
    );
    logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn tiny_fixture_matches_transformers() {
    let cases = read_cases(&fixture_dir());
    // The fixture must exercise what the acceptance criteria name.
    assert!(
        cases.iter().any(|c| c.input_ids.len() > 2000),
        "no sequence over 2,000 tokens"
    );
    assert!(
        cases
            .iter()
            .any(|c| c.max_length < 8192 && c.input_ids.len() == c.max_length),
        "no pair cut by max_length"
    );
    check_fixture(&fixture_dir());
}

/// The real-size check: `python tools/make_fixture.py --preset real --out DIR`, then
/// `CROSSRANK_FIXTURE_DIR=DIR cargo test --release --test reference -- --ignored`.
#[test]
#[ignore = "needs CROSSRANK_FIXTURE_DIR (a real-size fixture from tools/make_fixture.py --preset real)"]
fn fixture_dir_from_env_matches_transformers() {
    let dir = std::env::var("CROSSRANK_FIXTURE_DIR").expect("set CROSSRANK_FIXTURE_DIR");
    let max = check_fixture(Path::new(&dir));
    eprintln!("max |logit - transformers| = {max:.3e}");
}

#[test]
fn logit_is_the_same_alone_and_in_a_mixed_batch() {
    let dir = fixture_dir();
    let cases = read_cases(&dir);
    let encoded: Vec<EncodedPair> = cases
        .iter()
        .map(|c| EncodedPair {
            ids: c.input_ids.clone(),
            type_ids: Vec::new(),
            truncated: false,
        })
        .collect();
    // One huge batch holding every length together...
    let together = cpu_engine(&dir, Some(1 << 20)).score_encoded(&encoded).unwrap();
    // ...against one pair per batch.
    let alone_engine = cpu_engine(&dir, Some(1));
    let alone: Vec<f32> = encoded
        .iter()
        .map(|e| alone_engine.score_encoded(std::slice::from_ref(e)).unwrap()[0])
        .collect();
    assert_close("alone vs mixed batch", &alone, &together, 1e-5, 0.0);
}

#[test]
fn cls_only_last_layer_is_exact() {
    let dir = fixture_dir();
    let files = ModelFiles::open(&dir, None).unwrap();
    let mut model = crossrank::model::cpu::CpuModel::new(files.tensors.clone(), 0).unwrap();
    let cases = read_cases(&dir);
    let batch = crossrank::batch::PackedBatch::from_sequences(cases.iter().map(|c| c.input_ids.as_slice()));
    use crossrank::model::Backend;
    let pruned = model.forward(&batch).unwrap();
    model.cls_only_last_layer = false;
    let full = model.forward(&batch).unwrap();
    assert_close("CLS-only last layer vs full last layer", &pruned, &full, 1e-6, 0.0);
}

fn fixture_logits(dir: &Path) -> Vec<f32> {
    let cases = read_cases(&fixture_dir());
    let engine = cpu_engine(dir, None);
    let encoded: Vec<EncodedPair> = cases
        .iter()
        .map(|c| EncodedPair {
            ids: c.input_ids.clone(),
            type_ids: Vec::new(),
            truncated: false,
        })
        .collect();
    engine.score_encoded(&encoded).unwrap()
}

#[test]
fn f16_and_bf16_storage_give_the_same_logits() {
    // The fixture's weights are exactly representable in bf16 and f16, so converting the
    // storage must not change a single logit.
    let reference = fixture_logits(&fixture_dir());
    for dtype in [Dtype::F16, Dtype::BF16] {
        let dir = fixture_with_tensors(|tensors| {
            for t in tensors.values_mut() {
                let values = f32_values(t);
                *t = from_f32(&values, t.shape.clone(), dtype);
            }
        });
        let logits = fixture_logits(dir.path());
        assert_close(&format!("{dtype:?} storage"), &logits, &reference, 0.0, 0.0);
    }
}

#[test]
fn sharded_checkpoint_gives_the_same_logits() {
    let reference = fixture_logits(&fixture_dir());
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_files(dir.path(), false);
    let tensors = read_tensors(&fixture_dir().join("model.safetensors"));
    let mut shards = [std::collections::BTreeMap::new(), std::collections::BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let shard = i % 2;
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        weight_map.insert(name.clone(), file.into());
        shards[shard].insert(name, t);
    }
    for (i, shard) in shards.iter().enumerate() {
        write_tensors(
            &dir.path().join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            shard,
        );
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let logits = fixture_logits(dir.path());
    assert_close("sharded checkpoint", &logits, &reference, 0.0, 0.0);

    // A shard that the index names but that is gone is an error naming it.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Engine::load(
        dir.path(),
        &EngineOptions {
            device: Device::Cpu,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
}

#[test]
fn native_transformers_layout_gives_the_same_logits() {
    // Rename to transformers' native GTE names (separate q/k/v and up/gate, `gte.` prefix)
    // and express RoPE as native `rope_parameters`: same model, same logits.
    let reference = fixture_logits(&fixture_dir());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap()).unwrap();
    let heads = config["num_attention_heads"].as_u64().unwrap() as f64;
    let hidden = config["hidden_size"].as_u64().unwrap() as f64;
    let theta = config["rope_theta"].as_f64().unwrap();
    let factor = config["rope_scaling"]["factor"].as_f64().unwrap();
    let head_dim = hidden / heads;

    let dir = fixture_with_tensors(|tensors| {
        let old = std::mem::take(tensors);
        for (name, t) in old {
            let name = name.strip_prefix("new.").map(|n| format!("gte.{n}")).unwrap_or(name);
            let name = name.replace("encoder.layer.", "layers.");
            let split = |t: &OwnedTensor, parts: usize| -> Vec<OwnedTensor> {
                let rows = t.shape[0] / parts;
                let row_bytes = t.data.len() / t.shape[0];
                (0..parts)
                    .map(|p| {
                        let mut shape = t.shape.clone();
                        shape[0] = rows;
                        OwnedTensor {
                            dtype: t.dtype,
                            shape,
                            data: t.data[p * rows * row_bytes..(p + 1) * rows * row_bytes].to_vec(),
                        }
                    })
                    .collect()
            };
            if name.contains("attention.qkv_proj") {
                let kind = if name.ends_with("weight") { "weight" } else { "bias" };
                let layer = name.split(".attention.").next().unwrap().to_string();
                for (t, x) in split(&t, 3).into_iter().zip(["q", "k", "v"]) {
                    tensors.insert(format!("{layer}.self_attn.{x}_proj.{kind}"), t);
                }
            } else if name.contains("mlp.up_gate_proj") {
                let layer = name.split(".mlp.").next().unwrap().to_string();
                let parts = split(&t, 2);
                tensors.insert(format!("{layer}.mlp.up_proj.weight"), parts[0].clone());
                tensors.insert(format!("{layer}.mlp.gate_proj.weight"), parts[1].clone());
            } else {
                let name = name
                    .replace("attention.o_proj", "self_attn.o_proj")
                    .replace("attn_ln", "post_attention_layernorm")
                    .replace("mlp_ln", "post_mlp_layernorm");
                tensors.insert(name, t);
            }
        }
    });
    let path = dir.path().join("config.json");
    let mut native = config.clone();
    let obj = native.as_object_mut().unwrap();
    obj.insert("model_type".into(), "gte".into());
    obj.remove("rope_scaling");
    obj.remove("rope_theta");
    obj.insert(
        "rope_parameters".into(),
        serde_json::json!({"rope_type": "linear", "rope_theta": theta * factor, "factor": factor.powf(2.0 / head_dim)}),
    );
    std::fs::write(&path, native.to_string()).unwrap();
    let logits = fixture_logits(dir.path());
    assert_close("native GTE layout", &logits, &reference, 1e-5, 0.0);
}
