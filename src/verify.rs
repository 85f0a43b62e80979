//! `crossrank verify`: score the same pairs on the GPU and on the CPU references and compare.
//!
//! The pairs come from `--input` (JSONL/TSV, tokenized like `score`), or are synthesized:
//! seeded random token ids (the tokenizer's non-special range) laid out in the pair template,
//! total lengths log-uniform between `--min-tokens` and `--max-tokens` (both ends included),
//! grouped into queries of `--docs-per-query` documents that share the query ids. Synthetic
//! ids skip the tokenizer on purpose: what is compared is the model, at exact lengths.
//!
//! Two references: the **fp16 twin** of the CUDA path ([`crate::model::cpu_fp16`], the gate)
//! and the **f32 reference** (information: how far fp16 storage moves the scores, and the
//! ranking agreement with the spec). Reported for each: max / mean |Δlogit| and max |Δscore|
//! (overall and per length bucket), the worst pair, and per query: same top-1 document, same
//! full order, Kendall tau. The run fails (exit code 5, like every device error) when a pair
//! is outside [`FP16_GATE`] around the fp16 reference, when a query's top-1 differs from the
//! fp16 reference's and the documents involved are not a near tie (fp16-reference logits
//! within the gate's absolute part), when a logit is not finite, or when fewer pairs than
//! asked were compared (`--cpu-budget` ran out).
//!
//! `--device cpu` checks the CPU (`--precision fp16` by default, or f32) against the same
//! references: a self check of the whole gate logic that needs no GPU.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::batch::{plan_batches, PackedBatch};
use crate::config::Activation;
use crate::cuda::{AttentionChoice, GpuOptions, KernelOrigin};
use crate::engine::{Device, ModelFiles};
use crate::error::{Error, Result};
use crate::hub::resolve_model;
use crate::model::cpu_fp16::{AttentionModel, Fp16Options, Mutation, SumOrder};
use crate::model::{Backend, Precision};
use crate::records::{parse_record, Format, LineReader};
use crate::tokenize::{PairTemplate, PairTokenizer};

/// What `crossrank verify` compares and how (the command line's `verify` arguments).
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Model directory or hub id.
    pub model: String,
    /// Pairs to score (JSONL or TSV, like `score`); default: synthetic pairs.
    pub input: Option<String>,
    /// jsonl or tsv [default: from the input extension].
    pub format: Option<String>,
    /// Device under test: cuda, cuda:N (or cpu, which checks the CPU against itself).
    pub device: Device,
    /// Pair length limit for `--input` pairs [default: as `score`].
    pub max_length: Option<usize>,
    /// Tokens per GPU batch [default: the GPU backend's].
    pub batch_tokens: Option<usize>,
    /// Tokens per CPU batch.
    pub cpu_batch_tokens: usize,
    /// CPU threads (0: every core).
    pub threads: usize,
    /// Absolute part of the gate: |device logit - fp16 reference logit| <= tolerance +
    /// rel_tolerance·|reference| [default: the derived gate, `FP16_GATE`].
    pub tolerance: Option<f32>,
    /// Relative part of the gate [default: the derived gate, `FP16_GATE`].
    pub rel_tolerance: Option<f32>,
    /// Arithmetic of the device under test when it is the CPU (`--device cpu`): f32 or fp16.
    /// The CUDA path is always fp16.
    pub precision: Option<Precision>,
    /// Skip the f32 reference (reported for information only; halves the CPU time).
    pub skip_f32: bool,
    /// Number of synthetic pairs.
    pub n: usize,
    /// Documents per synthetic query.
    pub docs_per_query: usize,
    /// Shortest synthetic pair, special tokens included.
    pub min_tokens: usize,
    /// Longest synthetic pair [default: min(2048, max length)].
    pub max_tokens: Option<usize>,
    /// Stop the CPU references after this many seconds (at a query boundary). Pairs left
    /// uncompared fail the run (exit code 5): the budget makes a too-slow check fail loudly,
    /// it never shrinks it silently.
    pub cpu_budget: Option<f64>,
    /// Fraction of synthetic pairs longer than 256 tokens (log-uniform up to --max-tokens);
    /// the others are log-uniform from --min-tokens to 256.
    pub long_fraction: f64,
    /// Seed of the synthetic pairs.
    pub seed: u64,
    /// GPU attention kernels: auto, flash or reference [default: $CROSSRANK_ATTENTION or auto].
    pub attention: Option<String>,
    /// Machine-readable report on stdout (instead of the table).
    pub json: bool,
    /// Also write the machine-readable report to this file.
    pub json_out: Option<std::path::PathBuf>,
}

/// Pairs as token ids, grouped by query.
#[derive(Clone, Debug)]
pub struct Workload {
    pub pairs: Vec<Vec<u32>>,
    /// Segment ids of each pair (empty: all 0), as the tokenizer's template assigns them, so
    /// a family that embeds segments is compared on the inputs it will really get.
    pub type_ids: Vec<Vec<u32>>,
    /// Indices into `pairs`, one group per query.
    pub groups: Vec<Vec<usize>>,
    pub source: String,
}

/// splitmix64: a tiny seeded generator (no extra crate), good enough for test data.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}

/// Synthetic lengths at or below this are "short" (the reranking workload: ~20-120 tokens).
pub const SHORT_TOKENS: usize = 256;

/// Length of synthetic pair `i`: the first two are `max` and `min`; the rest log-uniform in
/// `[min, SHORT_TOKENS]`, or with probability `long_fraction` in `[SHORT_TOKENS, max]` (the
/// split is clamped into `[min, max]`). Short-heavy keeps the CPU side of a verify affordable
/// while every length up to `max` is still exercised.
pub fn synthetic_length(rng: &mut SplitMix64, i: usize, min: usize, max: usize, long_fraction: f64) -> usize {
    let log_uniform = |rng: &mut SplitMix64, lo: usize, hi: usize| {
        let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        ((a + rng.next_f64() * (b - a)).exp().floor() as usize).clamp(lo, hi)
    };
    let split = SHORT_TOKENS.clamp(min, max);
    match i {
        0 => max,
        1 => min,
        _ if rng.next_f64() < long_fraction => log_uniform(rng, split, max),
        _ => log_uniform(rng, min, split),
    }
}

