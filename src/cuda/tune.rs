//! GEMM algorithm choice: `CROSSRANK_GEMM_TUNE=1` at backend creation (off by default until
//! measured on the H100).
//!
//! For each of the four GEMMs of a layer ([`GemmKind`]) and each token-count bucket
//! ([`token_bucket`]: the next power of two), the first GEMM that falls into the bucket is
//! tuned on the spot, on the real activations and weights it was about to multiply:
//!
//! 1. the default (`cublasGemmEx`, `CUBLAS_GEMM_DEFAULT`, what runs without tuning) and up to
//!    [`HEURISTIC_CANDIDATES`] cuBLASLt algorithms from `cublasLtMatmulAlgoGetHeuristic` for
//!    the exact size (see [`crate::cuda::lt`] for why not the `cublasGemmEx` algo enums) are
//!    timed with CUDA events ([`WARMUP_RUNS`] untimed runs, then the best of
//!    [`TRIALS`] trials of [`REPS`] back-to-back runs each); an algorithm that fails is skipped;
//! 2. the fastest wins, a cuBLASLt one only when it beats the default by more than
//!    [`WIN_MARGIN`] ([`pick_fastest`]);
//! 3. a cuBLASLt winner is verified: its output is compared with the default's on the same
//!    inputs ([`compare_outputs`]; every element, max |diff| within [`VERIFY_REL_TOL`] of
//!    the largest |output|, no NaN/Inf the default does not have); if it differs, the default
//!    is kept and the reason recorded;
//! 4. the choice is cached for (kind, bucket); later GEMMs of the bucket run it directly (a
//!    cuBLASLt algorithm is first checked with `cublasLtMatmulAlgoCheck` for each new row
//!    count; where it does not apply, or fails, the default runs instead and is counted).
//!
//! Every candidate computes the same product (fp16 in/out, fp32 accumulation), so the output
//! the model continues with is always right; only the time differs. The chosen algorithms and
//! their TFLOP/s appear in the backend's `describe()` line and, with profiling on, as the
//! `gemm_autotune_wall` entry of the profile (tuning batches are left out of the op times).

use std::collections::BTreeMap;
use std::time::Instant;

use cudarc::driver::{sys, CudaEvent, DevicePtr, DevicePtrMut};
use half::f16;

use crate::cuda::lt::{LtAlgo, LtAlgoInfo, LtHandle, LtPlan};
use crate::cuda::profile::parse_flag;
use crate::cuda::runtime::{DeviceResultExt, Gpu};
use crate::error::{Error, Result};

/// `CROSSRANK_GEMM_TUNE`.
pub const TUNE_ENV: &str = "CROSSRANK_GEMM_TUNE";
/// cuBLASLt heuristic results timed per (kind, bucket).
pub const HEURISTIC_CANDIDATES: usize = 8;
/// Smallest token bucket.
pub const MIN_BUCKET: usize = 256;
/// Untimed runs of each candidate before timing.
pub const WARMUP_RUNS: usize = 2;
/// Timed trials per candidate; the fastest trial counts.
pub const TRIALS: usize = 3;
/// Back-to-back runs per trial.
pub const REPS: usize = 5;
/// A cuBLASLt algorithm replaces the default only when this much faster (2%: below the
/// run-to-run spread, a "win" would be noise).
pub const WIN_MARGIN: f64 = 0.02;
/// Largest accepted max |tuned - default| as a fraction of the largest |default| output.
/// Two correct fp32-accumulating algorithms differ by a few fp16 ulps (2^-10 relative each);
/// a wrong one by O(1).
pub const VERIFY_REL_TOL: f32 = 1e-2;
/// Largest accepted ‖tuned - default‖₂ / ‖default‖₂. The max-based test alone is loose when a
/// few outlier channels set max |default| (activations have them at 10-100x the typical
/// value): an algorithm that got a K-chunk of ordinary elements wrong could pass it. Correct
/// algorithms differ by fp16 rounding, a few 1e-4 normwise.
pub const VERIFY_NORM_TOL: f64 = 2e-3;

/// `CROSSRANK_GEMM_TUNE` from the environment.
pub fn tune_from_env() -> Result<bool> {
    parse_flag(TUNE_ENV, std::env::var(TUNE_ENV).ok().as_deref())
}

