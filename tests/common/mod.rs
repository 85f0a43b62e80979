//! Shared helpers of the integration tests: the committed tiny fixture, copies of it with
//! one thing changed, and running the `crossrank` binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// One case of a fixture's expected.jsonl.
#[derive(Clone, Debug)]
pub struct Case {
    pub query: String,
    pub document: String,
    pub max_length: usize,
    pub input_ids: Vec<u32>,
    pub logit: f32,
}

pub fn read_cases(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Case {
                query: v["query"].as_str().unwrap().to_string(),
                document: v["document"].as_str().unwrap().to_string(),
                max_length: v["max_length"].as_u64().unwrap() as usize,
                input_ids: v["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect(),
                logit: v["logit"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

/// A stored tensor, owned.
#[derive(Clone, Debug)]
pub struct OwnedTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read_tensors(path: &Path) -> BTreeMap<String, OwnedTensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                OwnedTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                },
            )
        })
        .collect()
}

pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, OwnedTensor>) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Values of an F32 tensor.
pub fn f32_values(t: &OwnedTensor) -> Vec<f32> {
    assert_eq!(t.dtype, Dtype::F32);
    t.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn from_f32(values: &[f32], shape: Vec<usize>, dtype: Dtype) -> OwnedTensor {
    let data = match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        other => panic!("unsupported {other:?}"),
    };
    OwnedTensor { dtype, shape, data }
}

/// A temporary copy of the fixture's non-checkpoint files (config, tokenizer, ...).
pub fn copy_fixture_files(dst: &Path, with_checkpoint: bool) {
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_str().unwrap();
        if name.ends_with(".safetensors") && !with_checkpoint {
            continue;
        }
        std::fs::copy(entry.path(), dst.join(name)).unwrap();
    }
}

/// A temp dir holding a copy of the fixture whose tensors went through `edit`.
pub fn fixture_with_tensors(edit: impl FnOnce(&mut BTreeMap<String, OwnedTensor>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_files(dir.path(), false);
    let mut tensors = read_tensors(&fixture_dir().join("model.safetensors"));
    edit(&mut tensors);
    write_tensors(&dir.path().join("model.safetensors"), &tensors);
    dir
}

/// A temp dir holding a copy of the fixture whose config.json went through `edit`.
pub fn fixture_with_config(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture_files(dir.path(), true);
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    dir
}

pub fn crossrank() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossrank"));
    // Tests must never reach for a network or a user cache.
    cmd.env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE");
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run crossrank")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `|got - want| <= abs + rel·|want|` elementwise, printing the first mismatches.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad = Vec::new();
    let mut max_err = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        max_err = max_err.max(err);
        // NaN on either side fails too.
        let within = err <= abs + rel * w.abs();
        if !within {
            bad.push((i, *g, *w, err));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(10)
            .map(|(i, g, w, e)| format!("  [{i}] got {g:.9} want {w:.9} |err| {e:.3e}"))
            .collect();
        panic!(
            "{what}: {} of {} values outside abs {abs:e} + rel {rel:e}·|ref| (max |err| {max_err:.3e}); first:\n{}",
            bad.len(),
            got.len(),
            first.join("\n")
        );
    }
    eprintln!("{what}: {} values, max |err| {max_err:.3e}", got.len());
}
