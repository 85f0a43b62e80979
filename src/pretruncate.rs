//! Pre-truncation: tokenize only a prefix of a long side, and only where the prefix provably
//! yields the ids that full tokenization followed by the early exit of `tokenizers` 0.23
//! ([`crate::tokenize::early_exit_len`]) and `longest_first` keep.
//!
//! # Why a cut before whitespace is exact
//!
//! The rule is enabled only for tokenizers whose pipeline is *local* (checked once, on load,
//! by [`PreTruncation::for_tokenizer`]; anything else is tokenized in full):
//! - the normalizer is a sequence of per-grapheme or per-character maps (SentencePiece's
//!   `Precompiled` charsmap, NFC/NFD/NFKC/NFKD, lowercase, accent stripping, BERT's cleaning)
//!   and the XLM-R `Replace(" {2,}" -> " ")`;
//! - the pre-tokenizer splits where a space is (`Metaspace` with `split`, `WhitespaceSplit`,
//!   `Whitespace`, `BertPreTokenizer`);
//! - no added token holds whitespace in its content.
//!
//! Let `p` be a *boundary*: the character at `p` is one the tokenizer's own normalizer turns
//! into a single space (probed on load: `"a{c}b"` must normalize to `"a b"`; tab, newline,
//! NBSP, U+3000, ... for XLM-R), the character before it is not whitespace, and the two are
//! separate graphemes (a Prepend character would glue them). Then, for `prefix = text[..p]`:
//! 1. *Added tokens* split the text into the same segments up to `p`: a match cannot contain
//!    `p - 1` and `p` (no whitespace in any content); an `lstrip` match starts at or after `p`
//!    (it only eats whitespace to the left of its content, and `text[p-1]` is not whitespace);
//!    an `rstrip` match that ends at `p` is the same token in both.
//! 2. *Normalization* works per grapheme and `p` is a grapheme boundary of `text` (the break
//!    before `text[p]` depends on `text[p-1]` and `text[p]` alone, since `text[p]` is neither
//!    Extend, ZWJ, Extended_Pictographic nor a regional indicator), so the normalized prefix
//!    is a prefix of the normalized text. `Replace(" {2,}")` collapses runs of spaces inside
//!    the prefix the same way; at most the prefix's trailing run differs (it is then the
//!    prefix's last word, see 4). A combining mark right after the space belongs to the text
//!    after `p` and never reaches the prefix; words that normalize to nothing and runs of
//!    whitespace inside the prefix are handled by the normalizer identically in both.
//! 3. *Pre-tokenization* starts a new word at each space (`Metaspace` merges the `▁` with the
//!    next word): every word of the prefix except the last ends where a space begins, inside
//!    the prefix, so it is exactly the corresponding word of the full text; the model encodes
//!    words one by one, so their ids are equal too.
//! 4. Only the prefix's *last* word may differ. The early exit keeps the words up to the first
//!    one that brings the side to `max_length` tokens (a model-tokenized word, never a literal
//!    added token: [`crate::tokenize::early_exit_len_with_added`]; the decision depends only
//!    on the words up to it, so it is the same in the prefix). If that word is not the prefix's last
//!    word (checked on the prefix's own encoding: tokens of a later word follow it), the full
//!    text's early exit stops at the same word, with the same ids, so `longest_first` sees the
//!    same lengths and keeps the same ids. Otherwise the prefix is not long enough: try a
//!    cut twice as far, and tokenize the whole side when the text ends before it.
//!
//! # Absurd records
//!
//! Work per side is bounded by [`PreTruncation::bound_bytes`] (64 x `max_length` bytes): a run
//! of text that offers no boundary within that bound (a 30 MB "word", or a side whose words do
//! not reach `max_length` tokens within it) is cut at the bound on a character boundary and
//! tokenized as it is. Such a side is *pre-cut*: its ids may differ from Python `tokenizers`
//! (Unigram segments a cut word differently near the cut, and the early exit sees a shorter
//! side), and it is reported as such ([`Side::precut`]).

use serde_json::Value;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};
use unicode_segmentation::UnicodeSegmentation;

/// The first cut is tried this many bytes per kept token into the text; most text needs
/// 3 to 6 (CJK about 2 to 4).
const FIRST_TRY_BYTES_PER_TOKEN: usize = 8;
/// Bound on the bytes of one side the tokenizer ever sees, per token of `max_length`.
pub const BOUND_BYTES_PER_TOKEN: usize = 64;

/// Whitespace characters considered as cut points; the ones the tokenizer's normalizer maps to
/// a single space are kept.
const CANDIDATE_SPACES: &[char] = &[
    ' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}',
    '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}',
    '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

/// One side's ids as handed to `longest_first`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub ids: Vec<u32>,
    /// The side was cut at the work bound without a provable boundary: ids may differ from
    /// Python `tokenizers`.
    pub precut: bool,
}

