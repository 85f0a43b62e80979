//! Backends: the things that turn a [`PackedBatch`] into one logit per sequence.
//!
//! [`cpu`] is the plain f32 reference (the executable spec, and the fallback where no GPU
//! exists), [`cpu_fp16`] its fp16 twin of the GPU arithmetic. `cuda` is the hand-written GPU path. Both see the same packed, unpadded batch and
//! return raw logits; the activation that turns a logit into a score is applied by the engine.

use crate::batch::PackedBatch;
use crate::error::Result;

pub mod cpu;
pub mod cpu_fp16;

/// Arithmetic of the CPU backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The f32 reference (the spec).
    #[default]
    F32,
    /// The fp16 twin of the CUDA path ([`cpu_fp16`]): fp16 weights and activations exactly
    /// where the GPU stores fp16, fp32 inside the ops.
    Fp16,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "f32" | "fp32" => Some(Precision::F32),
            "fp16" | "f16" => Some(Precision::Fp16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Fp16 => "fp16",
        }
    }
}

/// A model instance on some device.
pub trait Backend: Send + Sync {
    /// Human-readable device description, e.g. `cpu (2 threads)`.
    fn describe(&self) -> String;

    /// Raw logits, one per sequence of `batch`, in batch order.
    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>>;

    /// Token budget per batch that keeps this backend efficient.
    fn default_batch_tokens(&self) -> usize;

    /// Starts (or stops) collecting a per-op time breakdown, where the backend can; a no-op
    /// by default.
    fn set_profiling(&self, _on: bool) -> crate::error::Result<()> {
        Ok(())
    }

    /// Time breakdown collected so far, if this backend records one (`None` by default).
    fn profile_report(&self) -> Option<ProfileReport> {
        None
    }
}

/// Where a backend's time went, for `crossrank bench` (filled by backends that profile, e.g.
/// the CUDA path under `--profile`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileReport {
    /// Host↔device copies inside `forward`, in seconds.
    pub copy_seconds: Option<f64>,
    /// Per-op breakdown, in the order the backend chooses (slowest first reads best).
    pub ops: Vec<OpTime>,
}

/// Time of one kind of op over a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpTime {
    pub name: String,
    pub calls: u64,
    pub seconds: f64,
}
