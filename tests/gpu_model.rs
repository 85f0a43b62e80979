//! The whole model on the GPU against the f32 CPU reference:
//! - the committed tiny fixture (head_dim 16: the reference-attention path), also against the
//!   fixture's expected logits, and batch invariance;
//! - a synthetic checkpoint with the real layer shapes (hidden 768, 12 heads of 64, MLP 3072;
//!   2 layers, a small vocabulary), written here: the flash + CLS-only path, the reference
//!   path, capacity growth, and the out-of-range token error.
//!
//! GPU tests are `#[ignore]`d: `cargo test --release --test gpu_model -- --ignored
//! --test-threads=1 --nocapture`. The one CPU test checks the synthetic-checkpoint writer.

mod gpu_support;

use std::path::Path;
use std::sync::Arc;

use crossrank::batch::PackedBatch;
use crossrank::cuda::{AttentionChoice, AttentionPath, GpuModel, GpuOptions, KernelOrigin};
use crossrank::engine::ModelFiles;
use crossrank::model::cpu::CpuModel;
use crossrank::model::Backend;
use crossrank::verify::score_pairs;
use crossrank::Error;
use gpu_support::{assert_close, gpu, random_pairs, tiny_fixture, write_synthetic_model, Rng, SyntheticShape};

/// |GPU fp16 logit - CPU f32 logit| budget (spec §5 item 7).
const LOGIT_TOL: f32 = 5e-3;

const REAL_SHAPE: SyntheticShape = SyntheticShape {
    hidden: 768,
    heads: 12,
    layers: 2,
    inter: 3072,
    tokenizer_ids: 4001,
};

fn gpu_model(files: &ModelFiles, attention: AttentionChoice, batch_tokens: Option<usize>) -> GpuModel {
    let options = GpuOptions {
        batch_tokens,
        attention,
        kernels: KernelOrigin::Auto,
    };
    GpuModel::load_on(gpu(), &files.tensors, &options).unwrap_or_else(|e| panic!("loading the model on the GPU: {e}"))
}

fn cpu_model(files: &ModelFiles) -> CpuModel {
    CpuModel::new(Arc::clone(&files.tensors), 0).unwrap()
}

/// `(case, input_ids, logit)` of tests/fixtures/tiny/expected.jsonl.
fn expected_cases(dir: &Path) -> Vec<(String, Vec<u32>, f32)> {
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ids = v["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let name = v.get("case").and_then(|c| c.as_str()).unwrap_or("?").to_string();
            (name, ids, v["logit"].as_f64().unwrap() as f32)
        })
        .collect()
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn tiny_fixture_gpu_matches_cpu_and_expected() {
    gpu(); // fail fast without a GPU
    let dir = tiny_fixture();
    let files = ModelFiles::open(&dir, None).unwrap();
    let gpu_m = gpu_model(&files, AttentionChoice::Auto, None);
    assert_eq!(
        gpu_m.attention(),
        AttentionPath::Reference,
        "head_dim {} must fall back",
        files.config.head_dim
    );
    let cases = expected_cases(&dir);
    let pairs: Vec<Vec<u32>> = cases.iter().map(|c| c.1.clone()).collect();
    let expected: Vec<f32> = cases.iter().map(|c| c.2).collect();
    let got = score_pairs(&gpu_m, &pairs, 16384).unwrap();
    let cpu = score_pairs(&cpu_model(&files), &pairs, 4096).unwrap();
    eprintln!(
        "[tiny] {} cases, {}..{} tokens",
        pairs.len(),
        pairs.iter().map(Vec::len).min().unwrap(),
        pairs.iter().map(Vec::len).max().unwrap()
    );
    assert_close("tiny fixture: GPU vs CPU logits", &got, &cpu, LOGIT_TOL, 0.0);
    assert_close(
        "tiny fixture: GPU vs expected (HF f32) logits",
        &got,
        &expected,
        LOGIT_TOL + 1e-4,
        0.0,
    );
}

/// A sequence's logit must not depend on what else is in its batch (beyond fp16 rounding:
/// cuBLAS may pick other kernels for other row counts).
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn tiny_fixture_batch_invariance() {
    gpu(); // fail fast without a GPU
    let dir = tiny_fixture();
    let files = ModelFiles::open(&dir, None).unwrap();
    let m = gpu_model(&files, AttentionChoice::Auto, None);
    let pairs: Vec<Vec<u32>> = expected_cases(&dir).into_iter().map(|c| c.1).collect();
    let alone: Vec<f32> = pairs
        .iter()
        .map(|p| m.forward(&PackedBatch::from_sequences([&p[..]])).unwrap()[0])
        .collect();
    let together = m
        .forward(&PackedBatch::from_sequences(pairs.iter().map(|p| &p[..])))
        .unwrap();
    let mut reversed = m
        .forward(&PackedBatch::from_sequences(pairs.iter().rev().map(|p| &p[..])))
        .unwrap();
    reversed.reverse();
    assert_close(
        "batch invariance: one batch vs one by one",
        &together,
        &alone,
        2e-3,
        0.0,
    );
    assert_close(
        "batch invariance: reversed batch vs one by one",
        &reversed,
        &alone,
        2e-3,
        0.0,
    );
    // Same batch twice: bit-identical (no nondeterminism in the kernels).
    let again = m
        .forward(&PackedBatch::from_sequences(pairs.iter().map(|p| &p[..])))
        .unwrap();
    assert_eq!(together, again, "the same batch gave different logits");
}

