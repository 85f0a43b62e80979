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

/// Input lines as bytes: `data[ends[i-1]..ends[i]]` is line `first_line + i`.
struct RawChunk {
    seq: u64,
    first_line: u64,
    data: Vec<u8>,
    ends: Vec<usize>,
    /// (index in the chunk, full length) of lines over `--max-line-bytes`: `data` holds only
    /// their first bytes.
    oversized: Vec<(usize, u64)>,
}

fn read_chunks<R: BufRead>(
    mut input: LineReader<R>,
    tx: SyncSender<RawChunk>,
    (chunk_lines, chunk_bytes): (usize, usize),
    ctl: &Control,
    name: &str,
) {
    let mut seq = 0;
    loop {
        let mut chunk = RawChunk {
            seq,
            first_line: 0,
            data: Vec::new(),
            ends: Vec::with_capacity(chunk_lines),
            oversized: Vec::new(),
        };
        let mut full = false;
        while chunk.ends.len() < chunk_lines && chunk.data.len() < chunk_bytes {
            match input.next_line() {
                Ok(Some((line, raw))) => {
                    if chunk.ends.is_empty() {
                        chunk.first_line = line;
                    }
                    if chunk.data.try_reserve(raw.len()).is_err() {
                        ctl.fail(Error::io(
                            name,
                            std::io::Error::new(
                                std::io::ErrorKind::OutOfMemory,
                                format!("line {line}: cannot allocate {} bytes for it", raw.len()),
                            ),
                        ));
                        return;
                    }
                    chunk.data.extend_from_slice(raw);
                    if let Some(len) = input.oversized() {
                        chunk.oversized.push((chunk.ends.len(), len));
                    }
                    chunk.ends.push(chunk.data.len());
                    full = chunk.ends.len() == chunk_lines || chunk.data.len() >= chunk_bytes;
                }
                Ok(None) => break,
                Err(e) => {
                    ctl.fail(Error::io(name, e));
                    return;
                }
            }
        }
        let last = !full;
        if !chunk.ends.is_empty() && tx.send(chunk).is_err() {
            return;
        }
        if last || ctl.should_stop() || ctl.stop_reading.load(Ordering::Relaxed) {
            return;
        }
        seq += 1;
    }
}

/// One input line after parsing and tokenization.
enum Item {
    Pair {
        line: u64,
        ids: Vec<u32>,
        /// Segment ids (empty: all 0), as [`crate::tokenize::EncodedPair::type_ids`].
        type_ids: Vec<u32>,
        truncated: bool,
        precut: bool,
        /// Raw line and ids: what the record costs the window.
        bytes: usize,
        rendered: Rendered,
    },
    Reject {
        line: u64,
        reason: String,
        raw: Vec<u8>,
    },
}

struct ParsedChunk {
    seq: u64,
    items: Vec<Item>,
}

/// Returns the time spent working.
fn tokenize_chunks(
    tokenizer: &PairTokenizer,
    (format, max_line_bytes): (Format, usize),
    rx: &Mutex<Receiver<RawChunk>>,
    tx: SyncSender<ParsedChunk>,
    cache: &QueryCache,
    ctl: &Control,
) -> Duration {
    let mut busy = Duration::ZERO;
    loop {
        let msg = rx.lock().unwrap().recv_timeout(Duration::from_millis(50));
        let chunk = match msg {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) if !ctl.should_stop() => continue,
            Err(_) => return busy,
        };
        let t = Instant::now();
        let mut items = Vec::with_capacity(chunk.ends.len());
        let mut begin = 0;
        let mut oversized = chunk.oversized.iter().peekable();
        for (i, &end) in chunk.ends.iter().enumerate() {
            let line = chunk.first_line + i as u64;
            let raw = &chunk.data[begin..end];
            begin = end;
            if let Some(&(_, len)) = oversized.next_if(|(at, _)| *at == i) {
                items.push(Item::Reject {
                    line,
                    reason: format!("line is {len} bytes, longer than --max-line-bytes {max_line_bytes}"),
                    raw: raw.to_vec(),
                });
                continue;
            }
            match parse_record(format, line, raw) {
                Ok(record) => {
                    let encoded = cache.ids(tokenizer, &record.query).and_then(|q| {
                        let d = tokenizer.encode_side(&record.document)?;
                        Ok((tokenizer.assemble(&q.ids, &d.ids), q.precut || d.precut))
                    });
                    match encoded {
                        Ok((e, precut)) => items.push(Item::Pair {
                            line,
                            bytes: raw.len() + 4 * (e.ids.len() + e.type_ids.len()),
                            ids: e.ids,
                            type_ids: e.type_ids,
                            truncated: e.truncated,
                            precut,
                            rendered: Rendered::new(record.echo),
                        }),
                        Err(e) => {
                            ctl.fail(e);
                            return busy;
                        }
                    }
                }
                Err(reason) => items.push(Item::Reject {
                    line,
                    reason,
                    raw: raw.to_vec(),
                }),
            }
        }
        busy += t.elapsed();
        if tx.send(ParsedChunk { seq: chunk.seq, items }).is_err() {
            return busy;
        }
    }
}