/// Synthetic pairs (see the module docs), every token segment 0. `ids` = the range of
/// ordinary token ids.
#[allow(clippy::too_many_arguments)]
pub fn synthetic_workload(
    prefix: &[u32],
    middle: &[u32],
    suffix: &[u32],
    ids: std::ops::Range<u32>,
    n: usize,
    docs_per_query: usize,
    min_tokens: usize,
    max_tokens: usize,
    long_fraction: f64,
    seed: u64,
) -> Result<Workload> {
    let template = PairTemplate {
        prefix: prefix.to_vec(),
        middle: middle.to_vec(),
        suffix: suffix.to_vec(),
        segments: None,
    };
    synthetic_workload_in(
        &template,
        ids,
        n,
        docs_per_query,
        min_tokens,
        max_tokens,
        long_fraction,
        seed,
    )
}

/// [`synthetic_workload`] in `template`, segment ids included where the template has them.
#[allow(clippy::too_many_arguments)]
pub fn synthetic_workload_in(
    template: &PairTemplate,
    ids: std::ops::Range<u32>,
    n: usize,
    docs_per_query: usize,
    min_tokens: usize,
    max_tokens: usize,
    long_fraction: f64,
    seed: u64,
) -> Result<Workload> {
    let (prefix, middle, suffix) = (&template.prefix[..], &template.middle[..], &template.suffix[..]);
    let specials = prefix.len() + middle.len() + suffix.len();
    let min_tokens = min_tokens.max(specials + 1);
    if max_tokens < min_tokens {
        return Err(Error::InvalidArgument(format!(
            "--max-tokens {max_tokens} is below the shortest pair ({min_tokens} tokens)"
        )));
    }
    if ids.end <= ids.start {
        return Err(Error::InvalidArgument(
            "the tokenizer has no ordinary token ids to draw from".into(),
        ));
    }
    let docs_per_query = docs_per_query.max(1);
    let mut rng = SplitMix64(seed ^ 0x5EED_C0DE);
    let mut pairs = Vec::with_capacity(n);
    let mut type_ids = Vec::with_capacity(n);
    let mut groups = Vec::new();
    let draw = |rng: &mut SplitMix64, len: usize| -> Vec<u32> {
        (0..len)
            .map(|_| rng.range(ids.start as u64, ids.end as u64) as u32)
            .collect()
    };
    while pairs.len() < n {
        let query_len = rng.range(2, 33) as usize;
        let query = draw(&mut rng, query_len);
        let mut group = Vec::new();
        for _ in 0..docs_per_query.min(n - pairs.len()) {
            let total = synthetic_length(&mut rng, pairs.len(), min_tokens, max_tokens, long_fraction);
            let q = query_len.min(total - specials);
            let doc = draw(&mut rng, total - specials - q);
            let mut seq = Vec::with_capacity(total);
            seq.extend_from_slice(prefix);
            seq.extend_from_slice(&query[..q]);
            seq.extend_from_slice(middle);
            seq.extend_from_slice(&doc);
            seq.extend_from_slice(suffix);
            debug_assert_eq!(seq.len(), total);
            group.push(pairs.len());
            pairs.push(seq);
            type_ids.push(template.type_ids(q, doc.len()));
        }
        groups.push(group);
    }
    Ok(Workload {
        pairs,
        type_ids,
        groups,
        source: format!("synthetic (seed {seed})"),
    })
}

fn synthetic_from_tokenizer(tok: &PairTokenizer, args: &VerifyOptions) -> Result<Workload> {
    let t = tok.template();
    // Ordinary ids: past the specials the template uses (XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3),
    // below the largest id (XLM-R: <mask>).
    let first = t
        .prefix
        .iter()
        .chain(&t.middle)
        .chain(&t.suffix)
        .max()
        .map_or(0, |m| m + 2);
    let max_tokens = args.max_tokens.unwrap_or(2048).min(tok.max_length());
    synthetic_workload_in(
        t,
        first..tok.max_id(),
        args.n,
        args.docs_per_query,
        args.min_tokens,
        max_tokens,
        args.long_fraction,
        args.seed,
    )
}

fn file_workload(path: &str, format: Option<&str>, tok: &PairTokenizer) -> Result<Workload> {
    let format = match format {
        Some(f) => {
            Format::parse(f).ok_or_else(|| Error::InvalidArgument(format!("unknown --format `{f}` (jsonl or tsv)")))?
        }
        None => Format::from_path(Path::new(path)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "cannot tell the format of `{path}` from its extension; pass --format jsonl|tsv"
            ))
        })?,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = LineReader::new(std::io::BufReader::new(file));
    let mut pairs = Vec::new();
    let mut type_ids = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_query: HashMap<String, usize> = HashMap::new();
    while let Some((line, raw)) = reader.next_line().map_err(|e| Error::io(path, e))? {
        let record = parse_record(format, line, raw).map_err(|msg| Error::input(path, line, msg))?;
        let encoded = tok.encode_pair(&record.query, &record.document)?;
        let g = *by_query.entry(record.query).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(pairs.len());
        pairs.push(encoded.ids);
        type_ids.push(encoded.type_ids);
    }
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(format!("{path}: no pairs")));
    }
    Ok(Workload {
        pairs,
        type_ids,
        groups,
        source: path.to_string(),
    })
}

/// Logits of every pair (input order) on `backend`, batches of at most `batch_tokens`;
/// every token segment 0.
pub fn score_pairs(backend: &dyn Backend, pairs: &[Vec<u32>], batch_tokens: usize) -> Result<Vec<f32>> {
    score_typed_pairs(backend, pairs, &[], batch_tokens)
}

/// [`score_pairs`] with segment ids: `type_ids` empty (all 0) or one entry per pair, each
/// empty (all 0) or one id per token.
pub fn score_typed_pairs(
    backend: &dyn Backend,
    pairs: &[Vec<u32>],
    type_ids: &[Vec<u32>],
    batch_tokens: usize,
) -> Result<Vec<f32>> {
    if !type_ids.is_empty() && type_ids.len() != pairs.len() {
        return Err(Error::Internal(format!(
            "{} segment-id lists for {} pairs",
            type_ids.len(),
            pairs.len()
        )));
    }
    let lengths: Vec<usize> = pairs.iter().map(Vec::len).collect();
    let mut logits = vec![0.0f32; pairs.len()];
    let mut batch = PackedBatch::new();
    for group in plan_batches(&lengths, batch_tokens.max(1), usize::MAX) {
        batch.clear();
        for &i in &group {
            batch.push_typed(&pairs[i], type_ids.get(i).map_or(&[][..], Vec::as_slice));
        }
        let out = backend.forward(&batch)?;
        if out.len() != group.len() {
            return Err(Error::Internal(format!(
                "backend returned {} logits for {} sequences",
                out.len(),
                group.len()
            )));
        }
        for (&i, l) in group.iter().zip(out) {
            logits[i] = l;
        }
    }
    Ok(logits)
}

