//! Parquet in and out of `crossrank score`, bridged to the pipeline's line records.
//!
//! The streaming pipeline ([`crate::pipeline`]) reads input lines and writes output lines;
//! its ordering, windows, rejects and resume check ([`crate::records`]) are written once, for
//! lines. Parquet joins it at both ends without changing it:
//!
//! - **Input**: [`ParquetLines`] reads a Parquet file (or a directory of part files) one
//!   record batch at a time and renders each row as one JSON object line (every column, nulls
//!   written as `null`), which the pipeline parses as JSONL. Row *n* (1-based) is "line" *n*
//!   in error messages and in the rejects file; a null or non-string `query`/`document` is a
//!   bad record like any other.
//! - **Output**: [`PartsWriter`] takes the pipeline's output lines (JSON objects, or TSV
//!   lines for TSV input), decodes them back to Arrow with the output schema and writes a
//!   directory of part files `part-00000.parquet`, `part-00001.parquet`, ... A part is
//!   written as `_part-NNNNN.parquet.tmp`, then closed (footer written, synced) and renamed
//!   once it holds `part_rows` rows, so every `part-*.parquet` is a complete file: a killed
//!   run keeps all closed parts, and `--resume` reads them back as lines for the usual
//!   resume check and continues. Readers of a directory dataset (pyarrow, pandas, polars,
//!   Spark, DuckDB) skip names starting with `_`.
//!
//! The output schema: for Parquet input, the input's columns, with `logit` and `score`
//! (float32) replacing columns of those names in place or appended; for JSONL input,
//! inferred from the first [`INFER_ROWS`] output rows (field order of first appearance);
//! for TSV input, `query`, `document`, `logit`, `score`.
//!
//! The JSON bridge costs a few microseconds per row, far below tokenizing it, and arrow-json
//! round-trips every Arrow type a reranking table holds (integers, floats, strings of the
//! three layouts, booleans, lists, structs, maps, decimals, timestamps, binary as hex).

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::records::Format;
use crate::resume::ResumePoint;
use crate::resume::{temp_path_for, PartialFile};

/// Rows per closed part file, unless `--part-rows` says otherwise.
pub const DEFAULT_PART_ROWS: usize = 100_000;
/// Rows per record batch read from the input and per batch written to a part.
const BATCH_ROWS: usize = 4096;
/// Output rows a JSONL input's Parquet schema is inferred from.
pub const INFER_ROWS: usize = 1024;

/// `.parquet` / `.pq` (a file, or a directory of parts named so).
pub fn is_parquet_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

/// The formats of one `score` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    /// The input is Parquet (the pipeline then reads it as JSONL lines).
    pub input_parquet: bool,
    /// What the pipeline parses and writes.
    pub lines: Format,
    /// The output is a directory of Parquet parts.
    pub output_parquet: bool,
}

/// `--format` names the input's format (else its extension; JSONL for stdin); the output is
/// Parquet when `--output-format parquet` says so or its name ends in `.parquet`/`.pq`.
pub fn resolve_formats(
    format: Option<&str>,
    output_format: Option<&str>,
    input: &str,
    output: &str,
) -> Result<Formats> {
    let input_parquet = match format {
        Some(f) => f.eq_ignore_ascii_case("parquet"),
        None => input != "-" && is_parquet_path(Path::new(input)),
    };
    let lines = if input_parquet {
        Format::Jsonl
    } else {
        match format {
            Some(f) => Format::parse(f)
                .ok_or_else(|| Error::InvalidArgument(format!("unknown --format `{f}` (jsonl, tsv or parquet)")))?,
            None if input == "-" => Format::Jsonl,
            None => Format::from_path(Path::new(input)).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "cannot tell the format of `{input}` from its extension; pass --format jsonl|tsv|parquet"
                ))
            })?,
        }
    };
    if input_parquet && input == "-" {
        return Err(Error::InvalidArgument(
            "Parquet input cannot come from stdin (its footer is at the end): pass --input FILE".into(),
        ));
    }
    let output_parquet = match output_format {
        Some(f) if f.eq_ignore_ascii_case("parquet") => true,
        Some(f) if Format::parse(f) == Some(lines) => false,
        Some(f) => {
            return Err(Error::InvalidArgument(format!(
                "--output-format `{f}`: the output is {} lines (as the input) or parquet",
                if lines == Format::Tsv { "tsv" } else { "jsonl" }
            )))
        }
        None => output != "-" && is_parquet_path(Path::new(output)),
    };
    if output_parquet && output == "-" {
        return Err(Error::InvalidArgument("Parquet output needs --output DIR".into()));
    }
    Ok(Formats {
        input_parquet,
        lines,
        output_parquet,
    })
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The Parquet files of `path`: the file itself, or a directory's `*.parquet` files by name
/// (names starting with `_` or `.` skipped, as dataset readers do).
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files = part_files(path)?;
    if files.is_empty() {
        return Err(Error::io(path, invalid("the directory holds no .parquet files")));
    }
    Ok(files)
}

