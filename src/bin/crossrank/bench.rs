//! `crossrank bench`: its arguments and output; the measurement is [`crossrank::bench`].

use std::path::PathBuf;

use clap::Args;

use crossrank::bench::{measure, print_table, read_lines, synthetic_jsonl, NullBackend};
use crossrank::engine::{Engine, ModelFiles};
use crossrank::hub::resolve_model;
use crossrank::pipeline::PipelineOptions;
use crossrank::records::Format;
use crossrank::{Error, Result};

use crate::args::{load_engine, resolve_format, PipelineArgs, RunArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Pairs file (JSONL with `query`/`document`, or TSV), e.g. from tools/gen_pairs.py.
    #[arg(long, conflicts_with = "synthetic", required_unless_present = "synthetic")]
    pub pairs: Option<PathBuf>,
    /// Use the first N pairs of --pairs.
    #[arg(long)]
    pub n: Option<usize>,
    /// Format of --pairs [default: from its extension].
    #[arg(long)]
    pub format: Option<String>,
    /// Generate N synthetic affiliation pairs instead (seeded; mean ~40 tokens, long tail).
    #[arg(long)]
    pub synthetic: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Batches run before timing starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Write the machine-readable result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Replace the model by a backend that returns zeros at once: measures the host side
    /// alone (read, tokenize, pack, write), i.e. the most pairs/s it can feed a device.
    #[arg(long)]
    pub host_only: bool,
    /// Per-op time breakdown from the backend (CUDA: events around every op, as
    /// CROSSRANK_PROFILE=1 does). Adds a little overhead.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let engine = if args.host_only {
        let dir = resolve_model(&args.run.model.model)?;
        let files = ModelFiles::open(&dir, args.run.model.max_length)?;
        Engine::with_backend(files, Box::new(NullBackend), args.run.batch_tokens)
    } else {
        load_engine(&args.run)?
    };
    if args.profile {
        engine.backend().set_profiling(true)?;
    }
    let (data, format, source) = match (&args.pairs, args.synthetic) {
        (Some(path), _) => {
            let name = path.display().to_string();
            let format = resolve_format(args.format.as_deref(), &name)?;
            (read_lines(path, args.n)?, format, name)
        }
        (None, Some(n)) => (
            synthetic_jsonl(n, args.seed),
            Format::Jsonl,
            format!("synthetic:{n}:seed{}", args.seed),
        ),
        (None, None) => return Err(Error::InvalidArgument("give --pairs FILE or --synthetic N".into())),
    };

    let mut options = PipelineOptions::new(format);
    args.pipeline.apply(&mut options);
    let report = measure(&engine, data, format, &source, args.warmup, options, args.host_only)?;
    print_table(&report, &mut std::io::stdout().lock()).map_err(|e| Error::io("<stdout>", e))?;
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{report:#}\n")).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}
