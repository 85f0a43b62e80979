//! `crossrank score`: pairs from a JSONL, TSV or Parquet file to scored records, streamed,
//! with `--on-error skip` rejects and `--resume` of an interrupted run.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

use crossrank::error::{exit_code, Error, Result};
use crossrank::parquet_io::ScoreOutput;
use crossrank::pipeline::{score_stream, OnError, PipelineOptions, Sinks};
use crossrank::progress::Progress;
use crossrank::records::{input_name, LineReader};
use crossrank::resume::{check_resume_windows, temp_path_for, PartialFile};

use crate::args::{load_engine, parse_on_error, PipelineArgs, RunArgs};

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
    #[arg(long, default_value_t = crossrank::parquet_io::DEFAULT_PART_ROWS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
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

pub fn run(args: ScoreArgs) -> Result<()> {
    let formats = crossrank::parquet_io::resolve_formats(
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
    let (input, input_schema) = crossrank::parquet_io::open_input(&args.input, &formats)?;
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
            &|n| crossrank::pipeline::window_containing(n, args.pipeline.window).start == n,
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