fn part_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('_') || name.starts_with('.')) && is_parquet_path(Path::new(&*name)) {
            files.push(entry.path());
        }
    }
    // Numbers in names compare by value (`part-100000` after `part-99999`), as zero-padded
    // digit runs; names that differ otherwise keep their byte order.
    files.sort_by_cached_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    Ok(files)
}

fn natural_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 20);
    let mut digits = String::new();
    for c in name.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            key.push_str(&format!("{digits:0>20}"));
            digits.clear();
        }
        if c != '\0' {
            key.push(c);
        }
    }
    key
}

fn open_reader(path: &Path) -> Result<(SchemaRef, u64, ParquetRecordBatchReader)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: parquet::errors::ParquetError| Error::io(path, invalid(format!("not a readable Parquet file: {e}")));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
    let schema = builder.schema().clone();
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(bad)?;
    Ok((schema, rows, reader))
}

/// The rows of a Parquet file or directory of parts as lines, one record batch in memory at
/// a time: JSON objects (every column), or for [`ParquetLines::tsv`] `query<TAB>document<TAB>
/// logit<TAB>score` (how a TSV run's output reads back for `--resume`).
pub struct ParquetLines {
    files: VecDeque<PathBuf>,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
    schema: SchemaRef,
    first: PathBuf,
    /// Read from a directory of parts (errors then name the part).
    parts: bool,
    explicit_nulls: bool,
    tsv: bool,
    buf: Vec<u8>,
    pos: usize,
}

impl ParquetLines {
    /// Opens `path`; `explicit_nulls`: a null is written `"name":null` rather than left out.
    pub fn open(path: &Path, explicit_nulls: bool) -> Result<Self> {
        Self::open_files(parquet_files(path)?, explicit_nulls)
    }

