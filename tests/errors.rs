//! Bad model directories and bad input: each a clear message naming the file, tensor, key
//! or line, and a non-zero exit of the CLI, never a panic.

mod common;

use std::path::Path;

use common::*;
use safetensors::Dtype;

/// Runs `crossrank score` on a two-line JSONL input and returns (exit code, stderr).
fn score_with(model: &Path, input_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    std::fs::write(&input, input_text).unwrap();
    let out = run(crossrank()
        .args(["score", "--device", "cpu", "--quiet", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out.jsonl")));
    let code = out.status.code().expect("exit code (no signal)");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic: {err}");
    // A failed run leaves no output file that looks complete.
    if code != 0 {
        assert!(
            !dir.path().join("out.jsonl").exists(),
            "failed run left its output in place"
        );
    }
    (code, err)
}

const GOOD: &str = "{\"query\": \"Dept. of Physics, Univ. of Tokyo\", \"document\": \"University of Tokyo\"}\n";

fn assert_model_error(model: &Path, needles: &[&str]) {
    let (code, err) = score_with(model, GOOD);
    assert_eq!(code, crossrank::error::exit_code::MODEL, "exit code; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr does not mention `{n}`: {err}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = fixture_with_tensors(|t| {
        t.remove("new.encoder.layer.1.mlp.down_proj.weight").unwrap();
    });
    assert_model_error(dir.path(), &["new.encoder.layer.1.mlp.down_proj.weight", "missing"]);
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let dir = fixture_with_tensors(|t| {
        let x = t.get_mut("new.encoder.layer.0.attention.o_proj.bias").unwrap();
        x.shape = vec![x.shape[0] - 1];
        x.data.truncate(x.data.len() - 4);
    });
    assert_model_error(
        dir.path(),
        &["new.encoder.layer.0.attention.o_proj.bias", "expected shape", "found"],
    );
}

#[test]
fn wrong_dtype_is_named() {
    let dir = fixture_with_tensors(|t| {
        let x = t.get_mut("new.pooler.dense.bias").unwrap();
        // Same byte count, integer dtype.
        x.dtype = Dtype::I32;
    });
    assert_model_error(dir.path(), &["new.pooler.dense.bias", "I32", "not supported"]);
}

#[test]
fn truncated_and_corrupted_checkpoints_are_errors() {
    let fixture = read_tensors(&fixture_dir().join("model.safetensors"));
    let dir = fixture_with_tensors(|_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    // Cut in the data, in the header, and to a few bytes.
    for len in [bytes.len() - 1000, bytes.len() / 2, 200, 5, 0] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert_model_error(dir.path(), &["model.safetensors"]);
    }
    // Garbage header length.
    let mut corrupt = bytes.clone();
    corrupt[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &corrupt).unwrap();
    assert_model_error(dir.path(), &["model.safetensors"]);
    // Header that is not JSON.
    let mut corrupt = bytes.clone();
    corrupt[8] = b'#';
    std::fs::write(&path, &corrupt).unwrap();
    assert_model_error(dir.path(), &["model.safetensors"]);
    assert!(!fixture.is_empty());
}

#[test]
fn malformed_config_is_an_error() {
    let dir = fixture_with_config(|_| {});
    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"new\", \"hidden_size\": ",
    )
    .unwrap();
    assert_model_error(dir.path(), &["config.json", "not valid JSON"]);

    let dir = fixture_with_config(|c| {
        c.insert("num_hidden_layers".into(), "two".into());
    });
    assert_model_error(dir.path(), &["config.json", "num_hidden_layers"]);
}

#[test]
fn unsupported_option_names_the_key() {
    for (key, value) in [
        ("logn_attention_scale", serde_json::json!(true)),
        ("position_embedding_type", serde_json::json!("absolute")),
        ("layer_norm_type", serde_json::json!("rms_norm")),
        ("num_labels", serde_json::json!(2)),
    ] {
        let dir = fixture_with_config(|c| {
            c.insert(key.into(), value.clone());
        });
        assert_model_error(dir.path(), &["config.json", key, "unsupported"]);
    }
}

#[test]
fn missing_files_are_named() {
    let dir = fixture_with_config(|_| {});
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_model_error(dir.path(), &["tokenizer.json"]);

    let dir = fixture_with_config(|_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert_model_error(dir.path(), &["model.safetensors"]);

    let (code, err) = score_with(Path::new("/nonexistent/model-dir"), GOOD);
    assert_eq!(code, crossrank::error::exit_code::MODEL, "{err}");
    assert!(err.contains("/nonexistent/model-dir"), "{err}");
}

#[test]
fn malformed_input_line_names_file_and_line() {
    let fixture = fixture_dir();
    let cases = [
        (
            format!("{GOOD}{{\"query\": \"q\", \"document\": \n"),
            2,
            "malformed JSON",
        ),
        (
            format!("{GOOD}{GOOD}{{\"query\": \"q\"}}\n"),
            3,
            "missing field `document`",
        ),
        (
            format!("{{\"query\": 3, \"document\": \"d\"}}\n{GOOD}"),
            1,
            "field `query` must be a string",
        ),
        (format!("{GOOD}\n{GOOD}"), 2, "blank line"),
    ];
    for (text, line, why) in cases {
        let (code, err) = score_with(&fixture, &text);
        assert_eq!(code, crossrank::error::exit_code::INPUT, "{err}");
        assert!(err.contains(&format!("pairs.jsonl:{line}:")), "no file:line in: {err}");
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn max_length_beyond_positions_or_below_specials_is_refused() {
    for n in ["100000", "3"] {
        let out = run(crossrank()
            .args(["tokenize", "--input", "-", "--max-length", n, "--model"])
            .arg(fixture_dir()));
        assert_eq!(
            out.status.code(),
            Some(crossrank::error::exit_code::USAGE),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("max length"), "{}", stderr(&out));
    }
}
