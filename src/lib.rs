//! crossrank: a hand-optimized inference engine for cross-encoder rerankers (gte, XLM-RoBERTa
//! and BERT families; see [`arch`]).
//!
//! Data flow: [`hub`] resolves a model directory → [`config`] + [`weights`] (memory-mapped
//! safetensors) + [`tokenize`] (pair template and `longest_first` truncation) →
//! [`batch`] packs token sequences without padding → a [`model::Backend`] built by the
//! model's family in [`arch`] (its f32 CPU reference or fp16 twin from the shared ops in
//! [`model::cpu`] / [`model::cpu_fp16`], or its CUDA forward from the launch wrappers in
//! [`cuda`]) returns one logit per pair →
//! [`engine::Engine`] restores input order and applies the score activation.
//!
//! "spec §N" in comments refers to the model spec kept in the repository,
//! `docs/gte-architecture.md`.

pub mod arch;
pub mod batch;
pub mod bench;
pub mod capi;
pub mod config;
pub mod cuda;
pub mod engine;
pub mod error;
pub mod eval;
pub mod hub;
pub mod model;
pub mod parquet_io;
pub mod pipeline;
pub mod pretruncate;
pub mod progress;
pub mod records;
pub mod resume;
pub mod tokenize;
pub mod verify;
pub mod weights;

pub use engine::{Device, Engine, EngineOptions, PairScore, Ranked};
pub use error::{Error, Result};

/// Engine version (Cargo package version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `crossrank --version`: the engine version and how the CUDA kernels were built.
pub fn long_version() -> &'static str {
    static LONG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LONG.get_or_init(|| format!("{VERSION} (CUDA kernels: {})", cuda::kernel_build_info()))
}
