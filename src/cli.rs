//! The `crossrank` command line: `score`, `rank`, `tokenize`, `info`, `bench`, `eval`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::engine::{Device, Engine, EngineOptions, ModelFiles};
use crate::error::{exit_code, Error, Result};
use crate::hub::resolve_model;
use crate::model::Precision;
use crate::parquet_io::ScoreOutput;
use crate::pipeline::{score_stream, OnError, PipelineOptions, Sinks};
use crate::progress::Progress;
use crate::records::{check_resume_windows, Format, LineReader};

#[derive(Parser, Debug)]
#[command(name = "crossrank", version = crate::long_version(), about = "Fast cross-encoder reranker inference (gte-multilingual rerankers)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score (query, document) pairs from a JSONL, TSV or Parquet file.
    Score(ScoreArgs),
    /// Rank documents (one per line) against one query, best first.
    Rank(RankArgs),
    /// Print the token ids of each pair after truncation, as JSONL.
    Tokenize(TokenizeArgs),
    /// Describe a model: config, parameters, stored dtype, max length, tokenizer.
    Info(InfoArgs),
    /// Score pairs on the GPU and on the CPU reference and compare logits, scores and rankings.
    Verify(crate::verify::VerifyArgs),
    /// Measure end-to-end scoring throughput (pairs/s, tokens/s, TFLOP/s, time split).
    Bench(crate::bench::BenchArgs),
    /// Reranking metrics (MAP, MRR@k, NDCG@k) on labeled samples, as sentence-transformers'
    /// CrossEncoderRerankingEvaluator computes them.
    Eval(crate::eval_cli::EvalArgs),
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

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Input file, or `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: String,
    /// Output file, or `-` for stdout. A file is written under a temporary name and renamed
    /// when complete. A `.parquet` output is a directory of part files.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: String,
    /// Input format: jsonl, tsv or parquet [default: from the input extension; jsonl for stdin].
    #[arg(long)]
    pub format: Option<String>,
    /// Output format: parquet, or the input's line format [default: parquet for a `.parquet`
    /// output, else the input's lines (JSONL for Parquet input)].
    #[arg(long)]
    pub output_format: Option<String>,
    /// Parquet output: rows per part file; each part is closed (complete, readable) when full.
    #[arg(long, default_value_t = crate::parquet_io::DEFAULT_PART_ROWS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub part_rows: usize,
    /// What a malformed input line does: `error` stops the run (exit 3) naming file and line;
    /// `skip` writes it to the rejects file and goes on (the output then has one line fewer
    /// per rejected line; each rejects line names its input line).
    #[arg(long, default_value = "error", value_parser = parse_on_error)]
    pub on_error: OnError,
    /// Rejects file for `--on-error skip` (JSONL: line, reason, raw, and raw_base64 when the
    /// line is not UTF-8) [default: <output>.rejects.jsonl].
    #[arg(long)]
    pub rejects: Option<String>,
    /// Continue an interrupted run from `<output>.partial` (checked against the input, torn
    /// last line dropped). Without a partial file this is an ordinary run.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
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
    #[arg(long, default_value_t = crate::pipeline::DEFAULT_WINDOW_BYTES)]
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

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => score(args),
        Command::Rank(args) => rank(args),
        Command::Tokenize(args) => tokenize(args),
        Command::Info(args) => info(args),
        Command::Verify(args) => crate::verify::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Eval(args) => crate::eval_cli::run(args),
    }
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

pub fn open_input(name: &str) -> Result<Box<dyn BufRead + Send>> {
    if name == "-" {
        Ok(Box::new(BufReader::with_capacity(1 << 20, io::stdin())))
    } else {
        let file = File::open(name).map_err(|e| Error::io(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

pub fn input_name(name: &str) -> String {
    if name == "-" {
        "<stdin>".into()
    } else {
        name.into()
    }
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

/// An output that is either stdout, or a file written as a [`PartialFile`] and renamed into
/// place only when the run completes, so a failed run never leaves a plausible-looking
/// partial output behind.
pub enum AtomicOutput {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    File(PartialFile),
}

impl AtomicOutput {
    pub fn create(name: &str) -> Result<Self> {
        Ok(if name == "-" {
            AtomicOutput::Stdout(BufWriter::with_capacity(1 << 20, io::stdout().lock()))
        } else {
            AtomicOutput::File(PartialFile::create(Path::new(name))?)
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            AtomicOutput::Stdout(w) => w,
            AtomicOutput::File(f) => f.writer(),
        }
    }

    pub fn commit(self) -> Result<()> {
        match self {
            AtomicOutput::Stdout(mut w) => w.flush().map_err(|e| Error::io("<stdout>", e)),
            AtomicOutput::File(f) => f.commit(),
        }
    }
}

/// `out.jsonl` → `out.jsonl.partial`, next to the target so the rename stays on one filesystem.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// A file written as `<target>.partial` and renamed to `<target>` when complete; an
/// interrupted or failed run leaves the `.partial` for `--resume`.
pub struct PartialFile {
    target: PathBuf,
    partial: PathBuf,
    writer: BufWriter<File>,
}

impl PartialFile {
    /// Starts an empty `<target>.partial`. A target that exists and is not a regular file
    /// (`/dev/stdout`, `/dev/null`, a FIFO, or a link to one) is written in place instead:
    /// renaming a file over it would replace the device node, and it has no partial state.
    pub fn create(target: &Path) -> Result<Self> {
        if std::fs::metadata(target).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = File::options()
                .write(true)
                .open(target)
                .map_err(|e| Error::io(target, e))?;
            return Ok(Self::wrap(target, target.to_path_buf(), file));
        }
        let partial = temp_path_for(target);
        let file = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        Ok(Self::wrap(target, partial, file))
    }

    /// Reopens `<target>.partial` for appending after its first `keep` bytes.
    pub fn reopen(target: &Path, keep: u64) -> Result<Self> {
        let partial = temp_path_for(target);
        let mut file = File::options()
            .write(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        file.set_len(keep).map_err(|e| Error::io(&partial, e))?;
        file.seek(io::SeekFrom::End(0)).map_err(|e| Error::io(&partial, e))?;
        Ok(Self::wrap(target, partial, file))
    }

    fn wrap(target: &Path, partial: PathBuf, file: File) -> Self {
        PartialFile {
            target: target.to_path_buf(),
            partial,
            writer: BufWriter::with_capacity(1 << 20, file),
        }
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    /// Written in place (a special file, see [`PartialFile::create`]), not renamed.
    fn in_place(&self) -> bool {
        self.partial == self.target
    }

    /// Flushes; removes the partial file when it holds nothing.
    pub fn close(mut self) -> Result<bool> {
        self.writer.flush().map_err(|e| Error::io(&self.partial, e))?;
        if self.in_place() {
            return Ok(true);
        }
        let len = self.writer.get_ref().metadata().map_or(1, |m| m.len());
        if len == 0 {
            let _ = std::fs::remove_file(&self.partial);
        }
        Ok(len > 0)
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::io(&self.partial, e))?;
        if self.in_place() {
            return Ok(());
        }
        self.writer
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

/// SIGINT and SIGTERM set the returned flag, which the pipeline polls; a second signal
/// exits at once with code 130 (the partial output may then end in a torn line, which
/// `--resume` drops).
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        let register = || -> io::Result<()> {
            // Order matters: the conditional exit sees the flag before this signal sets it.
            signal_hook::flag::register_conditional_shutdown(sig, exit_code::INTERRUPTED, flag.clone())?;
            signal_hook::flag::register(sig, flag.clone())?;
            Ok(())
        };
        register().map_err(|e| Error::Internal(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(flag)
}

fn score(args: ScoreArgs) -> Result<()> {
    let formats = crate::parquet_io::resolve_formats(
        args.format.as_deref(),
        args.output_format.as_deref(),
        &args.input,
        &args.output,
    )?;
    let format = formats.lines;
    let to_stdout = args.output == "-";
    if args.resume && to_stdout {
        return Err(Error::InvalidArgument("--resume needs --output FILE".into()));
    }
    let rejects_target: Option<PathBuf> = match (args.on_error, &args.rejects) {
        (OnError::Stop, Some(_)) => {
            return Err(Error::InvalidArgument("--rejects needs --on-error skip".into()));
        }
        (OnError::Stop, None) => None,
        (OnError::Skip, Some(r)) => Some(PathBuf::from(r)),
        (OnError::Skip, None) if to_stdout => {
            return Err(Error::InvalidArgument(
                "--on-error skip with the output on stdout needs --rejects FILE".into(),
            ))
        }
        (OnError::Skip, None) => Some(PathBuf::from(format!("{}.rejects.jsonl", args.output))),
    };
    let interrupt = interrupt_flag()?;
    let engine = load_engine(&args.run)?;
    let name = input_name(&args.input);
    let (input, input_schema) = crate::parquet_io::open_input(&args.input, &formats)?;
    let mut reader = LineReader::new(input).with_max_line_bytes(args.pipeline.max_line_bytes);

    // Outputs: fresh, or the checked prefix of an interrupted run's partial files.
    let output_target = PathBuf::from(&args.output);
    let mut resumed_lines = 0;
    let (mut output, mut rejects) = if to_stdout {
        (None, None)
    } else if args.resume && ScoreOutput::has_partial(&output_target, &formats) {
        let out_partial = temp_path_for(&output_target);
        let rej_partial = rejects_target.as_deref().map(temp_path_for).filter(|p| p.is_file());
        let open = |p: &Path| {
            File::open(p)
                .map(|f| BufReader::with_capacity(1 << 20, f))
                .map_err(|e| Error::io(p, e))
        };
        let point = check_resume_windows(
            format,
            &mut reader,
            &name,
            ScoreOutput::partial_lines(&output_target, &formats)?,
            &out_partial.display().to_string(),
            rej_partial.as_deref().map(open).transpose()?,
            &rej_partial
                .as_deref()
                .unwrap_or(Path::new("<rejects>"))
                .display()
                .to_string(),
            &|n| crate::pipeline::window_containing(n, args.pipeline.window).start == n,
        )?;
        resumed_lines = point.lines;
        if !args.run.quiet {
            eprintln!(
                "crossrank: resuming {}: it accounts for {} input lines; continuing at line {} (the start of its batching window), keeping {} scored and {} rejected lines",
                out_partial.display(),
                point.checked,
                point.lines + 1,
                point.output_lines,
                point.rejects_lines
            );
        }
        let output = ScoreOutput::reopen(&output_target, &formats, input_schema.as_ref(), args.part_rows, &point)?;
        let rejects = match (&rejects_target, &rej_partial) {
            (Some(t), Some(_)) => Some(PartialFile::reopen(t, point.rejects_bytes)?),
            (Some(t), None) => Some(PartialFile::create(t)?),
            (None, _) => None,
        };
        (Some(output), rejects)
    } else {
        let output = ScoreOutput::create(&output_target, &formats, input_schema.as_ref(), args.part_rows)?;
        let rejects = rejects_target.as_deref().map(PartialFile::create).transpose()?;
        (Some(output), rejects)
    };

    let mut options = PipelineOptions::new(format);
    options.input_name = name;
    options.output_name = output
        .as_ref()
        .map_or("<stdout>".into(), |o| o.partial_path().display().to_string());
    options.rejects_name = rejects
        .as_ref()
        .map_or("<rejects>".into(), |r| r.partial_path().display().to_string());
    options.on_error = args.on_error;
    options.interrupt = Some(interrupt);
    options.note_precut = !args.run.quiet;
    args.pipeline.apply(&mut options);

    let mut progress = Progress::new(args.run.quiet, None);
    let mut stdout = BufWriter::with_capacity(1 << 20, io::stdout());
    let sinks = Sinks {
        output: match output.as_mut() {
            Some(o) => o.writer(),
            None => &mut stdout,
        },
        rejects: rejects.as_mut().map(|r| r.writer()),
    };
    let (stats, result) = score_stream(&engine, reader, sinks, &options, &mut progress);
    let done_lines = resumed_lines + stats.lines;
    match result {
        Ok(()) => {
            if let Some(o) = output {
                o.commit()?;
            }
            if let Some(r) = rejects {
                r.commit()?;
            }
            let mut extra = format!(", forward thread busy {:.0}%", 100.0 * stats.forward_busy_fraction());
            if stats.oom_splits > 0 {
                extra += &format!(", {} batch splits on device OOM", stats.oom_splits);
            }
            if let Some(t) = &rejects_target {
                extra += &format!(", {} rejected lines in {}", stats.rejected, t.display());
            }
            progress.finish_with("scored", &extra);
            Ok(())
        }
        Err(e) => {
            let kept = match output {
                Some(o) => {
                    let path = o.partial_path().to_path_buf();
                    let kept = o.close()?;
                    if let Some(r) = rejects {
                        r.close()?;
                    }
                    kept.then_some(path)
                }
                None => None,
            };
            progress.finish_with("stopped after", "");
            if let Some(path) = kept {
                eprintln!(
                    "crossrank: the first {done_lines} input lines are done in {}; rerun with --resume to continue",
                    path.display()
                );
            }
            Err(e)
        }
    }
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
        // Segment ids only for templates that use them (BERT), so gte/XLM-R output is unchanged.
        let line = if tokenizer.template().uses_segments() {
            json!({"input_ids": encoded.ids, "token_type_ids": encoded.type_ids})
        } else {
            json!({"input_ids": encoded.ids})
        };
        writeln!(output.writer(), "{line}").map_err(|e| Error::io(&args.output, e))?;
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