/// CPU logits of whole groups (queries) in order, until `deadline`: `(logits, groups done)`;
/// logits of pairs in unfinished groups are NaN. Consecutive groups are scored together in
/// chunks of about four batches.
pub fn score_groups_until(
    backend: &dyn Backend,
    pairs: &[Vec<u32>],
    groups: &[Vec<usize>],
    batch_tokens: usize,
    deadline: Option<Instant>,
) -> Result<(Vec<f32>, usize)> {
    score_typed_groups_until(backend, pairs, &[], groups, batch_tokens, deadline)
}

/// [`score_groups_until`] with segment ids (`type_ids` as [`score_typed_pairs`] takes them).
pub fn score_typed_groups_until(
    backend: &dyn Backend,
    pairs: &[Vec<u32>],
    type_ids: &[Vec<u32>],
    groups: &[Vec<usize>],
    batch_tokens: usize,
    deadline: Option<Instant>,
) -> Result<(Vec<f32>, usize)> {
    let mut logits = vec![f32::NAN; pairs.len()];
    let mut done = 0;
    while done < groups.len() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut end = done;
        let mut tokens = 0;
        while end < groups.len() && (end == done || tokens < 4 * batch_tokens) {
            tokens += groups[end].iter().map(|&i| pairs[i].len()).sum::<usize>();
            end += 1;
        }
        let idx: Vec<usize> = groups[done..end].iter().flatten().copied().collect();
        let chunk: Vec<Vec<u32>> = idx.iter().map(|&i| pairs[i].clone()).collect();
        let chunk_types: Vec<Vec<u32>> = if type_ids.is_empty() {
            Vec::new()
        } else {
            idx.iter().map(|&i| type_ids[i].clone()).collect()
        };
        for (i, l) in idx
            .iter()
            .zip(score_typed_pairs(backend, &chunk, &chunk_types, batch_tokens)?)
        {
            logits[*i] = l;
        }
        done = end;
    }
    Ok((logits, done))
}

/// Kendall's tau-a between two scorings of the same items (1 for fewer than 2 items).
pub fn kendall_tau(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len();
    if n < 2 {
        return 1.0;
    }
    let mut score = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let sa = (a[i] - a[j]).signum() as i64 * i64::from(a[i] != a[j]);
            let sb = (b[i] - b[j]).signum() as i64 * i64::from(b[i] != b[j]);
            score += sa * sb;
        }
    }
    score as f64 / (n * (n - 1) / 2) as f64
}

/// Index of the best logit (first on ties).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// The verify gate, against the fp16 twin of the CUDA path, calibrated on the pairs checked.
///
/// A pair passes when `|device - ref| <= abs + rel·|ref| + MAX_FACTOR·noise_max`, and the run
/// when also `mean |device - ref| <= abs + MEAN_FACTOR·noise_mean`, where `noise_*` are the
/// max and mean of `|twin in a second summation order - twin|` over the same pairs
/// ([`Gate::calibrated`]).
///
/// Why calibrated, from the measurements (tests/fp16_reference.rs, `measure_gate`; 2-core
/// CPU, the twin in its second summation order = every GEMM, q·k and P·V summed in two
/// halves, LayerNorm statistics in f64; "drift" = f32 reference vs the twin):
///
/// | checkpoint | order-only max / mean | fp16-vs-f32 drift max / mean |
/// |---|---|---|
/// | tests/fixtures/tiny, 30 pairs (24 short, 6 up to 640 tokens) | 1.6e-3 / 2.9e-4 | 2.6e-3 / 1.1e-3 |
/// | real-size random (gpu-run.sh make-checkpoint), 16 pairs 8..700 tokens | 2.7e-2 / 5.8e-3 | 1.9e-2 / 6.0e-3 |
///
/// An order-only difference flips the fp16 rounding of a fraction of the stored values (one
/// ulp each, where the fp16-vs-f32 drift moves every value by up to half an ulp). On the
/// tiny fixture that is 4x below the drift (in the mean); on the real-size random checkpoint
/// (attention scores with std ~2, 12 layers) every perturbation, order-only included, grows
/// to the same size as the whole fp16 drift: that checkpoint is chaotic. No fixed number
/// fits both: a gate wide enough for the real-size order noise (~3e-2) passes f32 logits and
/// small bugs on the tiny model, and one tight enough for the tiny model fails a correct GPU
/// on the real-size one. So the gate is measured on the pairs being checked: the GPU's own
/// differences from the twin are of the same kind (cuBLAS's and the kernels' summation
/// trees, exp2f/erff/tanhf ulps), so they fit within a small multiple of the twin's own
/// order-only spread, while a bug adds a systematic deviation on top. MAX_FACTOR 3 and
/// MEAN_FACTOR 2 leave room for the GPU having more order differences than the one
/// second order measured (the max over few pairs is noisy; the mean is stable); the floor
/// `abs + rel·|ref|` covers pairs where both CPU orders happen to agree. On the tiny fixture
/// this gate passes a third summation order, fails the f32 reference (by its mean) and fails
/// every deliberate bug of `Mutation::ALL` (tests/fp16_reference.rs). Measured deviation from
/// the twin, max / mean |Δlogit| (tiny: calibrated gate 4.9e-3 per pair, 6.7e-4 mean;
/// real-size: 8.0e-2 per pair, 1.2e-2 mean):
///
/// | | tiny | real-size |
/// |---|---|---|
/// | third summation order, 1 pair per batch, 1 thread | 1.9e-3 / 4.7e-4 (passes) | |
/// | f32 reference | 2.6e-3 / 1.1e-3 (fails, mean) | 1.9e-2 / 6.0e-3 (passes: chaotic) |
/// | keys rotated at p + 1 | 0.56 / 0.15 | 2.4 / 0.98 |
/// | o_proj bias dropped | 0.32 / 0.18 | 1.9 / 0.69 |
/// | LayerNorm eps 1e-2 | 2.9e-2 / 8.3e-3 | 0.14 / 3.4e-2 |
/// | last head zeroed | 1.6 / 0.43 | 3.9 / 1.5 |
/// | last 64-key tile skipped | 5.9e-2 / 5.7e-3 | 2.4 / 0.41 |
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    pub abs: f32,
    pub rel: f32,
    /// max |second order - twin| over the pairs (0: not calibrated).
    pub noise_max: f32,
    /// mean |second order - twin| over the pairs.
    pub noise_mean: f64,
}

