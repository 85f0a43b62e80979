//! Per-op timing of the forward pass: `CROSSRANK_PROFILE=1` at backend creation (what
//! `crossrank bench --profile` sets).
//!
//! [`Profiler`] records one CUDA event before the batch's first op and one after each op, all
//! on the model's one stream, with no synchronization inside the forward: the time of op `i`
//! is the device time between event `i` and event `i + 1`. The events are resolved after the
//! batch's final stream synchronization (the one that makes the logits readable anyway) and
//! added to [`OpTotals`], which turns into the [`ProfileReport`] of
//! [`crate::model::Backend::profile_report`]. Events are pooled and reused across batches.
//!
//! Without the variable, `GpuModel` holds no profiler and records nothing (one `Option`
//! check per op).
//!
//! A batch that ran the GEMM autotuner (`CROSSRANK_GEMM_TUNE=1`) is left out of the totals
//! ([`Profiler::discard`]): its GEMM intervals hold the tuning runs.

use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};

use crate::cuda::runtime::DeviceResultExt;
use crate::error::{Error, Result};
use crate::model::{OpTime, ProfileReport};

/// `CROSSRANK_PROFILE`.
pub const PROFILE_ENV: &str = "CROSSRANK_PROFILE";

/// What the forward pass is made of, in the order it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// token ids, positions, cu_seqlens in one copy; the error flag cleared.
    HostToDevice,
    Embedding,
    QkvGemm,
    QkvBiasRope,
    /// The QKV bias of encoders without RoPE (`add_bias_rows`).
    QkvBias,
    /// Full attention (flash or reference) of every layer that computes all rows.
    Attention,
    OProjGemm,
    /// bias + residual + LayerNorm after attention.
    AttnLayerNorm,
    UpGateGemm,
    GatedGelu,
    /// The plain MLP's up GEMM (hidden → intermediate) and its bias + GELU.
    UpGemm,
    BiasGelu,
    DownGemm,
    /// bias + residual + LayerNorm after the MLP.
    MlpLayerNorm,
    /// Last layer: the CLS query of each sequence against all its keys.
    ClsAttention,
    /// Last layer on the CLS rows only: o_proj GEMM, residual LayerNorm, MLP.
    ClsRows,
    /// Pooler + classifier.
    Head,
    /// logits and the error flag.
    DeviceToHost,
}

impl Op {
    pub const ALL: [Op; 18] = [
        Op::HostToDevice,
        Op::Embedding,
        Op::QkvGemm,
        Op::QkvBiasRope,
        Op::QkvBias,
        Op::Attention,
        Op::OProjGemm,
        Op::AttnLayerNorm,
        Op::UpGateGemm,
        Op::GatedGelu,
        Op::UpGemm,
        Op::BiasGelu,
        Op::DownGemm,
        Op::MlpLayerNorm,
        Op::ClsAttention,
        Op::ClsRows,
        Op::Head,
        Op::DeviceToHost,
    ];

    /// The name in the profile report.
    pub fn name(self) -> &'static str {
        match self {
            Op::HostToDevice => "h2d_copy",
            Op::Embedding => "embedding_layernorm",
            Op::QkvGemm => "gemm_qkv",
            Op::QkvBiasRope => "qkv_bias_rope",
            Op::QkvBias => "qkv_bias",
            Op::Attention => "attention",
            Op::OProjGemm => "gemm_o_proj",
            Op::AttnLayerNorm => "residual_layernorm_attn",
            Op::UpGateGemm => "gemm_up_gate",
            Op::GatedGelu => "gated_gelu",
            Op::UpGemm => "gemm_up",
            Op::BiasGelu => "bias_gelu",
            Op::DownGemm => "gemm_down",
            Op::MlpLayerNorm => "residual_layernorm_mlp",
            Op::ClsAttention => "last_layer_attention_cls",
            Op::ClsRows => "last_layer_cls_rows",
            Op::Head => "cls_pooler_classifier",
            Op::DeviceToHost => "d2h_copy",
        }
    }

    /// Host↔device copies (the report's `copy_seconds`).
    pub fn is_copy(self) -> bool {
        matches!(self, Op::HostToDevice | Op::DeviceToHost)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-op totals over the batches profiled so far: pure host bookkeeping.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpTotals {
    calls: [u64; Op::ALL.len()],
    seconds: [f64; Op::ALL.len()],
    /// Batches added.
    pub batches: u64,
    /// Batches left out (they ran the autotuner, see [`Profiler::discard`]).
    pub discarded: u64,
    /// Extra host-measured entries (e.g. the autotuner's wall time): `(name, calls, seconds)`.
    extra: Vec<(String, u64, f64)>,
}

impl OpTotals {
    /// Adds one timed interval.
    pub fn add(&mut self, op: Op, seconds: f64) {
        self.calls[op.index()] += 1;
        self.seconds[op.index()] += seconds;
    }

    /// Adds the intervals of one batch and counts the batch.
    pub fn add_batch(&mut self, intervals: impl IntoIterator<Item = (Op, f64)>) {
        for (op, s) in intervals {
            self.add(op, s);
        }
        self.batches += 1;
    }

    /// Sets an extra entry shown with the ops (replaced when the name exists).
    pub fn set_extra(&mut self, name: &str, calls: u64, seconds: f64) {
        match self.extra.iter_mut().find(|(n, _, _)| n == name) {
            Some(e) => (e.1, e.2) = (calls, seconds),
            None => self.extra.push((name.to_string(), calls, seconds)),
        }
    }

    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()]
    }

    pub fn seconds(&self, op: Op) -> f64 {
        self.seconds[op.index()]
    }

    /// Device time of every op added, copies included.
    pub fn total_seconds(&self) -> f64 {
        self.seconds.iter().sum()
    }

    /// The report: ops that ran, slowest first (ties by name), extras among them;
    /// `copy_seconds` = both copies.
    pub fn report(&self) -> ProfileReport {
        let mut ops: Vec<OpTime> = Op::ALL
            .iter()
            .filter(|op| self.calls(**op) > 0)
            .map(|&op| OpTime {
                name: op.name().to_string(),
                calls: self.calls(op),
                seconds: self.seconds(op),
            })
            .chain(self.extra.iter().map(|(name, calls, seconds)| OpTime {
                name: name.clone(),
                calls: *calls,
                seconds: *seconds,
            }))
            .collect();
        ops.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.name.cmp(&b.name)));
        let copy: f64 = Op::ALL
            .iter()
            .filter(|op| op.is_copy())
            .map(|&op| self.seconds(op))
            .sum();
        ProfileReport {
            copy_seconds: Some(copy),
            ops,
        }
    }
}