/// Token ids of recent query strings. Two generations per shard: a full current generation
/// becomes the previous one (the one before is dropped), and a hit in the previous generation
/// moves the entry back to the current one, so memory stays bounded and repeated queries
/// stay cached.
struct QueryCache {
    shards: Vec<Mutex<CacheShard>>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct CacheShard {
    current: HashMap<String, Arc<Side>>,
    previous: HashMap<String, Arc<Side>>,
}

impl QueryCache {
    const SHARDS: usize = 16;

    fn new(capacity: usize) -> Self {
        let shards = if capacity == 0 { 0 } else { Self::SHARDS };
        QueryCache {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(2 * Self::SHARDS).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Queries longer than this are not cached: the cache's memory stays bounded by its
    /// capacity, whatever the records hold.
    const MAX_QUERY_BYTES: usize = 4096;

    fn ids(&self, tokenizer: &PairTokenizer, query: &str) -> Result<Arc<Side>> {
        if self.shards.is_empty() || query.len() > Self::MAX_QUERY_BYTES {
            return Ok(tokenizer.encode_side(query)?.into());
        }
        let shard = &self.shards[shard_of(query)];
        {
            let mut s = shard.lock().unwrap();
            if let Some(ids) = s.current.get(query) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(ids.clone());
            }
            if let Some((key, ids)) = s.previous.remove_entry(query) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                s.current.insert(key, ids.clone());
                return Ok(ids);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let ids: Arc<Side> = tokenizer.encode_side(query)?.into();
        let mut s = shard.lock().unwrap();
        if s.current.len() >= self.per_shard {
            s.previous = std::mem::take(&mut s.current);
        }
        s.current.insert(query.to_string(), ids.clone());
        Ok(ids)
    }
}

/// FNV-1a over the bytes: a cheap, stable shard index.
fn shard_of(s: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (h % QueryCache::SHARDS as u64) as usize
}

/// What the writer holds of an input line until it can be written.
enum WriterItem {
    Pair {
        rendered: Rendered,
        len: u32,
        truncated: bool,
        precut: bool,
        line: u64,
    },
    Reject {
        line: u64,
        reason: String,
        raw: Vec<u8>,
    },
}

struct Batch {
    window: u64,
    /// Item index (within the window) of each sequence.
    slots: Vec<u32>,
    /// Input line of each sequence (for error messages).
    lines: Vec<u64>,
    packed: PackedBatch,
}

enum WriterMsg {
    /// `credited`: the window holds a credit (it has batches), returned once it is written.
    Window {
        id: u64,
        items: Vec<WriterItem>,
        credited: bool,
    },
    Logits {
        window: u64,
        slots: Vec<u32>,
        logits: Vec<f32>,
    },
}

#[derive(Default)]
struct WindowBuild {
    /// Raw bytes and ids of the records it holds.
    bytes: usize,
    items: Vec<WriterItem>,
    ids: Vec<Vec<u32>>,
    type_ids: Vec<Vec<u32>>,
    slots: Vec<u32>,
    lines: Vec<u64>,
}

#[derive(Default)]
struct SchedulerStats {
    windows: u64,
    max_window_pairs: usize,
    pack_busy: Duration,
    peak_pending_pairs: u64,
}

struct Scheduler<'a> {
    engine: &'a Engine,
    options: &'a PipelineOptions,
    ctl: &'a Control,
    batch_tx: mpsc::Sender<Batch>,
    credit_tx: SyncSender<()>,
    writer_tx: mpsc::Sender<WriterMsg>,
    window: WindowBuild,
    window_id: u64,
    /// End (exclusive, 0-based line index) of the window being filled.
    window_end: u64,
    stats: SchedulerStats,
    /// Pairs taken into windows so far.
    admitted: u64,
    written: &'a AtomicU64,
}

impl Scheduler<'_> {
    /// Returns whether the whole input went through (no stop, no error).
    fn run(&mut self, rx: Receiver<ParsedChunk>) -> bool {
        let mut pending: BTreeMap<u64, Vec<Item>> = BTreeMap::new();
        let mut next_seq = 0u64;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(chunk) => {
                    pending.insert(chunk.seq, chunk.items);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.ctl.should_stop() {
                        return false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if self.ctl.should_stop() || !pending.is_empty() {
                        return false;
                    }
                    return self.flush_window();
                }
            }
            while let Some(items) = pending.remove(&next_seq) {
                next_seq += 1;
                for item in items {
                    let (Item::Pair { line, .. } | Item::Reject { line, .. }) = &item;
                    let index = line - 1;
                    if index >= self.window_end {
                        if !self.flush_window() {
                            return false;
                        }
                        self.window_end = window_containing(index, self.options.window_lines).end;
                    }
                    match item {
                        Item::Pair {
                            line,
                            ids,
                            type_ids,
                            truncated,
                            precut,
                            bytes,
                            rendered,
                        } => {
                            let w = &mut self.window;
                            w.slots.push(w.items.len() as u32);
                            w.lines.push(line);
                            w.items.push(WriterItem::Pair {
                                rendered,
                                len: ids.len() as u32,
                                truncated,
                                precut,
                                line,
                            });
                            w.ids.push(ids);
                            w.type_ids.push(type_ids);
                            w.bytes += bytes;
                            self.admitted += 1;
                        }
                        Item::Reject { line, reason, raw } => {
                            self.window.bytes += raw.len();
                            if self.options.on_error == OnError::Stop {
                                self.ctl.defer(Error::input(&self.options.input_name, line, reason));
                                // Everything before the bad line is scored and written.
                                self.flush_window();
                                return false;
                            }
                            self.window.items.push(WriterItem::Reject { line, reason, raw });
                        }
                    }
                    // The window's last line: send it now rather than when the next arrives.
                    // A window over `window_bytes` also ends here; the next one runs to the
                    // same line-range end, so windows stay a function of the input from any
                    // line-range start (what `--resume` relies on).
                    let last = index + 1 == self.window_end || self.window.bytes >= self.options.window_bytes;
                    if last && !self.flush_window() {
                        return false;
                    }
                }
                // Sampled once per chunk; `written` lags a little, so this errs on the high side.
                let pending_pairs = self.admitted - self.written.load(Ordering::Relaxed);
                self.stats.peak_pending_pairs = self.stats.peak_pending_pairs.max(pending_pairs);
            }
            if self.ctl.should_stop() {
                return false;
            }
        }
    }