/// The four GEMMs of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GemmKind {
    /// hidden → 3·hidden.
    Qkv,
    /// hidden → hidden.
    OProj,
    /// hidden → 2·intermediate.
    UpGate,
    /// intermediate → hidden.
    Down,
    /// hidden → intermediate: the up GEMM of a plain (ungated) MLP.
    Up,
}

impl GemmKind {
    /// The GEMMs of the gated-MLP (gte) forward.
    pub const ALL: [GemmKind; 4] = [GemmKind::Qkv, GemmKind::OProj, GemmKind::UpGate, GemmKind::Down];
    /// The GEMMs of the plain-MLP (BERT, XLM-RoBERTa) forward.
    pub const PLAIN_MLP: [GemmKind; 4] = [GemmKind::Qkv, GemmKind::OProj, GemmKind::Up, GemmKind::Down];

    pub fn name(self) -> &'static str {
        match self {
            GemmKind::Qkv => "qkv",
            GemmKind::OProj => "o_proj",
            GemmKind::UpGate => "up_gate",
            GemmKind::Down => "down",
            GemmKind::Up => "up",
        }
    }

    /// `(in_features, out_features)` for a model of this hidden and intermediate size.
    pub fn dims(self, hidden: usize, inter: usize) -> (usize, usize) {
        match self {
            GemmKind::Qkv => (hidden, 3 * hidden),
            GemmKind::OProj => (hidden, hidden),
            GemmKind::UpGate => (hidden, 2 * inter),
            GemmKind::Down => (inter, hidden),
            GemmKind::Up => (hidden, inter),
        }
    }
}

/// The token-count bucket of a GEMM with `n` rows: the next power of two, at least
/// [`MIN_BUCKET`]. A 16,384-token budget puts every full batch (a little under the budget)
/// into bucket 16384; the last layer's CLS rows (one per sequence) land in a small bucket.
pub fn token_bucket(n: usize) -> usize {
    n.max(1).next_power_of_two().max(MIN_BUCKET)
}

/// `2·n·in·out`.
pub fn gemm_flops(n: usize, in_features: usize, out_features: usize) -> f64 {
    2.0 * n as f64 * in_features as f64 * out_features as f64
}

/// What [`pick_fastest`] chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pick {
    Default,
    /// Index into the candidates.
    Candidate(usize),
}

/// The fastest candidate that ran (`Some(seconds)`), if it beats `default_s` by more than
/// `margin` (a fraction), else the default. Ties between candidates go to the earlier one
/// (the heuristic's better-ranked).
pub fn pick_fastest(default_s: f64, candidates: &[Option<f64>], margin: f64) -> Pick {
    let best = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.filter(|t| t.is_finite() && *t > 0.0).map(|t| (i, t)))
        .fold(None::<(usize, f64)>, |best, (i, t)| match best {
            Some((_, bt)) if bt <= t => best,
            _ => Some((i, t)),
        });
    match best {
        Some((i, t)) if !(default_s.is_finite() && default_s > 0.0) || t < default_s * (1.0 - margin) => {
            Pick::Candidate(i)
        }
        _ => Pick::Default,
    }
}

/// How a tuned GEMM's output differs from the default's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutputDiff {
    pub len: usize,
    /// max |got - reference| over the elements where both are finite.
    pub max_abs: f32,
    /// max |reference| over its finite elements.
    pub max_ref: f32,
    /// Elements where exactly one of the two is finite, or both are non-finite but differ.
    pub nonfinite_mismatch: usize,
    /// Bit-identical elements.
    pub identical: usize,
    /// Σ (got - reference)² and Σ reference² over the elements where both are finite.
    pub sum_sq_diff: f64,
    pub sum_sq_ref: f64,
}

impl OutputDiff {
    /// Within [`VERIFY_REL_TOL`] of the largest output (a 1e-3 floor for all-tiny outputs),
    /// and no NaN/Inf mismatch.
    /// Also within [`VERIFY_NORM_TOL`] normwise (or an RMS difference below 1e-5).
    pub fn acceptable(&self) -> bool {
        self.nonfinite_mismatch == 0
            && self.max_abs <= VERIFY_REL_TOL * self.max_ref.max(1e-3)
            && self.sum_sq_diff.sqrt()
                <= (VERIFY_NORM_TOL * self.sum_sq_ref.sqrt()).max(1e-5 * (self.len as f64).sqrt())
    }
}

