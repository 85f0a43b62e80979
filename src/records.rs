//! Input and output records of `crossrank score`.
//!
//! JSONL: one object per line with string fields `query` and `document`; every other field
//! is echoed to the output, which adds `logit` and `score` (replacing fields of those names).
//! TSV: `query<TAB>document` per line; the output appends `logit<TAB>score`.
//! Lines are read as bytes so invalid UTF-8 is reported with its line number.

use std::io::{self, BufRead, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::engine::PairScore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Tsv,
}

impl Format {
    /// From a file extension: `.tsv`/`.txt` → TSV, `.jsonl`/`.json`/`.ndjson` → JSONL.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "tsv" | "txt" | "tab" => Some(Format::Tsv),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "tsv" => Some(Format::Tsv),
            _ => None,
        }
    }
}

/// What the output echoes of an input record.
#[derive(Clone, Debug, PartialEq)]
pub enum Echo {
    Json(Map<String, Value>),
    /// The raw TSV line, without its line ending.
    Tsv(String),
}

/// One parsed input record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// 1-based line number in the input.
    pub line: u64,
    pub query: String,
    pub document: String,
    pub echo: Echo,
}

/// Strips one trailing `\n` or `\r\n`.
pub fn trim_line_ending(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Parses one line (without its line ending). The error is a reason, without file/line.
pub fn parse_record(format: Format, line: u64, raw: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    // A TSV line of one tab is a valid pair of empty strings; nothing else may be blank.
    let blank = match format {
        Format::Jsonl => text.trim().is_empty(),
        Format::Tsv => text.is_empty(),
    };
    if blank {
        return Err("blank line".into());
    }
    match format {
        Format::Jsonl => {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
            let Value::Object(obj) = value else {
                return Err("expected a JSON object with string fields `query` and `document`".into());
            };
            let field = |name: &str| match obj.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("field `{name}` must be a string, found {}", json_kind(other))),
                None => Err(format!("missing field `{name}`")),
            };
            let query = field("query")?;
            let document = field("document")?;
            Ok(Record {
                line,
                query,
                document,
                echo: Echo::Json(obj),
            })
        }
        Format::Tsv => {
            let columns: Vec<&str> = text.split('\t').collect();
            if columns.len() != 2 {
                return Err(format!(
                    "expected 2 tab-separated columns (query, document), found {}",
                    columns.len()
                ));
            }
            Ok(Record {
                line,
                query: columns[0].to_string(),
                document: columns[1].to_string(),
                echo: Echo::Tsv(text.to_string()),
            })
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads raw lines (bytes, line ending kept off) with their 1-based numbers.
pub struct LineReader<R> {
    inner: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.buf.clear();
        if self.inner.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        self.line += 1;
        Ok(Some((self.line, trim_line_ending(&self.buf))))
    }

    pub fn lines_read(&self) -> u64 {
        self.line
    }
}

/// Writes one scored record.
pub fn write_scored(out: &mut dyn Write, record: &Record, score: PairScore) -> io::Result<()> {
    match &record.echo {
        Echo::Json(obj) => {
            let mut obj = obj.clone();
            obj.insert("logit".into(), Value::from(score.logit));
            obj.insert("score".into(), Value::from(score.score));
            serde_json::to_writer(&mut *out, &obj)?;
            out.write_all(b"\n")
        }
        Echo::Tsv(line) => writeln!(out, "{line}\t{}\t{}", score.logit, score.score),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_echoes_fields_in_order() {
        let r = parse_record(
            Format::Jsonl,
            7,
            br#"{"id": 3, "query": "q", "document": "d", "x": [1]}"#,
        )
        .unwrap();
        assert_eq!((r.line, r.query.as_str(), r.document.as_str()), (7, "q", "d"));
        let mut out = Vec::new();
        write_scored(
            &mut out,
            &r,
            PairScore {
                logit: 0.5,
                score: 0.25,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":3,\"query\":\"q\",\"document\":\"d\",\"x\":[1],\"logit\":0.5,\"score\":0.25}\n"
        );
    }

    #[test]
    fn bad_records_say_why() {
        let cases: [(Format, &[u8], &str); 7] = [
            (Format::Jsonl, b"{\"query\": \"q\"", "malformed JSON"),
            (Format::Jsonl, b"{\"query\": \"q\"}", "missing field `document`"),
            (
                Format::Jsonl,
                b"{\"query\": 1, \"document\": \"d\"}",
                "field `query` must be a string",
            ),
            (Format::Jsonl, b"[1, 2]", "expected a JSON object"),
            (Format::Jsonl, b"  ", "blank line"),
            (Format::Tsv, b"a\tb\tc", "expected 2 tab-separated columns"),
            (Format::Tsv, b"a\xff\tb", "invalid UTF-8"),
        ];
        for (format, raw, want) in cases {
            let err = parse_record(format, 1, raw).unwrap_err();
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn empty_strings_are_valid() {
        let r = parse_record(Format::Jsonl, 1, br#"{"query": "", "document": ""}"#).unwrap();
        assert_eq!((r.query.as_str(), r.document.as_str()), ("", ""));
        let r = parse_record(Format::Tsv, 1, b"\t").unwrap();
        assert_eq!((r.query.as_str(), r.document.as_str()), ("", ""));
    }
}
