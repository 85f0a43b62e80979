//! Streaming file-to-file scoring with bounded memory, for inputs of any size.
//!
//! ```text
//!  reader ──raw chunks──▶ tokenizer workers (N) ──parsed chunks──▶ scheduler
//!  (1 thread,             parse + tokenize, query     (reorders chunks, fills a window,
//!   detached)             ids from a shared cache)     sorts it by length, packs batches)
//!                                                          │ window meta      │ batches (≤ 2 windows
//!                                                          ▼                  ▼  queued, credit channel)
//!                                    writer (calling thread) ◀──logits── forward thread
//!                                    (restores input order,               (Engine::forward_split_on_oom,
//!                                     writes output + rejects)             splits batches on device OOM)
//! ```
//!
//! One file per thread role: `reader.rs`, `tokenizer.rs` (the workers), `batcher.rs` (the
//! scheduler: windows and batches), `forward.rs`, `writer.rs`. This file holds the options, the
//! run statistics and the wiring ([`score_stream`]).
//!
//! - **Overlap**: tokenization, the forward pass and output run on separate threads. The
//!   scheduler packs window *k+1* while the device runs window *k* (up to two windows are
//!   queued ahead of the forward thread), so in steady state the forward thread never waits
//!   for the CPU side unless tokenization is slower than the device. [`RunStats`] reports the
//!   forward thread's busy and idle time to check exactly that.
//! - **Windows**: pairs are sorted by length within a window of input lines, then packed
//!   into token-budget batches without padding. Windows are fixed ranges of line numbers
//!   ([`window_containing`]: 1024 lines, doubling up to `window_lines`, so the device starts
//!   early), whatever the run's starting point: a resumed run that restarts at a window start
//!   forms exactly the batches of an uninterrupted run, so its output is byte-identical
//!   even on backends whose results depend on the batch a sequence shares.
//! - **Order**: every input line yields exactly one output line (scored) or one rejects line
//!   (`OnError::Skip`), in input order: chunks are reordered by sequence number before the
//!   window, and the writer holds results until everything before them is written.
//! - **Memory** is bounded by the window and channel sizes, never by the input: at most three
//!   windows of pairs are between the scheduler and the writer (one being filled, two queued
//!   or running; [`RunStats::peak_pending_pairs`] counts them), plus `4 × workers` chunks of
//!   `chunk_lines` lines in the channels.
//! - **Errors**: a malformed record stops the run (`OnError::Stop`) after everything before it
//!   is written, or is written to the rejects sink (`OnError::Skip`). A device, tokenizer or
//!   I/O error, or an interrupt (the `interrupt` flag, set by SIGINT/SIGTERM handlers), stops
//!   the run at once; the records completed in order before that point are written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::batch::{plan_batches, PackedBatch};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::{Progress, Totals};
use crate::records::{parse_record, write_reject, Format, LineReader, Rendered};
use crate::tokenize::{PairTokenizer, Side};

mod batcher;
mod forward;
mod reader;
mod tokenizer;
mod writer;

use batcher::*;
use forward::*;
use reader::*;
use tokenizer::*;
use writer::*;

/// What to do with a malformed input record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Stop with an error naming the file and line (records before it are written).
    Stop,
    /// Write it to the rejects sink and go on.
    Skip,
}

#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub format: Format,
    /// Name of the input in error messages (a path, or `<stdin>`).
    pub input_name: String,
    /// Names of the sinks in error messages.
    pub output_name: String,
    pub rejects_name: String,
    pub on_error: OnError,
    /// Input lines whose pairs are sorted by length together (the largest window; the first
    /// ones are smaller; see [`window_containing`]).
    pub window_lines: usize,
    /// The same window also ends once its records hold this many bytes (raw line + ids), so
    /// memory does not grow with the records' size (README: peak memory).
    pub window_bytes: usize,
    /// Input lines per tokenizer job.
    pub chunk_lines: usize,
    /// A tokenizer job also ends once it holds this many bytes of input (one line at least).
    pub chunk_bytes: usize,
    /// Print a note on stderr for the first pre-cut records ([`RunStats::precut`]).
    pub note_precut: bool,
    /// Tokenizer threads; 0: every core.
    pub workers: usize,
    /// Distinct query strings whose token ids are kept (0: no cache).
    pub query_cache: usize,
    /// Set asynchronously (signal handler) to stop the run, keeping completed records.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// The sinks are flushed this often, so a killed run loses at most this much output.
    pub flush_every: Duration,
}