/// Multiple of the order-only max allowed per pair.
pub const MAX_FACTOR: f32 = 3.0;
/// Multiple of the order-only mean allowed for the mean.
pub const MEAN_FACTOR: f64 = 2.0;

/// The floor of the gate (before calibration).
pub const FP16_GATE: Gate = Gate {
    abs: 1e-4,
    rel: 1e-4,
    noise_max: 0.0,
    noise_mean: 0.0,
};

impl Gate {
    /// `floor` widened by the order-only noise: `second_order` are the twin's logits in a
    /// second summation order, `reference` the twin's.
    pub fn calibrated(floor: Gate, reference: &[f32], second_order: &[f32]) -> Gate {
        let d: Vec<f32> = reference
            .iter()
            .zip(second_order)
            .map(|(r, a)| (r - a).abs())
            .filter(|d| d.is_finite())
            .collect();
        Gate {
            noise_max: d.iter().copied().fold(0.0, f32::max),
            noise_mean: if d.is_empty() {
                0.0
            } else {
                d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64
            },
            ..floor
        }
    }

    /// The largest |Δlogit| allowed for one pair against a reference logit.
    pub fn allowed(&self, reference: f32) -> f32 {
        self.abs + self.rel * reference.abs() + MAX_FACTOR * self.noise_max
    }

    /// The largest mean |Δlogit| allowed.
    pub fn mean_allowed(&self) -> f64 {
        self.abs as f64 + MEAN_FACTOR * self.noise_mean
    }
}

/// Pairs whose device logit is outside the gate around the reference (non-finite counts).
pub fn gate_excess(device: &[f32], reference: &[f32], gate: &Gate) -> usize {
    device
        .iter()
        .zip(reference)
        .filter(|(d, r)| {
            let e = (*d - *r).abs();
            e.is_nan() || e > gate.allowed(**r)
        })
        .count()
}

/// Mean |device - reference|.
pub fn mean_abs_difference(device: &[f32], reference: &[f32]) -> f64 {
    if device.is_empty() {
        return 0.0;
    }
    device
        .iter()
        .zip(reference)
        .map(|(d, r)| (d - r).abs() as f64)
        .sum::<f64>()
        / device.len() as f64
}

/// Whether `device` passes `gate` around `reference`: every pair, and the mean.
pub fn within_gate(device: &[f32], reference: &[f32], gate: &Gate) -> bool {
    gate_excess(device, reference, gate) == 0 && mean_abs_difference(device, reference) <= gate.mean_allowed()
}

/// Length buckets of the report: upper bounds (inclusive).
pub const BUCKETS: [usize; 4] = [128, 512, 2048, usize::MAX];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub pairs: usize,
    pub max_dlogit: f32,
    pub sum_dlogit: f64,
    pub max_dscore: f32,
}

impl Stats {
    fn add(&mut self, dlogit: f32, dscore: f32) {
        self.pairs += 1;
        self.max_dlogit = self.max_dlogit.max(dlogit);
        self.sum_dlogit += dlogit as f64;
        self.max_dscore = self.max_dscore.max(dscore);
    }

    pub fn mean_dlogit(&self) -> f64 {
        if self.pairs == 0 {
            0.0
        } else {
            self.sum_dlogit / self.pairs as f64
        }
    }
}

/// Everything `verify` reports.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub all: Stats,
    pub buckets: Vec<(usize, usize, Stats)>,
    /// (pair index, length, device logit, cpu logit) of the largest |Δlogit|.
    pub worst: (usize, usize, f32, f32),
    pub queries: usize,
    pub top1_agree: usize,
    /// Top-1 differs, but the two documents' CPU logits are within the tolerance.
    pub top1_near_ties: usize,
    pub top1_mismatch: usize,
    pub order_agree: usize,
    pub tau_mean: f64,
    pub tau_min: f64,
    /// A non-finite logit on either side.
    pub non_finite: usize,
    pub tolerance: f32,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.non_finite == 0 && self.all.max_dlogit <= self.tolerance && self.top1_mismatch == 0
    }
}

/// Compares device logits with CPU logits.
pub fn compare(
    device: &[f32],
    cpu: &[f32],
    lengths: &[usize],
    groups: &[Vec<usize>],
    activation: Activation,
    tolerance: f32,
) -> Comparison {
    let mut all = Stats::default();
    let mut lo = 1;
    let mut buckets: Vec<(usize, usize, Stats)> = BUCKETS
        .iter()
        .map(|&hi| {
            let b = (lo, hi, Stats::default());
            lo = hi.saturating_add(1);
            b
        })
        .collect();
    let mut worst = (0, 0, f32::NAN, f32::NAN);
    let mut non_finite = 0;
    for i in 0..device.len() {
        let (g, c) = (device[i], cpu[i]);
        if !g.is_finite() || !c.is_finite() {
            non_finite += 1;
            continue;
        }
        let dl = (g - c).abs();
        let ds = (activation.apply(g) - activation.apply(c)).abs();
        if dl > all.max_dlogit || all.pairs == 0 {
            worst = (i, lengths[i], g, c);
        }
        all.add(dl, ds);
        if let Some(b) = buckets.iter_mut().find(|b| lengths[i] <= b.1) {
            b.2.add(dl, ds);
        }
    }
    buckets.retain(|b| b.2.pairs > 0);

    let (mut top1_agree, mut top1_near_ties, mut top1_mismatch, mut order_agree) = (0, 0, 0, 0);
    let (mut tau_sum, mut tau_min) = (0.0, 1.0f64);
    for group in groups {
        let g: Vec<f32> = group.iter().map(|&i| device[i]).collect();
        let c: Vec<f32> = group.iter().map(|&i| cpu[i]).collect();
        let (bg, bc) = (argmax(&g), argmax(&c));
        if bg == bc {
            top1_agree += 1;
        } else if (c[bc] - c[bg]).abs() <= tolerance {
            top1_near_ties += 1;
        } else {
            top1_mismatch += 1;
        }
        let tau = kendall_tau(&g, &c);
        if tau >= 1.0 {
            order_agree += 1;
        }
        tau_sum += tau;
        tau_min = tau_min.min(tau);
    }
    Comparison {
        all,
        buckets,
        worst,
        queries: groups.len(),
        top1_agree,
        top1_near_ties,
        top1_mismatch,
        order_agree,
        tau_mean: if groups.is_empty() {
            1.0
        } else {
            tau_sum / groups.len() as f64
        },
        tau_min,
        non_finite,
        tolerance,
    }
}

