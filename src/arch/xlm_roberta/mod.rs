//! XLM-RoBERTa cross-encoders (`XLMRobertaForSequenceClassification`, model_type
//! `xlm-roberta`; e.g. BAAI/bge-reranker-base, -large, bge-reranker-v2-m3): the shared
//! absolute-position encoder ([`crate::arch::abs_encoder`]) under the `roberta.` prefix, with
//!
//! - positions as transformers' `create_position_ids_from_input_ids`: `padding_idx + 1`
//!   onward, counting non-pad tokens; a pad id inside the text keeps `padding_idx`
//!   ([`positions`]);
//! - one segment type (every token takes row 0);
//! - the head `classifier.dense -> tanh -> classifier.out_proj` on `<s>`;
//! - a default max length of min(tokenizer `model_max_length`, `max_position_embeddings` -
//!   `padding_idx` - 1): the positions past the padding index.

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
    prefixes: &["roberta."],
    head_dense: "classifier.dense",
    head_out: "classifier.out_proj",
};

#[derive(Debug)]
pub struct XlmRoberta;

/// Position ids of every token of `batch`: for each sequence, `padding_idx + k` for its k-th
/// non-pad token (k from 1), `padding_idx` for a pad token, as
/// `create_position_ids_from_input_ids` (`cumsum(mask) * mask + padding_idx`).
pub fn positions(batch: &PackedBatch, config: &ModelConfig) -> Vec<u32> {
    let pad = config.padding_idx.unwrap_or(1) as u32;
    let mut out = Vec::with_capacity(batch.num_tokens());
    for s in 0..batch.num_seqs() {
        let mut count = 0u32;
        for &id in &batch.token_ids[batch.seq_range(s)] {
            if id == pad {
                out.push(pad);
            } else {
                count += 1;
                out.push(pad + count);
            }
        }
    }
    out
}

impl ModelFamily for XlmRoberta {
    fn name(&self) -> &'static str {
        "xlm-roberta"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["xlm-roberta"]
    }

    fn architectures(&self) -> &'static [&'static str] {
        &["XLMRobertaForSequenceClassification"]
    }

    fn summary(&self) -> &'static str {
        "XLM-RoBERTa cross-encoder: learned absolute positions past padding_idx, GELU MLP, post-LN, classifier.dense -> tanh -> out_proj on <s>"
    }

    fn size_default(&self, _model_type: &str, key: &str) -> Option<usize> {
        // XLMRobertaConfig's defaults for the keys exports may omit.
        match key {
            "max_position_embeddings" => Some(512),
            "type_vocab_size" => Some(2),
            _ => None,
        }
    }

    fn parse_config(&self, p: &ConfigParser<'_>, c: &mut ModelConfig) -> Result<()> {
        abs_encoder::check_config(p, c)?;
        let pad = p.usize_key("pad_token_id", Some(1))?;
        if pad + 1 >= c.max_position_embeddings {
            return Err(p.err(format!(
                "key `pad_token_id` = {pad} leaves no positions below `max_position_embeddings` = {}",
                c.max_position_embeddings
            )));
        }
        c.padding_idx = Some(pad);
        abs_encoder::check_positions(p, c)
    }

    fn max_sequence_length(&self, c: &ModelConfig) -> usize {
        c.max_position_embeddings - c.padding_idx.unwrap_or(1) - 1
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
        let pad = c.padding_idx.unwrap_or(1);
        vec![(
            "positions",
            format!(
                "learned, from padding_idx + 1 = {} (pad tokens take {pad}); {} usable of {}",
                pad + 1,
                c.max_sequence_length(),
                c.max_position_embeddings
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_create_position_ids_from_input_ids() {
        let config = ModelConfig::from_json_str(
            r#"{"model_type": "xlm-roberta", "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 1, "intermediate_size": 8, "max_position_embeddings": 20,
                "type_vocab_size": 1, "pad_token_id": 1}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        assert_eq!(config.max_sequence_length(), 18);
        // Two sequences; a pad id (1) inside the first keeps padding_idx and is not counted.
        let batch = PackedBatch::from_sequences([&[0u32, 5, 1, 6, 2][..], &[0, 7, 2][..]]);
        assert_eq!(positions(&batch, &config), [2, 3, 1, 4, 5, 2, 3, 4]);
    }
}