    fn open_files(files: Vec<PathBuf>, explicit_nulls: bool) -> Result<Self> {
        let first = files.first().cloned().unwrap_or_default();
        let parts = files.len() > 1;
        let (schema, _, reader) = open_reader(&first)?;
        let mut files: VecDeque<PathBuf> = files.into();
        files.pop_front();
        Ok(ParquetLines {
            files,
            current: Some((first.clone(), reader)),
            schema,
            first,
            parts,
            explicit_nulls,
            tsv: false,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Lines as TSV (`query`, `document`, `logit`, `score`).
    pub fn tsv(mut self) -> Self {
        self.tsv = true;
        self
    }

    /// The (first file's) Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Refuses an input that lacks `query` or `document` columns, naming what it has.
    pub fn require_pair_columns(&self, name: &str) -> Result<()> {
        for column in ["query", "document"] {
            if self.schema.field_with_name(column).is_err() {
                let have: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::io(
                    name,
                    invalid(format!("no column `{column}` (columns: {})", have.join(", "))),
                ));
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> io::Result<Option<RecordBatch>> {
        loop {
            if let Some((path, reader)) = &mut self.current {
                match reader.next() {
                    Some(Ok(batch)) => return Ok(Some(batch)),
                    // The pipeline names the input; a part of a directory is named here.
                    Some(Err(e)) if self.parts => return Err(invalid(format!("{}: {e}", path.display()))),
                    Some(Err(e)) => return Err(invalid(e.to_string())),
                    None => self.current = None,
                }
            }
            let Some(path) = self.files.pop_front() else {
                return Ok(None);
            };
            let (schema, _, reader) = open_reader(&path).map_err(|e| invalid(e.to_string()))?;
            if schema.fields() != self.schema.fields() {
                return Err(invalid(format!(
                    "{}: its columns differ from those of {}",
                    path.display(),
                    self.first.display()
                )));
            }
            self.current = Some((path, reader));
        }
    }

    fn render(&mut self, batch: &RecordBatch) -> io::Result<()> {
        let mut json = Vec::new();
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(self.explicit_nulls)
            .build::<_, arrow_json::writer::LineDelimited>(&mut json);
        writer.write(batch).map_err(|e| invalid(e.to_string()))?;
        writer.finish().map_err(|e| invalid(e.to_string()))?;
        drop(writer);
        if !self.tsv {
            self.buf = json;
            return Ok(());
        }
        for line in json.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let row: Value = serde_json::from_slice(line).map_err(|e| invalid(e.to_string()))?;
            let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let number = |k: &str| row.get(k).map_or("NaN".to_string(), |v| v.to_string());
            writeln!(
                self.buf,
                "{}\t{}\t{}\t{}",
                text("query"),
                text("document"),
                number("logit"),
                number("score")
            )?;
        }
        Ok(())
    }
}

impl Read for ParquetLines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ParquetLines {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            let Some(batch) = self.next_batch()? else {
                break;
            };
            self.render(&batch)?;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

fn score_field(name: &str) -> Field {
    Field::new(name, DataType::Float32, true)
}

/// The output schema of a Parquet input: its columns, `logit`/`score` as float32 in place
/// or appended. Schema metadata (e.g. pandas') is dropped: it would not describe the new columns.
pub fn scored_schema(input: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .map(|f| match (f.name().as_str(), f.data_type()) {
            ("logit" | "score", _) => score_field(f.name()),
            // Rows travel as JSON, which holds a dictionary column's values; arrow-json cannot
            // decode into a dictionary type, so the output column is of the value type.
            (_, DataType::Dictionary(_, values)) => f.as_ref().clone().with_data_type(values.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    for name in ["logit", "score"] {
        if !fields.iter().any(|f| f.name() == name) {
            fields.push(score_field(name));
        }
    }
    Arc::new(Schema::new(fields))
}

fn tsv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query", DataType::Utf8, true),
        Field::new("document", DataType::Utf8, true),
        score_field("logit"),
        score_field("score"),
    ]))
}

/// The schema of JSON object lines: arrow-json's inference, fields in order of first
/// appearance, `logit`/`score` float32.
fn infer_schema(lines: &[u8]) -> io::Result<SchemaRef> {
    let values = lines
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice::<Value>)
        .collect::<std::result::Result<Vec<Value>, _>>()
        .map_err(|e| invalid(format!("output line is not JSON: {e}")))?;
    let inferred = arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| invalid(format!("cannot infer a Parquet schema from the first rows: {e}")))?;
    let mut seen = HashSet::new();
    let mut fields = Vec::new();
    for object in values.iter().filter_map(Value::as_object) {
        for key in object.keys() {
            if seen.insert(key.as_str()) {
                fields.push(match key.as_str() {
                    "logit" | "score" => score_field(key),
                    _ => inferred
                        .field_with_name(key)
                        .map_err(|e| invalid(e.to_string()))?
                        .clone(),
                });
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// One TSV output line (`query<TAB>document<TAB>logit<TAB>score`) as a JSON object line.
fn tsv_to_json(line: &[u8]) -> io::Result<Vec<u8>> {
    let line = crate::records::trim_line_ending(line);
    let text = std::str::from_utf8(line).map_err(|_| invalid("TSV output line is not UTF-8"))?;
    let mut cols = text.rsplitn(3, '\t');
    let (score, logit, pair) = (cols.next(), cols.next(), cols.next());
    let (Some(score), Some(logit), Some((query, document))) = (score, logit, pair.and_then(|p| p.split_once('\t')))
    else {
        return Err(invalid(format!("not a scored TSV line: {text:?}")));
    };
    let number = |s: &str| {
        s.parse::<f32>()
            .ok()
            .filter(|x| x.is_finite())
            .map_or(Value::Null, |_| serde_json::from_str(s).unwrap_or(Value::Null))
    };
    let mut json = serde_json::to_vec(&serde_json::json!({
        "query": query, "document": document, "logit": number(logit), "score": number(score),
    }))
    .map_err(|e| invalid(e.to_string()))?;
    json.push(b'\n');
    Ok(json)
}

/// Where the parts of an output `target` are written until the run completes.
pub fn partial_dir(target: &Path) -> PathBuf {
    temp_path_for(target)
}

/// Whether an interrupted run left parts to resume from.
pub fn has_partial(target: &Path) -> bool {
    partial_dir(target).is_dir()
}

fn part_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

fn tmp_name(index: usize) -> String {
    format!("_part-{index:05}.parquet.tmp")
}

/// The pipeline's output lines, written as a directory of closed Parquet part files (see the
/// module docs). Rows are decoded [`BATCH_ROWS`] at a time; a part is closed after
/// `part_rows` rows. [`Write::flush`] does not close a part (parts depend on row counts
/// only), so a killed run loses at most the rows of the part being written.
pub struct PartsWriter {
    target: PathBuf,
    dir: PathBuf,
    lines: Format,
    schema: Option<SchemaRef>,
    decoder: Option<arrow_json::reader::Decoder>,
    /// Bytes of an unfinished line.
    tail: Vec<u8>,
    /// JSON lines held until the schema is inferred from them.
    held: Vec<u8>,
    held_rows: usize,
    part: Option<ArrowWriter<File>>,
    next_part: usize,
    part_rows: usize,
    rows_in_part: usize,
    rows_in_batch: usize,
    props: WriterProperties,
    /// Top-level integer columns of the schema, checked on every JSONL row (set once the
    /// schema is known): arrow-json would cast a later `0.5` into an inferred Int64 column
    /// to 0 without an error.
    integer_fields: Option<Vec<String>>,
}

impl PartsWriter {
    /// Starts an empty `<target>.partial/` (parts of an older partial run are removed).
    /// `lines`: the format of the lines written to it; `schema`: the output schema, `None`
    /// to infer it (JSONL lines).
    pub fn create(target: &Path, lines: Format, schema: Option<SchemaRef>, part_rows: usize) -> Result<Self> {
        let dir = partial_dir(target);
        if dir.is_dir() {
            remove_parts(&dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self::new(target, dir, lines, schema, part_rows, 0))
    }

    fn new(
        target: &Path,
        dir: PathBuf,
        lines: Format,
        schema: Option<SchemaRef>,
        part_rows: usize,
        next_part: usize,
    ) -> Self {
        let schema = schema.or_else(|| (lines == Format::Tsv).then(tsv_schema));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(part_rows.clamp(1, 1 << 20))
            .build();
        PartsWriter {
            target: target.to_path_buf(),
            dir,
            lines,
            schema,
            decoder: None,
            tail: Vec::new(),
            held: Vec::new(),
            held_rows: 0,
            part: None,
            next_part,
            part_rows: part_rows.max(1),
            rows_in_part: 0,
            rows_in_batch: 0,
            props,
            integer_fields: None,
        }
    }

    /// Reopens `<target>.partial/` after [`resume_parts`] cut it to its first `keep_rows` rows.
    pub fn reopen(
        target: &Path,
        lines: Format,
        schema: Option<SchemaRef>,
        part_rows: usize,
        keep_rows: u64,
    ) -> Result<Self> {
        let dir = partial_dir(target);
        let (next_part, kept_schema) = truncate_parts(&dir, keep_rows)?;
        Ok(Self::new(
            target,
            dir,
            lines,
            schema.or(kept_schema),
            part_rows,
            next_part,
        ))
    }

    pub fn partial_path(&self) -> &Path {
        &self.dir
    }

    fn push_line(&mut self, line: &[u8]) -> io::Result<()> {
        let json: Cow<[u8]> = match self.lines {
            Format::Tsv => Cow::Owned(tsv_to_json(line)?),
            Format::Jsonl => Cow::Borrowed(line),
        };
        if self.schema.is_none() {
            self.held.extend_from_slice(&json);
            self.held_rows += 1;
            if self.held_rows >= INFER_ROWS.min(self.part_rows) {
                self.release_held()?;
            }
            return Ok(());
        }
        self.decode_row(&json)
    }

    /// Infers the schema from the held lines and decodes them.
    fn release_held(&mut self) -> io::Result<()> {
        if self.schema.is_none() && self.held_rows > 0 {
            self.schema = Some(infer_schema(&self.held)?);
        }
        let held = std::mem::take(&mut self.held);
        self.held_rows = 0;
        for line in held.split_inclusive(|&c| c == b'\n') {
            self.decode_row(line)?;
        }
        Ok(())
    }

    fn decode_row(&mut self, json: &[u8]) -> io::Result<()> {
        if self.part.is_none() {
            self.open_part()?;
        }
        if self.lines == Format::Jsonl {
            self.check_integer_fields(json)?;
        }
        let decoder = self
            .decoder
            .as_mut()
            .expect("a decoder exists once the schema is known");
        let consumed = decoder
            .decode(json)
            .map_err(|e| invalid(format!("output row does not fit the Parquet schema: {e}")))?;
        if consumed != json.len() {
            return Err(invalid("output row was not decoded whole"));
        }
        self.rows_in_batch += 1;
        self.rows_in_part += 1;
        if self.rows_in_batch >= BATCH_ROWS {
            self.write_batch()?;
        }
        if self.rows_in_part >= self.part_rows {
            self.close_part()?;
        }
        Ok(())
    }

    /// A value of an integer column that is not an integer is an error, not a silent cast.
    fn check_integer_fields(&mut self, json: &[u8]) -> io::Result<()> {
        let schema = self
            .schema
            .as_ref()
            .expect("the schema is known before rows are decoded");
        let fields = self.integer_fields.get_or_insert_with(|| {
            schema
                .fields()
                .iter()
                .filter(|f| f.data_type().is_integer())
                .map(|f| f.name().clone())
                .collect()
        });
        if fields.is_empty() {
            return Ok(());
        }
        let row: Value = serde_json::from_slice(json).map_err(|e| invalid(format!("output line is not JSON: {e}")))?;
        for name in fields.iter() {
            if let Some(Value::Number(n)) = row.get(name) {
                if !(n.is_i64() || n.is_u64()) {
                    return Err(invalid(format!(
                        "output row does not fit the Parquet schema: column `{name}` holds integers \
                         (inferred from the first rows) but this row has {n}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn open_part(&mut self) -> io::Result<()> {
        let schema = self.schema.clone().expect("the schema is known before a part opens");
        if self.decoder.is_none() {
            let decoder = arrow_json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .with_strict_mode(true)
                .build_decoder()
                .map_err(|e| invalid(e.to_string()))?;
            self.decoder = Some(decoder);
        }
        let path = self.dir.join(tmp_name(self.next_part));
        let file = File::create(&path)?;
        let writer = ArrowWriter::try_new(file, schema, Some(self.props.clone()))
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        self.part = Some(writer);
        self.rows_in_part = 0;
        Ok(())
    }

    fn write_batch(&mut self) -> io::Result<()> {
        self.rows_in_batch = 0;
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(());
        };
        let batch = decoder
            .flush()
            .map_err(|e| invalid(format!("output rows do not fit the Parquet schema: {e}")))?;
        if let (Some(batch), Some(part)) = (batch, self.part.as_mut()) {
            part.write(&batch).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes the footer, syncs, and renames the part into place.
    fn close_part(&mut self) -> io::Result<()> {
        self.write_batch()?;
        let Some(part) = self.part.take() else {
            return Ok(());
        };
        let file = part.into_inner().map_err(|e| invalid(e.to_string()))?;
        file.sync_all()?;
        let index = self.next_part;
        std::fs::rename(self.dir.join(tmp_name(index)), self.dir.join(part_name(index)))?;
        self.next_part += 1;
        self.rows_in_part = 0;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Closes the part being written (a run that stops keeps what it completed).
    fn finish(&mut self) -> Result<()> {
        let dir = self.dir.clone();
        let close = |w: &mut Self| -> io::Result<()> {
            w.release_held()?;
            w.close_part()
        };
        close(self).map_err(|e| Error::io(&dir, e))
    }

    /// Closes the current part; removes the directory when it holds no part. Returns whether
    /// parts were kept.
    pub fn close(mut self) -> Result<bool> {
        self.finish()?;
        let parts = part_files(&self.dir)?;
        if parts.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        Ok(!parts.is_empty())
    }

    /// Closes the last part (an empty input still gets one part, with the schema) and renames
    /// `<target>.partial/` to `<target>/`, replacing an older output directory of parts.
    pub fn commit(mut self) -> Result<()> {
        self.finish()?;
        if part_files(&self.dir)?.is_empty() {
            if self.schema.is_none() {
                self.schema = Some(tsv_schema());
            }
            let dir = self.dir.clone();
            self.open_part()
                .and_then(|()| self.close_part())
                .map_err(|e| Error::io(&dir, e))?;
        }
        if self.target.is_dir() {
            remove_parts(&self.target)?;
            std::fs::remove_dir(&self.target).map_err(|e| {
                Error::io(
                    &self.target,
                    io::Error::new(e.kind(), format!("cannot replace it with the new output: {e}")),
                )
            })?;
        }
        std::fs::rename(&self.dir, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

impl Write for PartsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        while let Some(n) = buf[start..].iter().position(|&c| c == b'\n') {
            let end = start + n + 1;
            if self.tail.is_empty() {
                self.push_line(&buf[start..end])?;
            } else {
                let mut line = std::mem::take(&mut self.tail);
                line.extend_from_slice(&buf[start..end]);
                self.push_line(&line)?;
                line.clear();
                self.tail = line;
            }
            start = end;
        }
        self.tail.extend_from_slice(&buf[start..]);
        Ok(buf.len())
    }

    /// Nothing to do: parts close by row count, not by time.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not every filesystem lets a directory be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes the part files (complete and in progress) of a directory of parts, refusing a
/// directory that holds anything else.
fn remove_parts(dir: &Path) -> Result<()> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    let ours = |p: &Path| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        (name.starts_with("part-") && name.ends_with(".parquet"))
            || (name.starts_with("_part-") && name.ends_with(".parquet.tmp"))
    };
    if let Some(other) = entries.iter().find(|p| !ours(p)) {
        return Err(Error::io(
            dir,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "holds {}, which is not a part file of crossrank: not overwriting it",
                    other.display()
                ),
            ),
        ));
    }
    for p in entries {
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// The complete parts of an interrupted run's `<target>.partial/` as the pipeline's output
/// lines, for [`crate::resume::check_resume_windows`]. Parts in progress are ignored.
pub fn partial_lines(target: &Path, lines: Format, explicit_nulls: bool) -> Result<Box<dyn BufRead>> {
    let files = part_files(&partial_dir(target))?;
    if files.is_empty() {
        return Ok(Box::new(io::empty()));
    }
    let reader = ParquetLines::open_files(files, explicit_nulls)?;
    Ok(match lines {
        Format::Tsv => Box::new(reader.tsv()),
        Format::Jsonl => Box::new(reader),
    })
}

/// Cuts the complete parts of `dir` to their first `keep` rows: later parts and parts in
/// progress are removed, the part holding the cut is rewritten with its first rows. Returns
/// the next part index and the kept parts' schema.
fn truncate_parts(dir: &Path, keep: u64) -> Result<(usize, Option<SchemaRef>)> {
    let mut schema = None;
    let mut next = 0;
    let mut seen = 0u64;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    for path in part_files(dir)? {
        let (part_schema, rows, reader) = open_reader(&path)?;
        if seen >= keep {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            continue;
        }
        schema.get_or_insert(part_schema.clone());
        if seen + rows > keep {
            rewrite_prefix(&path, part_schema, reader, (keep - seen) as usize)?;
        }
        seen += rows.min(keep - seen);
        let index = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("part-")?.strip_suffix(".parquet")?.parse::<usize>().ok());
        next = next.max(index.map_or(next, |i| i + 1));
    }
    if seen < keep {
        return Err(Error::Internal(format!(
            "{}: {seen} rows where the resume check found {keep}",
            dir.display()
        )));
    }
    Ok((next, schema))
}

/// Rewrites the part at `path` with its first `rows` rows (through a temporary file).
fn rewrite_prefix(path: &Path, schema: SchemaRef, reader: ParquetRecordBatchReader, rows: usize) -> Result<()> {
    let tmp = path.with_file_name(format!(
        "_{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let run = || -> io::Result<()> {
        let file = File::create(&tmp)?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| invalid(e.to_string()))?;
        let mut left = rows;
        for batch in reader {
            if left == 0 {
                break;
            }
            let batch = batch.map_err(|e| invalid(e.to_string()))?;
            let take = left.min(batch.num_rows());
            writer
                .write(&batch.slice(0, take))
                .map_err(|e| invalid(e.to_string()))?;
            left -= take;
        }
        let file = writer.into_inner().map_err(|e| invalid(e.to_string()))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    run().map_err(|e| Error::io(path, e))
}

/// The input of a `score` run as lines, and its Arrow schema when it is Parquet.
pub fn open_input(name: &str, formats: &Formats) -> Result<(Box<dyn BufRead + Send>, Option<SchemaRef>)> {
    if !formats.input_parquet {
        return Ok((crate::records::open_input(name)?, None));
    }
    let lines = ParquetLines::open(Path::new(name), true)?;
    lines.require_pair_columns(name)?;
    let schema = lines.schema().clone();
    Ok((Box::new(lines), Some(schema)))
}

/// The output of a `score` run written to a file: lines in a [`PartialFile`], or Parquet parts.
pub enum ScoreOutput {
    Lines(PartialFile),
    /// Boxed: a writer of parts is large, and an output is made once per run.
    Parts(Box<PartsWriter>),
}

impl ScoreOutput {
    /// A fresh output; `input_schema`: the Parquet input's schema, if any.
    pub fn create(
        target: &Path,
        formats: &Formats,
        input_schema: Option<&SchemaRef>,
        part_rows: usize,
    ) -> Result<Self> {
        Ok(if formats.output_parquet {
            let schema = input_schema.map(|s| scored_schema(s));
            ScoreOutput::Parts(Box::new(PartsWriter::create(target, formats.lines, schema, part_rows)?))
        } else {
            ScoreOutput::Lines(PartialFile::create(target)?)
        })
    }

    /// Whether an interrupted run left a partial output to resume.
    pub fn has_partial(target: &Path, formats: &Formats) -> bool {
        if formats.output_parquet {
            has_partial(target)
        } else {
            temp_path_for(target).is_file()
        }
    }

    /// The partial output's complete lines, for the resume check.
    pub fn partial_lines(target: &Path, formats: &Formats) -> Result<Box<dyn BufRead>> {
        if formats.output_parquet {
            partial_lines(target, formats.lines, formats.input_parquet)
        } else {
            let partial = temp_path_for(target);
            let file = File::open(&partial).map_err(|e| Error::io(&partial, e))?;
            Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
        }
    }

    /// Reopens the partial output cut to the resume point.
    pub fn reopen(
        target: &Path,
        formats: &Formats,
        input_schema: Option<&SchemaRef>,
        part_rows: usize,
        point: &ResumePoint,
    ) -> Result<Self> {
        Ok(if formats.output_parquet {
            let schema = input_schema.map(|s| scored_schema(s));
            ScoreOutput::Parts(Box::new(PartsWriter::reopen(
                target,
                formats.lines,
                schema,
                part_rows,
                point.output_lines,
            )?))
        } else {
            ScoreOutput::Lines(PartialFile::reopen(target, point.output_bytes)?)
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            ScoreOutput::Lines(f) => f.writer(),
            ScoreOutput::Parts(p) => p.as_mut(),
        }
    }

    pub fn partial_path(&self) -> &Path {
        match self {
            ScoreOutput::Lines(f) => f.partial_path(),
            ScoreOutput::Parts(p) => p.partial_path(),
        }
    }

    pub fn close(self) -> Result<bool> {
        match self {
            ScoreOutput::Lines(f) => f.close(),
            ScoreOutput::Parts(p) => (*p).close(),
        }
    }

    pub fn commit(self) -> Result<()> {
        match self {
            ScoreOutput::Lines(f) => f.commit(),
            ScoreOutput::Parts(p) => (*p).commit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_extensions_and_flags() {
        let f = resolve_formats(None, None, "pairs.parquet", "out.jsonl").unwrap();
        assert_eq!(
            (f.input_parquet, f.lines, f.output_parquet),
            (true, Format::Jsonl, false)
        );
        let f = resolve_formats(None, None, "pairs.tsv", "out.parquet").unwrap();
        assert_eq!((f.input_parquet, f.lines, f.output_parquet), (false, Format::Tsv, true));
        let f = resolve_formats(Some("parquet"), Some("parquet"), "pairs", "out").unwrap();
        assert!(f.input_parquet && f.output_parquet);
        assert!(resolve_formats(None, None, "-", "out.pq").unwrap().output_parquet);
        assert!(resolve_formats(Some("parquet"), None, "-", "out").is_err());
        assert!(resolve_formats(None, None, "a.jsonl", "-").is_ok());
        assert!(resolve_formats(None, Some("parquet"), "a.jsonl", "-").is_err());
        assert!(resolve_formats(None, Some("tsv"), "a.jsonl", "o").is_err());
    }

    #[test]
    fn scored_schema_replaces_in_place_and_appends() {
        let input = Schema::new(vec![
            Field::new("score", DataType::Int64, false),
            Field::new("query", DataType::LargeUtf8, true),
        ]);
        let s = scored_schema(&input);
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["score", "query", "logit"]);
        assert_eq!(s.field(0).data_type(), &DataType::Float32);
        assert_eq!(s.field(1).data_type(), &DataType::LargeUtf8);
    }

    #[test]
    fn tsv_lines_become_json_rows() {
        let json = tsv_to_json(b"a b\tc\t-0.5\t0.37754068\n").unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"query": "a b", "document": "c", "logit": -0.5, "score": 0.37754068})
        );
        assert!(tsv_to_json(b"only\tone\n").is_err());
    }

    #[test]
    fn inferred_schema_keeps_first_appearance_order() {
        let s = infer_schema(b"{\"z\":1,\"query\":\"q\",\"logit\":0.5}\n{\"a\":[1.5],\"z\":2}\n").unwrap();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["z", "query", "logit", "a"]);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert_eq!(s.field(2).data_type(), &DataType::Float32);
    }

    #[test]
    fn part_names_sort_by_their_numbers() {
        let names = [
            "part-100000.parquet",
            "part-99999.parquet",
            "part-00002.parquet",
            "part-10001.parquet",
        ];
        let mut sorted = names.to_vec();
        sorted.sort_by_cached_key(|n| natural_key(n));
        assert_eq!(
            sorted,
            [
                "part-00002.parquet",
                "part-10001.parquet",
                "part-99999.parquet",
                "part-100000.parquet"
            ]
        );
        assert!(natural_key("a.parquet") < natural_key("b.parquet"));
    }

    #[test]
    fn dictionary_columns_are_written_as_their_values() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let s = scored_schema(&Schema::new(vec![Field::new("country", dict, true)]));
        assert_eq!(s.field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn a_fraction_in_an_integer_column_is_an_error_not_a_cast() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");
        let mut w = PartsWriter::create(&target, Format::Jsonl, None, 1).unwrap();
        // One row per part: the schema is inferred from the first row (`label` integer).
        w.write_all(b"{\"label\":1,\"logit\":0.5,\"score\":0.6}\n{\"label\":2,\"logit\":0.5,\"score\":0.6}\n")
            .unwrap();
        let err = w
            .write_all(b"{\"label\":0.5,\"logit\":0.5,\"score\":0.6}\n")
            .unwrap_err();
        assert!(err.to_string().contains("column `label` holds integers"), "{err}");
    }
}
