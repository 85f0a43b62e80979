//! Long offline jobs through the `crossrank score` binary: every bad-input class in both
//! `--on-error` modes (each input line accounted for), SIGKILL part-way then `--resume`
//! giving a byte-identical file (rejects included), SIGINT flushing complete records with
//! exit 130, torn last lines, and a partial that belongs to another input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use crossrank::error::exit_code;
use serde_json::Value;

fn good_jsonl(i: usize) -> String {
    serde_json::json!({"id": i, "query": format!("Dept. of Physics {i}, Univ. Tokyo"), "document": "University of Tokyo"})
        .to_string()
}

fn good_tsv(i: usize) -> String {
    format!("Dept. of Physics {i}, Univ. Tokyo\tUniversity of Tokyo")
}

fn score(dir: &Path, input: &Path, extra: &[&str]) -> std::process::Output {
    run(crossrank()
        .args(["score", "--device", "cpu", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(dir.join("out"))
        .args(extra))
}

fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "torn last line in {}",
        path.display()
    );
    text.lines().map(str::to_string).collect()
}

/// Each class: (name, format, bad line bytes).
fn bad_classes() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        ("malformed JSON", "jsonl", b"{\"query\": \"x\", \"document\": ".to_vec()),
        ("missing query", "jsonl", b"{\"document\": \"d\"}".to_vec()),
        (
            "non-string document",
            "jsonl",
            b"{\"query\": \"q\", \"document\": 5}".to_vec(),
        ),
        (
            "invalid UTF-8 (JSONL)",
            "jsonl",
            b"{\"query\": \"q\xff\xfe\", \"document\": \"d\"}".to_vec(),
        ),
        ("blank line (JSONL)", "jsonl", b"   ".to_vec()),
        ("wrong column count", "tsv", b"only one column".to_vec()),
        ("invalid UTF-8 (TSV)", "tsv", b"q\xc3\x28\td".to_vec()),
        ("blank line (TSV)", "tsv", Vec::new()),
    ]
}

#[test]
fn every_bad_input_class_stops_or_is_rejected_and_every_line_is_accounted_for() {
    for (name, format, bad) in bad_classes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join(format!("in.{format}"));
        let mut data = Vec::new();
        for i in 0..6 {
            if i == 2 {
                data.extend_from_slice(&bad);
            } else {
                let line = if format == "jsonl" { good_jsonl(i) } else { good_tsv(i) };
                data.extend_from_slice(line.as_bytes());
            }
            data.push(b'\n');
        }
        std::fs::write(&input, &data).unwrap();
        let out = dir.path().join("out");
        let partial = dir.path().join("out.partial");
        let fmt = ["--format", format, "--quiet"];

        // Default: stop, naming file and line; no final output; what precedes is kept.
        let o = score(dir.path(), &input, &fmt);
        assert_eq!(o.status.code(), Some(exit_code::INPUT), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("in.{format}:3")), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!out.exists(), "{name}: final output must not appear");
        assert_eq!(complete_lines(&partial).len(), 2, "{name}: lines before the bad one");

        // --on-error skip: output omits the line, rejects names it; counts add up.
        let o = score(dir.path(), &input, &[&fmt[..], &["--on-error", "skip"]].concat());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(!partial.exists(), "{name}");
        let scored = complete_lines(&out);
        let rejects = complete_lines(&dir.path().join("out.rejects.jsonl"));
        assert_eq!(scored.len() + rejects.len(), 6, "{name}");
        assert_eq!(rejects.len(), 1, "{name}");
        let r: Value = serde_json::from_str(&rejects[0]).unwrap();
        assert_eq!(r["line"], 3, "{name}");
        assert!(!r["reason"].as_str().unwrap().is_empty());
        assert_eq!(r["raw"], String::from_utf8_lossy(&bad).as_ref(), "{name}");
        if std::str::from_utf8(&bad).is_err() {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(r["raw_base64"].as_str().unwrap())
                .unwrap();
            assert_eq!(decoded, bad, "{name}");
        } else {
            assert!(r.get("raw_base64").is_none());
        }
        for (k, line) in scored.iter().enumerate() {
            let i = if k < 2 { k } else { k + 1 };
            if format == "jsonl" {
                let v: Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["id"], i, "{name}");
            } else {
                assert!(line.starts_with(&good_tsv(i)), "{name}: {line}");
            }
        }
    }
}

