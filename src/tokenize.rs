//! Pair tokenization exactly as sentence-transformers' `CrossEncoder` does it (spec §4):
//! `tokenizer(query, document, truncation="longest_first", max_length=N)` with the tokenizer's
//! own pair template: `<s> A </s></s> B </s>` for XLM-R (all type ids 0), `[CLS] A [SEP] B [SEP]`
//! for BERT (segment ids 0 up to the first `[SEP]`, 1 after it), whatever the file's
//! post-processor says.
//!
//! Each side is encoded on its own (what `tokenizers` does inside a pair encoding), then cut
//! by the `longest_first` rule of `tokenizers` and wrapped in the template. Splitting it this
//! way lets callers encode a repeated query once and reuse its ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;
use tokenizers::{Encoding, Token, Tokenizer};

use crate::error::{Error, Result};
pub use crate::pretruncate::Side;
use crate::pretruncate::{Cut, PreTruncation};

/// One (query, document) pair after truncation and template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    pub ids: Vec<u32>,
    /// Segment ids from the pair template, one per id; empty when every id is segment 0
    /// (templates without segments, e.g. XLM-R's), so most families pay nothing for them.
    pub type_ids: Vec<u32>,
    /// At least one side was cut to fit `max_length`.
    pub truncated: bool,
}

impl EncodedPair {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How many tokens of each side survive `longest_first` truncation to `budget` tokens
/// (`budget` = max_length minus the template's special tokens). Mirrors
/// `tokenizers::utils::truncation::truncate_encodings` so results are identical to Python.
pub fn longest_first(len_a: usize, len_b: usize, budget: usize) -> (usize, usize) {
    if budget == 0 {
        return (0, 0);
    }
    if len_a + len_b <= budget {
        return (len_a, len_b);
    }
    let swapped = len_a > len_b;
    let mut short = len_a.min(len_b);
    let mut long = if short > budget {
        short
    } else {
        short.max(budget - short)
    };
    if short + long > budget {
        short = budget / 2;
        long = short + budget % 2;
    }
    if swapped {
        (long, short)
    } else {
        (short, long)
    }
}

/// How many tokens of one side `tokenizers` >= 0.23 keeps before pair truncation sees it.
///
/// With truncation enabled, `TokenizerImpl::do_tokenize` tokenizes pre-tokenizer splits only
/// until `max_length` tokens (the full limit, special tokens included) are reached, keeping the
/// whole split that crosses it. Pair truncation (`longest_first`) then works on those lengths,
/// which decides which side gets the odd token when both must be cut. `word_ids` holds the split
/// index of each token; a token without one counts as its own split.
pub fn early_exit_len(word_ids: &[Option<u32>], max_length: usize) -> usize {
    early_exit_len_with_added(word_ids, &[], max_length)
}

/// [`early_exit_len`] for a side whose text holds added tokens (`[MASK]`, `<pad>`, ... written
/// out literally): `added[i]` says token `i` is such a split. Their tokens count, but the early
/// exit only stops after a split the model tokenized, never right after an added token (as
/// Python `tokenizers` 0.23.2 does: `[MASK]` x 6 then `hello` keeps 7 tokens at max_length 4).
/// An empty `added` means none.
pub fn early_exit_len_with_added(word_ids: &[Option<u32>], added: &[bool], max_length: usize) -> usize {
    if word_ids.len() <= max_length {
        return word_ids.len();
    }
    for (i, pair) in word_ids.windows(2).enumerate() {
        let ends_split = pair[0].is_none() || pair[0] != pair[1];
        let is_added = added.get(i).copied().unwrap_or(false);
        if i + 1 >= max_length && ends_split && !is_added {
            return i + 1;
        }
    }
    word_ids.len()
}

/// Special tokens around and between the two sides of a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairTemplate {
    pub prefix: Vec<u32>,
    pub middle: Vec<u32>,
    pub suffix: Vec<u32>,
    /// Segment ids of each part; `None` when the template gives every token segment 0.
    pub segments: Option<PairSegments>,
}

/// Segment (token type) ids a pair template assigns, part by part (BERT: prefix `[CLS]` 0,
/// query 0, middle `[SEP]` 0, document 1, suffix `[SEP]` 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairSegments {
    pub prefix: Vec<u32>,
    pub query: u32,
    pub middle: Vec<u32>,
    pub document: u32,
    pub suffix: Vec<u32>,
}

impl PairTemplate {
    pub fn num_special(&self) -> usize {
        self.prefix.len() + self.middle.len() + self.suffix.len()
    }

