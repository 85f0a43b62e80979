//! `crossrank verify` without a GPU: `--device cpu` runs the whole gate logic (the device
//! under test is the CPU, the references are the fp16 twin and the f32 reference), and a
//! check that compared fewer pairs than asked fails loudly.

mod common;

use common::*;
use serde_json::Value;

fn verify(extra: &[&str]) -> std::process::Output {
    run(crossrank()
        .args(["verify", "--device", "cpu", "--threads", "2", "--json", "--model"])
        .arg(fixture_dir())
        .args(["--n", "24", "--docs-per-query", "6", "--max-tokens", "300"])
        .args(extra))
}

#[test]
fn verify_on_the_cpu_checks_the_fp16_twin_against_itself_and_reports_both_references() {
    let out = verify(&["--precision", "fp16", "--batch-tokens", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["pass"], true, "{r:#}");
    assert_eq!(r["reference"], "fp16");
    assert_eq!(r["pairs_requested"], 24);
    assert_eq!(r["pairs_compared"], 24);
    assert_eq!(r["compared_pairs"], 24);
    assert_eq!(r["gate"]["pairs_outside"], 0);
    assert!(r["gate"]["abs"].as_f64().unwrap() > 0.0);
    assert_eq!(r["fp16"]["top1_agree"], r["queries"]);
    // The f32 reference is reported, and it is not the fp16 one.
    let drift = r["fp16_reference_vs_f32"]["max_abs_dlogit"].as_f64().unwrap();
    assert!(drift > 0.0, "{r:#}");
    assert_eq!(r["f32"]["pairs"], 24);
    assert!(r["f32"]["kendall_tau_mean"].as_f64().unwrap() > 0.5);
    // The existing keys are kept and describe the gated comparison.
    assert_eq!(r["max_abs_dlogit"], r["fp16"]["max_abs_dlogit"]);
    assert!(r["device"].as_str().unwrap().contains("fp16 twin"));
}

#[test]
fn verify_fails_when_the_cpu_budget_leaves_pairs_uncompared() {
    let out = verify(&["--cpu-budget", "0"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("only 0 of 24 pairs compared"), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["pass"], false);
    assert_eq!(r["pairs_compared"], 0);
}

#[test]
fn verify_refuses_f32_precision_for_the_gpu() {
    let out = run(crossrank()
        .args(["verify", "--device", "cuda", "--precision", "f32", "--model"])
        .arg(fixture_dir()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("always fp16"), "{}", stderr(&out));
}

#[test]
fn score_with_fp16_precision_writes_fp16_twin_logits() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    let score = |precision: &str| {
        let out = run(crossrank()
            .args(["score", "--device", "cpu", "--precision", precision, "--model"])
            .arg(fixture_dir())
            .arg("-i")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pairs.jsonl"))
            .arg("-o")
            .arg(&output));
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["logit"].as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let (f32_logits, fp16_logits) = (score("f32"), score("fp16"));
    assert_eq!(f32_logits.len(), fp16_logits.len());
    let max = f32_logits
        .iter()
        .zip(&fp16_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(max > 0.0 && max < 2e-2, "fp16 vs f32 max |Δlogit| {max}");
    let bad = run(crossrank()
        .args(["score", "--device", "cpu", "--precision", "bf16", "--model"])
        .arg(fixture_dir())
        .args(["-i", "-"]));
    assert_eq!(bad.status.code(), Some(2));
}
