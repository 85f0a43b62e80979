//! The CUDA backend: fp16 weights and activations, fp32 math inside every kernel, cuBLAS for
//! the four GEMMs of a layer, the hand-written kernels of `kernels/*.cu` for the rest.
//!
//! Layers of this module, bottom up:
//! - [`device_error`]: CUDA and cuBLAS failures as [`crate::Error::Device`] (or out of memory).
//! - [`module`]: loading the kernel modules (embedded PTX, or NVRTC from the embedded
//!   sources) and the table of their functions.
//! - [`runtime`]: finding the driver and cuBLAS (before anything can panic), the context, one
//!   stream, one cuBLAS handle, the loaded kernels, host↔device copies.
//! - [`kernels`]: the kernels' launch configurations and one checked wrapper per kernel
//!   (named as its kernel function; [`module::KERNEL_FUNCTIONS`] names each one's
//!   `kernels/*.cu` file), usable on its own (the GPU tests
//!   call them one by one against their CPU twins in [`crate::model::cpu::ops`]).
//! - [`blas`]: the cuBLAS handle (destroyed without unwrapping) and the versioned-library pin.
//! - [`gemm`]: `Y = X·Wᵀ` on row-major fp16 matrices through `cublasGemmEx`.
//! - [`lt`]: the same product through cuBLASLt with an explicit algorithm; [`tune`]: the GEMM
//!   autotuner that times cuBLASLt's heuristic candidates against the default per GEMM and
//!   token-count bucket (opt-in).
//! - [`profile`]: per-op CUDA-event timing of the forward pass (opt-in).
//! - [`model`]: [`GpuModel`], the [`Backend`]: weights uploaded once, activation buffers sized
//!   once from the token budget, the forward pass of spec §3.
//!
//! Everything is issued on one stream, so nothing needs cross-stream synchronization: cudarc's
//! per-buffer event tracking is switched off before the first allocation.
//!
//! Environment knobs (for tests and debugging):
//! - `CROSSRANK_ATTENTION=auto|flash|reference`: attention kernels (see [`AttentionChoice`]);
//! - `CROSSRANK_KERNELS=auto|ptx|nvrtc`: force the NVRTC path even when PTX is embedded;
//! - `CROSSRANK_PROFILE=1`: time every op of the forward with CUDA events, reported by
//!   `Backend::profile_report` (`crossrank bench` prints it); off: nothing is recorded;
//! - `CROSSRANK_GEMM_TUNE=1`: choose each GEMM's algorithm by timing (see [`tune`]); the
//!   choices and their TFLOP/s show in `describe()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::Backend;
use crate::weights::ModelTensors;

pub mod blas;
pub mod device_error;
pub mod gemm;
pub mod kernels;
pub mod lt;
pub mod model;
pub mod module;
pub mod profile;
pub mod runtime;
pub mod tune;

/// The gte forward, under the path tests and benches used before the family seam.
pub use crate::arch::gte::cuda::GpuModel;
pub use model::{AttentionChoice, AttentionPath, GpuOptions};
pub use module::KernelOrigin;
pub use runtime::{DeviceInfo, Gpu};

/// Re-exported so callers (tests, tools) name the same buffer types the wrappers take.
pub use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

/// Loads the model onto CUDA device `index`. Any reason the GPU cannot be used (no driver, no
/// cuBLAS, no device, a model shape the kernels do not support, out of memory) is an
/// [`crate::Error::Device`], which `Device::Auto` turns into a CPU fallback.
pub fn load_backend(tensors: Arc<ModelTensors>, index: usize, batch_tokens: Option<usize>) -> Result<Box<dyn Backend>> {
    Ok(Box::new(GpuModel::load(
        tensors,
        index,
        &options_from_env(batch_tokens)?,
    )?))
}

/// The GPU options of a plain run: `batch_tokens`, attention and kernel origin from the
/// environment (`CROSSRANK_ATTENTION`, `CROSSRANK_KERNELS`).
pub fn options_from_env(batch_tokens: Option<usize>) -> Result<GpuOptions> {
    Ok(GpuOptions {
        batch_tokens,
        attention: AttentionChoice::from_env()?,
        kernels: KernelOrigin::from_env()?,
    })
}

/// How the CUDA kernels were built (shown by `crossrank info` and `--version`), e.g.
/// "nvcc 13.0.88 (compute_80 PTX)" or "no nvcc at build time: NVRTC at run time".
pub fn kernel_build_info() -> &'static str {
    module::generated::KERNEL_BUILD_INFO
}