impl std::fmt::Display for OutputDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max |diff| {:.3e} (max |out| {:.3e}), normwise {:.2e}, {:.1}% bit-identical, {} NaN/Inf mismatches",
            self.max_abs,
            self.max_ref,
            self.sum_sq_diff.sqrt() / self.sum_sq_ref.sqrt().max(1e-30),
            100.0 * self.identical as f64 / self.len.max(1) as f64,
            self.nonfinite_mismatch
        )
    }
}

/// Compares two fp16 outputs element by element (lengths must match).
pub fn compare_outputs(reference: &[f16], got: &[f16]) -> OutputDiff {
    assert_eq!(reference.len(), got.len(), "compare_outputs: lengths differ");
    let mut d = OutputDiff {
        len: reference.len(),
        ..OutputDiff::default()
    };
    for (r, g) in reference.iter().zip(got) {
        if r.to_bits() == g.to_bits() {
            d.identical += 1;
        }
        let (rf, gf) = (r.to_f32(), g.to_f32());
        match (rf.is_finite(), gf.is_finite()) {
            (true, true) => {
                d.max_abs = d.max_abs.max((rf - gf).abs());
                d.max_ref = d.max_ref.max(rf.abs());
                d.sum_sq_diff += f64::from(rf - gf).powi(2);
                d.sum_sq_ref += f64::from(rf).powi(2);
            }
            (false, false) if r.to_bits() == g.to_bits() || (rf.is_nan() && gf.is_nan()) => {}
            _ => d.nonfinite_mismatch += 1,
        }
    }
    d
}

/// The algorithm chosen for one (kind, bucket).
#[derive(Clone, Debug)]
pub struct GemmChoice {
    pub kind: GemmKind,
    pub bucket: usize,
    /// Rows of the GEMM it was tuned on.
    pub n_tuned: usize,
    pub in_features: usize,
    pub out_features: usize,
    /// Seconds per run of the default.
    pub default_seconds: f64,
    /// The cuBLASLt algorithm and its seconds per run; `None`: the default.
    pub lt: Option<(LtAlgo, f64)>,
    /// Candidates timed, and how many of them failed to run.
    pub tried: usize,
    pub failed: usize,
    /// The verification of a cuBLASLt winner (also when it was rejected).
    pub verify: Option<OutputDiff>,
    /// Why the default was kept, when a candidate was faster.
    pub note: Option<String>,
    /// `(rows, applicable)` of the last `cublasLtMatmulAlgoCheck`.
    last_check: Option<(usize, bool)>,
}

impl GemmChoice {
    pub fn seconds(&self) -> f64 {
        self.lt.as_ref().map_or(self.default_seconds, |(_, s)| *s)
    }

    fn flops(&self) -> f64 {
        gemm_flops(self.n_tuned, self.in_features, self.out_features)
    }

    /// TFLOP/s of the chosen algorithm at the tuned size.
    pub fn tflops(&self) -> f64 {
        self.flops() / self.seconds() / 1e12
    }

    pub fn default_tflops(&self) -> f64 {
        self.flops() / self.default_seconds / 1e12
    }

    /// `qkv@16384 lt#21/t18/s9/k1 612 TF (default 570 TF)` or `o_proj@16384 default 480 TF`.
    pub fn summary(&self) -> String {
        let head = format!("{}@{}", self.kind.name(), self.bucket);
        match &self.lt {
            Some((algo, _)) => format!(
                "{head} {} {:.0} TF (default {:.0} TF)",
                algo.info.short(),
                self.tflops(),
                self.default_tflops()
            ),
            None => format!("{head} default {:.0} TF", self.default_tflops()),
        }
    }