    /// Whether any token of a pair gets a segment id other than 0.
    pub fn uses_segments(&self) -> bool {
        self.segments.is_some()
    }

    /// Segment ids of a pair with `query_len` and `document_len` kept tokens (empty when the
    /// template gives every token segment 0).
    pub fn type_ids(&self, query_len: usize, document_len: usize) -> Vec<u32> {
        let Some(seg) = &self.segments else {
            return Vec::new();
        };
        let mut types = Vec::with_capacity(self.num_special() + query_len + document_len);
        types.extend_from_slice(&seg.prefix);
        types.resize(types.len() + query_len, seg.query);
        types.extend_from_slice(&seg.middle);
        types.resize(types.len() + document_len, seg.document);
        types.extend_from_slice(&seg.suffix);
        types
    }
}

/// Cheap to clone: the vocabulary is shared, so one tokenizer per `max_length` costs nothing.
#[derive(Clone)]
pub struct PairTokenizer {
    inner: Arc<Tokenizer>,
    path: PathBuf,
    template: PairTemplate,
    max_length: usize,
    /// Largest id the tokenizer can produce (checked against the embedding table).
    max_id: u32,
    /// Exact pre-truncation of long sides, where the tokenizer's pipeline allows it.
    pretruncation: std::result::Result<PreTruncation, String>,
    /// Added tokens (id -> content), to tell a literal `[MASK]` in the text from model output.
    added: Arc<HashMap<u32, String>>,
}

/// `model_max_length` from tokenizer_config.json, if the file exists and holds a usable one.
pub fn read_model_max_length(path: &Path) -> Result<Option<usize>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::config(path, format!("not valid JSON: {e}")))?;
    // transformers writes 1e30 ("VERY_LARGE_INTEGER") when no limit is known.
    Ok(value
        .get("model_max_length")
        .and_then(Value::as_f64)
        .filter(|v| *v >= 1.0)
        .map(|v| v.min(usize::MAX as f64) as usize))
}

