//! Input and output records of `crossrank score`.
//!
//! JSONL: one object per line with string fields `query` and `document`; every other field
//! is echoed to the output, which adds `logit` and `score` (replacing fields of those names).
//! TSV: `query<TAB>document` per line; the output appends `logit<TAB>score`.
//! Lines are read as bytes so invalid UTF-8 is reported with its line number.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::engine::PairScore;
use crate::error::{Error, Result};

/// An input by name: a file, or stdin for `-`.
pub fn open_input(name: &str) -> Result<Box<dyn BufRead + Send>> {
    if name == "-" {
        Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())))
    } else {
        let file = File::open(name).map_err(|e| Error::io(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

/// The name an input is reported under: its path, or `<stdin>` for `-`.
pub fn input_name(name: &str) -> String {
    if name == "-" {
        "<stdin>".into()
    } else {
        name.into()
    }
}

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

/// How an error message names a JSON value's type ("a number", "null", ...).
pub fn json_kind(v: &Value) -> &'static str {
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
    /// `buf` holds the line last returned (without its line ending); false when the last call
    /// returned no line, so [`LineReader::unread`] has nothing to give back.
    has_last: bool,
    /// Lines given back ([`LineReader::unread_lines`]), returned before reading more, each
    /// with its [`LineReader::oversized`] flag.
    replay: std::collections::VecDeque<(Vec<u8>, Option<u64>)>,
    /// Longer lines are not held in memory ([`LineReader::with_max_line_bytes`]).
    max_line_bytes: usize,
    /// Length of the line last returned when it was over `max_line_bytes`.
    oversized: Option<u64>,
}

/// Bytes kept of a line over the `--max-line-bytes` limit (for the rejects file).
pub const OVERSIZED_LINE_PREFIX: usize = 256;

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            line: 0,
            buf: Vec::new(),
            has_last: false,
            replay: Default::default(),
            max_line_bytes: usize::MAX,
            oversized: None,
        }
    }

    /// Lines longer than `max` bytes (line ending excluded) are returned as their first
    /// [`OVERSIZED_LINE_PREFIX`] bytes, flagged by [`LineReader::oversized`]; the rest is
    /// skipped without being held in memory.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// The full length of the line last returned, when it was over the limit.
    pub fn oversized(&self) -> Option<u64> {
        self.oversized
    }

    /// Reads one line into `buf` (line ending included), holding at most 2 bytes more than
    /// `max_line_bytes` of it; returns the bytes consumed. Memory for the line is reserved with
    /// `try_reserve`, so a line too big for the machine is an error, not an abort.
    fn read_bounded_line(&mut self) -> io::Result<u64> {
        let keep_limit = self.max_line_bytes.saturating_add(2);
        let mut consumed = 0u64;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(consumed);
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = keep_limit.saturating_sub(self.buf.len()).min(take);
            if room > 0 {
                self.buf.try_reserve(room).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "line {}: cannot allocate {} bytes for it (lower --max-line-bytes)",
                            self.line + 1,
                            self.buf.len() + room
                        ),
                    )
                })?;
                self.buf.extend_from_slice(&available[..room]);
            }
            self.inner.consume(take);
            consumed += take as u64;
            if done {
                return Ok(consumed);
            }
        }
    }

    /// The next line, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.has_last = false;
        if self.buf.capacity() > 1 << 20 {
            // Do not keep a huge line's buffer for the rest of the run.
            self.buf = Vec::new();
        }
        self.oversized = None;
        if let Some((line, oversized)) = self.replay.pop_front() {
            // Replayed lines are stored without their line ending: never trim them again.
            self.buf = line;
            self.oversized = oversized;
        } else {
            self.buf.clear();
            let consumed = self.read_bounded_line()?;
            if consumed == 0 {
                return Ok(None);
            }
            // `buf` holds the whole line unless the line is over the limit.
            let whole = consumed <= self.max_line_bytes.saturating_add(2) as u64;
            let len = if whole {
                trim_line_ending(&self.buf).len() as u64
            } else {
                consumed - 1
            };
            if len > self.max_line_bytes as u64 {
                self.oversized = Some(len);
                self.buf.truncate(OVERSIZED_LINE_PREFIX.min(self.buf.len()));
                self.buf.shrink_to(OVERSIZED_LINE_PREFIX);
            } else {
                let len = trim_line_ending(&self.buf).len();
                self.buf.truncate(len);
            }
        }
        self.line += 1;
        self.has_last = true;
        Ok(Some((self.line, &self.buf)))
    }

    /// Gives back the last `lines.len()` lines read (in order, without line endings, each
    /// with the [`LineReader::oversized`] flag it was read with): they are returned again,
    /// with the same numbers and flags, before anything new is read.
    pub fn unread_lines(&mut self, lines: Vec<(Vec<u8>, Option<u64>)>) {
        assert!(lines.len() as u64 <= self.line, "unread more lines than were read");
        self.line -= lines.len() as u64;
        for line in lines.into_iter().rev() {
            self.replay.push_front(line);
        }
    }

    /// Gives back the line last returned by [`next_line`](Self::next_line).
    pub fn unread(&mut self) {
        if std::mem::take(&mut self.has_last) {
            let line = std::mem::take(&mut self.buf);
            let oversized = self.oversized;
            self.unread_lines(vec![(line, oversized)]);
        }
    }

    /// Lines consumed so far (lines given back do not count).
    pub fn lines_read(&self) -> u64 {
        self.line
    }
}

