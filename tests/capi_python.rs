//! examples/python/crossrank_ctypes.py (ctypes over libcrossrank.so) on the tiny fixture:
//! the same logits, scores and ranking as the CLI, bit for bit, and its error checks pass.
//! Skipped, with a note, where no `python3` (3.9 or newer) is installed.

mod capi_support;

use std::process::Command;

use capi_support::*;

fn python() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import sys, ctypes; sys.exit(sys.version_info < (3, 9))"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

#[test]
fn python_ctypes_example_matches_the_cli_bit_for_bit() {
    let Some(python) = python() else {
        eprintln!("skipped: no python3 >= 3.9 (set PYTHON to choose an interpreter)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pairs = pairs();
    let tsv = dir.path().join("pairs.tsv");
    write_tsv(&tsv, &pairs);
    let out = run(Command::new(python)
        .arg(repo().join("examples/python/crossrank_ctypes.py"))
        .arg(fixture_dir())
        .args(["--device", "cpu", "--pairs"])
        .arg(&tsv)
        .arg("--lib")
        .arg(lib_dir().join("libcrossrank.so")));
    let got = parse_example_output(&String::from_utf8(out.stdout).unwrap());
    assert_matches_cli("Python ctypes example", dir.path(), &pairs, &got);
}
