//! Model families: the one place that knows which architectures exist.
//!
//! A family is one folder (`gte/`, `xlm_roberta/`, `bert/`) implementing [`ModelFamily`]:
//! its config keys (folded into the family-neutral [`ModelConfig`] summary), its tensor
//! names (over the family-neutral [`crate::weights::ModelTensors`] mapping), its CPU forward
//! built from the shared ops in [`crate::model::cpu::ops`] / [`crate::model::cpu_fp16`], its
//! CUDA forward, its FLOP model and what `info` prints about it. [`REGISTRY`] maps
//! `model_type` / `architectures` of config.json to a family: adding a family is one folder
//! and one line there.
//!
//! Shared code (engine, pipeline, batch, config, weights, verify, bench) asks the family
//! through this trait and names none.

use std::sync::Arc;

use crate::bench::FlopModel;
use crate::config::{ConfigParser, ModelConfig};
use crate::cuda::GpuOptions;
use crate::error::Result;
use crate::model::cpu_fp16::Fp16Options;
use crate::model::{Backend, Precision};
use crate::weights::{Checkpoint, ModelTensors, NameScheme, Param};

pub mod abs_encoder;
pub mod abs_encoder_cuda;
pub mod bert;
pub mod gte;
pub mod xlm_roberta;

/// Every supported family, in the order `model_type` / `architectures` are matched.
pub static REGISTRY: &[&dyn ModelFamily] = &[&gte::Gte, &xlm_roberta::XlmRoberta, &bert::Bert];

/// What a model family provides. Implemented by one unit struct per family folder.
pub trait ModelFamily: Sync + Send + std::fmt::Debug {
    /// Short name shown by `info` and in errors, e.g. "gte", "xlm-roberta", "bert".
    fn name(&self) -> &'static str;
    /// `model_type` values of config.json this family reads.
    fn model_types(&self) -> &'static [&'static str];
    /// `architectures` entries of config.json this family reads.
    fn architectures(&self) -> &'static [&'static str];
    /// One line for `info`: what the architecture is.
    fn summary(&self) -> &'static str;

    /// Default of a size key the config may omit (`None`: the key is required).
    fn size_default(&self, model_type: &str, key: &str) -> Option<usize>;
    /// Checks the family's own config keys and fills the family fields of `config`
    /// (the shared keys are already parsed into it).
    fn parse_config(&self, parser: &ConfigParser<'_>, config: &mut ModelConfig) -> Result<()>;
    /// Longest pair (special tokens included) the position table can embed.
    fn max_sequence_length(&self, config: &ModelConfig) -> usize {
        config.max_position_embeddings
    }
    /// Whether the forward reads `PackedBatch::token_type_ids` (segment embeddings).
    fn uses_segment_ids(&self, config: &ModelConfig) -> bool {
        let _ = config;
        false
    }

    /// Backbone prefix (with its dot, or empty) and naming scheme of a checkpoint.
    fn locate(&self, ckpt: &Checkpoint, config: &ModelConfig) -> Result<(String, NameScheme)>;
    /// Stored names that make up a logical tensor, in concatenation order.
    fn stored_names(&self, tensors: &ModelTensors, param: Param) -> Vec<String>;
    /// Shape of the logical tensor the config implies.
    fn expected_shape(&self, config: &ModelConfig, param: Param) -> Vec<usize>;
    /// Every logical tensor the model needs, in load order.
    fn params(&self, config: &ModelConfig) -> Vec<Param>;
    /// Tensors some exports persist although they are recomputed or unused.
    fn is_ignored_buffer(&self, name: &str) -> bool {
        ["position_ids", "inv_freq", "cos_cached", "sin_cached"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
    }

    /// The CPU backend: the f32 reference or its fp16 twin (as the GPU runs by default).
    /// `threads` = 0 uses every core.
    fn load_cpu(&self, tensors: Arc<ModelTensors>, precision: Precision, threads: usize) -> Result<Box<dyn Backend>> {
        match precision {
            Precision::F32 => self.load_cpu_f32(tensors, threads),
            Precision::Fp16 => {
                let options = Fp16Options::like_gpu(&tensors.config, threads);
                self.load_cpu_twin(tensors, options)
            }
        }
    }
    /// The f32 CPU reference.
    fn load_cpu_f32(&self, tensors: Arc<ModelTensors>, threads: usize) -> Result<Box<dyn Backend>>;
    /// The fp16 twin of the CUDA forward with explicit options (`verify` picks the attention
    /// model and a second summation order).
    fn load_cpu_twin(&self, tensors: Arc<ModelTensors>, options: Fp16Options) -> Result<Box<dyn Backend>>;
    /// The CUDA backend on device `index`. Any reason the GPU cannot be used is an
    /// [`crate::Error::Device`], which `Device::Auto` turns into a CPU fallback.
    fn load_cuda(&self, tensors: Arc<ModelTensors>, index: usize, options: &GpuOptions) -> Result<Box<dyn Backend>>;
    /// FLOPs per pair for `bench`.
    fn flop_model(&self, config: &ModelConfig) -> FlopModel;
    /// Family-specific lines of `info` (label, value).
    fn info_lines(&self, config: &ModelConfig) -> Vec<(&'static str, String)>;
}

/// The family of a config: by `model_type`, else by an `architectures` entry.
pub fn find(model_type: Option<&str>, architectures: &[&str]) -> Option<&'static dyn ModelFamily> {
    let by_type = model_type.and_then(|t| REGISTRY.iter().find(|f| f.model_types().contains(&t)));
    by_type
        .or_else(|| {
            REGISTRY
                .iter()
                .find(|f| architectures.iter().any(|a| f.architectures().contains(a)))
        })
        .copied()
}

/// "`new`, `gte` (gte), `xlm-roberta` (xlm-roberta), ..." for error messages.
pub fn supported_model_types() -> String {
    REGISTRY
        .iter()
        .map(|f| {
            let types: Vec<String> = f.model_types().iter().map(|t| format!("\"{t}\"")).collect();
            format!("{} ({})", types.join(" or "), f.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
