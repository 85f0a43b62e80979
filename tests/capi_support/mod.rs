//! Shared by tests/capi.rs and tests/capi_python.rs: the built C library, a pair set that
//! every front end can read, and the CLI's scores of it (the reference the C ABI must
//! reproduce bit for bit).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_dir() -> PathBuf {
    repo().join("tests/fixtures/tiny")
}

/// The directory holding `libcrossrank.so` / `libcrossrank.a` of this build: cargo builds
/// every crate type of the library (Cargo.toml `crate-type`) for the integration tests
/// and puts them next to the `crossrank` binary. Built with `cargo build --lib` if absent.
pub fn lib_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_crossrank"))
        .parent()
        .unwrap()
        .to_path_buf();
    if !dir.join("libcrossrank.so").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--lib", "--manifest-path"])
            .arg(repo().join("Cargo.toml"));
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --lib");
        assert!(status.success(), "cargo build --lib failed");
    }
    assert!(
        dir.join("libcrossrank.so").exists(),
        "no libcrossrank.so in {}",
        dir.display()
    );
    dir
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Pairs with neither tabs nor line breaks (so TSV, JSONL and one-document-per-line all
/// carry them unchanged): the fixture's cases (short to a few thousand tokens, many
/// scripts), a few more, and empty strings.
pub fn pairs() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(fixture_dir().join("expected.jsonl")).expect("tests/fixtures/tiny/expected.jsonl");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let pair = (
            v["query"].as_str().unwrap().to_string(),
            v["document"].as_str().unwrap().to_string(),
        );
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    pairs.extend(
        [
            ("what is the capital of China?", "北京是中华人民共和国的首都。"),
            ("¿cuál es la capital de Francia?", "París es la capital de Francia."),
            ("Москва", "Москва — столица России."),
            ("", "an empty query"),
            ("an empty document", ""),
        ]
        .map(|(q, d)| (q.to_string(), d.to_string())),
    );
    pairs.retain(|(q, d)| !format!("{q}{d}").contains(&['\t', '\n', '\r'][..]));
    pairs
}

pub fn write_tsv(path: &Path, pairs: &[(String, String)]) {
    let text: String = pairs.iter().map(|(q, d)| format!("{q}\t{d}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// One scored pair: logit and score, compared as bits.
pub type Scored = (f32, f32);

/// `crossrank score --device cpu` on `pairs` (JSONL in and out).
pub fn cli_scores(dir: &Path, pairs: &[(String, String)]) -> Vec<Scored> {
    let input = dir.join("cli-pairs.jsonl");
    let text: String = pairs
        .iter()
        .map(|(q, d)| format!("{}\n", serde_json::json!({"query": q, "document": d})))
        .collect();
    std::fs::write(&input, text).unwrap();
    let output = dir.join("cli-scores.jsonl");
    run(crossrank()
        .args(["score", "--device", "cpu", "-q", "-m"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output));
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["logit"].as_f64().unwrap() as f32, v["score"].as_f64().unwrap() as f32)
        })
        .collect()
}

/// `crossrank rank --device cpu`: (index, score) best first.
pub fn cli_rank(dir: &Path, query: &str, documents: &[String]) -> Vec<(usize, f32)> {
    let docs = dir.join("cli-documents.txt");
    let text: String = documents.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(&docs, text).unwrap();
    let out = run(crossrank()
        .args(["rank", "--device", "cpu", "-q", "-m"])
        .arg(fixture_dir())
        .args(["--query", query, "--documents"])
        .arg(&docs));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["index"].as_u64().unwrap() as usize,
                v["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

pub fn crossrank() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossrank"));
    cmd.env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE");
    cmd
}

/// The stdout of examples/c/crossrank_example.c or examples/python/crossrank_ctypes.py.
#[derive(Debug, Default)]
pub struct ExampleOutput {
    pub pairs: Vec<Scored>,
    pub rank: Vec<(usize, f32)>,
    /// (name, "ok" or "FAILED", the whole line)
    pub checks: Vec<(String, String, String)>,
}

pub fn parse_example_output(stdout: &str) -> ExampleOutput {
    let mut out = ExampleOutput::default();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let float = |s: &str| s.parse::<f32>().unwrap_or_else(|e| panic!("`{s}` in `{line}`: {e}"));
        match f[0] {
            "pair" => {
                assert_eq!(f[1].parse::<usize>().unwrap(), out.pairs.len(), "{line}");
                out.pairs.push((float(f[2]), float(f[3])));
            }
            "rank" => out.rank.push((f[2].parse().unwrap(), float(f[3]))),
            "check" => out.checks.push((f[1].to_string(), f[3].to_string(), line.to_string())),
            _ => panic!("unexpected output line `{line}`"),
        }
    }
    out
}

/// Asserts the example's numbers equal the CLI's bit for bit, and every check passed.
pub fn assert_matches_cli(what: &str, dir: &Path, pairs: &[(String, String)], got: &ExampleOutput) {
    let want = cli_scores(dir, pairs);
    assert_eq!(got.pairs.len(), want.len(), "{what}: number of pairs");
    for (i, (g, w)) in got.pairs.iter().zip(&want).enumerate() {
        assert!(
            g.0.to_bits() == w.0.to_bits() && g.1.to_bits() == w.1.to_bits(),
            "{what}: pair {i} ({:?}): logit/score {:?} but the CLI says {:?}",
            pairs[i],
            g,
            w
        );
    }
    let documents: Vec<String> = pairs.iter().map(|(_, d)| d.clone()).collect();
    let want_rank = cli_rank(dir, &pairs[0].0, &documents);
    assert_eq!(got.rank.len(), want_rank.len(), "{what}: rank length");
    for (k, (g, w)) in got.rank.iter().zip(&want_rank).enumerate() {
        assert!(
            g.0 == w.0 && g.1.to_bits() == w.1.to_bits(),
            "{what}: rank position {k}: {g:?} but the CLI says {w:?}"
        );
    }
    assert!(!got.checks.is_empty(), "{what}: no error-path checks ran");
    let failed: Vec<&str> = got
        .checks
        .iter()
        .filter(|c| c.1 != "ok")
        .map(|c| c.2.as_str())
        .collect();
    assert!(failed.is_empty(), "{what}: failed checks:\n{}", failed.join("\n"));
}
