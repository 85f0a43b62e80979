//! The `crossrank` command line: `score`, `rank`, `tokenize`, `info`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::engine::{Device, Engine, EngineOptions, ModelFiles};
use crate::error::{exit_code, Error, Result};
use crate::hub::resolve_model;
use crate::pipeline::{score_stream, ScoreOptions};
use crate::progress::Progress;
use crate::records::{Format, LineReader};

#[derive(Parser, Debug)]
#[command(name = "crossrank", version = crate::long_version(), about = "Fast cross-encoder reranker inference (gte-multilingual rerankers)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score (query, document) pairs from a JSONL or TSV file.
    Score(ScoreArgs),
    /// Rank documents (one per line) against one query, best first.
    Rank(RankArgs),
    /// Print the token ids of each pair after truncation, as JSONL.
    Tokenize(TokenizeArgs),
    /// Describe a model: config, parameters, stored dtype, max length, tokenizer.
    Info(InfoArgs),
    /// Score pairs on the GPU and on the CPU reference and compare logits, scores and rankings.
    Verify(crate::verify::VerifyArgs),
}

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
    /// CPU threads [default: every core].
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress or summary on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Input file, or `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: String,
    /// Output file, or `-` for stdout. A file is written under a temporary name and renamed
    /// when complete.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: String,
    /// jsonl or tsv [default: from the input extension; jsonl for stdin].
    #[arg(long)]
    pub format: Option<String>,
}

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

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input pairs (JSONL or TSV), or `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: String,
    #[arg(long, short = 'o', default_value = "-")]
    pub output: String,
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_device(s: &str) -> std::result::Result<Device, String> {
    match s {
        "auto" => Ok(Device::Auto),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => Ok(Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device `{s}` (expected cpu, cuda, cuda:N or auto)")),
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
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
        Err(e) => {
            eprintln!("crossrank: error: {e}");
            e.exit_code()
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => score(args),
        Command::Rank(args) => rank(args),
        Command::Tokenize(args) => tokenize(args),
        Command::Info(args) => info(args),
        Command::Verify(args) => crate::verify::run(args),
    }
}

fn load_engine(run: &RunArgs) -> Result<Engine> {
    let dir = resolve_model(&run.model.model)?;
    let engine = Engine::load(
        &dir,
        &EngineOptions {
            device: run.device,
            max_length: run.model.max_length,
            batch_tokens: run.batch_tokens,
            threads: run.threads,
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

fn open_input(name: &str) -> Result<Box<dyn BufRead>> {
    if name == "-" {
        Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())))
    } else {
        let file = File::open(name).map_err(|e| Error::io(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

fn input_name(name: &str) -> String {
    if name == "-" {
        "<stdin>".into()
    } else {
        name.into()
    }
}

fn resolve_format(explicit: Option<&str>, input: &str) -> Result<Format> {
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

/// An output that is either stdout, or a file written under a temporary name and renamed
/// into place only when the run completes, so a failed run never leaves a plausible-looking
/// partial output behind.
pub struct AtomicOutput {
    writer: Box<dyn Write>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl AtomicOutput {
    pub fn create(name: &str) -> Result<Self> {
        if name == "-" {
            return Ok(AtomicOutput {
                writer: Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
                paths: None,
            });
        }
        let target = PathBuf::from(name);
        let temp = temp_path_for(&target);
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(AtomicOutput {
            writer: Box::new(BufWriter::with_capacity(1 << 20, file)),
            paths: Some((temp, target)),
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    pub fn commit(mut self) -> Result<()> {
        let name = self
            .paths
            .as_ref()
            .map_or(PathBuf::from("<stdout>"), |(t, _)| t.clone());
        self.writer.flush().map_err(|e| Error::io(&name, e))?;
        drop(self.writer);
        if let Some((temp, target)) = self.paths.take() {
            std::fs::rename(&temp, &target).map_err(|e| Error::io(&target, e))?;
        }
        Ok(())
    }
}

/// `out.jsonl` → `out.jsonl.partial`, next to the target so the rename stays on one filesystem.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

fn score(args: ScoreArgs) -> Result<()> {
    let format = resolve_format(args.format.as_deref(), &args.input)?;
    let engine = load_engine(&args.run)?;
    let input = open_input(&args.input)?;
    let mut output = AtomicOutput::create(&args.output)?;
    let mut progress = Progress::new(args.run.quiet, None);
    let options = ScoreOptions {
        format,
        input_name: input_name(&args.input),
        output_name: if args.output == "-" {
            "<stdout>".into()
        } else {
            args.output.clone()
        },
        chunk_pairs: (engine.batch_tokens() * 8 / 40).clamp(1024, 1 << 16),
    };
    score_stream(&engine, input, output.writer(), &options, &mut progress)?;
    output.commit()?;
    progress.finish("scored");
    Ok(())
}

fn rank(args: RankArgs) -> Result<()> {
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

fn tokenize(args: TokenizeArgs) -> Result<()> {
    let format = resolve_format(args.format.as_deref(), &args.input)?;
    let dir = resolve_model(&args.model.model)?;
    let tokenizer = ModelFiles::open_tokenizer(&dir, args.model.max_length)?.1;
    let name = input_name(&args.input);
    let mut reader = LineReader::new(open_input(&args.input)?);
    let mut output = AtomicOutput::create(&args.output)?;
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(&name, e))? {
        let record = crate::records::parse_record(format, line, raw).map_err(|msg| Error::input(&name, line, msg))?;
        let encoded = tokenizer.encode_pair(&record.query, &record.document)?;
        writeln!(output.writer(), "{}", json!({"input_ids": encoded.ids})).map_err(|e| Error::io(&args.output, e))?;
    }
    output.commit()
}

fn info(args: InfoArgs) -> Result<()> {
    let dir = resolve_model(&args.model.model)?;
    let files = ModelFiles::open(&dir, args.model.max_length)?;
    let c = &files.config;
    let t = &files.tensors;
    let dtypes: Vec<&str> = t.stored_dtypes().iter().map(|d| d.name()).collect();
    let template = files.tokenizer.template();
    let report = json!({
        "model_dir": dir.display().to_string(),
        "model_type": format!("{:?}", c.model_type).to_lowercase(),
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "rope_base": c.rope.base,
        "rope_divisor": c.rope.divisor,
        "activation": c.activation.name(),
        "parameters": c.parameter_count(),
        "stored_dtypes": dtypes,
        "declared_dtype": c.declared_dtype,
        "tensor_prefix": t.prefix,
        "tensor_names": format!("{:?}", t.scheme).to_lowercase(),
        "unused_tensors": t.unused_tensors(),
        "max_length": files.tokenizer.max_length(),
        "tokenizer": files.tokenizer.path().display().to_string(),
        "tokenizer_vocab_size": files.tokenizer.vocab_size(),
        "pair_template": {"prefix": template.prefix, "middle": template.middle, "suffix": template.suffix},
        "engine_version": crate::VERSION,
        "cuda_kernels": crate::cuda::kernel_build_info(),
    });
    if args.json {
        println!("{report:#}");
        return Ok(());
    }
    println!("model            {}", dir.display());
    println!(
        "architecture     {:?} (gte reranker), {} layers, hidden {}, {} heads × {}, intermediate {}",
        c.model_type, c.num_layers, c.hidden_size, c.num_heads, c.head_dim, c.intermediate_size
    );
    println!(
        "parameters       {} ({:.1} M)",
        c.parameter_count(),
        c.parameter_count() as f64 / 1e6
    );
    println!(
        "stored dtype     {}{}",
        dtypes.join(" + "),
        c.declared_dtype
            .as_ref()
            .map_or(String::new(), |d| format!(" (config says {d})"))
    );
    println!("tensor names     {:?}, prefix `{}`", t.scheme, t.prefix);
    println!(
        "vocab            {} embedding rows, tokenizer {} ids",
        c.vocab_size,
        files.tokenizer.vocab_size()
    );
    println!(
        "rope             inv_freq = {}^(-2j/{}) / {:.7}",
        c.rope.base, c.head_dim, c.rope.divisor
    );
    println!(
        "max length       {} tokens per pair (max_position_embeddings {})",
        files.tokenizer.max_length(),
        c.max_position_embeddings
    );
    println!(
        "pair template    {:?} A {:?} B {:?}",
        template.prefix, template.middle, template.suffix
    );
    println!("score            {}(logit)", c.activation.name());
    println!("tokenizer        {}", files.tokenizer.path().display());
    println!("cuda kernels     {}", crate::cuda::kernel_build_info());
    let unused = t.unused_tensors();
    if !unused.is_empty() {
        println!(
            "unused tensors   {} ({}{})",
            unused.len(),
            unused[..unused.len().min(3)].join(", "),
            if unused.len() > 3 { ", ..." } else { "" }
        );
    }
    Ok(())
}
