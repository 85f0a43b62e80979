//! BERT cross-encoders (`BertForSequenceClassification`, model_type `bert`; e.g.
//! cross-encoder/ms-marco-MiniLM-L-6-v2 and -L-12): the shared absolute-position encoder
//! ([`crate::arch::abs_encoder`]) under the `bert.` prefix, with positions from 0 in each
//! sequence, segment ids from the tokenizer's pair template (`PackedBatch::token_type_ids`)
//! and the head `bert.pooler.dense -> tanh -> classifier` on `[CLS]`.

use std::sync::Arc;

use crate::arch::abs_encoder::{self, AbsEncoderModel, Layout};
use crate::arch::abs_encoder_cuda::AbsEncoderGpu;
use crate::arch::ModelFamily;
use crate::batch::PackedBatch;
use crate::bench::FlopModel;
use crate::config::{ConfigParser, ModelConfig};
use crate::cuda::GpuOptions;
use crate::error::Result;
use crate::model::cpu_fp16::Fp16Options;
use crate::model::Backend;
use crate::weights::{Checkpoint, ModelTensors, NameScheme, Param};

const LAYOUT: Layout = Layout {
    prefixes: &["bert."],
    head_dense: "{p}pooler.dense",
    head_out: "classifier",
};

#[derive(Debug)]
pub struct Bert;

/// BERT's positions: `0..len` in every sequence, which is what the packed batch carries.
pub fn positions(batch: &PackedBatch, _config: &ModelConfig) -> Vec<u32> {
    batch.positions.clone()
}

impl ModelFamily for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["bert"]
    }

    fn architectures(&self) -> &'static [&'static str] {
        &["BertForSequenceClassification"]
    }

    fn summary(&self) -> &'static str {
        "BERT cross-encoder: learned absolute positions from 0, segment ids, GELU MLP, post-LN, pooler -> tanh -> classifier on [CLS]"
    }

    fn size_default(&self, _model_type: &str, key: &str) -> Option<usize> {
        // BertConfig's defaults for the keys exports may omit.
        match key {
            "max_position_embeddings" => Some(512),
            "type_vocab_size" => Some(2),
            _ => None,
        }
    }

    fn parse_config(&self, p: &ConfigParser<'_>, c: &mut ModelConfig) -> Result<()> {
        abs_encoder::check_config(p, c)?;
        abs_encoder::check_positions(p, c)
    }

    fn uses_segment_ids(&self, _config: &ModelConfig) -> bool {
        true
    }

    fn locate(&self, ckpt: &Checkpoint, _config: &ModelConfig) -> Result<(String, NameScheme)> {
        abs_encoder::locate(&LAYOUT, ckpt, self.name())
    }

    fn stored_names(&self, t: &ModelTensors, param: Param) -> Vec<String> {
        abs_encoder::stored_names(&LAYOUT, t, param)
    }

    fn expected_shape(&self, c: &ModelConfig, param: Param) -> Vec<usize> {
        abs_encoder::expected_shape(c, param)
    }

    fn params(&self, c: &ModelConfig) -> Vec<Param> {
        abs_encoder::params(c)
    }

    fn load_cpu_f32(&self, tensors: Arc<ModelTensors>, threads: usize) -> Result<Box<dyn Backend>> {
        Ok(Box::new(AbsEncoderModel::f32(tensors, positions, threads)?))
    }

    fn load_cpu_twin(&self, tensors: Arc<ModelTensors>, options: Fp16Options) -> Result<Box<dyn Backend>> {
        Ok(Box::new(AbsEncoderModel::fp16_twin(tensors, positions, options)?))
    }

    fn load_cuda(&self, tensors: Arc<ModelTensors>, index: usize, options: &GpuOptions) -> Result<Box<dyn Backend>> {
        Ok(Box::new(AbsEncoderGpu::load(tensors, positions, index, options)?))
    }

    fn flop_model(&self, c: &ModelConfig) -> FlopModel {
        abs_encoder::flop_model(c)
    }

    fn info_lines(&self, c: &ModelConfig) -> Vec<(&'static str, String)> {
        vec![(
            "positions",
            format!(
                "learned, from 0 ({} positions), {} segment types",
                c.max_position_embeddings, c.type_vocab_size
            ),
        )]
    }
}
