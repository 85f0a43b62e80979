//! Arguments shared by the subcommands (model, device, pipeline tuning), their parsers, and
//! the engine they load.

use std::path::Path;

use clap::Args;

use crossrank::engine::{Device, Engine, EngineOptions};
use crossrank::hub::resolve_model;
use crossrank::model::Precision;
use crossrank::pipeline::{OnError, PipelineOptions};
use crossrank::records::Format;
use crossrank::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory, or a Hugging Face hub id (`org/name[@revision]`) looked up in the HF cache.
    #[arg(long, short = 'm')]
    pub model: String,
    /// Maximum pair length in tokens, special tokens included [default: min(tokenizer
    /// model_max_length, max_position_embeddings)].
    #[arg(long)]
    pub max_length: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// cpu, cuda, cuda:N, or auto (CUDA when usable, else CPU).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: Device,
    /// Tokens per forward batch [default: the backend's].
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// CPU threads (0: every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// CPU arithmetic: f32 (the reference) or fp16 (the CUDA path's fp16 storage points,
    /// on the CPU). The CUDA backend is always fp16.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// No progress or summary on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Tuning of the streaming pipeline (defaults suit both backends).
#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Input lines whose pairs are sorted by length together before packing batches; memory
    /// grows with it. Resume with the same value (and --batch-tokens) as the interrupted run
    /// for a byte-identical output.
    #[arg(long, default_value_t = 65536)]
    pub window: usize,
    /// Tokenizer threads (0: every core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Distinct query strings whose token ids are cached (0: no cache).
    #[arg(long, default_value_t = 65536)]
    pub query_cache: usize,
    /// A window also ends once its records hold this many bytes (raw lines + token ids), so
    /// peak memory is bounded by the flags, not by the data (README: memory).
    #[arg(long, default_value_t = crossrank::pipeline::DEFAULT_WINDOW_BYTES)]
    pub window_bytes: usize,
    /// A longer input line is a malformed record (an error, or rejected under
    /// --on-error skip); it is never held in memory.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_line_bytes: usize,
}

impl PipelineArgs {
    pub fn apply(&self, options: &mut PipelineOptions) {
        options.window_lines = self.window.max(1);
        options.workers = self.workers;
        options.query_cache = self.query_cache;
        options.window_bytes = self.window_bytes.max(1);
    }
}

pub fn parse_on_error(s: &str) -> std::result::Result<OnError, String> {
    match s {
        "error" | "stop" => Ok(OnError::Stop),
        "skip" => Ok(OnError::Skip),
        _ => Err(format!("unknown --on-error `{s}` (error or skip)")),
    }
}

pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision `{s}` (expected f32 or fp16)"))
}

pub fn parse_device(s: &str) -> std::result::Result<Device, String> {
    Device::parse(s)
}

pub fn load_engine(run: &RunArgs) -> Result<Engine> {
    let dir = resolve_model(&run.model.model)?;
    let engine = Engine::load(
        &dir,
        &EngineOptions {
            device: run.device,
            max_length: run.model.max_length,
            batch_tokens: run.batch_tokens,
            threads: run.threads,
            precision: run.precision,
        },
    )?;
    if !run.quiet {
        if let Some(note) = engine.device_note() {
            eprintln!("crossrank: {note}");
        }
        eprintln!(
            "crossrank: {} on {}, max length {}, {} tokens per batch",
            engine.dir().display(),
            engine.backend().describe(),
            engine.max_length(),
            engine.batch_tokens()
        );
    }
    Ok(engine)
}

pub fn resolve_format(explicit: Option<&str>, input: &str) -> Result<Format> {
    match explicit {
        Some(f) => {
            Format::parse(f).ok_or_else(|| Error::InvalidArgument(format!("unknown --format `{f}` (jsonl or tsv)")))
        }
        None if input == "-" => Ok(Format::Jsonl),
        None => Format::from_path(Path::new(input)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "cannot tell the format of `{input}` from its extension; pass --format jsonl|tsv"
            ))
        }),
    }
}
