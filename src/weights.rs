//! Memory-mapped safetensors checkpoints and the family-neutral tensor mapping on top of them.
//!
//! [`Checkpoint`] maps `model.safetensors` (or every shard named by
//! `model.safetensors.index.json`), validates each header against the file length (a truncated
//! or corrupted file is an error here, never an out-of-bounds read later) and hands out
//! [`RawTensor`] views of the mapped bytes.
//!
//! [`ModelTensors`] maps the logical tensors of an encoder ([`Param`]: embeddings, per-layer
//! projections and norms, head) onto stored names through the model's family
//! ([`crate::arch::ModelFamily::stored_names`]); a logical tensor may be several stored
//! tensors concatenated along dimension 0 (separate q/k/v packed at load). It checks shape and
//! dtype of every tensor, and converts F32/F16/BF16 storage into f32 or f16 on request,
//! straight from the map.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// Storage dtypes the engine accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
}

struct TensorEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range inside the mapped file.
    start: usize,
    end: usize,
}

/// The bytes of one safetensors file: memory-mapped from disk, or owned (an in-memory
/// checkpoint, see [`Checkpoint::from_bytes`]).
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }
}

/// One safetensors file with its validated header.
struct MappedFile {
    path: PathBuf,
    map: Storage,
    tensors: HashMap<String, TensorEntry>,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the checkpoint
        // not being modified while the engine runs.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, Storage::Mapped(map))
    }

    /// Reads the header and checks that every tensor's byte range lies inside `map`.
    fn parse(path: &Path, map: Storage) -> Result<Self> {
        let invalid = |why: String| {
            Error::checkpoint(
                path,
                format!("not a valid safetensors file (truncated or corrupted?): {why}"),
            )
        };
        let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| invalid(e.to_string()))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, info) in metadata.tensors() {
            // read_metadata already checks that the offsets tile the data section exactly;
            // checked again here so a slice of `map` can never be out of bounds.
            let (start, end) = (
                data_start.checked_add(info.data_offsets.0),
                data_start.checked_add(info.data_offsets.1),
            );
            let (Some(start), Some(end)) = (start, end) else {
                return Err(invalid(format!("tensor `{name}`: data offsets overflow")));
            };
            if start > end || end > map.len() {
                return Err(invalid(format!("tensor `{name}`: data offsets out of bounds")));
            }
            let entry = TensorEntry {
                dtype: info.dtype,
                shape: info.shape.clone(),
                start,
                end,
            };
            tensors.insert(name, entry);
        }
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
            tensors,
        })
    }
}

/// A view of one stored tensor.
#[derive(Clone, Copy)]
pub struct RawTensor<'a> {
    pub name: &'a str,
    pub file: &'a Path,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl RawTensor<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Converts elements `offset..offset + out.len()` to f32.
    pub fn read_f32(&self, offset: usize, out: &mut [f32]) {
        let size = self.dtype.size();
        let bytes = &self.bytes[offset * size..(offset + out.len()) * size];
        match self.dtype {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
        }
    }

    /// Converts elements `offset..offset + out.len()` to f16 (round to nearest even).
    pub fn read_f16(&self, offset: usize, out: &mut [f16]) {
        let size = self.dtype.size();
        let bytes = &self.bytes[offset * size..(offset + out.len()) * size];
        match self.dtype {
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_f32(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32());
                }
            }
        }
    }
}

