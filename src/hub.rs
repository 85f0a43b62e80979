//! `--model` resolution: a local directory, or a Hugging Face hub id fetched into (or found
//! in) the standard Hugging Face cache, as `huggingface_hub` lays it out
//! (`$HF_HUB_CACHE` or `$HF_HOME/hub`, `models--org--name/{refs,snapshots,blobs}`).
//!
//! `HF_HUB_OFFLINE=1` uses the cache only and never touches the network; `HF_ENDPOINT` and
//! `HF_TOKEN` (or the cached token file) are honoured when fetching.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::engine::{CONFIG_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
use crate::error::{Error, Result};
use crate::weights::{INDEX_FILE, SINGLE_FILE};

/// A hub id `org/name` with an optional `@revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    pub revision: String,
}

impl HubId {
    /// Parses `org/name` or `org/name@revision`; anything else is not a hub id.
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (valid(org) && valid(name)).then(|| HubId {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// The hub cache directory: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").or_else(|| std::env::var_os("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    Cache::from_env().path().clone()
}

/// Turns `--model` into a local model directory.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::config(
            path,
            "is a file; --model expects a model directory or a hub id",
        ));
    }
    let Some(id) = HubId::parse(spec) else {
        return Err(Error::config(
            path,
            "model directory not found (and not a hub id like `org/name`)",
        ));
    };
    if env_flag("HF_HUB_OFFLINE") {
        from_cache(&id)
    } else {
        fetch(&id)
    }
}

fn from_cache(id: &HubId) -> Result<PathBuf> {
    let dir = cache_dir();
    let cached = Cache::new(dir.clone()).repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let missing = |file: &str| {
        Error::Hub(format!(
            "`{}` (revision {}) is not in the local Hugging Face cache at {} (missing {file}), and HF_HUB_OFFLINE is set so it cannot be downloaded",
            id.repo,
            id.revision,
            dir.display()
        ))
    };
    let config = cached.get(CONFIG_FILE).ok_or_else(|| missing(CONFIG_FILE))?;
    cached.get(TOKENIZER_FILE).ok_or_else(|| missing(TOKENIZER_FILE))?;
    if cached.get(SINGLE_FILE).is_none() {
        cached.get(INDEX_FILE).ok_or_else(|| missing(SINGLE_FILE))?;
        // Shards are checked when the checkpoint is opened: the error names the missing one.
    }
    Ok(snapshot_dir(&config))
}

fn fetch(id: &HubId) -> Result<PathBuf> {
    use hf_hub::api::sync::ApiBuilder;
    use std::io::IsTerminal;

    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(cache_dir())
        .with_progress(std::io::stderr().is_terminal());
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let api = builder
        .build()
        .map_err(|e| Error::Hub(format!("cannot set up the Hugging Face Hub client: {e}")))?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision.clone(),
    ));
    let get = |file: &str| {
        repo.get(file).map_err(|e| {
            Error::Hub(format!(
                "could not fetch `{file}` of `{}` from the Hugging Face Hub at {endpoint}: {e}. \
                 If the hub cannot be reached from this machine, copy the model directory here and pass its path, \
                 or set HF_HUB_OFFLINE=1 to use the local cache ({})",
                id.repo,
                cache_dir().display()
            ))
        })
    };
    let config = get(CONFIG_FILE)?;
    get(TOKENIZER_FILE)?;
    // Optional: without it the max length falls back to max_position_embeddings.
    let _ = repo.get(TOKENIZER_CONFIG_FILE);
    if let Err(single_err) = get(SINGLE_FILE) {
        let index = get(INDEX_FILE).map_err(|_| single_err)?;
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::checkpoint(&index, format!("not valid JSON: {e}")))?;
        let mut shards: Vec<&str> = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            get(shard)?;
        }
    }
    Ok(snapshot_dir(&config))
}

/// All files of one revision live in the same `snapshots/<commit>/` directory.
fn snapshot_dir(config: &Path) -> PathBuf {
    config.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        assert_eq!(
            HubId::parse("cometadata/gte-multilingual-reranker-affiliations"),
            Some(HubId {
                repo: "cometadata/gte-multilingual-reranker-affiliations".into(),
                revision: "main".into()
            })
        );
        assert_eq!(HubId::parse("org/name@v1.0").unwrap().revision, "v1.0");
        for bad in [
            "name",
            "./org/name",
            "org/name/extra",
            "/abs/path",
            "org/",
            "org/name@",
            "../x",
        ] {
            assert_eq!(HubId::parse(bad), None, "{bad}");
        }
    }
}
