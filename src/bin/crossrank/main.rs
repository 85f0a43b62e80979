//! The `crossrank` command line: `score`, `rank`, `tokenize`, `info`, `verify`, `bench`, `eval`.
//! A thin layer over the library: each subcommand is one file here, parsing its arguments and
//! printing its results.

mod args;
mod bench;
mod eval;
mod info;
mod rank;
mod score;
mod tokenize;
mod verify;

use clap::{Parser, Subcommand};

use crossrank::error::{exit_code, Error, Result};

#[derive(Parser, Debug)]
#[command(name = "crossrank", version = crossrank::long_version(), about = "Fast cross-encoder reranker inference (gte, XLM-RoBERTa and BERT families)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score (query, document) pairs from a JSONL, TSV or Parquet file.
    Score(score::ScoreArgs),
    /// Rank documents (one per line) against one query, best first.
    Rank(rank::RankArgs),
    /// Print the token ids of each pair after truncation, as JSONL.
    Tokenize(tokenize::TokenizeArgs),
    /// Describe a model: config, parameters, stored dtype, max length, tokenizer.
    Info(info::InfoArgs),
    /// Score pairs on the GPU and on the CPU reference and compare logits, scores and rankings.
    Verify(verify::VerifyArgs),
    /// Measure end-to-end scoring throughput (pairs/s, tokens/s, TFLOP/s, time split).
    Bench(bench::BenchArgs),
    /// Reranking metrics (MAP, MRR@k, NDCG@k) on labeled samples, as sentence-transformers'
    /// CrossEncoderRerankingEvaluator computes them.
    Eval(eval::EvalArgs),
}

fn main() {
    std::process::exit(exit_status());
}

/// Runs the CLI and returns the process exit code.
fn exit_status() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::OK
            };
        }
    };
    match run(cli) {
        Ok(()) => exit_code::OK,
        Err(Error::Interrupted) => {
            eprintln!("crossrank: interrupted");
            exit_code::INTERRUPTED
        }
        Err(e) => {
            eprintln!("crossrank: error: {e}");
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => score::run(args),
        Command::Rank(args) => rank::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Info(args) => info::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
    }
}