/// Where to cut a side, decided by [`PreTruncation::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Tokenize the whole text.
    Full,
    /// Tokenize `text[..p]`, `p` a boundary; exact if the early exit lands before its last word.
    Boundary(usize),
    /// Tokenize `text[..p]`, `p` a character boundary only (the work bound).
    Bound(usize),
}

#[derive(Clone, Debug)]
pub struct PreTruncation {
    spaces: Vec<char>,
}

impl PreTruncation {
    /// The rule for this tokenizer, or why it does not apply (the side is then tokenized in
    /// full, as before).
    pub fn for_tokenizer(tok: &Tokenizer) -> Result<Self, String> {
        let normalizer = serde_json::to_value(tok.get_normalizer()).map_err(|e| e.to_string())?;
        if !local_normalizer(&normalizer) {
            return Err(format!("normalizer {} is not known to be local", kind(&normalizer)));
        }
        let pre = serde_json::to_value(tok.get_pre_tokenizer()).map_err(|e| e.to_string())?;
        if !splits_at_spaces(&pre) {
            return Err(format!("pre-tokenizer {} does not split at spaces", kind(&pre)));
        }
        if let Some(t) = tok
            .get_added_tokens_decoder()
            .values()
            .find(|t| t.content.chars().any(char::is_whitespace))
        {
            return Err(format!("added token {:?} holds whitespace", t.content));
        }
        let spaces: Vec<char> = CANDIDATE_SPACES
            .iter()
            .copied()
            .filter(|&c| {
                let mut s = NormalizedString::from(format!("a{c}b").as_str());
                match tok.get_normalizer() {
                    Some(n) => n.normalize(&mut s).is_ok() && s.get() == "a b",
                    None => c == ' ',
                }
            })
            .collect();
        if !spaces.contains(&' ') {
            return Err("the normalizer does not keep a space between two letters".into());
        }
        Ok(PreTruncation { spaces })
    }

    /// Whitespace characters a cut may precede.
    pub fn spaces(&self) -> &[char] {
        &self.spaces
    }

    pub fn bound_bytes(max_length: usize) -> usize {
        max_length.saturating_mul(BOUND_BYTES_PER_TOKEN).max(1024)
    }

    fn first_try_bytes(max_length: usize) -> usize {
        max_length.saturating_mul(FIRST_TRY_BYTES_PER_TOKEN).max(256)
    }

    /// Whether a cut at byte `p` of `text` is a boundary (module docs).
    pub fn is_boundary(&self, text: &str, p: usize) -> bool {
        if p == 0 || p >= text.len() || !text.is_char_boundary(p) {
            return false;
        }
        let (Some(c), Some(x)) = (text[p..].chars().next(), text[..p].chars().next_back()) else {
            return false;
        };
        if !self.spaces.contains(&c) || x.is_whitespace() {
            return false;
        }
        let pair = &text[p - x.len_utf8()..p + c.len_utf8()];
        pair.graphemes(true).nth(1).is_some()
    }

    /// First boundary in `text[from..to]`.
    fn next_boundary(&self, text: &str, from: usize, to: usize) -> Option<usize> {
        let from = floor_char_boundary(text, from);
        let to = floor_char_boundary(text, to.min(text.len()));
        text[from..to]
            .char_indices()
            .map(|(i, _)| from + i)
            .find(|&p| self.is_boundary(text, p))
    }

    /// Last boundary in `text[lo..hi]`.
    fn prev_boundary(&self, text: &str, lo: usize, hi: usize) -> Option<usize> {
        let hi = floor_char_boundary(text, hi);
        let lo = floor_char_boundary(text, lo.min(hi));
        text[lo..hi]
            .char_indices()
            .rev()
            .map(|(i, _)| lo + i)
            .find(|&p| self.is_boundary(text, p))
    }

    /// The cut to try at attempt `attempt` (0, 1, ...), after `tried` (the end of the previous
    /// boundary prefix, 0 if none). Returns `None` once attempts are exhausted.
    pub fn plan(&self, text: &str, max_length: usize, attempt: u32, tried: usize) -> Option<Cut> {
        let first = Self::first_try_bytes(max_length);
        let bound = Self::bound_bytes(max_length);
        let target = first.checked_shl(attempt).unwrap_or(usize::MAX);
        if attempt > 0 && target / 2 >= bound {
            return None;
        }
        if text.len() <= target {
            return Some(if text.len() <= bound.saturating_mul(2) {
                Cut::Full
            } else {
                Cut::Bound(floor_char_boundary(text, bound))
            });
        }
        let window_end = target.saturating_add(bound);
        if let Some(p) = self.next_boundary(text, target, window_end) {
            return Some(Cut::Boundary(p));
        }
        if text.len() <= window_end {
            // No boundary in a tail shorter than the bound: the whole text is small enough.
            return Some(Cut::Full);
        }
        // A run longer than the bound: a boundary before it may still be enough.
        match self.prev_boundary(text, tried + 1, target) {
            Some(p) if p > tried => Some(Cut::Boundary(p)),
            _ => Some(Cut::Bound(floor_char_boundary(text, bound.max(target)))),
        }
    }
}

