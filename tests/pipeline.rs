//! The streaming pipeline as a library: input order under shuffled lengths and many
//! batches, batch split-and-retry on device OOM (an injected fault around the CPU backend),
//! other device errors, bounded memory (window and in-flight counters), the query cache,
//! and bad records in both modes.

mod common;

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossrank::batch::PackedBatch;
use crossrank::engine::{Engine, ModelFiles};
use crossrank::error::{exit_code, Error, Result};
use crossrank::model::cpu::CpuModel;
use crossrank::model::Backend;
use crossrank::pipeline::{score_stream, OnError, PipelineOptions, RunStats, Sinks};
use crossrank::progress::Progress;
use crossrank::records::{Format, LineReader};
use serde_json::Value;

/// A stand-in model: the logit is a hash of the sequence's token ids, so any mix-up of
/// order shows, and it is fast. Optionally slow, to let the host side run ahead.
struct HashBackend {
    delay: Duration,
    calls: AtomicU64,
}

fn hash_logit(ids: &[u32]) -> f32 {
    let mut h: u32 = 0x811c_9dc5;
    for &id in ids {
        h = (h ^ id).wrapping_mul(0x0100_0193);
    }
    (h % 1_000_000) as f32 + ids.len() as f32 / 1024.0
}

impl Backend for HashBackend {
    fn describe(&self) -> String {
        "hash".into()
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.delay);
        Ok((0..batch.num_seqs())
            .map(|s| hash_logit(&batch.token_ids[batch.seq_range(s)]))
            .collect())
    }

    fn default_batch_tokens(&self) -> usize {
        512
    }
}

/// The CPU backend behind a fault: batches over `limit` tokens run out of "device memory";
/// `fail_other` turns the first batch into a plain device error instead.
struct Faulty {
    inner: CpuModel,
    limit: usize,
    fail_other: bool,
    largest_ok: AtomicUsize,
    ooms: AtomicU64,
}

impl Backend for Faulty {
    fn describe(&self) -> String {
        "faulty cpu".into()
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        if self.fail_other {
            return Err(Error::Device("CUDA_ERROR_ILLEGAL_ADDRESS (injected)".into()));
        }
        if batch.num_tokens() > self.limit {
            self.ooms.fetch_add(1, Ordering::Relaxed);
            return Err(Error::DeviceOutOfMemory(format!(
                "{} tokens (injected)",
                batch.num_tokens()
            )));
        }
        self.largest_ok.fetch_max(batch.num_tokens(), Ordering::Relaxed);
        self.inner.forward(batch)
    }

    fn default_batch_tokens(&self) -> usize {
        1024
    }
}

fn files() -> ModelFiles {
    ModelFiles::open(&fixture_dir(), None).unwrap()
}

fn hash_engine(delay: Duration, batch_tokens: usize) -> Engine {
    let backend = HashBackend {
        delay,
        calls: AtomicU64::new(0),
    };
    Engine::with_backend(files(), Box::new(backend), Some(batch_tokens))
}

fn faulty_engine(limit: usize, fail_other: bool, batch_tokens: usize) -> Engine {
    let f = files();
    let backend = Faulty {
        inner: CpuModel::new(f.tensors.clone(), 2).unwrap(),
        limit,
        fail_other,
        largest_ok: AtomicUsize::new(0),
        ooms: AtomicU64::new(0),
    };
    Engine::with_backend(f, Box::new(backend), Some(batch_tokens))
}

/// Pairs whose lengths vary a lot and in no order: words repeated 0..60 times.
fn shuffled_pairs(n: usize) -> Vec<(String, String)> {
    shuffled_pairs_upto(n, 60)
}

fn shuffled_pairs_upto(n: usize, max_repeat: u64) -> Vec<(String, String)> {
    let mut s: u64 = 12345;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|i| {
            let q = format!("query {} {}", i % 37, "Tokyo ".repeat((next() % 8) as usize));
            let d = format!(
                "doc {i} {}",
                "University of Kyoto ".repeat((next() % max_repeat) as usize)
            );
            (q, d)
        })
        .collect()
}

fn jsonl(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (q, d)) in pairs.iter().enumerate() {
        out.extend(
            serde_json::json!({"id": i, "query": q, "document": d})
                .to_string()
                .bytes(),
        );
        out.push(b'\n');
    }
    out
}

struct Run {
    stats: RunStats,
    result: Result<()>,
    output: Vec<u8>,
    rejects: Vec<u8>,
}