impl PairTokenizer {
    /// Loads `tokenizer.json`; truncation/padding stored in the file are ignored (the engine
    /// truncates with `longest_first` to `max_length` itself and never pads).
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::tokenizer(path, "file not found"));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| Error::tokenizer(path, e.to_string()))?;
        inner
            .with_truncation(None)
            .map_err(|e| Error::tokenizer(path, e.to_string()))?;
        inner.with_padding(None);
        let template = probe_template(&inner).map_err(|msg| Error::tokenizer(path, msg))?;
        let max_id = inner.get_vocab(true).values().copied().max().unwrap_or(0);
        let pretruncation = PreTruncation::for_tokenizer(&inner);
        let added = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, token)| (id, token.content))
            .collect();
        let tok = PairTokenizer {
            inner: Arc::new(inner),
            path: path.to_path_buf(),
            template,
            max_length: 0,
            max_id,
            pretruncation,
            added: Arc::new(added),
        };
        tok.with_max_length(max_length)
    }

    /// Sets the pair length limit (special tokens included).
    pub fn with_max_length(mut self, max_length: usize) -> Result<Self> {
        let specials = self.template.num_special();
        if max_length < specials {
            return Err(Error::InvalidArgument(format!(
                "max length {max_length} is shorter than the {specials} special tokens of a pair"
            )));
        }
        self.max_length = max_length;
        Ok(self)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn template(&self) -> &PairTemplate {
        &self.template
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether long sides are pre-truncated, or why not (they are then tokenized in full).
    pub fn pretruncation(&self) -> std::result::Result<&PreTruncation, &str> {
        self.pretruncation.as_ref().map_err(String::as_str)
    }

    /// Without pre-truncation: every side is tokenized in full (the reference the
    /// pre-truncated ids are tested against).
    pub fn without_pretruncation(mut self) -> Self {
        self.pretruncation = Err("disabled".into());
        self
    }

    /// Ids of one side, without special tokens, as the Python `tokenizers` (>= 0.23) hands them
    /// to pair truncation: a side longer than `max_length` is already cut after the first
    /// pre-tokenizer split (word) that brings it to `max_length` tokens or more.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_side(text)?.ids)
    }

    /// [`PairTokenizer::encode_text`], tokenizing only a prefix of a long side where that is
    /// provably exact ([`crate::pretruncate`]); a side cut at the work bound is marked `precut`.
    pub fn encode_side(&self, text: &str) -> Result<Side> {
        let Ok(rule) = &self.pretruncation else {
            return self.encode_full(text);
        };
        let mut tried = 0;
        let mut last: Option<Vec<u32>> = None;
        for attempt in 0.. {
            let cut = match rule.plan(text, self.max_length, attempt, tried) {
                Some(cut) => cut,
                None => break,
            };
            match cut {
                Cut::Full => return self.encode_full(text),
                Cut::Bound(p) => {
                    let encoding = self.encode_with_words(&text[..p])?;
                    let keep = self.early_exit(&encoding, &text[..p]);
                    return Ok(Side {
                        ids: encoding.get_ids()[..keep].to_vec(),
                        precut: true,
                    });
                }
                Cut::Boundary(p) => {
                    let encoding = self.encode_with_words(&text[..p])?;
                    let keep = self.early_exit(&encoding, &text[..p]);
                    // Exact when a later word follows the one the early exit stops at.
                    if keep < encoding.len() {
                        return Ok(Side {
                            ids: encoding.get_ids()[..keep].to_vec(),
                            precut: false,
                        });
                    }
                    tried = p;
                    last = Some(encoding.get_ids()[..keep].to_vec());
                }
            }
        }
        // Every cut within the bound fell short of max_length tokens: keep the longest one.
        Ok(Side {
            ids: last.unwrap_or_default(),
            precut: true,
        })
    }

    /// [`early_exit_len_with_added`] on an encoding of `text`: a token is an added-token split
    /// when its id is an added token's and the text it covers is that token's content (a
    /// WordPiece `[UNK]` for an unknown word has the id but covers the word).
    fn early_exit(&self, encoding: &Encoding, text: &str) -> usize {
        let ids = encoding.get_ids();
        let offsets = encoding.get_offsets();
        let added: Vec<bool> = if self.added.is_empty() {
            Vec::new()
        } else {
            ids.iter()
                .zip(offsets)
                .map(|(id, &(start, end))| {
                    self.added
                        .get(id)
                        .is_some_and(|content| text.get(start..end).map(str::trim) == Some(content.trim()))
                })
                .collect()
        };
        early_exit_len_with_added(encoding.get_word_ids(), &added, self.max_length)
    }

    fn encode_with_words(&self, text: &str) -> Result<Encoding> {
        self.inner
            .encode(text, false)
            .map_err(|e| Error::tokenizer(&self.path, e.to_string()))
    }

    fn encode_full(&self, text: &str) -> Result<Side> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::tokenizer(&self.path, e.to_string()))?;
        if encoding.len() <= self.max_length {
            return Ok(Side {
                ids: encoding.get_ids().to_vec(),
                precut: false,
            });
        }
        // Rare (only sides that get truncated): `encode_fast` leaves out the split indices.
        let encoding = self.encode_with_words(text)?;
        let keep = self.early_exit(&encoding, text);
        Ok(Side {
            ids: encoding.get_ids()[..keep].to_vec(),
            precut: false,
        })
    }

    /// Truncates two encoded sides with `longest_first` and applies the template.
    pub fn assemble(&self, query: &[u32], document: &[u32]) -> EncodedPair {
        let budget = self.max_length - self.template.num_special();
        let (na, nb) = longest_first(query.len(), document.len(), budget);
        let t = &self.template;
        let mut ids = Vec::with_capacity(na + nb + t.num_special());
        ids.extend_from_slice(&t.prefix);
        ids.extend_from_slice(&query[..na]);
        ids.extend_from_slice(&t.middle);
        ids.extend_from_slice(&document[..nb]);
        ids.extend_from_slice(&t.suffix);
        EncodedPair {
            ids,
            type_ids: t.type_ids(na, nb),
            truncated: na < query.len() || nb < document.len(),
        }
    }

    pub fn encode_pair(&self, query: &str, document: &str) -> Result<EncodedPair> {
        Ok(self.assemble(&self.encode_text(query)?, &self.encode_text(document)?))
    }

    /// Encodes many pairs on all cores (rayon), preserving order.
    pub fn encode_pairs<Q: AsRef<str> + Sync, D: AsRef<str> + Sync>(
        &self,
        pairs: &[(Q, D)],
    ) -> Result<Vec<EncodedPair>> {
        pairs
            .par_iter()
            .map(|(q, d)| self.encode_pair(q.as_ref(), d.as_ref()))
            .collect()
    }
}