impl PipelineOptions {
    pub fn new(format: Format) -> Self {
        PipelineOptions {
            format,
            input_name: "<input>".into(),
            output_name: "<output>".into(),
            rejects_name: "<rejects>".into(),
            on_error: OnError::Stop,
            window_lines: 65536,
            window_bytes: DEFAULT_WINDOW_BYTES,
            chunk_lines: 256,
            chunk_bytes: 1 << 20,
            note_precut: true,
            workers: 0,
            query_cache: 65536,
            interrupt: None,
            flush_every: Duration::from_secs(1),
        }
    }
}

/// The first window's lines; the next ones double up to `window_lines`.
pub const FIRST_WINDOW_LINES: u64 = 1024;

/// The window (0-based input line indices) holding line index `index`: windows of 1024,
/// 2048, 4096, ... lines from the start of the input, then `window_lines` each.
pub fn window_containing(index: u64, window_lines: usize) -> std::ops::Range<u64> {
    let max = (window_lines as u64).max(1);
    let (mut start, mut size) = (0u64, FIRST_WINDOW_LINES.min(max));
    while size < max && start + size <= index {
        start += size;
        size = (size * 2).min(max);
    }
    if start + size <= index {
        start += (index - start) / size * size;
    }
    start..start + size
}
/// Windows sent to the forward thread and not yet written: the one it runs and one queued.
const WINDOWS_AHEAD: usize = 2;
/// Default `--window-bytes`.
pub const DEFAULT_WINDOW_BYTES: usize = 256 << 20;
/// Notes printed for pre-cut records before only the count is kept.
const PRECUT_NOTES: u64 = 5;
/// Pairs per group of the padded reference scheme ([`RunStats::padded32_tokens`]).
pub const PADDED_GROUP: usize = 32;

/// Counters and timings of one run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Input lines accounted for (`pairs + rejected`), in order from the first.
    pub lines: u64,
    /// Pairs scored and written.
    pub pairs: u64,
    pub rejected: u64,
    /// Real tokens of the written pairs (special tokens included; no padding exists).
    pub tokens: u64,
    /// Σ length² of the written pairs (attention FLOPs).
    pub tokens_sq: u64,
    /// Pairs cut to the max length.
    pub truncated: u64,
    /// Pairs with a side cut at the tokenizer's work bound without a provable boundary
    /// ([`crate::pretruncate`]): their ids may differ from Python `tokenizers`.
    pub precut: u64,
    /// Tokens that padded batches of 32 pairs in input order (sentence-transformers) would
    /// process for the written pairs: Σ over groups of 32 of `rows × longest`.
    pub padded32_tokens: u64,
    /// Forward calls (before OOM splits), and the largest batch in tokens.
    pub batches: u64,
    pub max_batch_tokens: usize,
    /// Batches split because of device OOM.
    pub oom_splits: u64,
    pub windows: u64,
    /// Largest window (pairs), and the most pairs ever admitted but not yet written.
    pub max_window_pairs: usize,
    pub peak_pending_pairs: u64,
    pub query_cache_hits: u64,
    pub query_cache_misses: u64,
    pub workers: usize,
    pub wall: Duration,
    /// Summed over the tokenizer workers: parsing, tokenizing, rendering echoes.
    pub tokenize_busy: Duration,
    /// Scheduler: sorting and packing windows.
    pub pack_busy: Duration,
    /// Forward thread: inside `forward` (device time, copies included).
    pub forward_busy: Duration,
    /// Forward thread: waiting for its first batch (pipeline fill).
    pub forward_startup_wait: Duration,
    /// Forward thread: waiting for a batch after the first one arrived.
    pub forward_idle: Duration,
    /// Writer: formatting and writing records.
    pub write_busy: Duration,
}

impl RunStats {
    /// Forward thread time from its first batch arriving to its last batch done.
    pub fn forward_span(&self) -> Duration {
        self.forward_busy + self.forward_idle
    }

    /// Fraction of [`forward_span`](Self::forward_span) spent in forward passes.
    pub fn forward_busy_fraction(&self) -> f64 {
        let span = self.forward_span().as_secs_f64();
        if span > 0.0 {
            self.forward_busy.as_secs_f64() / span
        } else {
            0.0
        }
    }

