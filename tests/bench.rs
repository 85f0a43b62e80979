//! `crossrank bench` on the tiny fixture: the JSON result and the table.

mod common;

use common::*;
use serde_json::Value;

fn bench(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let out = run(crossrank()
        .args(["bench", "--device", "cpu", "--quiet", "--model"])
        .arg(fixture_dir())
        .arg("--json")
        .arg(&json)
        .args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (v, stdout(&out))
}

#[test]
fn synthetic_bench_reports_throughput_flops_padding_and_time_split() {
    let (v, table) = bench(&["--synthetic", "300", "--warmup", "1", "--batch-tokens", "2048"]);
    assert_eq!(v["n_pairs"], 300);
    assert!(v["pairs_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["tokens_per_s"].as_f64().unwrap() > v["pairs_per_s"].as_f64().unwrap());
    assert!(v["tflops"].as_f64().unwrap() > 0.0);
    assert!(v["pct_of_peak"].is_null(), "no peak for a CPU");
    assert_eq!(v["padding_efficiency"], 1.0);
    let p32 = v["padding_efficiency_padded32"].as_f64().unwrap();
    assert!(p32 > 0.0 && p32 < 1.0, "{p32}");
    let split = &v["time_split"];
    for k in [
        "tokenize_thread_s",
        "pack_s",
        "copy_s",
        "compute_s",
        "write_s",
        "forward_busy_fraction",
    ] {
        assert!(split[k].as_f64().is_some(), "{k}");
    }
    assert_eq!(split["copy_s"], 0.0);
    assert!(v["backend_profile"].is_null());
    assert_eq!(v["warmup_batches"], 1);
    // FLOPs are the formula applied to the run's lengths: at least a·tokens.
    assert!(v["model_flops"].as_f64().unwrap() > 0.0);
    assert!(table.contains("pairs/s") && table.contains("forward thread"), "{table}");
}

#[test]
fn pairs_file_with_n_and_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.tsv");
    let text: String = (0..50).map(|i| format!("q{i} Tokyo\tUniversity {i}\n")).collect();
    std::fs::write(&pairs, text).unwrap();
    let p = pairs.to_str().unwrap();
    let (v, _) = bench(&["--pairs", p, "--n", "20"]);
    assert_eq!(v["n_pairs"], 20);
    let (v, _) = bench(&["--pairs", p, "--host-only"]);
    assert_eq!(v["n_pairs"], 50);
    assert_eq!(v["host_only"], true);
    assert!(v["device"].as_str().unwrap().contains("host side only"));
}