fn run_pipeline(engine: &Engine, input: Vec<u8>, format: Format, tune: impl FnOnce(&mut PipelineOptions)) -> Run {
    let mut options = PipelineOptions::new(format);
    options.input_name = "in.jsonl".into();
    tune(&mut options);
    let mut output = Vec::new();
    let mut rejects = Vec::new();
    let mut progress = Progress::new(true, None);
    let sinks = Sinks {
        output: &mut output,
        rejects: Some(&mut rejects),
    };
    let (stats, result) = score_stream(
        engine,
        LineReader::new(Cursor::new(input)),
        sinks,
        &options,
        &mut progress,
    );
    Run {
        stats,
        result,
        output,
        rejects,
    }
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn order_is_exact_under_shuffled_lengths_and_many_batches() {
    let engine = hash_engine(Duration::ZERO, 300);
    let pairs = shuffled_pairs(3000);
    let run = run_pipeline(&engine, jsonl(&pairs), Format::Jsonl, |o| {
        o.window_lines = 700;
        o.chunk_lines = 13;
        o.workers = 3;
    });
    run.result.unwrap();
    let out = lines(&run.output);
    assert_eq!(out.len(), pairs.len());
    for (i, (line, (q, d))) in out.iter().zip(&pairs).enumerate() {
        assert_eq!(line["id"], i, "line {i}");
        let ids = engine.encode(q, d).unwrap().ids;
        assert_eq!(line["logit"].as_f64().unwrap() as f32, hash_logit(&ids), "line {i}");
    }
    let s = &run.stats;
    assert_eq!((s.pairs, s.lines, s.rejected), (3000, 3000, 0));
    assert!(s.batches > 50, "{} batches", s.batches);
    assert!(s.windows >= 5, "{} windows", s.windows);
    let longest = pairs
        .iter()
        .map(|(q, d)| engine.encode(q, d).unwrap().len())
        .max()
        .unwrap();
    assert!(s.max_batch_tokens <= 300.max(longest), "{} tokens", s.max_batch_tokens);
    // Queries repeat (37 distinct), so most lookups hit the cache.
    assert!(s.query_cache_hits > 2000, "{} hits", s.query_cache_hits);
}

#[test]
fn real_model_scores_match_the_engine_through_the_pipeline() {
    let engine = Engine::load(
        &fixture_dir(),
        &crossrank::EngineOptions {
            device: crossrank::Device::Cpu,
            batch_tokens: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    let pairs = shuffled_pairs(60);
    let want = engine.score_pairs(&pairs).unwrap();
    let run = run_pipeline(&engine, jsonl(&pairs), Format::Jsonl, |o| o.window_lines = 16);
    run.result.unwrap();
    let out = lines(&run.output);
    let got: Vec<f32> = out.iter().map(|l| l["logit"].as_f64().unwrap() as f32).collect();
    let want_logits: Vec<f32> = want.iter().map(|s| s.logit).collect();
    assert_close("pipeline vs engine", &got, &want_logits, 1e-5, 1e-5);
}

#[test]
fn memory_is_bounded_by_the_window_when_the_device_is_slow() {
    // A slow device: the reader and tokenizers would run far ahead if nothing held them.
    let engine = hash_engine(Duration::from_millis(2), 256);
    let pairs = shuffled_pairs(4000);
    let window = 96;
    let run = run_pipeline(&engine, jsonl(&pairs), Format::Jsonl, |o| {
        o.window_lines = window;
        o.chunk_lines = 16;
        o.workers = 2;
    });
    run.result.unwrap();
    let s = &run.stats;
    assert_eq!(s.pairs, 4000);
    assert!(s.max_window_pairs <= window, "window {}", s.max_window_pairs);
    assert!(
        s.peak_pending_pairs <= 3 * window as u64,
        "{} pairs in flight for a window of {window}",
        s.peak_pending_pairs
    );
    assert!(s.forward_busy_fraction() > 0.5, "{:?}", s);
}

#[test]
fn oom_splits_batches_and_retries_with_identical_results() {
    let reference = faulty_engine(usize::MAX, false, 1024);
    let engine = faulty_engine(150, false, 1024);
    let pairs = shuffled_pairs_upto(80, 12);
    let keep_short: Vec<(String, String)> = pairs
        .iter()
        .filter(|(q, d)| engine.encode(q, d).unwrap().len() <= 150)
        .cloned()
        .collect();
    assert!(keep_short.len() > 40);
    let clean = run_pipeline(&reference, jsonl(&keep_short), Format::Jsonl, |_| {});
    clean.result.unwrap();
    let split = run_pipeline(&engine, jsonl(&keep_short), Format::Jsonl, |_| {});
    split.result.unwrap();
    assert!(split.stats.oom_splits > 0);
    let a: Vec<f32> = lines(&clean.output)
        .iter()
        .map(|l| l["logit"].as_f64().unwrap() as f32)
        .collect();
    let b: Vec<f32> = lines(&split.output)
        .iter()
        .map(|l| l["logit"].as_f64().unwrap() as f32)
        .collect();
    assert_close("split vs whole batches", &b, &a, 1e-5, 1e-5);

    // The engine's own batch scoring goes through the same retry.
    let scores = engine.score_pairs(&keep_short).unwrap();
    let c: Vec<f32> = scores.iter().map(|s| s.logit).collect();
    assert_close("score_pairs with OOM", &c, &a, 1e-5, 1e-5);
}

#[test]
fn a_sequence_that_never_fits_is_an_error_naming_its_line() {
    let engine = faulty_engine(60, false, 1024);
    let mut pairs: Vec<(String, String)> = (0..10).map(|i| (format!("q{i}"), format!("d{i}"))).collect();
    pairs[6].1 = "University of Kyoto ".repeat(40);
    let run = run_pipeline(&engine, jsonl(&pairs), Format::Jsonl, |_| {});
    let err = run.result.unwrap_err();
    assert!(matches!(err, Error::DeviceOutOfMemory(_)), "{err}");
    assert_eq!(err.exit_code(), exit_code::DEVICE);
    assert!(err.to_string().contains("in.jsonl:7"), "{err}");
    // What was scored before the failing line is written, in order, complete lines only.
    let out = lines(&run.output);
    assert!(out.len() <= 6);
    for (i, l) in out.iter().enumerate() {
        assert_eq!(l["id"], i);
    }
}

#[test]
fn other_device_errors_stop_the_run_with_the_device_exit_code() {
    let engine = faulty_engine(usize::MAX, true, 1024);
    let run = run_pipeline(&engine, jsonl(&shuffled_pairs(20)), Format::Jsonl, |_| {});
    let err = run.result.unwrap_err();
    assert!(matches!(err, Error::Device(_)), "{err}");
    assert_eq!(err.exit_code(), exit_code::DEVICE);
    assert!(err.to_string().contains("ILLEGAL_ADDRESS"));
    assert!(run.output.is_empty());
}

#[test]
fn bad_records_stop_after_writing_what_precedes_them_or_are_rejected() {
    let engine = hash_engine(Duration::ZERO, 256);
    let pairs = shuffled_pairs(50);
    let mut input = jsonl(&pairs);
    // Line 31 becomes malformed.
    let text = String::from_utf8(input.clone()).unwrap();
    let mut ls: Vec<&str> = text.lines().collect();
    ls[30] = "{\"query\": \"x\"";
    input = (ls.join("\n") + "\n").into_bytes();

    let stop = run_pipeline(&engine, input.clone(), Format::Jsonl, |o| o.window_lines = 8);
    let err = stop.result.unwrap_err();
    assert!(matches!(err, Error::Input { line: 31, .. }), "{err}");
    let out = lines(&stop.output);
    assert_eq!(out.len(), 30, "every line before the bad one is written");
    assert!(stop.rejects.is_empty());

    let skip = run_pipeline(&engine, input, Format::Jsonl, |o| {
        o.window_lines = 8;
        o.on_error = OnError::Skip;
    });
    skip.result.unwrap();
    let out = lines(&skip.output);
    assert_eq!(out.len(), 49);
    assert!(out.iter().all(|l| l["id"] != 30));
    let rej = lines(&skip.rejects);
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0]["line"], 31);
    assert_eq!(skip.stats.rejected, 1);
    assert_eq!(skip.stats.lines, 50);
}

#[test]
fn interrupt_flag_stops_with_complete_records_in_order() {
    let engine = hash_engine(Duration::from_millis(5), 128);
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pairs = shuffled_pairs(20000);
    let input = jsonl(&pairs);
    let f = flag.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        f.store(true, Ordering::Relaxed);
    });
    let run = run_pipeline(&engine, input, Format::Jsonl, |o| {
        o.window_lines = 64;
        o.interrupt = Some(flag.clone());
    });
    stopper.join().unwrap();
    assert!(matches!(run.result, Err(Error::Interrupted)), "{:?}", run.result);
    let out = lines(&run.output);
    assert!(!out.is_empty() && out.len() < pairs.len(), "{} lines", out.len());
    for (i, l) in out.iter().enumerate() {
        assert_eq!(l["id"], i);
    }
    assert_eq!(run.stats.pairs as usize, out.len());
}