/// Writes one scored record.
pub fn write_scored(out: &mut dyn Write, record: &Record, score: PairScore) -> io::Result<()> {
    match &record.echo {
        Echo::Json(obj) => write_json_map(out, obj, score),
        Echo::Tsv(line) => write_tsv(out, line, score),
    }
}

fn write_json_map(out: &mut dyn Write, obj: &Map<String, Value>, score: PairScore) -> io::Result<()> {
    let mut obj = obj.clone();
    obj.insert("logit".into(), Value::from(score.logit));
    obj.insert("score".into(), Value::from(score.score));
    serde_json::to_writer(&mut *out, &obj)?;
    out.write_all(b"\n")
}

fn write_tsv(out: &mut dyn Write, line: &str, score: PairScore) -> io::Result<()> {
    writeln!(out, "{line}\t{}\t{}", score.logit, score.score)
}

/// An echo rendered ahead of time (on a tokenizer thread), so the writer only appends the
/// numbers. Output bytes are exactly those of [`write_scored`].
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    /// The serialized object without its closing `}` (`{` when it has no fields).
    JsonHead(String),
    /// An object that already has `logit` or `score` fields: those are replaced in place.
    JsonMap(Map<String, Value>),
    Tsv(String),
}

impl Rendered {
    pub fn new(echo: Echo) -> Rendered {
        match echo {
            Echo::Tsv(line) => Rendered::Tsv(line),
            Echo::Json(obj) if obj.contains_key("logit") || obj.contains_key("score") => Rendered::JsonMap(obj),
            Echo::Json(obj) => {
                let mut text = serde_json::to_string(&obj).expect("a JSON map serializes");
                text.pop(); // the closing brace
                Rendered::JsonHead(text)
            }
        }
    }

    pub fn write(&self, out: &mut dyn Write, score: PairScore) -> io::Result<()> {
        match self {
            Rendered::JsonHead(head) => {
                out.write_all(head.as_bytes())?;
                out.write_all(if head.len() > 1 { b",\"logit\":" } else { b"\"logit\":" })?;
                serde_json::to_writer(&mut *out, &Value::from(score.logit))?;
                out.write_all(b",\"score\":")?;
                serde_json::to_writer(&mut *out, &Value::from(score.score))?;
                out.write_all(b"}\n")
            }
            Rendered::JsonMap(obj) => write_json_map(out, obj, score),
            Rendered::Tsv(line) => write_tsv(out, line, score),
        }
    }
}

/// One line of the rejects file: `{"line", "reason", "raw"}`, plus `raw_base64` (standard
/// alphabet, padded) when the line is not valid UTF-8 (`raw` is then decoded lossily).
pub fn write_reject(out: &mut dyn Write, line: u64, reason: &str, raw: &[u8]) -> io::Result<()> {
    let mut obj = Map::new();
    obj.insert("line".into(), Value::from(line));
    obj.insert("reason".into(), Value::from(reason));
    obj.insert("raw".into(), Value::from(String::from_utf8_lossy(raw).into_owned()));
    if std::str::from_utf8(raw).is_err() {
        use base64::Engine as _;
        obj.insert(
            "raw_base64".into(),
            Value::from(base64::engine::general_purpose::STANDARD.encode(raw)),
        );
    }
    serde_json::to_writer(&mut *out, &obj)?;
    out.write_all(b"\n")
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

    #[test]
    fn rendered_echo_writes_the_same_bytes_as_write_scored() {
        let score = PairScore {
            logit: -1.25,
            score: 0.2227,
        };
        let lines: [(Format, &[u8]); 5] = [
            (
                Format::Jsonl,
                br#"{"id": 3, "query": "q", "document": "d", "x": [1, {"y": null}]}"#,
            ),
            (
                Format::Jsonl,
                br#"{"query": "q", "score": 9, "document": "d", "logit": "old"}"#,
            ),
            (Format::Jsonl, br#"{"query": "", "document": "\u00e9\n"}"#),
            (Format::Tsv, b"q\td"),
            (Format::Tsv, b"\t"),
        ];
        for (format, raw) in lines {
            let r = parse_record(format, 1, raw).unwrap();
            let mut want = Vec::new();
            write_scored(&mut want, &r, score).unwrap();
            let mut got = Vec::new();
            Rendered::new(r.echo.clone()).write(&mut got, score).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn rejects_carry_line_reason_raw_and_base64_when_not_utf8() {
        let mut out = Vec::new();
        write_reject(&mut out, 7, "blank line", b"").unwrap();
        write_reject(&mut out, 9, "invalid UTF-8 at byte 1", b"a\xffb").unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            rows[0],
            serde_json::json!({"line": 7, "reason": "blank line", "raw": ""})
        );
        assert_eq!(rows[1]["raw"], "a\u{fffd}b");
        assert_eq!(rows[1]["raw_base64"], "Yf9i");
    }
}