/// Lengths that exercise every tile edge of the flash kernel, one long sequence, odd counts.
const LENGTHS: &[usize] = &[
    4, 5, 17, 40, 63, 64, 65, 100, 127, 128, 129, 130, 200, 257, 511, 1000, 2048, 7, 33, 300,
];

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn real_shape_model_flash_and_reference_match_cpu() {
    gpu(); // fail fast without a GPU
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_model(tmp.path(), REAL_SHAPE, 42);
    let files = ModelFiles::open(tmp.path(), None).unwrap();
    let mut rng = Rng::new(43);
    let pairs = random_pairs(&mut rng, LENGTHS, REAL_SHAPE.tokenizer_ids as u32 - 1);
    let cpu = score_pairs(&cpu_model(&files), &pairs, 4096).unwrap();
    eprintln!("[real-shape] cpu logits: {:?}", &cpu[..6]);

    let flash = gpu_model(&files, AttentionChoice::Auto, None);
    assert_eq!(flash.attention(), AttentionPath::Flash);
    let got_flash = score_pairs(&flash, &pairs, 16384).unwrap();
    assert_close("real shape: GPU flash+CLS vs CPU", &got_flash, &cpu, LOGIT_TOL, 0.0);
    // Small batches (many launches, other GEMM shapes) agree too.
    let got_small = score_pairs(&flash, &pairs, 300).unwrap();
    assert_close(
        "real shape: GPU flash, 300-token batches vs CPU",
        &got_small,
        &cpu,
        LOGIT_TOL,
        0.0,
    );
    drop(flash);

    let reference = gpu_model(&files, AttentionChoice::Reference, None);
    assert_eq!(reference.attention(), AttentionPath::Reference);
    let got_ref = score_pairs(&reference, &pairs, 16384).unwrap();
    assert_close(
        "real shape: GPU reference attention vs CPU",
        &got_ref,
        &cpu,
        LOGIT_TOL,
        0.0,
    );
    assert_close(
        "real shape: GPU flash vs GPU reference",
        &got_flash,
        &got_ref,
        LOGIT_TOL,
        0.0,
    );
}

/// A workspace sized for 256 tokens grows for a 2048-token sequence and still agrees.
#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn workspace_grows_for_a_long_sequence() {
    gpu(); // fail fast without a GPU
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_model(tmp.path(), REAL_SHAPE, 44);
    let files = ModelFiles::open(tmp.path(), None).unwrap();
    let m = gpu_model(&files, AttentionChoice::Auto, Some(256));
    assert_eq!(m.capacity_tokens(), 256);
    let mut rng = Rng::new(45);
    let pairs = random_pairs(&mut rng, &[2048, 50, 3000], REAL_SHAPE.tokenizer_ids as u32 - 1);
    let got = score_pairs(&m, &pairs, 256).unwrap();
    assert_eq!(m.capacity_tokens(), 3072);
    let cpu = score_pairs(&cpu_model(&files), &pairs, 4096).unwrap();
    assert_close("capacity growth: GPU vs CPU", &got, &cpu, LOGIT_TOL, 0.0);
}

#[test]
#[ignore = "needs a CUDA GPU: run with --ignored"]
fn out_of_range_token_is_an_error_and_the_model_stays_usable() {
    gpu(); // fail fast without a GPU
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_model(tmp.path(), REAL_SHAPE, 46);
    let files = ModelFiles::open(tmp.path(), None).unwrap();
    let m = gpu_model(&files, AttentionChoice::Auto, None);
    let vocab = files.config.vocab_size as u32;
    let bad = PackedBatch::from_sequences([&[0u32, 5, 2, 2, 6, 2][..], &[0, vocab + 7, 2][..]]);
    match m.forward(&bad) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains(&(vocab + 7).to_string()), "{msg}"),
        other => panic!("expected an out-of-range error, got {other:?}"),
    }
    let good = PackedBatch::from_sequences([&[0u32, 5, 2, 2, 6, 2][..]]);
    let got = m.forward(&good).unwrap();
    let want = cpu_model(&files).forward(&good).unwrap();
    assert_close("after an error", &got, &want, LOGIT_TOL, 0.0);
}

/// CPU-only: the synthetic checkpoint writer produces a model the engine opens and runs.
#[test]
fn synthetic_checkpoint_loads_and_runs_on_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = SyntheticShape {
        hidden: 64,
        heads: 4,
        layers: 1,
        inter: 128,
        tokenizer_ids: 100,
    };
    write_synthetic_model(tmp.path(), shape, 1);
    let files = ModelFiles::open(tmp.path(), None).unwrap();
    assert_eq!(files.config.vocab_size, 128);
    assert_eq!(files.config.head_dim, 16);
    let encoded = files.tokenizer.encode_pair("w5 w6", "w7 w8 w9").unwrap();
    assert_eq!(encoded.ids, vec![0, 5, 6, 2, 2, 7, 8, 9, 2]);
    let cpu = cpu_model(&files);
    let mut rng = Rng::new(2);
    let pairs = random_pairs(&mut rng, &[4, 9, 30], 99);
    let logits = score_pairs(&cpu, &pairs, 4096).unwrap();
    assert!(logits.iter().all(|l| l.is_finite()), "{logits:?}");
    assert!(
        logits.iter().any(|&l| (l - logits[0]).abs() > 1e-4),
        "logits do not vary: {logits:?}"
    );
}
