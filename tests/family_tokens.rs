//! Pair ids AND segment ids of the family fixture tokenizers (tests/fixtures/xlmr-tiny: reduced
//! XLM-R Unigram; tests/fixtures/bert-tiny: reduced uncased WordPiece, segment ids 0/1) against
//! golden encodings from Python `tokenizers` 0.23.2 (tools/make_family_token_goldens.py), with
//! and without truncation, with and without the engine's pre-truncation of long sides; and the
//! encodings recorded in each fixture's expected.jsonl.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crossrank::tokenize::PairTokenizer;
use serde_json::Value;

const NO_LIMIT: usize = 1 << 20;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// Where two id lists first differ, with a little context.
fn first_difference(got: &[u32], want: &[u32]) -> String {
    let pos = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    let lo = pos.saturating_sub(3);
    format!(
        "at position {pos} (lengths got {} want {}): got {:?} want {:?}",
        got.len(),
        want.len(),
        &got[lo..got.len().min(pos + 4)],
        &want[lo..want.len().min(pos + 4)]
    )
}

/// Tokenizers of one fixture, one per max_length, with or without pre-truncation.
struct Tokenizers {
    base: PairTokenizer,
    by_length: HashMap<Option<u64>, PairTokenizer>,
}

impl Tokenizers {
    fn new(name: &str, pretruncate: bool) -> Self {
        Self::from_path(&fixtures().join(name).join("tokenizer.json"), pretruncate)
    }

    fn from_path(path: &Path, pretruncate: bool) -> Self {
        let base = PairTokenizer::from_file(path, NO_LIMIT).unwrap();
        let base = if pretruncate {
            base
        } else {
            base.without_pretruncation()
        };
        Tokenizers {
            base,
            by_length: HashMap::new(),
        }
    }

    fn get(&mut self, max_length: Option<u64>) -> &PairTokenizer {
        let base = &self.base;
        self.by_length.entry(max_length).or_insert_with(|| {
            base.clone()
                .with_max_length(max_length.map_or(NO_LIMIT, |n| n as usize))
                .unwrap()
        })
    }
}

/// Checks every line of a golden file; `tokenizer_of` maps a line's tokenizer name to its file.
/// Returns (pairs, with max_length, with segment ids) per tokenizer name.
fn check_goldens(
    path: &Path,
    tokenizer_of: &dyn Fn(&str) -> PathBuf,
    pretruncate: bool,
) -> HashMap<String, (usize, usize, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut tokenizers: HashMap<String, Tokenizers> = HashMap::new();
    let mut counts: HashMap<String, (usize, usize, usize)> = HashMap::new(); // pairs, truncated, with segments
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let name = v["tokenizer"].as_str().unwrap().to_string();
        let (q, d) = (v["query"].as_str().unwrap(), v["document"].as_str().unwrap());
        let max_length = v["max_length"].as_u64();
        let (want_ids, want_types) = (ids_of(&v["input_ids"]), ids_of(&v["token_type_ids"]));
        let tok = tokenizers
            .entry(name.clone())
            .or_insert_with(|| Tokenizers::from_path(&tokenizer_of(&name), pretruncate))
            .get(max_length);
        let got = tok.encode_pair(q, d).unwrap();
        // Empty type_ids stands for "all segment 0".
        let got_types = if got.type_ids.is_empty() {
            vec![0; got.ids.len()]
        } else {
            got.type_ids.clone()
        };
        let c = counts.entry(name.clone()).or_default();
        c.0 += 1;
        // Pairs that really lost tokens (ids equal to the golden below, so the flag is theirs).
        c.1 += usize::from(got.truncated);
        c.2 += usize::from(want_types.iter().any(|&t| t != 0));
        let what = || {
            format!(
                "line {} ({name}, max_length {max_length:?}) {:.60?} / {:.60?}",
                i + 1,
                q,
                d
            )
        };
        if got.ids != want_ids {
            failures.push(format!(
                "{}: input_ids {}",
                what(),
                first_difference(&got.ids, &want_ids)
            ));
        } else if got_types != want_types {
            failures.push(format!(
                "{}: token_type_ids {}",
                what(),
                first_difference(&got_types, &want_types)
            ));
        }
    }
    eprintln!("pre-truncation {pretruncate}: (pairs, truncated, with segment ids) {counts:?}");
    assert!(
        failures.is_empty(),
        "{} mismatches; first:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    counts
}

fn check_fixture_goldens(pretruncate: bool) {
    let goldens = fixtures().join("family_token_goldens.jsonl");
    let counts = check_goldens(
        &goldens,
        &|name| fixtures().join(name).join("tokenizer.json"),
        pretruncate,
    );
    for name in ["xlmr-tiny", "bert-tiny"] {
        let (pairs, truncated, _) = counts.get(name).copied().unwrap_or_default();
        assert!(
            pairs >= 1000 && truncated >= 500,
            "{name}: too few golden pairs ({pairs}, {truncated} truncated)"
        );
    }
    assert!(counts["bert-tiny"].2 >= 1000, "BERT goldens must carry segment ids");
}

#[test]
fn fixture_tokenizers_match_python_goldens() {
    check_fixture_goldens(true);
}

#[test]
fn fixture_tokenizers_match_python_goldens_without_pretruncation() {
    check_fixture_goldens(false);
}