/// The op of each interval of one batch: interval `i` lies between event `i` and event
/// `i + 1`. Pure bookkeeping, separate from the events so it can be tested on the CPU.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Events recorded in this batch (0 before [`Timeline::begin`]).
    recorded: usize,
    marks: Vec<Op>,
}

impl Timeline {
    /// Starts a batch: the next event recorded is the start event.
    pub fn begin(&mut self) {
        self.recorded = 0;
        self.marks.clear();
    }

    /// Index of the event to record for the start of the batch, or after `op`.
    fn next_event(&mut self, op: Option<Op>) -> Result<usize> {
        match op {
            None if self.recorded != 0 => return Err(Error::Internal("profiler: batch started twice".into())),
            Some(_) if self.recorded == 0 => return Err(Error::Internal("profiler: op marked before begin".into())),
            Some(op) => self.marks.push(op),
            None => {}
        }
        self.recorded += 1;
        Ok(self.recorded - 1)
    }

    /// `(op, start event, end event)` of every interval of the batch.
    pub fn intervals(&self) -> impl Iterator<Item = (Op, usize, usize)> + '_ {
        self.marks.iter().enumerate().map(|(i, &op)| (op, i, i + 1))
    }

    pub fn events(&self) -> usize {
        self.recorded
    }
}

/// Records the events of one batch at a time and accumulates their intervals.
pub struct Profiler {
    ctx: Arc<CudaContext>,
    pool: Vec<CudaEvent>,
    timeline: Timeline,
    totals: OpTotals,
}

impl Profiler {
    pub fn new(ctx: Arc<CudaContext>) -> Self {
        Profiler {
            ctx,
            pool: Vec::new(),
            timeline: Timeline::default(),
            totals: OpTotals::default(),
        }
    }

    /// Records the start event of a batch (an unfinished earlier batch is dropped).
    pub fn begin(&mut self, stream: &CudaStream) -> Result<()> {
        self.timeline.begin();
        self.record(None, stream)
    }

    /// Records the end of `op` (= the start of the next one).
    pub fn mark(&mut self, op: Op, stream: &CudaStream) -> Result<()> {
        self.record(Some(op), stream)
    }

    fn record(&mut self, op: Option<Op>, stream: &CudaStream) -> Result<()> {
        let i = self.timeline.next_event(op)?;
        if i == self.pool.len() {
            let event = self
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .device(|| "profiler: creating a CUDA event".into())?;
            self.pool.push(event);
        }
        // SAFETY: the event is alive (owned by the pool) and belongs to the stream's context,
        // which the caller made current (GpuModel::forward_batch binds it first).
        unsafe { cudarc::driver::result::event::record(self.pool[i].cu_event(), stream.cu_stream()) }
            .device(|| "profiler: recording a CUDA event".into())
    }

    /// Adds the batch's intervals to the totals. Call after the stream was synchronized
    /// (every event recorded has completed).
    pub fn finish(&mut self) -> Result<()> {
        let mut intervals = Vec::with_capacity(self.timeline.marks.len());
        for (op, a, b) in self.timeline.intervals() {
            // SAFETY: both events were created by the pool and recorded on the same stream,
            // which the caller synchronized.
            let ms =
                unsafe { cudarc::driver::result::event::elapsed(self.pool[a].cu_event(), self.pool[b].cu_event()) }
                    .device(|| format!("profiler: reading the time of {}", op.name()))?;
            intervals.push((op, f64::from(ms) / 1e3));
        }
        self.totals.add_batch(intervals);
        self.timeline.begin();
        Ok(())
    }