/// One checkpoint: a single safetensors file or the shards of an index.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<MappedFile>,
    /// tensor name -> index into `files`
    location: HashMap<String, usize>,
}

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards listed in `dir/model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_files(dir, &[single]);
        }
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return Self::open_index(dir, &index);
        }
        Err(Error::checkpoint(
            dir,
            format!(
                "no {SINGLE_FILE} or {INDEX_FILE} in the model directory (PyTorch .bin checkpoints are not supported; convert them to safetensors)"
            ),
        ))
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::checkpoint(index, format!("not valid JSON: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::checkpoint(index, "missing object `weight_map`"))?;
        let mut shard_names: Vec<&str> = Vec::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| Error::checkpoint(index, format!("`weight_map.{tensor}`: expected a file name")))?;
            if shard.contains('/') || shard.contains('\\') || shard == ".." {
                return Err(Error::checkpoint(
                    index,
                    format!("shard name `{shard}` is not a plain file name"),
                ));
            }
            if !shard_names.contains(&shard) {
                shard_names.push(shard);
            }
        }
        let paths: Vec<PathBuf> = shard_names.iter().map(|s| dir.join(s)).collect();
        for (path, name) in paths.iter().zip(&shard_names) {
            if !path.is_file() {
                return Err(Error::checkpoint(
                    index,
                    format!("shard `{name}` is listed but missing"),
                ));
            }
        }
        let ckpt = Self::open_files(dir, &paths)?;
        for (tensor, shard) in map {
            let listed = dir.join(shard.as_str().unwrap_or_default());
            match ckpt.location.get(tensor) {
                Some(&i) if ckpt.files[i].path == listed => {}
                _ => {
                    return Err(Error::checkpoint(
                        index,
                        format!(
                            "tensor `{tensor}` is listed in shard `{}` but not stored there",
                            listed.display()
                        ),
                    ))
                }
            }
        }
        Ok(ckpt)
    }

    /// A single-file checkpoint held in memory: `bytes` is the content of a `model.safetensors`
    /// and `path` the name error messages give it (`dir()` is its parent). The header is
    /// validated exactly as for [`open_dir`](Self::open_dir), which maps the file instead;
    /// this is for checkpoints that are not files (tests, fuzzing, embedding callers).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.into();
        let file = MappedFile::parse(&path, Storage::Owned(bytes))?;
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Self::from_mapped(dir, [Ok(file)])
    }

    fn open_files(dir: &Path, paths: &[PathBuf]) -> Result<Self> {
        Self::from_mapped(dir.to_path_buf(), paths.iter().map(|p| MappedFile::open(p)))
    }

    /// Indexes the tensors of `shards` (opened lazily, in order) by name.
    fn from_mapped(dir: PathBuf, shards: impl IntoIterator<Item = Result<MappedFile>>) -> Result<Self> {
        let mut files = Vec::new();
        let mut location = HashMap::new();
        for file in shards {
            let file = file?;
            let path = &file.path;
            for name in file.tensors.keys() {
                if location.insert(name.clone(), files.len()).is_some() {
                    return Err(Error::checkpoint(
                        path,
                        format!("tensor `{name}` is stored in more than one shard"),
                    ));
                }
            }
            files.push(file);
        }
        Ok(Checkpoint { dir, files, location })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// The file a tensor is stored in, or the directory for a missing tensor (error messages).
    pub fn file_of(&self, name: &str) -> &Path {
        match self.location.get(name) {
            Some(&i) => &self.files[i].path,
            None if self.files.len() == 1 => &self.files[0].path,
            None => &self.dir,
        }
    }

    /// Looks a tensor up and checks its dtype is one the engine converts.
    pub fn tensor(&self, name: &str) -> Result<RawTensor<'_>> {
        let Some(&i) = self.location.get(name) else {
            return Err(Error::tensor(self.file_of(name), name, "missing from the checkpoint"));
        };
        let file = &self.files[i];
        let entry = &file.tensors[name];
        let dtype = match entry.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(Error::tensor(
                    &file.path,
                    name,
                    format!("dtype {other:?} is not supported (expected F32, F16 or BF16)"),
                ))
            }
        };
        Ok(RawTensor {
            name: file.tensors.get_key_value(name).map_or("", |(k, _)| k.as_str()),
            file: &file.path,
            dtype,
            shape: &entry.shape,
            bytes: &file.map[entry.start..entry.end],
        })
    }
}

/// A logical tensor of the packed ("new") layout: one stored tensor, or several stored
/// tensors concatenated along dimension 0 (native q/k/v, up/gate).
pub struct LogicalTensor<'a> {
    pub name: String,
    pub parts: Vec<RawTensor<'a>>,
    pub shape: Vec<usize>,
}

impl LogicalTensor<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Storage dtype (of the first part; mixed-dtype concatenations are converted per part).
    pub fn dtype(&self) -> DType {
        self.parts[0].dtype
    }

    fn for_each_span(&self, offset: usize, len: usize, mut f: impl FnMut(&RawTensor<'_>, usize, usize, usize)) {
        // (part, offset in part, offset in output, length)
        let mut part_start = 0;
        let (mut pos, end) = (offset, offset + len);
        for part in &self.parts {
            let part_end = part_start + part.len();
            if pos < part_end && pos < end {
                let n = end.min(part_end) - pos;
                f(part, pos - part_start, pos - offset, n);
                pos += n;
            }
            part_start = part_end;
        }
    }

    /// Converts elements `offset..offset + out.len()` (row-major) to f32.
    pub fn read_f32(&self, offset: usize, out: &mut [f32]) {
        let len = out.len();
        self.for_each_span(offset, len, |part, at, o, n| part.read_f32(at, &mut out[o..o + n]));
    }

    /// Converts elements `offset..offset + out.len()` (row-major) to f16.
    pub fn read_f16(&self, offset: usize, out: &mut [f16]) {
        let len = out.len();
        self.for_each_span(offset, len, |part, at, o, n| part.read_f16(at, &mut out[o..o + n]));
    }

    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.read_f32(0, &mut out);
        out
    }

    pub fn to_f16(&self) -> Vec<f16> {
        let mut out = vec![f16::ZERO; self.len()];
        self.read_f16(0, &mut out);
        out
    }
}

/// How the checkpoint stores the fused projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameScheme {
    /// Fused tensors stored as such (gte new-impl: `qkv_proj`, `up_gate_proj`).
    Packed,
    /// Separate tensors concatenated at load (q/k/v; gte's up/gate), transformers-native names.
    Native,
}

/// Tensors of one layer of a post-LayerNorm encoder. QKV is always one logical `[3h, h]`
/// tensor (rows `[q; k; v]`), whatever the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerParam {
    QkvWeight,
    QkvBias,
    OutWeight,
    OutBias,
    AttnNormWeight,
    AttnNormBias,
    /// Fused `[up; gate]` of gated-GELU MLPs.
    UpGateWeight,
    /// Up projection of plain-GELU MLPs, and its bias.
    UpWeight,
    UpBias,
    DownWeight,
    DownBias,
    MlpNormWeight,
    MlpNormBias,
}

/// Tensors outside the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    WordEmbeddings,
    /// Learned absolute positions (families without rotary positions).
    PositionEmbeddings,
    TypeEmbeddings,
    EmbeddingNormWeight,
    EmbeddingNormBias,
    /// Dense layer of the head before tanh (BERT's pooler, XLM-R's `classifier.dense`).
    PoolerWeight,
    PoolerBias,
    /// The 1-logit projection.
    ClassifierWeight,
    ClassifierBias,
    Layer(usize, LayerParam),
}

/// A checkpoint seen through its family's tensor layout.
pub struct ModelTensors {
    pub ckpt: Arc<Checkpoint>,
    pub config: ModelConfig,
    /// Backbone prefix including the dot (`new.`, `roberta.`, `bert.`) or empty.
    pub prefix: String,
    pub scheme: NameScheme,
}

/// The name tests and tools used before the family seam (a gte checkpoint is a
/// [`ModelTensors`] like any other).
pub use crate::arch::gte::GteTensors;

impl ModelTensors {
    /// Finds the family's layout in `ckpt` (prefix, naming scheme).
    pub fn new(ckpt: Arc<Checkpoint>, config: ModelConfig) -> Result<Self> {
        let (prefix, scheme) = config.family.locate(&ckpt, &config)?;
        Ok(ModelTensors {
            ckpt,
            config,
            prefix,
            scheme,
        })
    }

    /// Stored names that make up a logical tensor, in concatenation order.
    pub fn stored_names(&self, param: Param) -> Vec<String> {
        self.config.family.stored_names(self, param)
    }

    /// Shape of the logical tensor the config implies.
    pub fn expected_shape(&self, param: Param) -> Vec<usize> {
        self.config.family.expected_shape(&self.config, param)
    }

    /// Looks up a logical tensor and checks every part's shape.
    pub fn get(&self, param: Param) -> Result<LogicalTensor<'_>> {
        let names = self.stored_names(param);
        let shape = self.expected_shape(param);
        let n = names.len();
        let mut part_shape = shape.clone();
        part_shape[0] /= n;
        let mut parts = Vec::with_capacity(n);
        for name in &names {
            let raw = self.ckpt.tensor(name)?;
            if raw.shape != part_shape.as_slice() {
                return Err(Error::tensor(
                    raw.file,
                    name,
                    format!("expected shape {part_shape:?}, found {:?}", raw.shape),
                ));
            }
            parts.push(raw);
        }
        Ok(LogicalTensor {
            name: names.join(" + "),
            parts,
            shape,
        })
    }

    /// Every logical tensor the model needs, in load order.
    pub fn params(&self) -> Vec<Param> {
        self.config.family.params(&self.config)
    }

    /// Checks every tensor (presence, shape, dtype) before any backend allocates.
    pub fn validate(&self) -> Result<()> {
        for p in self.params() {
            self.get(p)?;
        }
        Ok(())
    }

    /// The storage dtypes found, for `info` ("F16", "F32 + F16", ...).
    pub fn stored_dtypes(&self) -> Vec<DType> {
        let mut seen = Vec::new();
        for p in self.params() {
            if let Ok(t) = self.get(p) {
                for part in &t.parts {
                    if !seen.contains(&part.dtype) {
                        seen.push(part.dtype);
                    }
                }
            }
        }
        seen
    }

    /// Stored tensors that the model does not use and that are not known buffers.
    pub fn unused_tensors(&self) -> Vec<String> {
        let used: std::collections::HashSet<String> =
            self.params().into_iter().flat_map(|p| self.stored_names(p)).collect();
        let mut out: Vec<String> = self
            .ckpt
            .names()
            .filter(|n| !used.contains(*n) && !self.config.family.is_ignored_buffer(n))
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }
}
