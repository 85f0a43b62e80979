//! One error type for the whole engine. Every variant carries the file, tensor, key or
//! input line it is about, so a message alone is enough to act on. The variant also decides
//! the process exit code (see [`Error::exit_code`]) and the C ABI status.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// config.json / tokenizer_config.json is malformed or asks for something unsupported.
    #[error("{}: {msg}", path.display())]
    Config { path: PathBuf, msg: String },

    /// The checkpoint is missing a tensor, or a tensor has the wrong shape or dtype.
    #[error("{}: tensor `{tensor}`: {msg}", path.display())]
    Tensor { path: PathBuf, tensor: String, msg: String },

    /// A safetensors file (or shard index) cannot be parsed: truncated, corrupted, inconsistent.
    #[error("{}: {msg}", path.display())]
    Checkpoint { path: PathBuf, msg: String },

    /// tokenizer.json cannot be loaded or used.
    #[error("{}: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },

    /// A record of an input file is malformed. `line` is 1-based.
    #[error("{file}:{line}: {msg}")]
    Input { file: String, line: u64, msg: String },

    /// Model id could not be resolved through the Hugging Face hub or cache.
    #[error("{0}")]
    Hub(String),

    /// CUDA driver, library or kernel failure.
    #[error("{0}")]
    Device(String),

    /// The device ran out of memory for a batch; the caller may split the batch and retry.
    #[error("out of device memory: {0}")]
    DeviceOutOfMemory(String),

    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),

    /// The run was interrupted (SIGINT/SIGTERM) after flushing completed records.
    #[error("interrupted")]
    Interrupted,

    /// A bug: an invariant the engine relies on does not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Process exit codes of the `crossrank` binary. Documented in the README.
pub mod exit_code {
    pub const OK: i32 = 0;
    pub const INTERNAL: i32 = 1;
    /// Bad command line (clap's own code) or invalid argument value.
    pub const USAGE: i32 = 2;
    /// A malformed input record.
    pub const INPUT: i32 = 3;
    /// The model directory: config, checkpoint, tokenizer, hub.
    pub const MODEL: i32 = 4;
    /// CUDA driver/library/kernel failure.
    pub const DEVICE: i32 = 5;
    /// Reading or writing a file.
    pub const IO: i32 = 6;
    /// SIGINT/SIGTERM: completed records were flushed.
    pub const INTERRUPTED: i32 = 130;
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn config(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn tensor(path: impl AsRef<Path>, tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor {
            path: path.as_ref().to_path_buf(),
            tensor: tensor.into(),
            msg: msg.into(),
        }
    }

    pub fn checkpoint(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn tokenizer(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Tokenizer {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn input(file: impl Into<String>, line: u64, msg: impl Into<String>) -> Self {
        Error::Input {
            file: file.into(),
            line,
            msg: msg.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. } => exit_code::IO,
            Error::Config { .. }
            | Error::Tensor { .. }
            | Error::Checkpoint { .. }
            | Error::Tokenizer { .. }
            | Error::Hub(_) => exit_code::MODEL,
            Error::Input { .. } => exit_code::INPUT,
            Error::Device(_) | Error::DeviceOutOfMemory(_) => exit_code::DEVICE,
            Error::InvalidArgument(_) => exit_code::USAGE,
            Error::Interrupted => exit_code::INTERRUPTED,
            Error::Internal(_) => exit_code::INTERNAL,
        }
    }
}