    /// Waits until fewer than WINDOWS_AHEAD windows are in flight; false if the run stops
    /// meanwhile (the writer, which returns credits, may then never return one).
    fn take_credit(&self) -> bool {
        let mut pause = Duration::from_micros(100);
        loop {
            match self.credit_tx.try_send(()) {
                Ok(()) => return true,
                Err(mpsc::TrySendError::Disconnected(())) => return false,
                Err(mpsc::TrySendError::Full(())) => {
                    if self.ctl.should_stop() {
                        return false;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
            }
        }
    }

    /// Sends the window to the writer and its batches to the forward thread; false if the
    /// run is stopping.
    fn flush_window(&mut self) -> bool {
        if self.ctl.should_stop() {
            return false;
        }
        let w = std::mem::take(&mut self.window);
        if w.items.is_empty() {
            return true;
        }
        let id = self.window_id;
        self.window_id += 1;
        self.stats.windows += 1;
        self.stats.max_window_pairs = self.stats.max_window_pairs.max(w.ids.len());
        let t = Instant::now();
        let lengths: Vec<usize> = w.ids.iter().map(Vec::len).collect();
        let plan = plan_batches(&lengths, self.engine.batch_tokens(), usize::MAX);
        let batches: Vec<Batch> = plan
            .iter()
            .map(|group| Batch {
                window: id,
                slots: group.iter().map(|&i| w.slots[i]).collect(),
                lines: group.iter().map(|&i| w.lines[i]).collect(),
                packed: {
                    let mut packed = PackedBatch::new();
                    for &i in group {
                        packed.push_typed(&w.ids[i], &w.type_ids[i]);
                    }
                    packed
                },
            })
            .collect();
        drop(w.ids);
        drop(w.type_ids);
        self.stats.pack_busy += t.elapsed();
        if !batches.is_empty() && !self.take_credit() {
            return false;
        }
        let msg = WriterMsg::Window {
            id,
            items: w.items,
            credited: !batches.is_empty(),
        };
        if self.writer_tx.send(msg).is_err() {
            return false;
        }
        for b in batches {
            if self.batch_tx.send(b).is_err() {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct ForwardStats {
    batches: u64,
    max_batch_tokens: usize,
    busy: Duration,
    idle: Duration,
    startup_wait: Duration,
}

fn forward_batches(
    engine: &Engine,
    input_name: &str,
    rx: Receiver<Batch>,
    tx: mpsc::Sender<WriterMsg>,
    ctl: &Control,
) -> ForwardStats {
    let mut s = ForwardStats::default();
    let mut started = false;
    loop {
        let t = Instant::now();
        let Ok(batch) = rx.recv() else { break };
        if started {
            s.idle += t.elapsed();
        } else {
            s.startup_wait = t.elapsed();
            started = true;
        }
        if ctl.should_stop() {
            break;
        }
        let t = Instant::now();
        let result = engine.forward_split_on_oom(&batch.packed, &|i| format!("{input_name}:{}", batch.lines[i]));
        s.busy += t.elapsed();
        s.batches += 1;
        s.max_batch_tokens = s.max_batch_tokens.max(batch.packed.num_tokens());
        match result {
            Ok(logits) => {
                let msg = WriterMsg::Logits {
                    window: batch.window,
                    slots: batch.slots,
                    logits,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
            Err(e) => {
                ctl.fail(e);
                break;
            }
        }
    }
    s
}

struct PendingWindow {
    id: u64,
    credited: bool,
    items: Vec<WriterItem>,
    logits: Vec<f32>,
    ready: Vec<bool>,
    next: usize,
}

struct Writer<'a, 's> {
    engine: &'a Engine,
    credits: Receiver<()>,
    sinks: Sinks<'s>,
    options: &'a PipelineOptions,
    ctl: &'a Control,
    windows: VecDeque<PendingWindow>,
    stats: RunStats,
    /// Rows and longest length of the current group of 32 (padded reference scheme).
    group: (usize, u64),
    written: &'a AtomicU64,
    busy: Duration,
}

impl Writer<'_, '_> {
    /// False when writing failed (the run stops).
    fn handle(&mut self, msg: WriterMsg) -> bool {
        match msg {
            WriterMsg::Window { id, items, credited } => {
                let ready = items.iter().map(|i| matches!(i, WriterItem::Reject { .. })).collect();
                self.windows.push_back(PendingWindow {
                    id,
                    logits: vec![0.0; items.len()],
                    items,
                    ready,
                    next: 0,
                    credited,
                });
            }
            WriterMsg::Logits { window, slots, logits } => {
                let front = self.windows.front().map_or(0, |w| w.id);
                let index = window.checked_sub(front).map(|i| i as usize);
                let Some(w) = index.and_then(|i| self.windows.get_mut(i)) else {
                    self.ctl
                        .fail(Error::Internal(format!("logits for unknown window {window}")));
                    return false;
                };
                for (slot, logit) in slots.into_iter().zip(logits) {
                    w.logits[slot as usize] = logit;
                    w.ready[slot as usize] = true;
                }
            }
        }
        let t = Instant::now();
        let ok = self.write_ready();
        self.busy += t.elapsed();
        ok
    }

    /// Writes every record whose predecessors are all written.
    fn write_ready(&mut self) -> bool {
        while let Some(w) = self.windows.front_mut() {
            while w.next < w.items.len() && w.ready[w.next] {
                let i = w.next;
                w.next += 1;
                let result = match &w.items[i] {
                    WriterItem::Pair {
                        rendered,
                        len,
                        truncated,
                        precut,
                        line,
                    } => {
                        let (len, truncated) = (*len as u64, *truncated);
                        let s = &mut self.stats;
                        if *precut {
                            s.precut += 1;
                            if self.options.note_precut && s.precut <= PRECUT_NOTES {
                                eprintln!(
                                    "crossrank: note: {} line {line}: a side has no word boundary within {} bytes; \
                                     pre-cut there (ids may differ from Python tokenizers){}",
                                    self.options.input_name,
                                    crate::pretruncate::PreTruncation::bound_bytes(
                                        self.engine.tokenizer().max_length()
                                    ),
                                    if s.precut == PRECUT_NOTES {
                                        "; further pre-cut pairs are only counted"
                                    } else {
                                        ""
                                    }
                                );
                            }
                        }
                        s.pairs += 1;
                        s.tokens += len;
                        s.tokens_sq += len * len;
                        s.truncated += truncated as u64;
                        self.group.0 += 1;
                        self.group.1 = self.group.1.max(len);
                        if self.group.0 == PADDED_GROUP {
                            s.padded32_tokens += PADDED_GROUP as u64 * self.group.1;
                            self.group = (0, 0);
                        }
                        let score = self.engine.to_score(w.logits[i]);
                        rendered
                            .write(self.sinks.output, score)
                            .map_err(|e| Error::io(&self.options.output_name, e))
                    }
                    WriterItem::Reject { line, reason, raw } => {
                        self.stats.rejected += 1;
                        match self.sinks.rejects.as_mut() {
                            Some(out) => write_reject(*out, *line, reason, raw)
                                .map_err(|e| Error::io(&self.options.rejects_name, e)),
                            None => Ok(()),
                        }
                    }
                };
                if let Err(e) = result {
                    self.ctl.fail(e);
                    return false;
                }
                // Drop what is written (echo strings can be large).
                w.items[i] = WriterItem::Reject {
                    line: 0,
                    reason: String::new(),
                    raw: Vec::new(),
                };
            }
            self.written.store(self.stats.pairs, Ordering::Relaxed);
            if w.next < w.items.len() {
                break;
            }
            if w.credited {
                // Lets the scheduler queue another window: pairs between the scheduler
                // and the writer never exceed WINDOWS_AHEAD windows plus the one filling.
                let _ = self.credits.recv();
            }
            self.windows.pop_front();
        }
        true
    }

    /// False when flushing failed (the run stops).
    fn flush(&mut self) -> bool {
        let t = Instant::now();
        let mut ok = true;
        if let Err(e) = self.sinks.output.flush() {
            self.ctl.fail(Error::io(&self.options.output_name, e));
            ok = false;
        }
        if let Some(r) = self.sinks.rejects.as_mut() {
            if let Err(e) = r.flush() {
                self.ctl.fail(Error::io(&self.options.rejects_name, e));
                ok = false;
            }
        }
        self.busy += t.elapsed();
        ok
    }

    fn finish_group(&mut self) {
        if self.group.0 > 0 {
            self.stats.padded32_tokens += self.group.0 as u64 * self.group.1;
            self.group = (0, 0);
        }
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
