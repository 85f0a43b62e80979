//! `crossrank rank`: documents (one per line) against one query, best first, as JSONL.

use std::io::{self, BufWriter, Write};

use clap::Args;
use serde_json::json;

use crossrank::progress::Progress;
use crossrank::records::{input_name, open_input, LineReader};
use crossrank::{Error, Result};

use crate::args::{load_engine, RunArgs};

#[derive(Args, Debug)]
pub struct RankArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[arg(long)]
    pub query: String,
    /// Documents, one per line (`-` for stdin).
    #[arg(long)]
    pub documents: String,
    /// Print only the best K.
    #[arg(long)]
    pub top_k: Option<usize>,
}

pub fn run(args: RankArgs) -> Result<()> {
    let engine = load_engine(&args.run)?;
    let mut reader = LineReader::new(open_input(&args.documents)?);
    let name = input_name(&args.documents);
    let mut documents = Vec::new();
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(&name, e))? {
        let text = std::str::from_utf8(raw)
            .map_err(|e| Error::input(&name, line, format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        documents.push(text.to_string());
    }
    let mut progress = Progress::new(args.run.quiet, Some(documents.len() as u64));
    let ranked = engine.rank(&args.query, &documents)?;
    progress.add(documents.len() as u64, 0, 0);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for r in ranked.iter().take(args.top_k.unwrap_or(usize::MAX)) {
        let line = json!({"index": r.index, "score": r.score, "logit": r.logit, "document": documents[r.index]});
        writeln!(out, "{line}").map_err(|e| Error::io("<stdout>", e))?;
    }
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    progress.finish("ranked");
    Ok(())
}
