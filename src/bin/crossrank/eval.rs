//! `crossrank eval`: the reranking metrics of [`crossrank::eval`] on a labeled file, as a table on
//! stdout, optionally a JSON report and per-query rows.

use clap::{ArgAction, Args};

use crossrank::error::{Error, Result};
use crossrank::eval::{evaluate, read_samples, EvalOptions};
use crossrank::progress::Progress;
use crossrank::records::{input_name, open_input};
use crossrank::resume::AtomicOutput;

use crate::args::{load_engine, resolve_format, RunArgs};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Samples (`{"query", "positive", "negative"|"documents"}` per line) or labeled pairs
    /// (`{"query", "document", "label"}` JSONL, or `query<TAB>document<TAB>label` TSV); `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: String,
    /// jsonl or tsv [default: from the input extension; jsonl for stdin].
    #[arg(long)]
    pub format: Option<String>,
    /// Cut-off of MRR@k and NDCG@k.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub at_k: u64,
    /// With `documents` samples, also score the positives the list lacks (the evaluator's
    /// default); `false` scores only the listed documents.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "true|false")]
    pub always_rerank_positives: bool,
    /// Write the metrics (keys `map`, `mrr@K`, `ndcg@K`, `base_*`) and counts as JSON here
    /// (`-`: stdout, the table then goes to stderr).
    #[arg(long)]
    pub json: Option<String>,
    /// Write one JSON line per query (line, query, counts, metrics, ties) here.
    #[arg(long)]
    pub per_query: Option<String>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let format = resolve_format(args.format.as_deref(), &args.input)?;
    let options = EvalOptions {
        at_k: args.at_k as usize,
        always_rerank_positives: args.always_rerank_positives,
    };
    let name = input_name(&args.input);
    let samples = read_samples(open_input(&args.input)?, &name, format)?;
    let engine = load_engine(&args.run)?;
    let mut progress = Progress::new(args.run.quiet, None);
    let report = evaluate(&engine, &samples, &options, &mut |pairs, tokens| {
        progress.add(pairs as u64, tokens as u64, 0)
    })?;
    progress.totals.truncated = report.truncated_pairs as u64;
    progress.finish("scored");

    if let Some(path) = &args.per_query {
        let mut out = AtomicOutput::create(path)?;
        for row in report.per_query_json() {
            writeln!(out.writer(), "{row}").map_err(|e| Error::io(path, e))?;
        }
        out.commit()?;
    }
    let json_to_stdout = args.json.as_deref() == Some("-");
    if let Some(path) = &args.json {
        let mut out = AtomicOutput::create(path)?;
        writeln!(out.writer(), "{:#}", report.to_json()).map_err(|e| Error::io(path, e))?;
        out.commit()?;
    }
    if json_to_stdout {
        eprint!("{}", report.table());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
