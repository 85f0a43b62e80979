//! Backends: the things that turn a [`PackedBatch`] into one logit per sequence.
//!
//! [`cpu`] is the plain f32 reference (the executable spec, and the fallback where no GPU
//! exists). `cuda` is the hand-written GPU path. Both see the same packed, unpadded batch and
//! return raw logits; the activation that turns a logit into a score is applied by the engine.

use crate::batch::PackedBatch;
use crate::error::Result;

pub mod cpu;

/// A model instance on some device.
pub trait Backend: Send + Sync {
    /// Human-readable device description, e.g. `cpu (2 threads)`.
    fn describe(&self) -> String;

    /// Raw logits, one per sequence of `batch`, in batch order.
    fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>>;

    /// Token budget per batch that keeps this backend efficient.
    fn default_batch_tokens(&self) -> usize;
}
