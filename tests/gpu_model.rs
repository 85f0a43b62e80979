//! The whole model on the GPU against the f32 CPU reference:
//! - the committed tiny fixture (head_dim 16: the reference-attention path), also against the
//!   fixture's expected logits, and batch invariance;
//! - a synthetic checkpoint with the real layer shapes (hidden 768, 12 heads of 64, MLP 3072;
//!   2 layers, a small vocabulary), written here: the flash + CLS-only path, the reference
//!   path, capacity growth, and the out-of-range token error;
//! - the BERT and XLM-RoBERTa fixtures (`mod families`): the absolute-position encoder's GPU
//!   forward against its fp16 CPU twin and transformers' f32 logits, batch invariance,
//!   XLM-R sequences over 2,000 tokens, bad ids, loading through the family seam.
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

// ---------------------------------------------------------------------------------------
// The absolute-position families (BERT, XLM-RoBERTa): `AbsEncoderGpu` on the committed
// fixtures against the fp16 CPU twin (the same fp16 rounding points) and the fixtures'
// transformers float32 logits. bert-tiny: 3 heads of 32 (flash d32), segment ids;
// xlmr-tiny: 2 heads of 64, positions past padding_idx, sequences up to 2,098 tokens.

mod families {
    use super::*;
    use crossrank::arch::abs_encoder::PositionRule;
    use crossrank::arch::abs_encoder_cuda::AbsEncoderGpu;
    use crossrank::arch::{bert, xlm_roberta};
    use crossrank::model::cpu_fp16::{AttentionModel, Fp16Options};
    use std::path::PathBuf;

    /// |GPU - fp16 CPU twin|: the gte budget (both round fp16 at the same points; what is
    /// left is summation order).
    const TWIN_TOL: f32 = LOGIT_TOL;
    /// |GPU - transformers f32|: the fp16 drift, as tests/families.rs allows the twin.
    const EXPECTED_TOL: f32 = 2e-2;

    /// One case of expected.jsonl: ids, segment ids, transformers' f32 logit.
    struct Case {
        name: String,
        ids: Vec<u32>,
        type_ids: Vec<u32>,
        logit: f32,
    }

