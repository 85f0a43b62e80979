//! File-to-file scoring: read records, tokenize, score, write in input order.
//!
//! Records are processed in chunks so memory stays bounded whatever the input size; within
//! a chunk the engine sorts by length and packs token-budget batches, then restores order.

use std::io::{BufRead, Write};

use rayon::prelude::*;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::records::{parse_record, write_scored, Format, LineReader, Record};

pub struct ScoreOptions {
    pub format: Format,
    /// Name of the input in error messages (a path, or `<stdin>`).
    pub input_name: String,
    /// Name of the output in error messages.
    pub output_name: String,
    /// Records per chunk.
    pub chunk_pairs: usize,
}

/// Scores every record of `input` into `output`, one output line per input line, in order.
/// Stops at the first malformed record with an error naming the input and line.
pub fn score_stream(
    engine: &Engine,
    input: impl BufRead,
    output: &mut dyn Write,
    options: &ScoreOptions,
    progress: &mut Progress,
) -> Result<()> {
    let mut reader = LineReader::new(input);
    let mut chunk: Vec<Record> = Vec::with_capacity(options.chunk_pairs);
    let io_err = |e| Error::io(&options.input_name, e);
    loop {
        chunk.clear();
        while chunk.len() < options.chunk_pairs {
            let Some((line, raw)) = reader.next_line().map_err(io_err)? else {
                break;
            };
            let record =
                parse_record(options.format, line, raw).map_err(|msg| Error::input(&options.input_name, line, msg))?;
            chunk.push(record);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let tokenizer = engine.tokenizer();
        let encoded = chunk
            .par_iter()
            .map(|r| tokenizer.encode_pair(&r.query, &r.document))
            .collect::<Result<Vec<_>>>()?;
        let logits = engine.score_encoded(&encoded)?;
        for (record, logit) in chunk.iter().zip(logits) {
            write_scored(output, record, engine.to_score(logit)).map_err(|e| Error::io(&options.output_name, e))?;
        }
        let tokens = encoded.iter().map(|e| e.len() as u64).sum();
        let truncated = encoded.iter().filter(|e| e.truncated).count() as u64;
        progress.add(chunk.len() as u64, tokens, truncated);
    }
}