/// Largest char boundary at or below `i`.
pub fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn kind(v: &Value) -> String {
    v.get("type").and_then(Value::as_str).unwrap_or("(none)").to_string()
}

fn local_normalizer(v: &Value) -> bool {
    match v {
        Value::Null => true,
        _ => match kind(v).as_str() {
            "Sequence" => v["normalizers"]
                .as_array()
                .is_some_and(|list| list.iter().all(local_normalizer)),
            "Precompiled" | "NFC" | "NFD" | "NFKC" | "NFKD" | "Lowercase" | "StripAccents" | "BertNormalizer" => true,
            // Collapsing runs of spaces: the XLM-R rule (module docs, point 2).
            "Replace" => {
                let pattern = &v["pattern"];
                let p = pattern.get("Regex").or_else(|| pattern.get("String"));
                p.and_then(Value::as_str) == Some(" {2,}") && v["content"].as_str() == Some(" ")
            }
            _ => false,
        },
    }
}

fn splits_at_spaces(v: &Value) -> bool {
    match kind(v).as_str() {
        "Sequence" => v["pretokenizers"]
            .as_array()
            .is_some_and(|list| !list.is_empty() && list.iter().any(splits_at_spaces) && list.iter().all(keeps_words)),
        "Metaspace" => {
            v.get("split").and_then(Value::as_bool).unwrap_or(true) && v["replacement"].as_str() == Some("▁")
        }
        "WhitespaceSplit" | "Whitespace" | "BertPreTokenizer" => true,
        _ => false,
    }
}

/// Pre-tokenizers that may run alongside a whitespace split without joining words across
/// a space.
fn keeps_words(v: &Value) -> bool {
    splits_at_spaces(v) || matches!(kind(v).as_str(), "Punctuation" | "Digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_json() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny/tokenizer.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn rule_for(json: &Value) -> Result<PreTruncation, String> {
        let tok: Tokenizer = json.to_string().parse().unwrap();
        PreTruncation::for_tokenizer(&tok)
    }

    #[test]
    fn xlmr_pipeline_is_covered_and_its_spaces_probed() {
        let rule = rule_for(&tiny_json()).unwrap();
        for c in [' ', '\t', '\n', '\r', '\u{a0}', '\u{3000}', '\u{2002}'] {
            assert!(rule.spaces().contains(&c), "{c:?} should be a cut point");
        }
        // zero-width characters normalize to nothing: never a cut point
        assert!(!rule.spaces().contains(&'\u{200b}'));
    }

    #[test]
    fn other_pipelines_fall_back_to_full_tokenization() {
        let mut json = tiny_json();
        json["pre_tokenizer"] = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        assert!(rule_for(&json).unwrap_err().contains("ByteLevel"));
        let mut json = tiny_json();
        json["pre_tokenizer"]["split"] = Value::Bool(false);
        assert!(rule_for(&json).is_err());
        let mut json = tiny_json();
        json["normalizer"]["normalizers"][1]["pattern"]["Regex"] = Value::from("a b");
        assert!(rule_for(&json).unwrap_err().contains("normalizer"));
    }

    #[test]
    fn boundaries_are_before_a_space_after_a_non_space_in_a_new_grapheme() {
        let rule = rule_for(&tiny_json()).unwrap();
        let at = |s: &str, p: usize| rule.is_boundary(s, p);
        assert!(at("ab cd", 2));
        assert!(!at("ab cd", 3)); // after the space
        assert!(!at("ab  cd", 3)); // inside a run of spaces
        assert!(at("ab\tcd", 2));
        assert!(at("ab\u{3000}cd", 2));
        assert!(!at("ab\u{200b}cd", 2)); // zero-width space vanishes
        assert!(at("ab \u{301}cd", 2)); // the mark belongs to the text after the cut
        assert!(!at("a\u{600} b", 3)); // a Prepend character joins the space to it
        assert!(at("a\r\nb", 1));
        assert!(!at("a\r\nb", 2));
        assert!(!at(" ab", 0));
    }

    #[test]
    fn plans_stay_within_the_bound() {
        let rule = rule_for(&tiny_json()).unwrap();
        let bound = PreTruncation::bound_bytes(16);
        assert_eq!(rule.plan("short text", 16, 0, 0), Some(Cut::Full));
        let words = "word ".repeat(10_000);
        match rule.plan(&words, 16, 0, 0) {
            Some(Cut::Boundary(p)) => assert!((256..=260).contains(&p), "{p}"),
            other => panic!("{other:?}"),
        }
        let run = "x".repeat(10 * bound);
        assert_eq!(rule.plan(&run, 16, 0, 0), Some(Cut::Bound(bound)));
        // every attempt is exhausted after the bound
        assert_eq!(rule.plan(&words, 16, 10, 0), None);
    }
}