    /// Leaves the current batch out of the totals.
    pub fn discard(&mut self) {
        self.totals.discarded += 1;
        self.timeline.begin();
    }

    pub fn totals_mut(&mut self) -> &mut OpTotals {
        &mut self.totals
    }

    pub fn report(&self) -> ProfileReport {
        self.totals.report()
    }
}

/// Parses an on/off environment value: unset, empty, `0`, `false`, `off`, `no` → false;
/// `1`, `true`, `on`, `yes` → true; anything else is an error naming the variable.
pub fn parse_flag(name: &str, value: Option<&str>) -> Result<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("0") | Some("false") | Some("off") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("on") | Some("yes") => Ok(true),
        Some(other) => Err(Error::InvalidArgument(format!(
            "{name}=`{other}`: expected 1/0 (or on/off, true/false, yes/no)"
        ))),
    }
}

/// `CROSSRANK_PROFILE` from the environment.
pub fn profile_from_env() -> Result<bool> {
    parse_flag(PROFILE_ENV, std::env::var(PROFILE_ENV).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_are_unique_and_ordered() {
        let names: std::collections::HashSet<_> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Op::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?}");
        }
        assert!(Op::HostToDevice.is_copy() && Op::DeviceToHost.is_copy());
        assert!(!Op::QkvGemm.is_copy());
    }

    #[test]
    fn totals_accumulate_across_batches_and_sort_slowest_first() {
        let mut t = OpTotals::default();
        assert_eq!(
            t.report(),
            ProfileReport {
                copy_seconds: Some(0.0),
                ops: vec![]
            }
        );
        t.add_batch([
            (Op::HostToDevice, 0.001),
            (Op::QkvGemm, 0.010),
            (Op::Attention, 0.004),
            (Op::QkvGemm, 0.011),
            (Op::DeviceToHost, 0.0005),
        ]);
        t.add_batch([(Op::HostToDevice, 0.002), (Op::QkvGemm, 0.009), (Op::Attention, 0.004)]);
        assert_eq!(t.batches, 2);
        assert_eq!(t.calls(Op::QkvGemm), 3);
        assert!((t.seconds(Op::QkvGemm) - 0.030).abs() < 1e-12);
        assert_eq!(t.calls(Op::Head), 0);
        let r = t.report();
        let names: Vec<&str> = r.ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["gemm_qkv", "attention", "h2d_copy", "d2h_copy"]);
        assert_eq!(r.ops[0].calls, 3);
        assert_eq!(r.ops[1].calls, 2);
        assert!((r.copy_seconds.unwrap() - 0.0035).abs() < 1e-12);
        assert!((t.total_seconds() - 0.0415).abs() < 1e-12);
    }

    #[test]
    fn equal_times_sort_by_name_and_extras_join_the_ops() {
        let mut t = OpTotals::default();
        t.add_batch([(Op::GatedGelu, 1.0), (Op::Embedding, 1.0)]);
        t.set_extra("gemm_autotune_wall", 4, 0.5);
        t.set_extra("gemm_autotune_wall", 5, 2.0);
        let r = t.report();
        let got: Vec<(&str, u64)> = r.ops.iter().map(|o| (o.name.as_str(), o.calls)).collect();
        assert_eq!(
            got,
            [("gemm_autotune_wall", 5), ("embedding_layernorm", 1), ("gated_gelu", 1)]
        );
        // Extras are not copies.
        assert_eq!(r.copy_seconds, Some(0.0));
    }

    #[test]
    fn timeline_pairs_each_mark_with_the_event_before_it() {
        let mut tl = Timeline::default();
        assert!(tl.next_event(Some(Op::Head)).is_err(), "mark before begin");
        tl.begin();
        assert_eq!(tl.next_event(None).unwrap(), 0);
        assert!(tl.next_event(None).is_err(), "begin twice");
        assert_eq!(tl.next_event(Some(Op::HostToDevice)).unwrap(), 1);
        assert_eq!(tl.next_event(Some(Op::Embedding)).unwrap(), 2);
        assert_eq!(tl.next_event(Some(Op::QkvGemm)).unwrap(), 3);
        assert_eq!(tl.events(), 4);
        let iv: Vec<_> = tl.intervals().collect();
        assert_eq!(
            iv,
            [(Op::HostToDevice, 0, 1), (Op::Embedding, 1, 2), (Op::QkvGemm, 2, 3)]
        );
        // A new batch reuses the event slots from 0.
        tl.begin();
        assert_eq!(tl.events(), 0);
        assert_eq!(tl.intervals().count(), 0);
        assert_eq!(tl.next_event(None).unwrap(), 0);
    }

    #[test]
    fn flags_parse_strictly() {
        for v in [None, Some(""), Some("0"), Some("off"), Some("False"), Some(" no ")] {
            assert!(!parse_flag("X", v).unwrap(), "{v:?}");
        }
        for v in [Some("1"), Some("on"), Some("TRUE"), Some("yes")] {
            assert!(parse_flag("X", v).unwrap(), "{v:?}");
        }
        match parse_flag("CROSSRANK_PROFILE", Some("2")) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("CROSSRANK_PROFILE"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
