//! `crossrank verify`: its arguments; the comparison is [`crossrank::verify`].

use clap::Args;

use crossrank::engine::Device;
use crossrank::model::Precision;
use crossrank::verify::VerifyOptions;
use crossrank::Result;

use crate::args::{parse_device, parse_precision};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Model directory or hub id.
    #[arg(long, short = 'm')]
    pub model: String,
    /// Pairs to score (JSONL or TSV, like `score`); default: synthetic pairs.
    #[arg(long, short = 'i')]
    pub input: Option<String>,
    /// jsonl or tsv [default: from the input extension].
    #[arg(long)]
    pub format: Option<String>,
    /// Device under test: cuda, cuda:N (or cpu, which checks the CPU against itself).
    #[arg(long, default_value = "cuda", value_parser = parse_device)]
    pub device: Device,
    /// Pair length limit for `--input` pairs [default: as `score`].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Tokens per GPU batch [default: the GPU backend's].
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Tokens per CPU batch.
    #[arg(long, default_value_t = 4096)]
    pub cpu_batch_tokens: usize,
    /// CPU threads (0: every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Absolute part of the gate: |device logit - fp16 reference logit| <= tolerance +
    /// rel_tolerance·|reference| [default: the derived gate, `FP16_GATE`].
    #[arg(long)]
    pub tolerance: Option<f32>,
    /// Relative part of the gate [default: the derived gate, `FP16_GATE`].
    #[arg(long)]
    pub rel_tolerance: Option<f32>,
    /// Arithmetic of the device under test when it is the CPU (`--device cpu`): f32 or fp16.
    /// The CUDA path is always fp16.
    #[arg(long, value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Skip the f32 reference (reported for information only; halves the CPU time).
    #[arg(long)]
    pub skip_f32: bool,
    /// Number of synthetic pairs.
    #[arg(long, default_value_t = 256)]
    pub n: usize,
    /// Documents per synthetic query.
    #[arg(long, default_value_t = 8)]
    pub docs_per_query: usize,
    /// Shortest synthetic pair, special tokens included.
    #[arg(long, default_value_t = 8)]
    pub min_tokens: usize,
    /// Longest synthetic pair [default: min(2048, max length)].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Stop the CPU references after this many seconds (at a query boundary). Pairs left
    /// uncompared fail the run (exit code 5): the budget makes a too-slow check fail loudly,
    /// it never shrinks it silently.
    #[arg(long)]
    pub cpu_budget: Option<f64>,
    /// Fraction of synthetic pairs longer than 256 tokens (log-uniform up to --max-tokens);
    /// the others are log-uniform from --min-tokens to 256.
    #[arg(long, default_value_t = 0.1)]
    pub long_fraction: f64,
    /// Seed of the synthetic pairs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// GPU attention kernels: auto, flash or reference [default: $CROSSRANK_ATTENTION or auto].
    #[arg(long)]
    pub attention: Option<String>,
    /// Machine-readable report on stdout (instead of the table).
    #[arg(long)]
    pub json: bool,
    /// Also write the machine-readable report to this file.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

impl VerifyArgs {
    fn into_options(self) -> VerifyOptions {
        VerifyOptions {
            model: self.model,
            input: self.input,
            format: self.format,
            device: self.device,
            max_length: self.max_length,
            batch_tokens: self.batch_tokens,
            cpu_batch_tokens: self.cpu_batch_tokens,
            threads: self.threads,
            tolerance: self.tolerance,
            rel_tolerance: self.rel_tolerance,
            precision: self.precision,
            skip_f32: self.skip_f32,
            n: self.n,
            docs_per_query: self.docs_per_query,
            min_tokens: self.min_tokens,
            max_tokens: self.max_tokens,
            cpu_budget: self.cpu_budget,
            long_fraction: self.long_fraction,
            seed: self.seed,
            attention: self.attention,
            json: self.json,
            json_out: self.json_out,
        }
    }
}

pub fn run(args: VerifyArgs) -> Result<()> {
    crossrank::verify::run(args.into_options())
}