/// Finds the pair template by running the tokenizer's post-processor on two one-token
/// marker sequences and reading where they land, and which segment id each position gets
/// (TemplateProcessing's `type_id`s; BertProcessing and RobertaProcessing imply theirs: 0/1
/// and all 0). Every token of one side gets the same segment id in all of them.
fn probe_template(tok: &Tokenizer) -> std::result::Result<PairTemplate, String> {
    const MARK_A: u32 = u32::MAX - 1;
    const MARK_B: u32 = u32::MAX - 2;
    let marker = |id: u32| Encoding::from_tokens(vec![Token::new(id, String::new(), (0, 0))], 0);
    let encoding = tok
        .post_process(marker(MARK_A), Some(marker(MARK_B)), true)
        .map_err(|e| format!("post-processor failed on a probe pair: {e}"))?;
    let ids = encoding.get_ids();
    let pos_a = ids.iter().position(|&i| i == MARK_A);
    let pos_b = ids.iter().position(|&i| i == MARK_B);
    let (Some(a), Some(b)) = (pos_a, pos_b) else {
        return Err("post-processor drops a side of the pair".into());
    };
    if a > b || ids.iter().filter(|&&i| i == MARK_A || i == MARK_B).count() != 2 {
        return Err("post-processor reorders or repeats the sides of a pair".into());
    }
    let types = encoding.get_type_ids();
    if types.len() != ids.len() {
        return Err("post-processor gives a segment id list of the wrong length".into());
    }
    let segments = types.iter().any(|&t| t != 0).then(|| PairSegments {
        prefix: types[..a].to_vec(),
        query: types[a],
        middle: types[a + 1..b].to_vec(),
        document: types[b],
        suffix: types[b + 1..].to_vec(),
    });
    Ok(PairTemplate {
        prefix: ids[..a].to_vec(),
        middle: ids[a + 1..b].to_vec(),
        suffix: ids[b + 1..].to_vec(),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_matches_tokenizers_cases() {
        // fits
        assert_eq!(longest_first(3, 4, 10), (3, 4));
        // only the longer side is cut
        assert_eq!(longest_first(2, 20, 10), (2, 8));
        assert_eq!(longest_first(20, 2, 10), (8, 2));
        // both cut: short side longer than half the budget
        assert_eq!(longest_first(7, 9, 10), (5, 5));
        assert_eq!(longest_first(9, 7, 11), (6, 5));
        assert_eq!(longest_first(7, 9, 11), (5, 6));
        // short side alone exceeds the budget
        assert_eq!(longest_first(15, 20, 10), (5, 5));
        // empty side
        assert_eq!(longest_first(0, 20, 10), (0, 10));
        assert_eq!(longest_first(5, 5, 0), (0, 0));
    }

    #[test]
    fn early_exit_keeps_whole_splits_up_to_max_length() {
        let words = |w: &[u32]| w.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // short enough: untouched
        assert_eq!(early_exit_len(&words(&[0, 0, 1]), 3), 3);
        // the split crossing max_length is kept whole
        assert_eq!(early_exit_len(&words(&[0, 0, 1, 1, 1, 2, 3]), 3), 5);
        // exactly at a split end
        assert_eq!(early_exit_len(&words(&[0, 1, 2, 3, 4]), 3), 3);
        // the last split crosses: everything stays
        assert_eq!(early_exit_len(&words(&[0, 1, 1, 1, 1]), 2), 5);
        // tokens without a split index count one by one
        assert_eq!(early_exit_len(&[None, None, None, None], 2), 2);
    }

    #[test]
    fn early_exit_never_stops_right_after_an_added_token() {
        let words = |w: &[u32]| w.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // `[MASK]` x 6 then `hello world`, max_length 4: the masks count, the exit comes after `hello`.
        let added = [true, true, true, true, true, true, false, false];
        assert_eq!(
            early_exit_len_with_added(&words(&[0, 1, 2, 3, 4, 5, 6, 7]), &added, 4),
            7
        );
        // `a b c [MASK] d e f`: the exit is after `d`, not after the mask that reaches 4.
        let added = [false, false, false, true, false, false, false];
        assert_eq!(early_exit_len_with_added(&words(&[0, 1, 2, 3, 4, 5, 6]), &added, 4), 5);
        // `a b c d [MASK] e f`: `d` reaches 4 and is model output: the exit is there.
        let added = [false, false, false, false, true, false, false];
        assert_eq!(early_exit_len_with_added(&words(&[0, 1, 2, 3, 4, 5, 6]), &added, 4), 4);
        // no added tokens: the plain rule
        assert_eq!(early_exit_len_with_added(&words(&[0, 1, 2, 3, 4]), &[], 3), 3);
    }

    #[test]
    fn odd_token_follows_the_early_exit_lengths() {
        // tokenizers 0.23: sides of 8 and 7 one-token words, max_length 7 (budget 3): both are
        // pre-cut to 7, the tie gives the odd token to the second side.
        let (a, b) = (early_exit_len(&[None; 8], 7), 7);
        assert_eq!(longest_first(a, b, 3), (1, 2));
    }
}
