//! The `crossrank` command line on the tiny fixture: formats, order, echo, rank, tokenize,
//! info, and `--model` given as a hub id resolved through a Hugging Face cache layout.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

fn fixture_pairs(n: usize) -> Vec<(String, String)> {
    read_cases(&fixture_dir())
        .into_iter()
        .filter(|c| c.max_length >= 8192)
        .take(n)
        .map(|c| (c.query, c.document))
        .collect()
}

fn engine_scores(pairs: &[(String, String)]) -> Vec<crossrank::PairScore> {
    let engine = crossrank::Engine::load(
        &fixture_dir(),
        &crossrank::EngineOptions {
            device: crossrank::Device::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    engine.score_pairs(pairs).unwrap()
}

#[test]
fn score_jsonl_echoes_fields_in_input_order() {
    let pairs = fixture_pairs(12);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut text = String::new();
    for (i, (q, d)) in pairs.iter().enumerate() {
        let line = serde_json::json!({"id": format!("p{i}"), "query": q, "document": d, "extra": {"n": i}});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out.jsonl");
    let out = run(crossrank()
        .args(["score", "--device", "cpu", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("scored 12 pairs"), "summary: {}", stderr(&out));
    assert!(!dir.path().join("out.jsonl.partial").exists());
    let want = engine_scores(&pairs);
    let lines: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), pairs.len());
    for (i, (line, w)) in lines.iter().zip(&want).enumerate() {
        let keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "query", "document", "extra", "logit", "score"]);
        assert_eq!(line["id"], format!("p{i}"));
        assert_eq!(line["extra"]["n"], i);
        assert_eq!(line["logit"].as_f64().unwrap() as f32, w.logit, "line {i}");
        assert_eq!(line["score"].as_f64().unwrap() as f32, w.score, "line {i}");
        let sigmoid = 1.0 / (1.0 + (-(w.logit as f64)).exp());
        assert!((w.score as f64 - sigmoid).abs() < 1e-6);
    }
}

#[test]
fn score_tsv_from_stdin_appends_logit_and_score() {
    let pairs = fixture_pairs(5);
    let mut child = crossrank()
        .args([
            "score", "--device", "cpu", "--quiet", "--format", "tsv", "-i", "-", "--model",
        ])
        .arg(fixture_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for (q, d) in &pairs {
            writeln!(
                stdin,
                "{}\t{}",
                q.replace(['\t', '\n', '\r'], " "),
                d.replace(['\t', '\n', '\r'], " ")
            )
            .unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), pairs.len());
    for row in &rows {
        assert_eq!(row.len(), 4);
        let logit: f32 = row[2].parse().unwrap();
        let score: f32 = row[3].parse().unwrap();
        assert!((crossrank::config::sigmoid(logit) - score).abs() < 1e-7);
    }
}

#[test]
fn rank_sorts_best_first_and_honours_top_k() {
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        "University of Tokyo",
        "Kyoto University",
        "MIT",
        "",
        "Tokyo Institute of Technology",
    ];
    let path = dir.path().join("docs.txt");
    std::fs::write(&path, docs.join("\n") + "\n").unwrap();
    let out = run(crossrank()
        .args([
            "rank",
            "--device",
            "cpu",
            "--quiet",
            "--query",
            "Dept. of Physics, Univ. Tokyo",
            "--documents",
        ])
        .arg(&path)
        .arg("--model")
        .arg(fixture_dir()));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), docs.len());
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for r in &rows {
        assert_eq!(r["document"], docs[r["index"].as_u64().unwrap() as usize]);
    }
    let pairs: Vec<(String, String)> = docs
        .iter()
        .map(|d| ("Dept. of Physics, Univ. Tokyo".to_string(), d.to_string()))
        .collect();
    let want = engine_scores(&pairs);
    for r in &rows {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["logit"].as_f64().unwrap() as f32, want[i].logit);
    }

    let out = run(crossrank()
        .args([
            "rank",
            "--device",
            "cpu",
            "--quiet",
            "--top-k",
            "2",
            "--query",
            "Tokyo",
            "--documents",
        ])
        .arg(&path)
        .arg("--model")
        .arg(fixture_dir()));
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn tokenize_prints_truncated_ids() {
    let cases = read_cases(&fixture_dir());
    let case = cases
        .iter()
        .find(|c| c.max_length < 8192 && c.input_ids.len() == c.max_length)
        .expect("a truncated case");
    let line = serde_json::json!({"query": case.query, "document": case.document}).to_string();
    let mut child = crossrank()
        .args([
            "tokenize",
            "-i",
            "-",
            "--max-length",
            &case.max_length.to_string(),
            "--model",
        ])
        .arg(fixture_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let ids: Vec<u32> = v["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, case.input_ids);
}

#[test]
fn info_describes_the_model() {
    let out = run(crossrank().args(["info", "--json", "--model"]).arg(fixture_dir()));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["model_type"], "new");
    assert_eq!(v["stored_dtypes"], serde_json::json!(["F32"]));
    assert_eq!(v["max_length"], 8192);
    assert_eq!(v["activation"], "sigmoid");
    assert_eq!(
        v["pair_template"],
        serde_json::json!({"prefix": [0], "middle": [2, 2], "suffix": [2]})
    );
    let out = run(crossrank().args(["info", "--model"]).arg(fixture_dir()));
    assert!(stdout(&out).contains("parameters"));
}

#[test]
fn cuda_request_without_a_gpu_is_a_clear_error() {
    let cuda = crossrank::EngineOptions {
        device: crossrank::Device::Cuda(0),
        ..Default::default()
    };
    if crossrank::Engine::load(&fixture_dir(), &cuda).is_ok() {
        eprintln!("a CUDA device is present: this check is about machines without one");
        return;
    }
    let out = run(crossrank()
        .args(["score", "--device", "cuda", "-i", "-", "--model"])
        .arg(fixture_dir())
        .stdin(Stdio::null()));
    assert_eq!(
        out.status.code(),
        Some(crossrank::error::exit_code::DEVICE),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let out = run(crossrank()
        .args(["score", "--device", "auto", "-i", "-", "--model"])
        .arg(fixture_dir())
        .stdin(Stdio::null()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("running on the CPU"), "{}", stderr(&out));
}

/// Lays out `models--org--name/{refs/main, snapshots/<commit>/...}` as huggingface_hub does.
fn fake_hub_cache(home: &Path, repo: &str) {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo_dir = home.join("hub").join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    copy_fixture_files(&snapshot, true);
}

#[test]
fn hub_id_resolves_through_the_hf_cache() {
    let home = tempfile::tempdir().unwrap();
    fake_hub_cache(home.path(), "cometadata/gte-multilingual-reranker-affiliations");
    let run_with = |offline: bool, model: &str| {
        let mut cmd = crossrank();
        cmd.env("HF_HOME", home.path())
            .args(["info", "--json", "--model", model]);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        } else {
            // Unreachable endpoint: a cached model must not need it.
            cmd.env_remove("HF_HUB_OFFLINE")
                .env("HF_ENDPOINT", "http://127.0.0.1:9");
        }
        run(&mut cmd)
    };
    for offline in [true, false] {
        let out = run_with(offline, "cometadata/gte-multilingual-reranker-affiliations");
        assert!(out.status.success(), "offline={offline}: {}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(v["model_dir"].as_str().unwrap().contains("snapshots"));
    }
    // Not cached, offline: says so.
    let out = run_with(true, "someone/absent-model");
    assert_eq!(out.status.code(), Some(crossrank::error::exit_code::MODEL));
    assert!(
        stderr(&out).contains("not in the local Hugging Face cache"),
        "{}",
        stderr(&out)
    );
    // Not cached, hub unreachable: says so.
    let out = run_with(false, "someone/absent-model");
    assert_eq!(out.status.code(), Some(crossrank::error::exit_code::MODEL));
    assert!(stderr(&out).contains("could not fetch"), "{}", stderr(&out));
}

/// `--output` naming a special file (here a link to /dev/null inside a temp dir, so a
/// regression replaces only the link) is written in place: no `.partial` beside it, no rename
/// over it.
#[test]
fn output_to_a_special_file_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"query\": \"q\", \"document\": \"d\"}\n").unwrap();
    let link = dir.path().join("sink");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let out = run(crossrank()
        .args(["score", "--device", "cpu", "--quiet", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&link));
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the output link was replaced: {meta:?}");
    assert!(!dir.path().join("sink.partial").exists());
}
