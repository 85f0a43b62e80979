//! `crossrank tokenize` prints `token_type_ids` beside `input_ids` for a tokenizer whose pair
//! template uses segment ids (BERT WordPiece), and only `input_ids` for one that does not.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn tokenize(model: &Path, max_length: u64, query: &str, document: &str) -> Value {
    let line = serde_json::json!({"query": query, "document": document}).to_string();
    let mut child = crossrank()
        .args([
            "tokenize",
            "-i",
            "-",
            "--max-length",
            &max_length.to_string(),
            "--model",
        ])
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

#[test]
fn tokenize_prints_segment_ids_for_bert_templates() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // The BERT fixture itself: a segment template is accepted only for a family that embeds
    // segments (engine::check_segments), so no other family's config can stand in for it.
    let dir = fixtures.join("bert-tiny");
    let text = std::fs::read_to_string(fixtures.join("bert-tiny/expected.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let max_length = case["max_length"].as_u64().unwrap();
        if !(case["case"].as_str().unwrap().starts_with("ml40") || checked == 0) {
            continue;
        }
        let v = tokenize(
            &dir,
            max_length,
            case["query"].as_str().unwrap(),
            case["document"].as_str().unwrap(),
        );
        assert_eq!(ids(&v["input_ids"]), ids(&case["input_ids"]), "{}", case["case"]);
        assert_eq!(
            ids(&v["token_type_ids"]),
            ids(&case["token_type_ids"]),
            "{}",
            case["case"]
        );
        assert!(ids(&v["token_type_ids"]).contains(&1), "{}", case["case"]);
        checked += 1;
        if checked == 4 {
            break;
        }
    }
    assert_eq!(checked, 4);

    // gte's XLM-R template has no segments: the output keeps its old shape.
    let v = tokenize(&fixtures.join("tiny"), 64, "Univ. of Tokyo", "University of Tokyo");
    assert!(v.get("token_type_ids").is_none(), "{v}");
    assert!(!ids(&v["input_ids"]).is_empty());
}