    /// Real tokens / tokens of padded batches of 32 in input order.
    pub fn padding_efficiency_padded32(&self) -> f64 {
        if self.padded32_tokens > 0 {
            self.tokens as f64 / self.padded32_tokens as f64
        } else {
            1.0
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            pairs: self.pairs,
            tokens: self.tokens,
            truncated: self.truncated,
            precut: self.precut,
            rejected: self.rejected,
        }
    }
}

/// Where results go. Rejected lines are dropped (but counted) when `rejects` is `None`.
pub struct Sinks<'a> {
    pub output: &'a mut dyn Write,
    pub rejects: Option<&'a mut dyn Write>,
}

/// Scores every record of `input` into `sinks`, in input order (see the module docs). Returns
/// the run's statistics, and the error that stopped it, if any, after flushing the sinks.
pub fn score_stream<R: BufRead + Send + 'static>(
    engine: &Engine,
    input: LineReader<R>,
    sinks: Sinks<'_>,
    options: &PipelineOptions,
    progress: &mut Progress,
) -> (RunStats, Result<()>) {
    let start = Instant::now();
    let workers = if options.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.workers
    };
    let ctl = Arc::new(Control {
        stop: AtomicBool::new(false),
        stop_reading: AtomicBool::new(false),
        error: Mutex::new(None),
        interrupt: options.interrupt.clone(),
    });
    let cache = QueryCache::new(options.query_cache);
    let oom_before = engine.oom_splits();
    // Pairs written so far, published by the writer for the scheduler's memory statistic.
    let written = AtomicU64::new(0);

    let max_line_bytes = input.max_line_bytes();
    let (raw_tx, raw_rx) = mpsc::sync_channel::<RawChunk>(2 * workers);
    let raw_rx = Mutex::new(raw_rx);
    let (parsed_tx, parsed_rx) = mpsc::sync_channel::<ParsedChunk>(2 * workers);
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>();
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(WINDOWS_AHEAD);
    let (writer_tx, writer_rx) = mpsc::channel::<WriterMsg>();

    // The reader is detached: a read blocked on a pipe must not keep an interrupted run alive.
    let reader = {
        let ctl = ctl.clone();
        let chunk_lines = options.chunk_lines.max(1);
        let chunk_bytes = options.chunk_bytes.max(1);
        let name = options.input_name.clone();
        std::thread::Builder::new()
            .name("crossrank-reader".into())
            .spawn(move || read_chunks(input, raw_tx, (chunk_lines, chunk_bytes), &ctl, &name))
            .expect("spawn the reader thread")
    };

    let mut stats = RunStats {
        workers,
        ..Default::default()
    };
    let mut completed = false;
    std::thread::scope(|scope| {
        let tokenizer = engine.tokenizer();
        let worker_handles: Vec<_> = (0..workers)
            .map(|i| {
                let (ctl, cache, raw_rx, parsed_tx) = (&ctl, &cache, &raw_rx, parsed_tx.clone());
                std::thread::Builder::new()
                    .name(format!("crossrank-tok-{i}"))
                    .spawn_scoped(scope, move || {
                        tokenize_chunks(
                            tokenizer,
                            (options.format, max_line_bytes),
                            raw_rx,
                            parsed_tx,
                            cache,
                            ctl,
                        )
                    })
                    .expect("spawn a tokenizer thread")
            })
            .collect();
        drop(parsed_tx);

        let scheduler = {
            let (ctl, writer_tx, written) = (&ctl, writer_tx.clone(), &written);
            std::thread::Builder::new()
                .name("crossrank-scheduler".into())
                .spawn_scoped(scope, move || {
                    let mut s = Scheduler {
                        engine,
                        options,
                        ctl,
                        batch_tx,
                        credit_tx,
                        writer_tx,
                        window: WindowBuild::default(),
                        window_id: 0,
                        window_end: 0,
                        stats: SchedulerStats::default(),
                        admitted: 0,
                        written,
                    };
                    let done = s.run(parsed_rx);
                    (s.stats, done)
                })
                .expect("spawn the scheduler thread")
        };

        let forward = {
            let (ctl, writer_tx) = (&ctl, writer_tx.clone());
            std::thread::Builder::new()
                .name("crossrank-forward".into())
                .spawn_scoped(scope, move || {
                    forward_batches(engine, &options.input_name, batch_rx, writer_tx, ctl)
                })
                .expect("spawn the forward thread")
        };
        drop(writer_tx);

        let mut writer = Writer {
            engine,
            credits: credit_rx,
            sinks,
            options,
            ctl: &ctl,
            windows: VecDeque::new(),
            stats: RunStats::default(),
            group: (0, 0),
            written: &written,
            busy: Duration::ZERO,
        };
        let mut last_progress = Instant::now();
        let mut last_flush = Instant::now();
        progress.set(writer.stats.totals());
        while let Ok(msg) = writer_rx.recv() {
            if !writer.handle(msg) {
                break;
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = Instant::now();
                progress.set(writer.stats.totals());
            }
            if last_flush.elapsed() >= options.flush_every {
                last_flush = Instant::now();
                if !writer.flush() {
                    break;
                }
            }
        }
        drop(writer_rx);
        writer.finish_group();
        writer.flush();
        progress.set(writer.stats.totals());

        let (sched, sched_done) = scheduler.join().expect("scheduler thread panicked");
        let fwd = forward.join().expect("forward thread panicked");
        for h in worker_handles {
            let w = h.join().expect("tokenizer thread panicked");
            stats.tokenize_busy += w;
        }
        completed = sched_done && writer.windows.is_empty();
        stats.lines = writer.stats.pairs + writer.stats.rejected;
        stats.pairs = writer.stats.pairs;
        stats.rejected = writer.stats.rejected;
        stats.tokens = writer.stats.tokens;
        stats.tokens_sq = writer.stats.tokens_sq;
        stats.truncated = writer.stats.truncated;
        stats.precut = writer.stats.precut;
        stats.padded32_tokens = writer.stats.padded32_tokens;
        stats.write_busy = writer.busy;
        stats.windows = sched.windows;
        stats.max_window_pairs = sched.max_window_pairs;
        stats.pack_busy = sched.pack_busy;
        stats.peak_pending_pairs = sched.peak_pending_pairs;
        stats.batches = fwd.batches;
        stats.max_batch_tokens = fwd.max_batch_tokens;
        stats.forward_busy = fwd.busy;
        stats.forward_idle = fwd.idle;
        stats.forward_startup_wait = fwd.startup_wait;
    });
    if reader.is_finished() {
        let _ = reader.join();
    }
    stats.oom_splits = engine.oom_splits() - oom_before;
    stats.query_cache_hits = cache.hits.load(Ordering::Relaxed);
    stats.query_cache_misses = cache.misses.load(Ordering::Relaxed);
    stats.wall = start.elapsed();

    let error = ctl.error.lock().unwrap().take();
    let result = match error {
        Some(e) => Err(e),
        None if !completed && ctl.interrupted() => Err(Error::Interrupted),
        None if !completed => Err(Error::Internal("the scoring pipeline stopped early".into())),
        None => Ok(()),
    };
    (stats, result)
}