fn bucket_name(lo: usize, hi: usize) -> String {
    if hi == usize::MAX {
        format!("{lo}+")
    } else {
        format!("{lo}..{hi}")
    }
}

/// The verify report of one comparison (device against one reference).
fn comparison_json(c: &Comparison) -> serde_json::Value {
    let buckets: Vec<_> = c
        .buckets
        .iter()
        .map(|(lo, hi, s)| {
            json!({"tokens": bucket_name(*lo, *hi), "pairs": s.pairs, "max_abs_dlogit": s.max_dlogit,
                   "mean_abs_dlogit": s.mean_dlogit(), "max_abs_dscore": s.max_dscore})
        })
        .collect();
    json!({
        "pairs": c.all.pairs,
        "max_abs_dlogit": c.all.max_dlogit,
        "mean_abs_dlogit": c.all.mean_dlogit(),
        "max_abs_dscore": c.all.max_dscore,
        "non_finite": c.non_finite,
        "worst": {"pair": c.worst.0, "tokens": c.worst.1, "device_logit": c.worst.2, "cpu_logit": c.worst.3},
        "buckets": buckets,
        "queries": c.queries,
        "top1_agree": c.top1_agree,
        "top1_near_ties": c.top1_near_ties,
        "top1_mismatch": c.top1_mismatch,
        "order_agree": c.order_agree,
        "kendall_tau_mean": c.tau_mean,
        "kendall_tau_min": c.tau_min,
    })
}

/// One CPU reference run under the budget: logits, queries finished, seconds.
struct ReferenceRun {
    describe: String,
    logits: Vec<f32>,
    groups_done: usize,
    seconds: f64,
}

fn run_reference(
    backend: &dyn Backend,
    workload: &Workload,
    batch_tokens: usize,
    deadline: Option<Instant>,
) -> Result<ReferenceRun> {
    let t = Instant::now();
    let (logits, groups_done) = score_typed_groups_until(
        backend,
        &workload.pairs,
        &workload.type_ids,
        &workload.groups,
        batch_tokens,
        deadline,
    )?;
    Ok(ReferenceRun {
        describe: backend.describe(),
        logits,
        groups_done,
        seconds: t.elapsed().as_secs_f64(),
    })
}

