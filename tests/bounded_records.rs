//! Records whose size the pipeline must bound (issue 13): lines over `--max-line-bytes`,
//! sides pre-cut at the tokenizer's work bound, windows cut by `--window-bytes`.

mod common;

use common::*;

fn write_input(dir: &std::path::Path, lines: &[String]) -> std::path::PathBuf {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

fn record(id: usize, query: &str, document: &str) -> String {
    serde_json::json!({"id": format!("p{id}"), "query": query, "document": document}).to_string()
}

#[test]
fn a_line_over_max_line_bytes_is_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let long = "word ".repeat(100);
    let input = write_input(
        dir.path(),
        &[
            record(0, "Univ. of Tokyo", "University of Tokyo"),
            record(1, "Univ. of Tokyo", &long),
            record(2, "a", "b"),
        ],
    );
    let output = dir.path().join("out.jsonl");
    let base = |skip: bool| {
        let mut c = crossrank();
        c.args(["score", "--device", "cpu", "--max-line-bytes", "200", "--model"])
            .arg(fixture_dir())
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&output);
        if skip {
            c.args(["--on-error", "skip"]);
        }
        c
    };
    let out = run(&mut base(false));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in.jsonl:2: line is 550 bytes") && stderr(&out).contains("--max-line-bytes 200"),
        "{}",
        stderr(&out)
    );
    let partial = std::fs::read_to_string(dir.path().join("out.jsonl.partial")).unwrap();
    assert_eq!(partial.lines().count(), 1, "the record before the bad line is written");

    let out = run(&mut base(true));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&output).unwrap().lines().count(), 2);
    let rejects = std::fs::read_to_string(dir.path().join("out.jsonl.rejects.jsonl")).unwrap();
    let reject: serde_json::Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(reject["line"], 2);
    assert!(
        reject["reason"]
            .as_str()
            .unwrap()
            .contains("longer than --max-line-bytes 200"),
        "{reject}"
    );
    assert!(
        reject["raw"].as_str().unwrap().len() <= 256,
        "only the start of the line is kept"
    );
}

#[test]
fn pre_cut_pairs_are_noted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(
        dir.path(),
        &[
            record(0, "Univ. of Tokyo", &"x".repeat(50_000)),
            record(1, "Univ. of Tokyo", "University of Tokyo"),
        ],
    );
    let output = dir.path().join("out.jsonl");
    let out = run(crossrank()
        .args(["score", "--device", "cpu", "--max-length", "16", "--model"])
        .arg(fixture_dir())
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 1: a side has no word boundary within 1024 bytes"),
        "{err}"
    );
    assert!(
        err.contains("1 pre-cut (ids may differ from Python tokenizers)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap().lines().count(), 2);
}

#[test]
fn windows_cut_by_bytes_give_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..40)
        .map(|i| record(i, &format!("query {i}"), &"University of Tokyo ".repeat(1 + i % 7)))
        .collect();
    let input = write_input(dir.path(), &lines);
    let score = |window_bytes: &str, name: &str| {
        let output = dir.path().join(name);
        let out = run(crossrank()
            .args(["score", "--device", "cpu", "--window-bytes", window_bytes, "--model"])
            .arg(fixture_dir())
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&output));
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(&output).unwrap()
    };
    let one_window = score("1000000000", "a.jsonl");
    let tiny_windows = score("1", "b.jsonl");
    assert_eq!(one_window.lines().count(), 40);
    // Same records in the same order; batches differ, so compare ids and scores loosely.
    for (a, b) in one_window.lines().zip(tiny_windows.lines()) {
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(a).unwrap(), serde_json::from_str(b).unwrap());
        assert_eq!(a["id"], b["id"]);
        let (x, y) = (a["logit"].as_f64().unwrap(), b["logit"].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-5 + 1e-5 * x.abs(), "{a} vs {b}");
    }
}

/// `--resume` replays the lines of the window it restarts in: a line over `--max-line-bytes`
/// must come back flagged and be rejected again, not scored from its kept prefix (a TSV prefix
/// `q<TAB>x x x ...` parses as a pair).
#[test]
fn resume_rejects_a_replayed_oversized_line_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tsv");
    let long = format!("q\t{}", "x ".repeat(600));
    std::fs::write(&input, format!("Univ. of Tokyo\tUniversity of Tokyo\n{long}\na\tb\n")).unwrap();
    let score = |output: &str, resume: bool| {
        let mut c = crossrank();
        c.args([
            "score",
            "--device",
            "cpu",
            "--quiet",
            "--on-error",
            "skip",
            "--max-line-bytes",
            "1000",
        ])
        .arg("--model")
        .arg(fixture_dir())
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join(output));
        if resume {
            c.arg("--resume");
        }
        run(&mut c)
    };
    let out = score("want.tsv", false);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = std::fs::read_to_string(dir.path().join("want.tsv")).unwrap();
    let want_rejects = std::fs::read_to_string(dir.path().join("want.tsv.rejects.jsonl")).unwrap();
    assert_eq!((want.lines().count(), want_rejects.lines().count()), (2, 1));

    // An interrupted run: the first scored line and the reject of line 2 were written.
    let first = want.lines().next().unwrap();
    std::fs::write(dir.path().join("out.tsv.partial"), format!("{first}\n")).unwrap();
    std::fs::write(dir.path().join("out.tsv.rejects.jsonl.partial"), &want_rejects).unwrap();
    let out = score("out.tsv", true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.tsv")).unwrap(), want);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.tsv.rejects.jsonl")).unwrap(),
        want_rejects
    );
}