    /// One line with everything: sizes, timings, verification, note.
    pub fn detail(&self) -> String {
        let mut s = format!(
            "GEMM autotune {} n={} (bucket {}, {}->{}): default {:.1} us ({:.0} TF)",
            self.kind.name(),
            self.n_tuned,
            self.bucket,
            self.in_features,
            self.out_features,
            self.default_seconds * 1e6,
            self.default_tflops()
        );
        match &self.lt {
            Some((algo, secs)) => s.push_str(&format!(
                "; chosen {} {:.1} us ({:.0} TF, {:+.1}%)",
                algo.info,
                secs * 1e6,
                self.tflops(),
                100.0 * (self.default_seconds / secs - 1.0)
            )),
            None => s.push_str("; chosen: default"),
        }
        s.push_str(&format!("; {} candidates timed, {} failed", self.tried, self.failed));
        if let Some(v) = &self.verify {
            s.push_str(&format!("; verify: {v}"));
        }
        if let Some(note) = &self.note {
            s.push_str(&format!("; {note}"));
        }
        s
    }
}

/// Every candidate's timing from one [`GemmTuner::sweep`].
#[derive(Clone, Debug)]
pub struct Sweep {
    pub default_seconds: f64,
    /// Heuristic order; `None`: failed to run.
    pub candidates: Vec<(LtAlgoInfo, Option<f64>)>,
    pub choice: GemmChoice,
}

/// The autotuner and its cache (owned by the model, behind its mutex).
pub struct GemmTuner {
    lt: LtHandle,
    choices: BTreeMap<(GemmKind, usize), GemmChoice>,
    /// Recently used descriptors (a few sizes per batch).
    plans: Vec<LtPlan>,
    /// Print each tuning result on stderr.
    pub verbose: bool,
    /// Host wall time spent tuning (timing and verification), and how many tunings.
    pub tune_seconds: f64,
    pub tunings: u64,
    /// GEMMs that ran the default because the chosen algorithm did not apply or failed.
    pub fallbacks: u64,
}

const PLAN_CACHE: usize = 8;