pub fn run(args: VerifyOptions) -> Result<()> {
    let floor = Gate {
        abs: args.tolerance.unwrap_or(FP16_GATE.abs),
        rel: args.rel_tolerance.unwrap_or(FP16_GATE.rel),
        ..FP16_GATE
    };
    if floor.abs.is_nan() || floor.abs <= 0.0 {
        return Err(Error::InvalidArgument("--tolerance must be positive".into()));
    }
    if floor.rel.is_nan() || floor.rel < 0.0 {
        return Err(Error::InvalidArgument(
            "--rel-tolerance must be zero or positive".into(),
        ));
    }
    if args.precision == Some(Precision::F32) && args.device != Device::Cpu {
        return Err(Error::InvalidArgument(
            "--precision f32 needs --device cpu: the CUDA path is always fp16".into(),
        ));
    }
    let attention = match &args.attention {
        Some(a) => AttentionChoice::parse(Some(a))?,
        None => AttentionChoice::from_env()?,
    };
    let dir = resolve_model(&args.model)?;
    let files = ModelFiles::open(&dir, args.max_length)?;
    let workload = match &args.input {
        Some(path) => file_workload(path, args.format.as_deref(), &files.tokenizer)?,
        None => synthetic_from_tokenizer(&files.tokenizer, &args)?,
    };
    let lengths: Vec<usize> = workload.pairs.iter().map(Vec::len).collect();
    let tokens: usize = lengths.iter().sum();
    let cfg = &files.config;
    let say = |msg: String| {
        if !args.json {
            eprintln!("crossrank verify: {msg}");
        }
    };
    say(format!(
        "{} ({} layers, hidden {}, {} heads x {}): {} pairs in {} queries from {}, {}..{} tokens, {} in all",
        dir.display(),
        cfg.num_layers,
        cfg.hidden_size,
        cfg.num_heads,
        cfg.head_dim,
        workload.pairs.len(),
        workload.groups.len(),
        workload.source,
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().max().unwrap_or(&0),
        tokens
    ));

    // The fp16 reference mirrors the attention kernel the GPU runs (flash when head_dim is 32
    // or 64).
    let twin_options = Fp16Options {
        threads: args.threads,
        attention: AttentionModel::like_gpu(attention, cfg.head_dim),
        mutation: Mutation::None,
        sum_order: SumOrder::Default,
    };
    let load_gpu = |index: usize| -> Result<(Box<dyn Backend>, usize)> {
        let options = GpuOptions {
            batch_tokens: args.batch_tokens,
            attention,
            kernels: KernelOrigin::from_env()?,
        };
        let model = cfg.family.load_cuda(Arc::clone(&files.tensors), index, &options)?;
        let batch = model.default_batch_tokens();
        Ok((model, batch))
    };
    let t0 = Instant::now();
    let (device, device_batch): (Box<dyn Backend>, usize) = match args.device {
        Device::Cpu => {
            let precision = args.precision.unwrap_or(Precision::Fp16);
            say(format!(
                "--device cpu --precision {}: checking the CPU against the CPU references (a self check of the gate logic)",
                precision.name()
            ));
            let backend: Box<dyn Backend> = match precision {
                Precision::F32 => cfg.family.load_cpu_f32(files.tensors.clone(), args.threads)?,
                Precision::Fp16 => cfg.family.load_cpu_twin(files.tensors.clone(), twin_options)?,
            };
            (backend, args.batch_tokens.unwrap_or(args.cpu_batch_tokens))
        }
        Device::Cuda(index) => load_gpu(index)?,
        Device::Auto => load_gpu(0)?,
    };
    let load_s = t0.elapsed().as_secs_f64();
    say(format!("device {} loaded in {load_s:.2} s", device.describe()));
    // Warm-up (JIT, cuBLAS heuristics) outside the timing.
    score_typed_pairs(
        device.as_ref(),
        &workload.pairs[..1],
        &workload.type_ids[..1],
        device_batch,
    )?;
    let t1 = Instant::now();
    let device_logits = score_typed_pairs(device.as_ref(), &workload.pairs, &workload.type_ids, device_batch)?;
    let device_s = t1.elapsed().as_secs_f64();
    say(format!(
        "device: {device_s:.2} s ({:.0} pairs/s, {:.0} tokens/s)",
        workload.pairs.len() as f64 / device_s,
        tokens as f64 / device_s
    ));

    // The gate's reference first, then the f32 reference with what is left of the budget.
    let deadline = args
        .cpu_budget
        .map(|s| Instant::now() + std::time::Duration::from_secs_f64(s));
    let twin = cfg.family.load_cpu_twin(files.tensors.clone(), twin_options)?;
    let fp16_run = run_reference(twin.as_ref(), &workload, args.cpu_batch_tokens, deadline)?;
    drop(twin);
    // The gate's calibration: the twin in a second summation order (see [`Gate`]).
    let second = cfg.family.load_cpu_twin(
        files.tensors.clone(),
        Fp16Options {
            sum_order: SumOrder::Alternate,
            ..twin_options
        },
    )?;
    let calibration_run = run_reference(second.as_ref(), &workload, args.cpu_batch_tokens, deadline)?;
    drop(second);
    let f32_run = if args.skip_f32 {
        None
    } else {
        let cpu = cfg.family.load_cpu_f32(files.tensors.clone(), args.threads)?;
        Some(run_reference(cpu.as_ref(), &workload, args.cpu_batch_tokens, deadline)?)
    };
    let requested = workload.pairs.len();
    let pairs_of = |groups_done: usize| workload.groups[..groups_done].iter().map(Vec::len).sum::<usize>();
    for r in [&fp16_run, &calibration_run].into_iter().chain(&f32_run) {
        say(format!(
            "{}: {:.2} s ({} of {requested} pairs{})",
            r.describe,
            r.seconds,
            pairs_of(r.groups_done),
            if r.groups_done < workload.groups.len() {
                ", stopped by --cpu-budget"
            } else {
                ""
            }
        ));
    }

    // Compare the queries the fp16 reference and its calibration finished; a short run fails.
    let groups_done = fp16_run.groups_done.min(calibration_run.groups_done);
    let groups = &workload.groups[..groups_done];
    let covered: Vec<usize> = groups.iter().flatten().copied().collect();
    let pick = |v: &[f32]| covered.iter().map(|&i| v[i]).collect::<Vec<f32>>();
    let local_groups: Vec<Vec<usize>> = {
        let mut next = 0;
        groups
            .iter()
            .map(|g| {
                let r = (next..next + g.len()).collect();
                next += g.len();
                r
            })
            .collect()
    };
    let covered_lengths: Vec<usize> = covered.iter().map(|&i| lengths[i]).collect();
    let (device_cov, fp16_cov) = (pick(&device_logits), pick(&fp16_run.logits));
    let gate = Gate::calibrated(floor, &fp16_cov, &pick(&calibration_run.logits));
    let cmp = compare(
        &device_cov,
        &fp16_cov,
        &covered_lengths,
        &local_groups,
        cfg.activation,
        gate.allowed(0.0),
    );
    let outside_gate = gate_excess(&device_cov, &fp16_cov, &gate);
    let mean_ok = cmp.all.mean_dlogit() <= gate.mean_allowed();
    // The f32 comparisons (information): device vs f32, and the fp16 reference's own drift.
    let f32_cmp = f32_run.as_ref().map(|r| {
        let done = &workload.groups[..r.groups_done.min(groups_done)];
        let idx: Vec<usize> = done.iter().flatten().copied().collect();
        let local: Vec<Vec<usize>> = {
            let mut next = 0;
            done.iter()
                .map(|g| {
                    let r = (next..next + g.len()).collect();
                    next += g.len();
                    r
                })
                .collect()
        };
        let lens: Vec<usize> = idx.iter().map(|&i| lengths[i]).collect();
        let at = |v: &[f32]| idx.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        let f32_logits = at(&r.logits);
        (
            compare(
                &at(&device_logits),
                &f32_logits,
                &lens,
                &local,
                cfg.activation,
                F32_NEAR_TIE,
            ),
            compare(
                &at(&fp16_run.logits),
                &f32_logits,
                &lens,
                &local,
                cfg.activation,
                F32_NEAR_TIE,
            ),
        )
    });
    let pairs_compared = covered.len();
    let f32_short = f32_run.as_ref().is_some_and(|r| r.groups_done < workload.groups.len());
    let passed = cmp.non_finite == 0
        && outside_gate == 0
        && mean_ok
        && cmp.top1_mismatch == 0
        && pairs_compared == requested
        && !f32_short;

    let gate_json = json!({"abs": gate.abs, "rel": gate.rel, "noise_max": gate.noise_max, "noise_mean": gate.noise_mean,
                 "max_factor": MAX_FACTOR, "mean_factor": MEAN_FACTOR, "allowed_at_zero": gate.allowed(0.0),
                 "mean_allowed": gate.mean_allowed(), "pairs_outside": outside_gate, "mean_ok": mean_ok,
                 "pass": outside_gate == 0 && mean_ok});
    let mut report = json!({
        "model": dir.display().to_string(),
        "device": device.describe(),
        "cpu": fp16_run.describe,
        "reference": "fp16",
        "source": workload.source,
        "pairs": requested,
        "pairs_requested": requested,
        "compared_pairs": pairs_compared,
        "pairs_compared": pairs_compared,
        "queries": cmp.queries,
        "tokens": tokens,
        "min_tokens": lengths.iter().min(),
        "max_tokens": lengths.iter().max(),
        "device_batch_tokens": device_batch,
        "device_seconds": device_s,
        "cpu_seconds": fp16_run.seconds,
        "cpu_f32_seconds": f32_run.as_ref().map(|r| r.seconds),
        "cpu_calibration_seconds": calibration_run.seconds,
        "load_seconds": load_s,
        "max_abs_dlogit": cmp.all.max_dlogit,
        "mean_abs_dlogit": cmp.all.mean_dlogit(),
        "max_abs_dscore": cmp.all.max_dscore,
        "non_finite": cmp.non_finite,
        "worst": {"pair": cmp.worst.0, "tokens": cmp.worst.1, "device_logit": cmp.worst.2, "cpu_logit": cmp.worst.3},
        "buckets": comparison_json(&cmp)["buckets"],
        "top1_agree": cmp.top1_agree,
        "top1_near_ties": cmp.top1_near_ties,
        "top1_mismatch": cmp.top1_mismatch,
        "order_agree": cmp.order_agree,
        "kendall_tau_mean": cmp.tau_mean,
        "kendall_tau_min": cmp.tau_min,
        "tolerance": gate.allowed(0.0),
        "gate": gate_json,
        "pass": passed,
    });
    report["fp16"] = comparison_json(&cmp);
    report["f32"] = json!(f32_cmp.as_ref().map(|(d, _)| comparison_json(d)));
    report["fp16_reference_vs_f32"] = json!(f32_cmp.as_ref().map(|(_, t)| comparison_json(t)));
    report["cpu_f32"] = json!(f32_run.as_ref().map(|r| r.describe.clone()));
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{report:#}\n")).map_err(|e| Error::io(path, e))?;
    }
    if args.json {
        println!("{report:#}");
    } else {
        println!(
            "device vs the fp16 reference (gate: |Δlogit| <= {:.1e} + {:.1e}·|logit| + {MAX_FACTOR}·{:.3e}, \
             mean <= {:.3e}; order-only noise max {:.3e}, mean {:.3e})",
            gate.abs,
            gate.rel,
            gate.noise_max,
            gate.mean_allowed(),
            gate.noise_max,
            gate.noise_mean
        );
        print_table(&cmp);
        println!(
            "gate           {outside_gate} of {pairs_compared} pairs outside; mean {:.3e} {} {:.3e}",
            cmp.all.mean_dlogit(),
            if mean_ok { "<=" } else { ">" },
            gate.mean_allowed()
        );
        if let Some((d, t)) = &f32_cmp {
            println!("\ndevice vs the f32 reference (information)");
            print_table(d);
            println!(
                "fp16 reference vs f32: max |Δlogit| {:.3e}, mean {:.3e}",
                t.all.max_dlogit,
                t.all.mean_dlogit()
            );
        }
        println!(
            "result         {} ({pairs_compared} of {requested} pairs compared)",
            if passed { "PASS" } else { "FAIL" }
        );
    }
    if passed {
        return Ok(());
    }
    let mut why = Vec::new();
    if pairs_compared < requested {
        why.push(format!(
            "only {pairs_compared} of {requested} pairs compared (--cpu-budget ran out)"
        ));
    }
    if f32_short {
        why.push("the f32 reference was stopped by --cpu-budget".into());
    }
    if cmp.non_finite > 0 {
        why.push(format!("{} non-finite logits", cmp.non_finite));
    }
    if !mean_ok {
        why.push(format!(
            "mean |Δlogit| {:.3e} above the gate's {:.3e}",
            cmp.all.mean_dlogit(),
            gate.mean_allowed()
        ));
    }
    if outside_gate > 0 {
        why.push(format!(
            "{outside_gate} pairs outside the gate (max |Δlogit| {:.3e} against the fp16 reference)",
            cmp.all.max_dlogit
        ));
    }
    if cmp.top1_mismatch > 0 {
        why.push(format!("{} queries with a different top-1 document", cmp.top1_mismatch));
    }
    Err(Error::Device(format!("verify failed: {}", why.join("; "))))
}

