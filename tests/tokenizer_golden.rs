//! Token ids from the real XLM-R tokenizer against golden ids from Python `tokenizers`
//! (tools/make_token_goldens.py): single strings, and pairs with and without truncation.
//!
//! Opt-in because the 17 MB tokenizer is not part of the repository:
//! `CROSSRANK_XLMR_TOKENIZER=../shared/assets/xlmr-tokenizer.json cargo test --test tokenizer_golden -- --ignored`

use std::path::Path;

use crossrank::tokenize::PairTokenizer;
use serde_json::Value;

#[test]
#[ignore = "needs CROSSRANK_XLMR_TOKENIZER (the real XLM-R tokenizer.json)"]
fn xlmr_ids_match_python_tokenizers() {
    let tokenizer_path = std::env::var("CROSSRANK_XLMR_TOKENIZER").expect("set CROSSRANK_XLMR_TOKENIZER");
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xlmr_token_goldens.jsonl");
    let text = std::fs::read_to_string(&goldens).unwrap();
    let base = PairTokenizer::from_file(Path::new(&tokenizer_path), 1 << 20).unwrap();
    let mut by_length: std::collections::HashMap<usize, PairTokenizer> = Default::default();
    let (mut singles, mut pairs, mut truncated, mut failures) = (0, 0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let want: Vec<u32> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let (got, what) = match v["kind"].as_str().unwrap() {
            "single" => {
                singles += 1;
                let text = v["text"].as_str().unwrap();
                (base.encode_text(text).unwrap(), format!("single {text:?}"))
            }
            "pair" => {
                pairs += 1;
                let (q, d) = (v["query"].as_str().unwrap(), v["document"].as_str().unwrap());
                let tok = match v["max_length"].as_u64() {
                    None => &base,
                    Some(n) => {
                        truncated += 1;
                        by_length
                            .entry(n as usize)
                            .or_insert_with(|| base.clone().with_max_length(n as usize).unwrap())
                    }
                };
                (
                    tok.encode_pair(q, d).unwrap().ids,
                    format!("pair {q:?} / {d:?} max_length {}", v["max_length"]),
                )
            }
            other => panic!("line {}: unknown kind {other}", i + 1),
        };
        if got != want {
            failures.push(format!("line {}: {what}\n  got  {got:?}\n  want {want:?}", i + 1));
        }
    }
    eprintln!("{singles} single strings, {pairs} pairs ({truncated} with max_length) checked");
    assert!(singles >= 2000 && pairs >= 2000, "golden file too small");
    assert!(
        failures.is_empty(),
        "{} mismatches; first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}