impl GemmTuner {
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(GemmTuner {
            lt: LtHandle::new(gpu)?,
            choices: BTreeMap::new(),
            plans: Vec::new(),
            verbose: false,
            tune_seconds: 0.0,
            tunings: 0,
            fallbacks: 0,
        })
    }

    /// The cached choices, by kind then bucket.
    pub fn choices(&self) -> impl Iterator<Item = &GemmChoice> {
        self.choices.values()
    }

    /// `; `-separated [`GemmChoice::summary`] of every choice, or `nothing tuned yet`.
    pub fn summary(&self) -> String {
        if self.choices.is_empty() {
            return "nothing tuned yet".into();
        }
        let mut s = self.choices().map(GemmChoice::summary).collect::<Vec<_>>().join("; ");
        if self.fallbacks > 0 {
            s.push_str(&format!("; {} fallbacks to default", self.fallbacks));
        }
        s
    }

    fn plan_index(&mut self, n: usize, in_features: usize, out_features: usize) -> Result<usize> {
        if let Some(i) = self
            .plans
            .iter()
            .position(|p| (p.n, p.in_features, p.out_features) == (n, in_features, out_features))
        {
            return Ok(i);
        }
        if self.plans.len() >= PLAN_CACHE {
            self.plans.remove(0);
        }
        self.plans.push(LtPlan::new(n, in_features, out_features)?);
        Ok(self.plans.len() - 1)
    }

    /// `y = x · wᵀ` with the choice for `(kind, token_bucket(n))`, tuning it first when the
    /// bucket has none. Returns whether it tuned (the caller's profile drops that batch).
    #[allow(clippy::too_many_arguments)]
    pub fn linear<Y: DevicePtr<f16> + DevicePtrMut<f16>>(
        &mut self,
        gpu: &Gpu,
        kind: GemmKind,
        x: &impl DevicePtr<f16>,
        w: &impl DevicePtr<f16>,
        y: &mut Y,
        n: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<bool> {
        if n == 0 || out_features == 0 {
            return Ok(false);
        }
        let key = (kind, token_bucket(n));
        let mut tuned = false;
        let stale = self
            .choices
            .get(&key)
            .is_some_and(|c| (c.in_features, c.out_features) != (in_features, out_features));
        if stale || !self.choices.contains_key(&key) {
            let sweep = self.sweep(gpu, kind, x, w, y, n, in_features, out_features)?;
            if self.verbose {
                eprintln!("[crossrank] {}", sweep.choice.detail());
            }
            self.choices.insert(key, sweep.choice);
            tuned = true;
        }
        let algo = self.choices.get(&key).and_then(|c| c.lt.as_ref().map(|(a, _)| *a));
        let Some(algo) = algo else {
            gpu.linear(x, w, y, n, in_features, out_features)?;
            return Ok(tuned);
        };
        let p = self.plan_index(n, in_features, out_features)?;
        let choice = self.choices.get_mut(&key).expect("choice inserted above");
        let applicable = match choice.last_check {
            _ if n == choice.n_tuned => true,
            Some((rows, ok)) if rows == n => ok,
            _ => {
                let ok = self.lt.supports(&self.plans[p], &algo);
                choice.last_check = Some((n, ok));
                ok
            }
        };
        if applicable && self.lt.matmul(gpu, &self.plans[p], &algo, x, w, y).is_ok() {
            return Ok(tuned);
        }
        self.fallbacks += 1;
        gpu.linear(x, w, y, n, in_features, out_features)?;
        Ok(tuned)
    }

    /// Times the default and every heuristic candidate for this exact GEMM, picks and
    /// verifies as the module docs say. `y` holds some candidate's (correct) output after.
    #[allow(clippy::too_many_arguments)]
    pub fn sweep<Y: DevicePtr<f16> + DevicePtrMut<f16>>(
        &mut self,
        gpu: &Gpu,
        kind: GemmKind,
        x: &impl DevicePtr<f16>,
        w: &impl DevicePtr<f16>,
        y: &mut Y,
        n: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Sweep> {
        let t0 = Instant::now();
        let p = self.plan_index(n, in_features, out_features)?;
        let timer = Timer::new(gpu)?;
        let default_seconds = timer.time(gpu, || gpu.linear(x, w, &mut *y, n, in_features, out_features))?;
        let algos = match self.lt.heuristics(&self.plans[p], HEURISTIC_CANDIDATES) {
            Ok(a) => a,
            Err(Error::DeviceOutOfMemory(m)) => return Err(Error::DeviceOutOfMemory(m)),
            Err(_) => Vec::new(),
        };
        let mut timings = Vec::with_capacity(algos.len());
        for algo in &algos {
            let lt = &self.lt;
            let plan = &self.plans[p];
            timings.push(timer.time(gpu, || lt.matmul(gpu, plan, algo, x, w, &mut *y)).ok());
        }
        let mut choice = GemmChoice {
            kind,
            bucket: token_bucket(n),
            n_tuned: n,
            in_features,
            out_features,
            default_seconds,
            lt: None,
            tried: algos.len(),
            failed: timings.iter().filter(|t| t.is_none()).count(),
            verify: None,
            note: if algos.is_empty() {
                Some("cuBLASLt returned no algorithm".into())
            } else {
                None
            },
            last_check: None,
        };
        if let Pick::Candidate(i) = pick_fastest(default_seconds, &timings, WIN_MARGIN) {
            let algo = algos[i];
            let secs = timings[i].expect("picked candidates ran");
            let len = n * out_features;
            let mut reference = vec![f16::ZERO; len];
            let mut got = vec![f16::ZERO; len];
            gpu.linear(x, w, &mut *y, n, in_features, out_features)?;
            gpu.download_into(&*y, &mut reference)?;
            match self.lt.matmul(gpu, &self.plans[p], &algo, x, w, &mut *y) {
                Ok(()) => {
                    gpu.download_into(&*y, &mut got)?;
                    let diff = compare_outputs(&reference, &got);
                    choice.verify = Some(diff);
                    if diff.acceptable() {
                        choice.lt = Some((algo, secs));
                    } else {
                        choice.note = Some(format!(
                            "{} was {:.1}% faster but its output differs from the default's: kept the default",
                            algo.info.short(),
                            100.0 * (default_seconds / secs - 1.0)
                        ));
                    }
                }
                Err(e) => {
                    choice.note = Some(format!(
                        "{} failed when verified ({e}): kept the default",
                        algo.info.short()
                    ))
                }
            }
        }
        self.tune_seconds += t0.elapsed().as_secs_f64();
        self.tunings += 1;
        Ok(Sweep {
            default_seconds,
            candidates: algos.iter().map(|a| a.info).zip(timings).collect(),
            choice,
        })
    }
}

/// Times a GEMM with CUDA events on the GPU's stream.
struct Timer {
    start: CudaEvent,
    end: CudaEvent,
}

impl Timer {
    fn new(gpu: &Gpu) -> Result<Self> {
        let event = || {
            gpu.context()
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .device(|| "creating a CUDA event".into())
        };
        Ok(Timer {
            start: event()?,
            end: event()?,
        })
    }

    /// Seconds per run: [`WARMUP_RUNS`] untimed, then the fastest of [`TRIALS`] trials of
    /// [`REPS`] runs. The first error is returned (the candidate is then skipped).
    fn time(&self, gpu: &Gpu, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
        for _ in 0..WARMUP_RUNS {
            run()?;
        }
        let stream = gpu.stream();
        let mut best = f64::INFINITY;
        for _ in 0..TRIALS {
            self.start.record(stream).device(|| "recording a CUDA event".into())?;
            for _ in 0..REPS {
                run()?;
            }
            self.end.record(stream).device(|| "recording a CUDA event".into())?;
            let ms = self.start.elapsed_ms(&self.end).device(|| "timing a GEMM".into())?;
            best = best.min(f64::from(ms) / 1e3 / REPS as f64);
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_from_256() {
        assert_eq!(token_bucket(0), 256);
        assert_eq!(token_bucket(1), 256);
        assert_eq!(token_bucket(256), 256);
        assert_eq!(token_bucket(257), 512);
        assert_eq!(token_bucket(409), 512);
        assert_eq!(token_bucket(16000), 16384);
        assert_eq!(token_bucket(16384), 16384);
        assert_eq!(token_bucket(16385), 32768);
        // CLS rows (one per sequence of >= 3 tokens) never share a full batch's bucket above
        // the minimum.
        for n in [1000usize, 4096, 16384, 30000] {
            assert!(token_bucket(n / 3) < token_bucket(n), "{n}");
        }
    }

    #[test]
    fn kinds_have_the_real_model_shapes() {
        let dims: Vec<_> = GemmKind::ALL.iter().map(|k| (k.name(), k.dims(768, 3072))).collect();
        assert_eq!(
            dims,
            [
                ("qkv", (768, 2304)),
                ("o_proj", (768, 768)),
                ("up_gate", (768, 6144)),
                ("down", (3072, 768))
            ]
        );
        assert_eq!(gemm_flops(16384, 768, 6144), 2.0 * 16384.0 * 768.0 * 6144.0);
        // MiniLM-L-12: hidden 384, intermediate 1536.
        let plain: Vec<_> = GemmKind::PLAIN_MLP
            .iter()
            .map(|k| (k.name(), k.dims(384, 1536)))
            .collect();
        assert_eq!(
            plain,
            [
                ("qkv", (384, 1152)),
                ("o_proj", (384, 384)),
                ("up", (384, 1536)),
                ("down", (1536, 384))
            ]
        );
    }

    #[test]
    fn the_fastest_candidate_wins_only_by_a_margin() {
        let d = 100e-6;
        assert_eq!(pick_fastest(d, &[], WIN_MARGIN), Pick::Default);
        assert_eq!(pick_fastest(d, &[None, None], WIN_MARGIN), Pick::Default);
        // 1% faster: noise, keep the default.
        assert_eq!(pick_fastest(d, &[Some(99e-6)], WIN_MARGIN), Pick::Default);
        assert_eq!(pick_fastest(d, &[Some(97e-6)], WIN_MARGIN), Pick::Candidate(0));
        assert_eq!(
            pick_fastest(d, &[Some(97e-6), None, Some(90e-6), Some(95e-6)], WIN_MARGIN),
            Pick::Candidate(2)
        );
        // Ties go to the better-ranked (earlier) candidate.
        assert_eq!(
            pick_fastest(d, &[Some(90e-6), Some(90e-6)], WIN_MARGIN),
            Pick::Candidate(0)
        );
        // Nonsense timings never win.
        assert_eq!(
            pick_fastest(d, &[Some(0.0), Some(f64::NAN), Some(-1.0)], WIN_MARGIN),
            Pick::Default
        );
        // A default that could not be timed loses to any candidate that ran.
        assert_eq!(
            pick_fastest(f64::INFINITY, &[None, Some(1e-3)], WIN_MARGIN),
            Pick::Candidate(1)
        );
    }

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().map(|&x| f16::from_f32(x)).collect()
    }

    #[test]
    fn output_comparison_accepts_rounding_and_rejects_garbage() {
        let reference = h(&[1.0, -4.0, 0.5, 3.0]);
        let same = compare_outputs(&reference, &reference);
        assert_eq!(same.identical, 4);
        assert_eq!(same.max_abs, 0.0);
        assert_eq!(same.max_ref, 4.0);
        assert!(same.acceptable());

        // One fp16 ulp at 4 (2^-8): summation-order rounding.
        let ulp = h(&[1.0, -4.0 - 1.0 / 256.0, 0.5, 3.0]);
        let d = compare_outputs(&reference, &ulp);
        assert_eq!(d.identical, 3);
        assert!((d.max_abs - 1.0 / 256.0).abs() < 1e-6);
        assert!(d.acceptable(), "{d}");

        // A wrong tile: O(1) errors.
        let wrong = h(&[1.0, -4.0, 0.5, 0.0]);
        let d = compare_outputs(&reference, &wrong);
        assert!(!d.acceptable(), "{d}");

        // NaN where the default is finite.
        let nan = h(&[1.0, f32::NAN, 0.5, 3.0]);
        let d = compare_outputs(&reference, &nan);
        assert_eq!(d.nonfinite_mismatch, 1);
        assert!(!d.acceptable());

        // The same overflow in both is not a mismatch; opposite infinities are.
        let inf = h(&[f32::INFINITY, 1.0]);
        assert!(compare_outputs(&inf, &inf).acceptable());
        assert_eq!(
            compare_outputs(&inf, &h(&[f32::NEG_INFINITY, 1.0])).nonfinite_mismatch,
            1
        );

        // An outlier channel sets max |default| to 100: a wrong ordinary element (0.9 off) passes
        // the max-based test but not the normwise one.
        let mut outlier = vec![1.0f32; 64];
        outlier[7] = 100.0;
        let mut off = outlier.clone();
        off[20] = 0.1;
        let d = compare_outputs(&h(&outlier), &h(&off));
        assert!(d.max_abs <= VERIFY_REL_TOL * d.max_ref, "{d}");
        assert!(!d.acceptable(), "{d}");

        // All-zero outputs (tiny values): the 1e-3 floor keeps the tolerance sane.
        let zeros = h(&[0.0, 0.0]);
        assert!(compare_outputs(&zeros, &h(&[0.0, 5e-6])).acceptable());
        assert!(!compare_outputs(&zeros, &h(&[0.0, 0.5])).acceptable());
    }

    #[test]
    fn choice_summaries() {
        let c = GemmChoice {
            kind: GemmKind::UpGate,
            bucket: 16384,
            n_tuned: 16000,
            in_features: 768,
            out_features: 6144,
            default_seconds: 300e-6,
            lt: None,
            tried: 8,
            failed: 1,
            verify: None,
            note: None,
            last_check: None,
        };
        let tf = gemm_flops(16000, 768, 6144) / 300e-6 / 1e12;
        assert!((c.tflops() - tf).abs() < 1e-9);
        assert_eq!(c.summary(), format!("up_gate@16384 default {tf:.0} TF"));
        let d = c.detail();
        assert!(d.contains("up_gate n=16000 (bucket 16384, 768->6144)"), "{d}");
        assert!(d.contains("chosen: default; 8 candidates timed, 1 failed"), "{d}");
        assert_eq!(c.seconds(), 300e-6);
    }

    #[test]
    fn tune_flag_parsing_names_the_variable() {
        match parse_flag(TUNE_ENV, Some("fast")) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(TUNE_ENV), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_flag(TUNE_ENV, Some("1")).unwrap());
    }
}