/// Stop flags and the first error, shared by every thread of a run.
struct Control {
    /// Stop everything now (an error or an interrupt).
    stop: AtomicBool,
    /// Stop reading input (a malformed record under `OnError::Stop`); what was read finishes.
    stop_reading: AtomicBool,
    error: Mutex<Option<Error>>,
    interrupt: Option<Arc<AtomicBool>>,
}

impl Control {
    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.interrupted()
    }

    /// Keeps `e` as the run's result unless an earlier error is there.
    fn record(&self, e: Error) {
        self.error.lock().unwrap().get_or_insert(e);
    }

    /// Records `e` and stops the run.
    fn fail(&self, e: Error) {
        self.record(e);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Records `e` (a malformed record) as the run's result without stopping the work in flight.
    fn defer(&self, e: Error) {
        self.record(e);
        self.stop_reading.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_ramp_up_then_repeat_at_fixed_line_ranges() {
        assert_eq!(window_containing(0, 65536), 0..1024);
        assert_eq!(window_containing(1023, 65536), 0..1024);
        assert_eq!(window_containing(1024, 65536), 1024..3072);
        assert_eq!(window_containing(3072, 65536), 3072..7168);
        assert_eq!(window_containing(0, 100), 0..100);
        assert_eq!(window_containing(250, 100), 200..300);
        assert_eq!(window_containing(7168, 4096), 7168..11264);
        assert_eq!(window_containing(100_000, 4096), 97280..101376);
        // Windows tile the lines: each one starts where the previous ended.
        let mut end = 0;
        while end < 300_000 {
            let w = window_containing(end, 50_000);
            assert_eq!(w.start, end);
            end = w.end;
        }
    }
}
