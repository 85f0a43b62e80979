//! The engine: a model directory (config, checkpoint, tokenizer) loaded onto one backend,
//! scoring (query, document) pairs. This is the API the CLI, the streaming pipeline and the
//! C ABI are built on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::batch::{plan_batches, PackedBatch};
use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::model::{Backend, Precision};
use crate::tokenize::{read_model_max_length, EncodedPair, PairTokenizer};
use crate::weights::{Checkpoint, ModelTensors};

/// Where to run the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// CUDA when a usable GPU, driver and libraries are present, else the CPU.
    Auto,
    Cpu,
    /// CUDA device by ordinal.
    Cuda(usize),
}

impl Device {
    /// `auto`, `cpu`, `cuda` (or `gpu`: device 0) or `cuda:N`, as the CLI and the Python
    /// binding take it.
    pub fn parse(s: &str) -> std::result::Result<Device, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}` (expected cpu, cuda, cuda:N or auto)")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub device: Device,
    /// Pair length limit including special tokens; `None`: min(tokenizer `model_max_length`,
    /// `max_position_embeddings`), as sentence-transformers' CrossEncoder.
    pub max_length: Option<usize>,
    /// Tokens per forward batch; `None`: the backend's default.
    pub batch_tokens: Option<usize>,
    /// CPU threads; 0: every core.
    pub threads: usize,
    /// Arithmetic of the CPU backend (f32 reference or the fp16 twin of the CUDA path); the
    /// CUDA backend is always fp16.
    pub precision: Precision,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: Device::Auto,
            max_length: None,
            batch_tokens: None,
            threads: 0,
            precision: Precision::F32,
        }
    }
}

/// One scored pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairScore {
    pub logit: f32,
    /// `activation(logit)`; sigmoid unless config.json names another activation.
    pub score: f32,
}

/// One document of a ranking, best first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked {
    /// Index of the document in the input.
    pub index: usize,
    pub logit: f32,
    pub score: f32,
}

pub struct Engine {
    dir: PathBuf,
    config: ModelConfig,
    tensors: Arc<ModelTensors>,
    tokenizer: PairTokenizer,
    backend: Box<dyn Backend>,
    batch_tokens: usize,
    device_note: Option<String>,
    /// Batches over this many tokens are split before the forward pass: set (to one less than
    /// the smallest batch that ran out of device memory) by [`Engine::forward_split_on_oom`].
    oom_token_cap: AtomicUsize,
    /// Times a batch was split because of (or to avoid) device OOM.
    oom_splits: AtomicU64,
}

/// Files of a model directory.
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// Config, checkpoint layout and tokenizer of a model directory, validated, with no backend.
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub tensors: Arc<ModelTensors>,
    pub tokenizer: PairTokenizer,
}

impl ModelFiles {
    /// Opens and validates everything: config, every tensor (presence, shape, dtype), tokenizer.
    pub fn open(dir: &Path, max_length: Option<usize>) -> Result<Self> {
        let (config, tokenizer) = Self::open_tokenizer(dir, max_length)?;
        let ckpt = Arc::new(Checkpoint::open_dir(dir)?);
        let tensors = ModelTensors::new(ckpt, config.clone())?;
        tensors.validate()?;
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            config,
            tensors: Arc::new(tensors),
            tokenizer,
        })
    }

    /// Config and tokenizer only (no checkpoint), with the max length resolved.
    pub fn open_tokenizer(dir: &Path, max_length: Option<usize>) -> Result<(ModelConfig, PairTokenizer)> {
        if !dir.is_dir() {
            return Err(Error::config(dir, "model directory not found"));
        }
        let config = ModelConfig::from_file(&dir.join(CONFIG_FILE))?;
        let tokenizer_config = dir.join(TOKENIZER_CONFIG_FILE);
        let default_max = read_model_max_length(&tokenizer_config)?
            .unwrap_or(usize::MAX)
            .min(config.max_sequence_length());
        let max_length = match max_length {
            None => default_max,
            Some(n) if n > config.max_sequence_length() => {
                return Err(Error::InvalidArgument(
                    if config.max_sequence_length() == config.max_position_embeddings {
                        format!(
                            "max length {n} exceeds the model's max_position_embeddings ({})",
                            config.max_position_embeddings
                        )
                    } else {
                        format!(
                        "max length {n} exceeds the {} tokens the model's positions allow (max_position_embeddings {})",
                        config.max_sequence_length(),
                        config.max_position_embeddings
                    )
                    },
                ))
            }
            Some(n) => n,
        };
        let tokenizer = PairTokenizer::from_file(&dir.join(TOKENIZER_FILE), max_length)?;
        if tokenizer.max_id() as usize >= config.vocab_size {
            return Err(Error::tokenizer(
                tokenizer.path(),
                format!(
                    "token id {} is outside the model's embedding table (vocab_size {}): tokenizer and checkpoint do not belong together",
                    tokenizer.max_id(),
                    config.vocab_size
                ),
            ));
        }
        check_segments(&config, &tokenizer)?;
        Ok((config, tokenizer))
    }
}

/// A template's segment ids must be ones the model embeds: a family that embeds none (gte,
/// XLM-R) refuses a template that assigns segment 1, rather than scoring every token as
/// segment 0, and a family that does embed them needs a row for each id.
fn check_segments(config: &ModelConfig, tokenizer: &PairTokenizer) -> Result<()> {
    let Some(seg) = &tokenizer.template().segments else {
        return Ok(());
    };
    let largest = seg
        .prefix
        .iter()
        .chain(&seg.middle)
        .chain(&seg.suffix)
        .chain([&seg.query, &seg.document])
        .max()
        .copied()
        .unwrap_or(0);
    if !config.family.uses_segment_ids(config) {
        return Err(Error::tokenizer(
            tokenizer.path(),
            format!(
                "the pair template assigns segment (token type) ids up to {largest}, but the {} family embeds none: tokenizer and model do not belong together",
                config.family.name()
            ),
        ));
    }
    if largest as usize >= config.type_vocab_size {
        return Err(Error::tokenizer(
            tokenizer.path(),
            format!(
                "the pair template assigns segment id {largest}, outside the model's type_vocab_size ({})",
                config.type_vocab_size
            ),
        ));
    }
    Ok(())
}

impl Engine {
    /// Loads a model directory onto the requested device.
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self> {
        let files = ModelFiles::open(dir, options.max_length)?;
        let (backend, device_note) = make_backend(&files.tensors, options)?;
        let mut engine = Engine::with_backend(files, backend, options.batch_tokens);
        engine.device_note = device_note;
        Ok(engine)
    }

    /// An engine over a backend built by the caller (tests wrap the CPU backend this way to
    /// inject faults). `batch_tokens`: `None` takes the backend's default.
    pub fn with_backend(files: ModelFiles, backend: Box<dyn Backend>, batch_tokens: Option<usize>) -> Self {
        let batch_tokens = batch_tokens.unwrap_or_else(|| backend.default_batch_tokens()).max(1);
        Engine {
            dir: files.dir,
            config: files.config,
            tensors: files.tensors,
            tokenizer: files.tokenizer,
            backend,
            batch_tokens,
            device_note: None,
            oom_token_cap: AtomicUsize::new(usize::MAX),
            oom_splits: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn tensors(&self) -> &Arc<ModelTensors> {
        &self.tensors
    }

    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn activation(&self) -> Activation {
        self.config.activation
    }

    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    pub fn batch_tokens(&self) -> usize {
        self.batch_tokens
    }

    /// Why `Device::Auto` chose the CPU, if it did.
    pub fn device_note(&self) -> Option<&str> {
        self.device_note.as_deref()
    }

    pub fn encode(&self, query: &str, document: &str) -> Result<EncodedPair> {
        self.tokenizer.encode_pair(query, document)
    }

    /// Raw logits for one packed batch.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let logits = self.backend.forward(batch)?;
        if logits.len() != batch.num_seqs() {
            return Err(Error::Internal(format!(
                "backend returned {} logits for {} sequences",
                logits.len(),
                batch.num_seqs()
            )));
        }
        Ok(logits)
    }

    /// Raw logits for one packed batch, splitting it in halves (recursively) whenever the
    /// backend reports [`Error::DeviceOutOfMemory`]. A single sequence that still does not fit
    /// is an error naming it through `describe(index in batch)` (e.g. its input line).
    ///
    /// After an OOM, batches larger than the one that failed are split up front, so a long
    /// run does not pay for a failed attempt on every batch.
    pub fn forward_split_on_oom(&self, batch: &PackedBatch, describe: &dyn Fn(usize) -> String) -> Result<Vec<f32>> {
        self.forward_range(batch, 0..batch.num_seqs(), describe)
    }

    /// Times a batch was split because of device OOM (or pre-split after one).
    pub fn oom_splits(&self) -> u64 {
        self.oom_splits.load(Ordering::Relaxed)
    }

    fn forward_range(
        &self,
        batch: &PackedBatch,
        seqs: std::ops::Range<usize>,
        describe: &dyn Fn(usize) -> String,
    ) -> Result<Vec<f32>> {
        let whole = seqs.start == 0 && seqs.end == batch.num_seqs();
        let tokens = (batch.cu_seqlens[seqs.end] - batch.cu_seqlens[seqs.start]) as usize;
        let split = |this: &Self| -> Result<Vec<f32>> {
            this.oom_splits.fetch_add(1, Ordering::Relaxed);
            let mid = seqs.start + seqs.len() / 2;
            let mut left = this.forward_range(batch, seqs.start..mid, describe)?;
            left.extend(this.forward_range(batch, mid..seqs.end, describe)?);
            Ok(left)
        };
        if seqs.len() > 1 && tokens > self.oom_token_cap.load(Ordering::Relaxed) {
            return split(self);
        }
        let result = if whole {
            self.forward(batch)
        } else {
            let sub = batch.select(seqs.clone());
            self.forward(&sub)
        };
        match result {
            Err(Error::DeviceOutOfMemory(msg)) if seqs.len() == 1 => Err(Error::DeviceOutOfMemory(format!(
                "{} ({tokens} tokens) does not fit on the device even alone; lower --max-length ({msg})",
                describe(seqs.start)
            ))),
            Err(Error::DeviceOutOfMemory(_)) => {
                self.oom_token_cap.fetch_min(tokens - 1, Ordering::Relaxed);
                split(self)
            }
            other => other,
        }
    }

    /// Logits of encoded pairs, in input order. Pairs are sorted by length and packed into
    /// token-budget batches (split further on device OOM); `progress(pairs, tokens)` is
    /// called after each batch.
    pub fn score_encoded_with(
        &self,
        pairs: &[EncodedPair],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let lengths: Vec<usize> = pairs.iter().map(EncodedPair::len).collect();
        let mut logits = vec![0.0f32; pairs.len()];
        let mut batch = PackedBatch::new();
        for group in plan_batches(&lengths, self.batch_tokens, usize::MAX) {
            batch.clear();
            for &i in &group {
                batch.push_typed(&pairs[i].ids, &pairs[i].type_ids);
            }
            let out = self.forward_split_on_oom(&batch, &|s| format!("pair {}", group[s]))?;
            for (&i, logit) in group.iter().zip(out) {
                logits[i] = logit;
            }
            progress(group.len(), batch.num_tokens());
        }
        Ok(logits)
    }

    pub fn score_encoded(&self, pairs: &[EncodedPair]) -> Result<Vec<f32>> {
        self.score_encoded_with(pairs, &mut |_, _| {})
    }

    pub fn to_score(&self, logit: f32) -> PairScore {
        PairScore {
            logit,
            score: self.config.activation.apply(logit),
        }
    }

    /// Scores (query, document) pairs, in input order.
    pub fn score_pairs<Q: AsRef<str> + Sync, D: AsRef<str> + Sync>(&self, pairs: &[(Q, D)]) -> Result<Vec<PairScore>> {
        let encoded = self.tokenizer.encode_pairs(pairs)?;
        let logits = self.score_encoded(&encoded)?;
        Ok(logits.into_iter().map(|l| self.to_score(l)).collect())
    }

    /// Scores every document against `query` and sorts them best first (ties keep input order),
    /// like sentence-transformers' `CrossEncoder.rank`.
    pub fn rank<D: AsRef<str> + Sync>(&self, query: &str, documents: &[D]) -> Result<Vec<Ranked>> {
        let query_ids = self.tokenizer.encode_text(query)?;
        let encoded = {
            use rayon::prelude::*;
            documents
                .par_iter()
                .map(|d| {
                    Ok(self
                        .tokenizer
                        .assemble(&query_ids, &self.tokenizer.encode_text(d.as_ref())?))
                })
                .collect::<Result<Vec<_>>>()?
        };
        let logits = self.score_encoded(&encoded)?;
        let mut ranked: Vec<Ranked> = logits
            .into_iter()
            .enumerate()
            .map(|(index, logit)| {
                let s = self.to_score(logit);
                Ranked {
                    index,
                    logit: s.logit,
                    score: s.score,
                }
            })
            .collect();
        sort_ranked(&mut ranked);
        Ok(ranked)
    }
}

/// Best first by score, then by logit (sigmoid saturates in f32), then by input order.
pub fn sort_ranked(ranked: &mut [Ranked]) {
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.logit.total_cmp(&a.logit))
            .then(a.index.cmp(&b.index))
    });
}

fn make_backend(tensors: &Arc<ModelTensors>, options: &EngineOptions) -> Result<(Box<dyn Backend>, Option<String>)> {
    let family = tensors.config.family;
    let cpu = || family.load_cpu(tensors.clone(), options.precision, options.threads);
    let cuda = |index: usize| {
        let gpu_options = crate::cuda::options_from_env(options.batch_tokens)?;
        family.load_cuda(tensors.clone(), index, &gpu_options)
    };
    match options.device {
        Device::Cpu => Ok((cpu()?, None)),
        Device::Cuda(index) => Ok((cuda(index)?, None)),
        Device::Auto => match cuda(0) {
            Ok(backend) => Ok((backend, None)),
            Err(Error::Device(why)) => Ok((cpu()?, Some(format!("CUDA not used ({why}); running on the CPU")))),
            Err(other) => Err(other),
        },
    }
}
