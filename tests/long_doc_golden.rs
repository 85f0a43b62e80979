//! Pre-truncation (src/pretruncate.rs) against Python `tokenizers` 0.23 on long documents
//! (tools/make_long_doc_goldens.py), and against full tokenization on generated texts.
//!
//! The tiny fixture's tokenizer (same XLM-R pipeline, small vocabulary) runs by default; the
//! real XLM-R tokenizer is opt-in:
//! `CROSSRANK_XLMR_TOKENIZER=../shared/assets/xlmr-tokenizer.json cargo test --test long_doc_golden -- --ignored`

use std::path::{Path, PathBuf};

use crossrank::pretruncate::PreTruncation;
use crossrank::tokenize::PairTokenizer;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expand(runs: &Value) -> String {
    let mut s = String::new();
    for run in runs.as_array().unwrap() {
        let piece = run[0].as_str().unwrap();
        s.push_str(&piece.repeat(run[1].as_u64().unwrap() as usize));
    }
    s
}

/// Checks every golden pair; returns (pairs, pre-cut pairs).
fn check_goldens(tokenizer_path: &Path, key: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(root().join("tests/fixtures/long_doc_goldens.jsonl")).unwrap();
    let base = PairTokenizer::from_file(tokenizer_path, 8192).unwrap();
    assert!(
        base.pretruncation().is_ok(),
        "pre-truncation off: {:?}",
        base.pretruncation().err()
    );
    let mut by_length: std::collections::HashMap<usize, PairTokenizer> = Default::default();
    let (mut pairs, mut precut, mut failures) = (0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let (q, d) = (expand(&v["query"]), expand(&v["document"]));
        let n = v["max_length"].as_u64().unwrap() as usize;
        let absurd = v["absurd"].as_bool().unwrap();
        let want: Vec<u32> = v["ids"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let tok = by_length
            .entry(n)
            .or_insert_with(|| base.clone().with_max_length(n).unwrap());
        let (qs, ds) = (tok.encode_side(&q).unwrap(), tok.encode_side(&d).unwrap());
        let got = tok.assemble(&qs.ids, &ds.ids).ids;
        pairs += 1;
        let case = v["case"].as_str().unwrap();
        let what = format!(
            "line {} ({case}, max_length {n}, {} + {} bytes)",
            i + 1,
            q.len(),
            d.len()
        );
        if absurd {
            // A run without whitespace far over the bound: pre-cut and flagged, ids may differ.
            precut += 1;
            if !(qs.precut || ds.precut) {
                failures.push(format!("{what}: not flagged as pre-cut"));
            }
            if got.len() > n {
                failures.push(format!("{what}: {} ids over max_length", got.len()));
            }
            continue;
        }
        if qs.precut || ds.precut {
            failures.push(format!("{what}: pre-cut, but it has word boundaries"));
        }
        if got != want {
            failures.push(format!("{what}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches; first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    (pairs, precut)
}

#[test]
fn tiny_tokenizer_matches_python_on_long_documents() {
    let (pairs, precut) = check_goldens(&root().join("tests/fixtures/tiny/tokenizer.json"), "tiny");
    eprintln!("{pairs} long-document pairs checked, {precut} absurd ones pre-cut");
    assert!(pairs >= 300 && precut >= 6, "golden file too small");
}

#[test]
#[ignore = "needs CROSSRANK_XLMR_TOKENIZER (the real XLM-R tokenizer.json)"]
fn xlmr_matches_python_on_long_documents() {
    let path = std::env::var("CROSSRANK_XLMR_TOKENIZER").expect("set CROSSRANK_XLMR_TOKENIZER");
    let (pairs, precut) = check_goldens(Path::new(&path), "xlmr");
    eprintln!("{pairs} long-document pairs checked, {precut} absurd ones pre-cut");
}

/// Seeded text from pieces chosen to sit next to cuts: whitespace of every kind, combining
/// marks after spaces, zero-width and vanishing words, Prepend characters, special-token
/// literals, CJK runs.
fn generated_text(seed: &mut u64, pieces: usize) -> String {
    const PIECES: &[&str] = &[
        "university",
        "of",
        "Tokyo",
        "Département",
        "физики",
        "東京大学理学部",
        "서울대학교",
        "ภาควิชา",
        "<mask>",
        "</s>",
        "<s>",
        "a<mask>b",
        "\u{301}",
        "\u{308}e",
        "\u{200b}",
        "\u{200d}",
        "\u{feff}",
        "\u{600}",
        "\u{6dd}",
        "ｕｎｉｖ",
        "ﬁ",
        "①",
        "🇯🇵",
        "👩‍🔬",
        "x\u{301}\u{302}",
        "\u{0}",
        "\u{7f}",
        "e\u{301}",
        "١٢٣",
        "…",
    ];
    const SPACES: &[&str] = &[
        " ",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2002}",
        " \u{200b} ",
        "\u{2028}",
        "\u{85}",
        "\u{b}",
        " \t\n ",
        "",
    ];
    let mut next = |n: usize| {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 33) as usize) % n
    };
    let mut s = String::new();
    for _ in 0..pieces {
        s.push_str(PIECES[next(PIECES.len())]);
        if next(4) == 0 {
            s.push_str(PIECES[next(PIECES.len())]);
        }
        s.push_str(SPACES[next(SPACES.len())]);
    }
    s
}

#[test]
fn pretruncated_ids_equal_full_tokenization_on_generated_texts() {
    let path = root().join("tests/fixtures/tiny/tokenizer.json");
    let base = PairTokenizer::from_file(&path, 8192).unwrap();
    let mut seed = 13;
    let (mut checked, mut cut) = (0, 0);
    for max_length in [4, 5, 8, 13, 32, 100] {
        let tok = base.clone().with_max_length(max_length).unwrap();
        let full = tok.clone().without_pretruncation();
        for _ in 0..60 {
            let pieces = 1 + (seed as usize >> 40) % (max_length * 12);
            let (q, d) = (
                generated_text(&mut seed, pieces / 4 + 1),
                generated_text(&mut seed, pieces),
            );
            for text in [&q, &d] {
                let side = tok.encode_side(text).unwrap();
                assert!(!side.precut, "pre-cut {text:?}");
                let want = full.encode_side(text).unwrap().ids;
                assert_eq!(side.ids, want, "max_length {max_length}, text {text:?}");
                checked += 1;
                cut += (text.len() > 8 * max_length) as usize;
            }
            assert_eq!(tok.encode_pair(&q, &d).unwrap(), full.encode_pair(&q, &d).unwrap());
        }
    }
    eprintln!("{checked} sides checked, {cut} of them long enough to be pre-truncated");
    assert!(cut > 100, "too few sides went through pre-truncation: {cut}");
}

#[test]
fn a_run_longer_than_the_bound_is_pre_cut_on_a_char_boundary() {
    let path = root().join("tests/fixtures/tiny/tokenizer.json");
    let tok = PairTokenizer::from_file(&path, 16).unwrap();
    let bound = PreTruncation::bound_bytes(16);
    // 3-byte characters, so the bound falls inside one unless cut on a char boundary
    let word = "東".repeat(bound);
    let side = tok.encode_side(&word).unwrap();
    assert!(side.precut);
    // words first, enough for max_length: exact, not pre-cut
    let text = format!("{} {word}", "university of Tokyo ".repeat(20));
    let side = tok.encode_side(&text).unwrap();
    assert!(!side.precut);
    assert_eq!(
        side.ids,
        tok.clone().without_pretruncation().encode_side(&text).unwrap().ids
    );
    // a short absurd word is tokenized whole: within the bound nothing is pre-cut
    let short = "東".repeat(bound / 4);
    assert!(!tok.encode_side(&short).unwrap().precut);
}