/// The full (unreduced) uncased WordPiece tokenizer of the MiniLM package, against goldens made
/// for it: `python tools/make_family_token_goldens.py --tokenizer bert-full=DIR/tokenizer.json
/// --out G` (DIR from tools/make_minilm_drift.py), then
/// `CROSSRANK_WORDPIECE_TOKENIZER=DIR/tokenizer.json CROSSRANK_WORDPIECE_GOLDENS=G
/// cargo test --test family_tokens -- --ignored`.
#[test]
#[ignore = "needs CROSSRANK_WORDPIECE_TOKENIZER and CROSSRANK_WORDPIECE_GOLDENS (files outside the repository)"]
fn full_wordpiece_matches_python_goldens() {
    let tokenizer =
        PathBuf::from(std::env::var("CROSSRANK_WORDPIECE_TOKENIZER").expect("set CROSSRANK_WORDPIECE_TOKENIZER"));
    let goldens = PathBuf::from(std::env::var("CROSSRANK_WORDPIECE_GOLDENS").expect("set CROSSRANK_WORDPIECE_GOLDENS"));
    for pretruncate in [true, false] {
        let counts = check_goldens(&goldens, &|_| tokenizer.clone(), pretruncate);
        assert!(
            counts.values().map(|c| c.0).sum::<usize>() >= 1000,
            "too few golden pairs"
        );
    }
}

#[test]
fn templates_read_their_segment_ids() {
    let bert = PairTokenizer::from_file(&fixtures().join("bert-tiny/tokenizer.json"), 512).unwrap();
    let t = bert.template();
    assert_eq!(
        (t.prefix.as_slice(), t.middle.as_slice(), t.suffix.as_slice()),
        (&[101][..], &[102][..], &[102][..])
    );
    let seg = t.segments.as_ref().expect("BERT's template has segment ids");
    assert_eq!(
        (seg.prefix.as_slice(), seg.query, seg.middle.as_slice()),
        (&[0][..], 0, &[0][..])
    );
    assert_eq!((seg.document, seg.suffix.as_slice()), (1, &[1][..]));
    let pair = bert.encode_pair("tokyo", "university of tokyo").unwrap();
    assert_eq!(pair.type_ids.len(), pair.ids.len());
    // Everything after `[CLS] tokyo [SEP]` is segment 1, the final [SEP] included.
    let query_len = bert.encode_text("tokyo").unwrap().len();
    assert_eq!(
        pair.type_ids.iter().filter(|&&t| t == 1).count(),
        pair.ids.len() - 2 - query_len
    );
    assert!(pair.type_ids[..2 + query_len].iter().all(|&t| t == 0));

    // Both fixture pipelines are local, so long sides are pre-truncated (and the goldens above
    // test that path, not only full tokenization).
    assert!(bert.pretruncation().is_ok(), "{:?}", bert.pretruncation().err());

    // XLM-R's template gives every token segment 0: no segment ids are carried.
    let xlmr = PairTokenizer::from_file(&fixtures().join("xlmr-tiny/tokenizer.json"), 512).unwrap();
    assert!(!xlmr.template().uses_segments());
    assert!(xlmr.encode_pair("tokyo", "university").unwrap().type_ids.is_empty());
    assert!(xlmr.pretruncation().is_ok(), "{:?}", xlmr.pretruncation().err());
}

#[test]
fn fixture_cases_match_their_recorded_encodings() {
    for name in ["xlmr-tiny", "bert-tiny"] {
        let text = std::fs::read_to_string(fixtures().join(name).join("expected.jsonl")).unwrap();
        let mut tokenizers = Tokenizers::new(name, true);
        let mut n = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let tok = tokenizers.get(v["max_length"].as_u64());
            let got = tok
                .encode_pair(v["query"].as_str().unwrap(), v["document"].as_str().unwrap())
                .unwrap();
            let want_types = ids_of(&v["token_type_ids"]);
            let got_types = if got.type_ids.is_empty() {
                vec![0; got.ids.len()]
            } else {
                got.type_ids
            };
            assert_eq!(got.ids, ids_of(&v["input_ids"]), "{name} {}", v["case"]);
            assert_eq!(got_types, want_types, "{name} {}", v["case"]);
            n += 1;
        }
        assert!(n >= 40, "{name}: only {n} cases");
    }
}

/// BertProcessing and RobertaProcessing post-processors imply their segment ids (0/1 and all 0)
/// without listing them: the same templates as the TemplateProcessing the fixtures carry.
#[test]
fn bert_and_roberta_processing_imply_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bert-tiny",
            serde_json::json!({"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}),
        ),
        (
            "xlmr-tiny",
            serde_json::json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                               "trim_offsets": true, "add_prefix_space": true}),
        ),
    ];
    for (name, post_processor) in cases {
        let original = fixtures().join(name).join("tokenizer.json");
        let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
        json["post_processor"] = post_processor;
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, json.to_string()).unwrap();
        let implied = PairTokenizer::from_file(&path, 64).unwrap();
        let listed = PairTokenizer::from_file(&original, 64).unwrap();
        assert_eq!(implied.template(), listed.template(), "{name}");
        let (q, d) = ("Dept. of Physics, Univ. of Tokyo", "University of Tokyo");
        assert_eq!(
            implied.encode_pair(q, d).unwrap(),
            listed.encode_pair(q, d).unwrap(),
            "{name}"
        );
    }
}