#[test]
fn empty_strings_are_scored_and_long_texts_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = "University of Tokyo ".repeat(200);
    let text = format!(
        "{}\n{}\n",
        serde_json::json!({"query": "", "document": ""}),
        serde_json::json!({"query": "q", "document": long})
    );
    std::fs::write(&input, text).unwrap();
    let o = score(dir.path(), &input, &["--max-length", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(complete_lines(&dir.path().join("out")).len(), 2);
    assert!(stderr(&o).contains("1 truncated"), "{}", stderr(&o));
}

/// An input long enough to interrupt part-way on the tiny model (~4 s uninterrupted),
/// with bad lines sprinkled in when `with_bad`.
fn long_input(dir: &Path, with_bad: bool) -> PathBuf {
    let mut text = String::new();
    for i in 0..N_LONG {
        if with_bad && i % 97 == 13 {
            text.push_str("{\"query\": broken\n");
            continue;
        }
        let words = "Dept. of Physics, Graduate School of Science ".repeat(1 + i % 5);
        let line =
            serde_json::json!({"id": i, "query": format!("{words} {i}"), "document": format!("University {}", i % 11)});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = dir.join("in.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

const N_LONG: usize = 2500;
const SLOW: [&str; 8] = [
    "--threads",
    "1",
    "--batch-tokens",
    "192",
    "--window",
    "48",
    "--workers",
    "1",
];

fn spawn_score(dir: &Path, input: &Path, out_name: &str, extra: &[&str]) -> Child {
    crossrank()
        .args(["score", "--device", "cpu", "--quiet", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(dir.join(out_name))
        .args(SLOW)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `path` holds at least `lines` newline characters.
fn wait_for_lines(path: &Path, lines: usize, child: &mut Child) {
    let start = Instant::now();
    loop {
        let n = std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        if n >= lines {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("finished ({status}) before {lines} lines were written");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reference_run(dir: &Path, input: &Path, extra: &[&str]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut child = spawn_score(dir, input, "ref.jsonl", extra);
    let status = child.wait().unwrap();
    assert!(status.success());
    let rejects = std::fs::read(dir.join("ref.jsonl.rejects.jsonl")).ok();
    (std::fs::read(dir.join("ref.jsonl")).unwrap(), rejects)
}

fn resume(dir: &Path, input: &Path, extra: &[&str]) {
    let child = spawn_score(dir, input, "out.jsonl", &[&["--resume"], extra].concat());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert!(!dir.join("out.jsonl.partial").exists());
}

#[test]
fn sigkill_or_sigint_part_way_then_resume_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = long_input(dir.path(), false);
    let (want, _) = reference_run(dir.path(), &input, &[]);
    let partial = dir.path().join("out.jsonl.partial");

    // SIGKILL: no chance to flush; the periodic flush left complete lines and maybe a torn one.
    let mut child = spawn_score(dir.path(), &input, "out.jsonl", &[]);
    wait_for_lines(&partial, 100, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("out.jsonl").exists());
    let before = complete_lines_lossy(&partial);
    assert!((100..N_LONG).contains(&before), "{before} lines");
    resume(dir.path(), &input, &[]);
    let got = std::fs::read(dir.path().join("out.jsonl")).unwrap();
    assert!(got == want, "resumed output differs from an uninterrupted run");
    std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();

    // SIGINT: every completed record is flushed, in order, complete lines only; exit 130.
    let mut child = spawn_score(dir.path(), &input, "out.jsonl", &[]);
    wait_for_lines(&partial, 100, &mut child);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(exit_code::INTERRUPTED), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert!(!dir.path().join("out.jsonl").exists());
    let kept = complete_lines(&partial);
    assert!(!kept.is_empty() && kept.len() < N_LONG);
    for (i, line) in kept.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["id"], i);
    }
    resume(dir.path(), &input, &[]);
    assert!(std::fs::read(dir.path().join("out.jsonl")).unwrap() == want);
}

#[test]
fn sigkill_with_rejects_then_resume_keeps_both_files_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let input = long_input(dir.path(), true);
    let skip = ["--on-error", "skip"];
    let (want, want_rejects) = reference_run(dir.path(), &input, &skip);
    let want_rejects = want_rejects.unwrap();
    assert!(!want_rejects.is_empty());

    let partial = dir.path().join("out.jsonl.partial");
    let mut child = spawn_score(dir.path(), &input, "out.jsonl", &skip);
    wait_for_lines(&partial, 100, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();

    resume(dir.path(), &input, &skip);
    assert!(std::fs::read(dir.path().join("out.jsonl")).unwrap() == want);
    assert!(std::fs::read(dir.path().join("out.jsonl.rejects.jsonl")).unwrap() == want_rejects);
    let lines = want.iter().filter(|&&c| c == b'\n').count() + want_rejects.iter().filter(|&&c| c == b'\n').count();
    assert_eq!(lines, N_LONG, "output + rejects = input lines");
}

fn complete_lines_lossy(path: &Path) -> usize {
    std::fs::read(path).unwrap().iter().filter(|&&c| c == b'\n').count()
}

#[test]
fn resume_drops_a_torn_line_and_refuses_a_partial_of_another_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text: String = (0..40).map(|i| good_jsonl(i) + "\n").collect();
    std::fs::write(&input, &text).unwrap();
    // Windows of 4 lines: a resume restarts at a multiple of 4.
    let window = ["--window", "4"];
    let o = score(dir.path(), &input, &[&window[..], &["--quiet"]].concat());
    assert!(o.status.success());
    let want = std::fs::read(dir.path().join("out")).unwrap();

    // 10 complete lines and half of the 11th.
    let cut: usize = want.iter().enumerate().filter(|(_, &c)| c == b'\n').nth(9).unwrap().0 + 1;
    let partial = dir.path().join("out.partial");
    std::fs::write(&partial, &want[..cut + 20]).unwrap();
    std::fs::remove_file(dir.path().join("out")).unwrap();
    let o = score(dir.path(), &input, &[&window[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("accounts for 10 input lines; continuing at line 9"),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::read(dir.path().join("out")).unwrap() == want);

    // A partial written for another input is refused, and left alone.
    let other = dir.path().join("other.jsonl");
    let text: String = (0..40).map(|i| good_jsonl(i + 1) + "\n").collect();
    std::fs::write(&other, text).unwrap();
    std::fs::write(&partial, &want[..cut]).unwrap();
    let o = score(dir.path(), &other, &["--resume"]);
    assert_eq!(o.status.code(), Some(exit_code::INPUT), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&partial).unwrap(), &want[..cut]);

    // --resume without a partial is an ordinary run.
    std::fs::remove_file(&partial).unwrap();
    let o = score(dir.path(), &input, &[&window[..], &["--resume", "--quiet"]].concat());
    assert!(o.status.success());
    assert!(std::fs::read(dir.path().join("out")).unwrap() == want);
}

#[test]
fn usage_errors_for_inconsistent_options() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, good_jsonl(0) + "\n").unwrap();
    for args in [
        vec!["--rejects", "r.jsonl"],
        vec!["--on-error", "sometimes"],
        vec!["--on-error", "skip", "-o", "-"],
        vec!["--resume", "-o", "-"],
    ] {
        let o = run(crossrank()
            .args(["score", "--device", "cpu", "--model"])
            .arg(fixture_dir())
            .arg("-i")
            .arg(&input)
            .args(&args));
        assert_eq!(o.status.code(), Some(exit_code::USAGE), "{args:?}: {}", stderr(&o));
    }
}