/// Top-1 near-tie width of the f32 comparison (information only: it gates nothing).
const F32_NEAR_TIE: f32 = 5e-3;

fn print_table(c: &Comparison) {
    println!(
        "{:<14} {:>7} {:>14} {:>15} {:>14}",
        "tokens", "pairs", "max |Δlogit|", "mean |Δlogit|", "max |Δscore|"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{:<14} {:>7} {:>14.3e} {:>15.3e} {:>14.3e}",
            name,
            s.pairs,
            s.max_dlogit,
            s.mean_dlogit(),
            s.max_dscore
        )
    };
    for (lo, hi, s) in &c.buckets {
        row(&bucket_name(*lo, *hi), s);
    }
    row("all", &c.all);
    println!(
        "worst pair     #{} ({} tokens): device {:+.6}, cpu {:+.6}",
        c.worst.0, c.worst.1, c.worst.2, c.worst.3
    );
    println!(
        "ranking        top-1 agrees on {}/{} queries ({} near ties within tolerance, {} real mismatches); \
         identical order {}/{}; Kendall tau mean {:.4}, min {:.4}",
        c.top1_agree, c.queries, c.top1_near_ties, c.top1_mismatch, c.order_agree, c.queries, c.tau_mean, c.tau_min
    );
    if c.non_finite > 0 {
        println!("non-finite     {} logits", c.non_finite);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_pairs_follow_the_template_and_lengths() {
        let (prefix, middle, suffix) = ([0u32], [2u32, 2], [2u32]);
        let w = synthetic_workload(&prefix, &middle, &suffix, 4..4000, 100, 8, 8, 2048, 0.1, 7).unwrap();
        assert_eq!(w.pairs.len(), 100);
        assert_eq!(w.groups.len(), 13);
        assert_eq!(w.groups.iter().map(Vec::len).sum::<usize>(), 100);
        assert!(w.groups[..12].iter().all(|g| g.len() == 8));
        assert_eq!(w.pairs[0].len(), 2048);
        assert_eq!(w.pairs[1].len(), 8);
        for p in &w.pairs {
            assert!((8..=2048).contains(&p.len()), "{}", p.len());
            assert_eq!(p[0], 0);
            assert_eq!(*p.last().unwrap(), 2);
            // Exactly the template's specials, the rest ordinary ids.
            assert_eq!(p.iter().filter(|&&t| t < 4).count(), 4);
            assert!(p.iter().all(|&t| t < 4000));
        }
        // Documents of a query share its ids.
        let q0: Vec<u32> = w.pairs[2][1..3].to_vec();
        assert_eq!(&w.pairs[3][1..3], &q0[..]);
        // Short-heavy: ~10% above 256 tokens, the rest log-uniform from 8 to 256.
        let long = w.pairs.iter().filter(|p| p.len() > 256).count();
        let short = w.pairs.iter().filter(|p| p.len() <= 64).count();
        assert!((4..=25).contains(&long) && short >= 40, "long {long} short {short}");
        let mean = w.pairs.iter().map(Vec::len).sum::<usize>() as f64 / 100.0;
        assert!(mean < 300.0, "mean length {mean}");
        // Seeded: same seed, same pairs; other seed, other pairs.
        let again = synthetic_workload(&prefix, &middle, &suffix, 4..4000, 100, 8, 8, 2048, 0.1, 7).unwrap();
        assert_eq!(again.pairs, w.pairs);
        let other = synthetic_workload(&prefix, &middle, &suffix, 4..4000, 100, 8, 8, 2048, 0.1, 8).unwrap();
        assert_ne!(other.pairs, w.pairs);
    }

    #[test]
    fn synthetic_bounds_are_checked() {
        assert!(synthetic_workload(&[0], &[2, 2], &[2], 4..10, 3, 2, 8, 6, 0.1, 0).is_err());
        assert!(synthetic_workload(&[0], &[2, 2], &[2], 4..4, 3, 2, 8, 16, 0.1, 0).is_err());
        // min below the template size is raised to it.
        let w = synthetic_workload(&[0], &[2, 2], &[2], 4..10, 3, 2, 1, 5, 0.1, 0).unwrap();
        assert!(w.pairs.iter().all(|p| p.len() == 5));
    }

    #[test]
    fn kendall_tau_cases() {
        assert_eq!(kendall_tau(&[1.0], &[5.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert!((kendall_tau(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
        // A tie on one side counts as neither concordant nor discordant.
        assert_eq!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn comparison_statistics_and_ranking() {
        let cpu = [1.0f32, 0.5, 0.0, -1.0, 2.0, 2.001];
        let dev = [1.001f32, 0.5, 0.002, -1.0, 2.0015, 2.0];
        let lengths = [10, 200, 600, 3000, 20, 20];
        let groups = vec![vec![0, 1, 2, 3], vec![4, 5]];
        let c = compare(&dev, &cpu, &lengths, &groups, Activation::Sigmoid, 5e-3);
        assert_eq!(c.all.pairs, 6);
        assert!((c.all.max_dlogit - 0.002).abs() < 1e-6, "{}", c.all.max_dlogit);
        assert_eq!(c.worst.0, 2);
        assert_eq!(c.buckets.len(), 4);
        assert_eq!(c.buckets[0].2.pairs, 3);
        assert_eq!(c.buckets[3].0, 2049);
        // Group 2: cpu prefers #5 by 1e-3, device #4: a near tie, not a failure.
        assert_eq!((c.top1_agree, c.top1_near_ties, c.top1_mismatch), (1, 1, 0));
        assert_eq!(c.order_agree, 1);
        assert!(c.passed());

        let strict = compare(&dev, &cpu, &lengths, &groups, Activation::Sigmoid, 5e-4);
        assert_eq!(strict.top1_mismatch, 1);
        assert!(!strict.passed());

        let nan = compare(&[f32::NAN], &[0.0], &[5], &[vec![0]], Activation::Identity, 1.0);
        assert_eq!(nan.non_finite, 1);
        assert!(!nan.passed());
    }

    /// Logit = sum of the ids: checks that results land on the right pairs.
    struct SumBackend;
    impl Backend for SumBackend {
        fn describe(&self) -> String {
            "sum".into()
        }
        fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
            Ok((0..batch.num_seqs())
                .map(|s| batch.token_ids[batch.seq_range(s)].iter().sum::<u32>() as f32)
                .collect())
        }
        fn default_batch_tokens(&self) -> usize {
            16
        }
    }

    #[test]
    fn scoring_keeps_input_order_and_stops_at_query_boundaries() {
        let pairs: Vec<Vec<u32>> = (0..30u32).map(|i| (0..1 + i % 7).map(|k| k + i).collect()).collect();
        let want: Vec<f32> = pairs.iter().map(|p| p.iter().sum::<u32>() as f32).collect();
        assert_eq!(score_pairs(&SumBackend, &pairs, 10).unwrap(), want);
        let groups: Vec<Vec<usize>> = (0..10).map(|g| (3 * g..3 * g + 3).collect()).collect();
        let (all, done) = score_groups_until(&SumBackend, &pairs, &groups, 4, None).unwrap();
        assert_eq!((all, done), (want.clone(), 10));
        let past = Instant::now();
        let (none, done) = score_groups_until(&SumBackend, &pairs, &groups, 4, Some(past)).unwrap();
        assert_eq!(done, 0);
        assert!(none.iter().all(|l| l.is_nan()));
    }

    /// Logit = sum over tokens of (segment id + 1) · 1000 + id: wrong segment ids show.
    struct SegmentBackend;
    impl Backend for SegmentBackend {
        fn describe(&self) -> String {
            "segments".into()
        }
        fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
            Ok((0..batch.num_seqs())
                .map(|s| {
                    let r = batch.seq_range(s);
                    batch.token_ids[r.clone()]
                        .iter()
                        .zip(&batch.token_type_ids[r])
                        .map(|(&id, &ty)| (ty + 1) * 1000 + id)
                        .sum::<u32>() as f32
                })
                .collect())
        }
        fn default_batch_tokens(&self) -> usize {
            16
        }
    }

    #[test]
    fn segment_ids_reach_the_backend_in_verify_workloads() {
        let template = PairTemplate {
            prefix: vec![101],
            middle: vec![102],
            suffix: vec![102],
            segments: Some(crate::tokenize::PairSegments {
                prefix: vec![0],
                query: 0,
                middle: vec![0],
                document: 1,
                suffix: vec![1],
            }),
        };
        let w = synthetic_workload_in(&template, 200..300, 12, 4, 5, 40, 0.0, 7).unwrap();
        assert_eq!(w.type_ids.len(), w.pairs.len());
        for (ids, types) in w.pairs.iter().zip(&w.type_ids) {
            assert_eq!(ids.len(), types.len());
            let sep = ids.iter().position(|&t| t == 102).unwrap();
            let want: Vec<u32> = (0..ids.len()).map(|i| u32::from(i > sep)).collect();
            assert_eq!(types, &want, "{ids:?}");
        }
        let want: Vec<f32> = w
            .pairs
            .iter()
            .zip(&w.type_ids)
            .map(|(p, t)| p.iter().zip(t).map(|(&id, &ty)| (ty + 1) * 1000 + id).sum::<u32>() as f32)
            .collect();
        assert_eq!(
            score_typed_pairs(&SegmentBackend, &w.pairs, &w.type_ids, 30).unwrap(),
            want
        );
        let (got, done) =
            score_typed_groups_until(&SegmentBackend, &w.pairs, &w.type_ids, &w.groups, 30, None).unwrap();
        assert_eq!((got, done), (want, w.groups.len()));
        // Without a segmented template every list is empty (all 0).
        let plain = synthetic_workload(&[0], &[2, 2], &[2], 5..50, 6, 3, 6, 20, 0.0, 1).unwrap();
        assert!(plain.type_ids.iter().all(Vec::is_empty));
    }

    #[test]
    fn splitmix_is_deterministic_and_in_range() {
        let mut a = SplitMix64(1);
        let mut b = SplitMix64(1);
        for _ in 0..100 {
            let x = a.range(5, 9);
            assert_eq!(x, b.range(5, 9));
            assert!((5..9).contains(&x));
            let f = a.next_f64();
            assert_eq!(f, b.next_f64());
            assert!((0.0..1.0).contains(&f));
        }
    }
}