    fn fixture(name: &str) -> PathBuf {
        let candidates = [
            PathBuf::from("tests/fixtures").join(name),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name),
        ];
        candidates
            .into_iter()
            .find(|c| c.join("config.json").is_file())
            .unwrap_or_else(|| panic!("fixture tests/fixtures/{name} not found"))
    }

    fn cases(dir: &Path) -> Vec<Case> {
        let text = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl");
        let u32s = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap() as u32).collect())
                .unwrap_or_default()
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ids = u32s(&v["input_ids"]);
                let mut type_ids = u32s(&v["token_type_ids"]);
                if type_ids.is_empty() {
                    type_ids = vec![0; ids.len()];
                }
                Case {
                    name: v["case"].as_str().unwrap_or("?").to_string(),
                    ids,
                    type_ids,
                    logit: v["logit"].as_f64().unwrap() as f32,
                }
            })
            .collect()
    }

    fn rule(files: &ModelFiles) -> PositionRule {
        match files.config.family.name() {
            "bert" => bert::positions,
            "xlm-roberta" => xlm_roberta::positions,
            other => panic!("{other} is not an absolute-position family"),
        }
    }

    fn gpu_encoder(files: &ModelFiles, attention: AttentionChoice, batch_tokens: Option<usize>) -> AbsEncoderGpu {
        let options = GpuOptions {
            batch_tokens,
            attention,
            kernels: KernelOrigin::Auto,
        };
        AbsEncoderGpu::load_on(gpu(), &files.tensors, rule(files), &options)
            .unwrap_or_else(|e| panic!("loading the model on the GPU: {e}"))
    }

    /// The fp16 CPU twin of what the GPU runs for `attention`.
    fn twin(files: &ModelFiles, attention: AttentionChoice) -> Box<dyn Backend> {
        let mut options = Fp16Options::like_gpu(&files.config, 0);
        options.attention = AttentionModel::like_gpu(attention, files.config.head_dim);
        files
            .config
            .family
            .load_cpu_twin(Arc::clone(&files.tensors), options)
            .unwrap()
    }

    /// Logits of `seqs` (ids, segment ids) in batches of at most `batch_tokens` tokens.
    fn score(backend: &dyn Backend, seqs: &[(Vec<u32>, Vec<u32>)], batch_tokens: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut batch = PackedBatch::new();
        for (i, (ids, types)) in seqs.iter().enumerate() {
            batch.push_typed(ids, types);
            let next = seqs.get(i + 1).map_or(usize::MAX, |s| s.0.len());
            if batch.num_tokens().saturating_add(next) > batch_tokens || i + 1 == seqs.len() {
                out.extend(backend.forward(&batch).unwrap());
                batch.clear();
            }
        }
        out
    }

    fn typed(cases: &[Case]) -> Vec<(Vec<u32>, Vec<u32>)> {
        cases.iter().map(|c| (c.ids.clone(), c.type_ids.clone())).collect()
    }

    /// GPU vs the twin (flash and reference), vs transformers, and small batches.
    fn matches_twin_and_expected(name: &str, head_dim: usize) {
        gpu(); // fail fast without a GPU
        let dir = fixture(name);
        let files = ModelFiles::open(&dir, None).unwrap();
        assert_eq!(files.config.head_dim, head_dim);
        let cases = cases(&dir);
        let seqs = typed(&cases);
        let expected: Vec<f32> = cases.iter().map(|c| c.logit).collect();
        eprintln!(
            "[{name}] {} cases, {}..{} tokens ({} .. {})",
            cases.len(),
            seqs.iter().map(|s| s.0.len()).min().unwrap(),
            seqs.iter().map(|s| s.0.len()).max().unwrap(),
            cases[0].name,
            cases[cases.len() - 1].name
        );
        for attention in [AttentionChoice::Auto, AttentionChoice::Reference] {
            let m = gpu_encoder(&files, attention, None);
            let path = if attention == AttentionChoice::Auto {
                AttentionPath::Flash
            } else {
                AttentionPath::Reference
            };
            assert_eq!(m.attention(), path, "head_dim {head_dim}");
            let got = score(&m, &seqs, 16384);
            let want = score(twin(&files, attention).as_ref(), &seqs, 4096);
            assert_close(
                &format!("{name} {path:?}: GPU vs fp16 CPU twin"),
                &got,
                &want,
                TWIN_TOL,
                0.0,
            );
            assert_close(
                &format!("{name} {path:?}: GPU vs transformers f32"),
                &got,
                &expected,
                EXPECTED_TOL,
                0.0,
            );
            // Many small batches (other GEMM shapes, workspace reuse) agree too.
            let small = score(&m, &seqs, 600);
            assert_close(
                &format!("{name} {path:?}: 600-token batches"),
                &small,
                &want,
                TWIN_TOL,
                0.0,
            );
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn bert_tiny_gpu_matches_twin_and_expected() {
        matches_twin_and_expected("bert-tiny", 32);
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn xlmr_tiny_gpu_matches_twin_and_expected() {
        matches_twin_and_expected("xlmr-tiny", 64);
    }

    /// A sequence's logit does not depend on its batch (beyond cuBLAS shape-dependent
    /// rounding), and the same batch twice is bit-identical.
    fn batch_invariance(name: &str) {
        gpu(); // fail fast without a GPU
        let dir = fixture(name);
        let files = ModelFiles::open(&dir, None).unwrap();
        let m = gpu_encoder(&files, AttentionChoice::Auto, None);
        let seqs = typed(&cases(&dir));
        let alone: Vec<f32> = seqs.iter().map(|s| score(&m, std::slice::from_ref(s), 1)[0]).collect();
        let together = score(&m, &seqs, usize::MAX);
        let reversed_in: Vec<_> = seqs.iter().rev().cloned().collect();
        let mut reversed = score(&m, &reversed_in, usize::MAX);
        reversed.reverse();
        assert_close(
            &format!("{name}: one batch vs one by one"),
            &together,
            &alone,
            2e-3,
            0.0,
        );
        assert_close(
            &format!("{name}: reversed batch vs one by one"),
            &reversed,
            &alone,
            2e-3,
            0.0,
        );
        assert_eq!(
            together,
            score(&m, &seqs, usize::MAX),
            "{name}: same batch, other logits"
        );
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn bert_tiny_gpu_batch_invariance() {
        batch_invariance("bert-tiny");
    }

    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn xlmr_tiny_gpu_batch_invariance() {
        batch_invariance("xlmr-tiny");
    }

    /// XLM-R sequences longer than 2,000 tokens (up to the 2,098 usable positions, a pad id
    /// inside the text) on a workspace that has to grow, against the twin.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn xlmr_tiny_gpu_long_sequences() {
        gpu(); // fail fast without a GPU
        let dir = fixture("xlmr-tiny");
        let files = ModelFiles::open(&dir, None).unwrap();
        let usable = files.config.max_sequence_length();
        assert_eq!(usable, 2098);
        let m = gpu_encoder(&files, AttentionChoice::Auto, Some(256));
        let mut rng = Rng::new(47);
        let vocab = files.config.vocab_size as u32;
        let mut pairs = random_pairs(&mut rng, &[usable, 2001, 2050, 40], vocab - 1);
        pairs[1][1000] = files.config.padding_idx.unwrap() as u32;
        let mut seqs: Vec<(Vec<u32>, Vec<u32>)> = pairs.into_iter().map(|p| (p.clone(), vec![0; p.len()])).collect();
        // ... and the fixture's own long cases with their transformers logits.
        let long: Vec<Case> = cases(&dir).into_iter().filter(|c| c.ids.len() > 2000).collect();
        assert!(!long.is_empty(), "xlmr-tiny has no case over 2,000 tokens");
        seqs.extend(typed(&long));
        let got = score(&m, &seqs, 4096);
        assert!(m.capacity_tokens() >= usable, "capacity {}", m.capacity_tokens());
        let want = score(twin(&files, AttentionChoice::Auto).as_ref(), &seqs, 4096);
        assert_close("xlmr long sequences: GPU vs fp16 CPU twin", &got, &want, TWIN_TOL, 0.0);
        let expected: Vec<f32> = long.iter().map(|c| c.logit).collect();
        assert_close(
            "xlmr long fixture cases: GPU vs transformers f32",
            &got[got.len() - long.len()..],
            &expected,
            EXPECTED_TOL,
            0.0,
        );
        // One past the position table: refused before anything runs, the model stays usable.
        let too_long = random_pairs(&mut rng, &[usable + 1], vocab - 1);
        match m.forward(&PackedBatch::from_sequences([&too_long[0][..]])) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains(&(usable + 1).to_string()), "{msg}"),
            other => panic!("expected a length error, got {other:?}"),
        }
        assert_eq!(score(&m, &seqs[3..4], 4096), score(&m, &seqs[3..4], 4096));
    }

    /// An out-of-range token id or segment id is an error naming it; the model stays usable.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn bert_tiny_gpu_bad_ids_are_errors() {
        gpu(); // fail fast without a GPU
        let files = ModelFiles::open(&fixture("bert-tiny"), None).unwrap();
        let m = gpu_encoder(&files, AttentionChoice::Auto, None);
        let vocab = files.config.vocab_size as u32;
        let bad = PackedBatch::from_sequences([&[101u32, 7, 102][..], &[101, vocab + 3, 102][..]]);
        match m.forward(&bad) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains(&(vocab + 3).to_string()), "{msg}"),
            other => panic!("expected an out-of-range token error, got {other:?}"),
        }
        let mut bad_segment = PackedBatch::new();
        bad_segment.push_typed(&[101, 7, 102], &[0, 0, 5]);
        match m.forward(&bad_segment) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("segment id 5"), "{msg}"),
            other => panic!("expected a segment error, got {other:?}"),
        }
        let mut good = PackedBatch::new();
        good.push_typed(&[101, 7, 102, 9, 102], &[0, 0, 0, 1, 1]);
        let got = m.forward(&good).unwrap();
        let want = twin(&files, AttentionChoice::Auto).forward(&good).unwrap();
        assert_close("bert after an error", &got, &want, TWIN_TOL, 0.0);
    }

    /// Through the family seam: `load_cuda` gives the GPU forward (what the engine, verify
    /// and bench use), and it names the family.
    #[test]
    #[ignore = "needs a CUDA GPU: run with --ignored"]
    fn families_load_cuda_through_the_seam() {
        gpu(); // fail fast without a GPU
        for name in ["bert-tiny", "xlmr-tiny"] {
            let files = ModelFiles::open(&fixture(name), None).unwrap();
            let family = files.config.family;
            let m = family
                .load_cuda(Arc::clone(&files.tensors), 0, &GpuOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(m.describe().contains(family.name()), "{}", m.describe());
            let case = &cases(&fixture(name))[0];
            let mut batch = PackedBatch::new();
            batch.push_typed(&case.ids, &case.type_ids);
            let got = m.forward(&batch).unwrap();
            assert_close(
                &format!("{name}: load_cuda vs transformers"),
                &got,
                &[case.logit],
                EXPECTED_TOL,
                0.0,
            );
        }
    }
}
