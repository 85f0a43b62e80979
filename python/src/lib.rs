//! `crossrank._crossrank`: the engine (crossrank::Engine) as a Python class.
//!
//! This layer only converts: Python strings in, f32 logits and scores out (as bytes the Python
//! side views as numpy arrays), engine errors to Python exceptions. The sentence-transformers
//! shaped API (`CrossEncoder.predict`, `rank`, tables, Ray) is Python code in `crossrank/`,
//! so new entry points (e.g. `evaluate`) are added there without touching this file.
//!
//! Three rules hold for every call:
//! - the GIL is released while the engine tokenizes and runs the model (`Python::detach`), so
//!   other Python threads run, and one `Engine` serves several threads at once;
//! - no Rust panic reaches Python: engine calls run under `catch_unwind` and a panic becomes a
//!   `RuntimeError` saying it is a bug;
//! - every engine error becomes the Python exception a Python user expects for it, carrying
//!   the engine's message (the same text the CLI prints).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use crossrank::config::Activation;
use crossrank::eval::{evaluate, read_samples, EvalOptions};
use crossrank::pipeline::{window_containing, PipelineOptions};
use crossrank::records::Format;
use crossrank::tokenize::EncodedPair;
use crossrank::{Engine, EngineOptions, Error};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rayon::prelude::*;

/// Engine error -> Python exception: model files and the hub are `OSError` (as transformers
/// raises for a model it cannot load), bad arguments and records `ValueError`, the device and
/// bugs `RuntimeError`.
fn to_py_err(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Io { .. }
        | Error::Config { .. }
        | Error::Tensor { .. }
        | Error::Checkpoint { .. }
        | Error::Tokenizer { .. }
        | Error::Hub(_) => PyOSError::new_err(msg),
        Error::Input { .. } | Error::InvalidArgument(_) => PyValueError::new_err(msg),
        Error::Device(_) | Error::DeviceOutOfMemory(_) | Error::Internal(_) => PyRuntimeError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
    }
}

/// Runs engine code, turning a panic into an `Error::Internal` instead of unwinding into Python.
fn guarded<T>(f: impl FnOnce() -> crossrank::Result<T>) -> crossrank::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::Internal(format!(
                "panic in the engine (a bug, please report it): {what}"
            )))
        }
    }
}

fn parse_activation(name: Option<&str>, model: Activation) -> PyResult<Activation> {
    match name {
        None => Ok(model),
        Some("sigmoid") => Ok(Activation::Sigmoid),
        Some("identity") => Ok(Activation::Identity),
        Some("tanh") => Ok(Activation::Tanh),
        Some(other) => Err(PyValueError::new_err(format!(
            "unknown activation `{other}` (expected sigmoid, identity or tanh)"
        ))),
    }
}

/// Why one input row cannot be scored, and which Python exception it is when raised.
struct BadRow {
    type_error: bool,
    msg: String,
}

impl BadRow {
    fn into_py_err(self) -> PyErr {
        if self.type_error {
            PyTypeError::new_err(self.msg)
        } else {
            PyValueError::new_err(self.msg)
        }
    }
}

/// One text of a row: a Python `str` borrowed as UTF-8, or why not.
fn text_of(item: &Bound<'_, PyAny>, row: &str, index: usize, field: &str) -> Result<String, BadRow> {
    let Ok(s) = item.cast::<PyString>() else {
        let type_name = item
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_string());
        return Err(BadRow {
            type_error: true,
            msg: format!("{row} {index}: {field} must be str, got {type_name}"),
        });
    };
    s.to_str().map(str::to_owned).map_err(|e| BadRow {
        type_error: false,
        msg: format!("{row} {index}: {field} is not valid Unicode text ({e})"),
    })
}

fn f32_bytes<'py>(py: Python<'py>, values: &[f32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// A loaded model: config, checkpoint (memory-mapped), tokenizer and backend (CPU or CUDA).
/// Immutable after loading; safe to share between threads.
#[pyclass(frozen, name = "Engine", module = "crossrank._crossrank")]
struct PyEngine {
    engine: Arc<Engine>,
}

#[pymethods]
impl PyEngine {
    /// Loads a model directory or hub id (`org/name[@revision]`) onto `device`
    /// ("auto", "cpu", "cuda", "cuda:N"). `max_length`: pair length limit in tokens (None: the
    /// model's); `batch_tokens`: tokens per forward batch (None: the backend's default);
    /// `threads`: CPU threads (0: every core).
    #[new]
    #[pyo3(signature = (model, device = "auto", max_length = None, batch_tokens = None, threads = 0))]
    fn new(
        py: Python<'_>,
        model: &str,
        device: &str,
        max_length: Option<usize>,
        batch_tokens: Option<usize>,
        threads: usize,
    ) -> PyResult<Self> {
        let device = crossrank::Device::parse(device).map_err(PyValueError::new_err)?;
        if batch_tokens == Some(0) {
            return Err(PyValueError::new_err("batch_tokens must be at least 1"));
        }
        let options = EngineOptions {
            device,
            max_length,
            batch_tokens,
            threads,
            ..EngineOptions::default()
        };
        let spec = model.to_string();
        let engine = py
            .detach(move || {
                guarded(|| {
                    let dir = crossrank::hub::resolve_model(&spec)?;
                    Engine::load(Path::new(&dir), &options)
                })
            })
            .map_err(to_py_err)?;
        Ok(PyEngine {
            engine: Arc::new(engine),
        })
    }

    /// The resolved local model directory.
    #[getter]
    fn model_dir(&self) -> String {
        self.engine.dir().display().to_string()
    }

    /// The backend the model runs on, e.g. "cpu (2 threads)".
    #[getter]
    fn device(&self) -> String {
        self.engine.backend().describe()
    }

    /// Why device "auto" fell back to the CPU, if it did.
    #[getter]
    fn device_note(&self) -> Option<String> {
        self.engine.device_note().map(str::to_owned)
    }

    #[getter]
    fn max_length(&self) -> usize {
        self.engine.max_length()
    }

    #[getter]
    fn batch_tokens(&self) -> usize {
        self.engine.batch_tokens()
    }

    /// The model's score activation (config.json `sentence_transformers.activation_fn`).
    #[getter]
    fn activation(&self) -> &'static str {
        self.engine.activation().name()
    }

    /// Scores row i as (queries[i], documents[i]); returns (logits, scores, errors): logits and
    /// scores as native-endian float32 bytes, one per row, in input order; `scores` is
    /// `activation(logit)` ("sigmoid", "identity", "tanh"; None: the model's).
    ///
    /// A row whose query or document is not a `str` (or not valid Unicode) raises TypeError
    /// (ValueError) naming the row, unless `collect_errors`: then its logit and score are NaN and
    /// `errors[i]` says why (`errors` is None when `collect_errors` is false). `progress(n)`
    /// is called after each forward batch with its number of rows. `row` and the field names
    /// only word the messages ("pair 3: query must be str, got int"). `window`: rows sorted by
    /// length together, as `crossrank score --window` (None: the CLI's default).
    #[pyo3(signature = (queries, documents, activation = None, collect_errors = false, progress = None,
                        row = "pair", fields = ("query".to_string(), "document".to_string()), window = None))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn score<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        documents: &Bound<'py, PyAny>,
        activation: Option<&str>,
        collect_errors: bool,
        progress: Option<Py<PyAny>>,
        row: &str,
        fields: (String, String),
        window: Option<usize>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Option<Vec<Option<String>>>)> {
        let activation = parse_activation(activation, self.engine.activation())?;
        let window = window
            .unwrap_or_else(|| PipelineOptions::new(Format::Jsonl).window_lines)
            .max(1);
        let queries: Vec<Bound<'py, PyAny>> = queries.try_iter()?.collect::<PyResult<_>>()?;
        let documents: Vec<Bound<'py, PyAny>> = documents.try_iter()?.collect::<PyResult<_>>()?;
        if queries.len() != documents.len() {
            return Err(PyValueError::new_err(format!(
                "{} {}s but {} {}s",
                queries.len(),
                fields.0,
                documents.len(),
                fields.1
            )));
        }
        let n = queries.len();
        // Valid rows as (row index, query, document); bad rows raise or are recorded.
        let mut errors: Vec<Option<String>> = vec![None; if collect_errors { n } else { 0 }];
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(n);
        let mut rows: Vec<usize> = Vec::with_capacity(n);
        for (i, (q, d)) in queries.iter().zip(&documents).enumerate() {
            let texts = text_of(q, row, i, &fields.0).and_then(|q| Ok((q, text_of(d, row, i, &fields.1)?)));
            match texts {
                Ok(pair) => {
                    pairs.push(pair);
                    rows.push(i);
                }
                Err(bad) if collect_errors => errors[i] = Some(bad.msg),
                Err(bad) => return Err(bad.into_py_err()),
            }
        }
        drop((queries, documents));

        let engine = self.engine.clone();
        let row_label = row.to_string();
        let scored = py.detach(move || {
            guarded(|| {
                // Tokenize on every core; with collect_errors a pair the tokenizer rejects is
                // reported on its row instead of failing the call.
                let encoded: Vec<crossrank::Result<EncodedPair>> =
                    pairs.par_iter().map(|(q, d)| engine.encode(q, d)).collect();
                let mut ok_rows = Vec::with_capacity(rows.len());
                let mut ok_pairs = Vec::with_capacity(rows.len());
                let mut failed = Vec::new();
                for (&i, e) in rows.iter().zip(encoded) {
                    match e {
                        Ok(p) => {
                            ok_rows.push(i);
                            ok_pairs.push(p);
                        }
                        Err(e) if collect_errors => failed.push((i, e.to_string())),
                        Err(e) => return Err(Error::InvalidArgument(format!("{row_label} {i}: {e}"))),
                    }
                }
                let mut report = |pairs: usize, _tokens: usize| {
                    if let Some(callback) = &progress {
                        // A failing progress callback must not fail the scoring.
                        Python::attach(|py| {
                            if let Err(e) = callback.call1(py, (pairs,)) {
                                e.write_unraisable(py, None);
                            }
                        });
                    }
                };
                // Rows are length-sorted and packed within windows of rows exactly as the CLI's
                // pipeline does (`window_containing`: 1024, 2048, ... rows, then `window`), so
                // the batches, and therefore the logits bit for bit, are the CLI's.
                let mut logits = Vec::with_capacity(ok_pairs.len());
                let mut start = 0;
                while start < ok_rows.len() {
                    let end_row = window_containing(ok_rows[start] as u64, window).end;
                    let end = start + ok_rows[start..].partition_point(|&i| (i as u64) < end_row);
                    logits.extend(engine.score_encoded_with(&ok_pairs[start..end], &mut report)?);
                    start = end;
                }
                Ok((ok_rows, logits, failed))
            })
        });
        let (ok_rows, row_logits, failed) = scored.map_err(to_py_err)?;
        let mut logits = vec![f32::NAN; n];
        let mut scores = vec![f32::NAN; n];
        for (&i, logit) in ok_rows.iter().zip(row_logits) {
            logits[i] = logit;
            scores[i] = activation.apply(logit);
        }
        for (i, msg) in failed {
            errors[i] = Some(msg);
        }
        Ok((
            f32_bytes(py, &logits),
            f32_bytes(py, &scores),
            collect_errors.then_some(errors),
        ))
    }

    /// Reranking metrics as sentence-transformers' `CrossEncoderRerankingEvaluator` computes
    /// them (`crossrank eval`, src/eval.rs). `source` is a file path (`is_path`) or the samples
    /// themselves as JSON lines; `format` "jsonl" or "tsv" (None: from the path's extension,
    /// else jsonl). Returns the JSON report and one JSON line per query.
    #[pyo3(signature = (source, is_path, at_k = 10, always_rerank_positives = true, format = None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        source: String,
        is_path: bool,
        at_k: usize,
        always_rerank_positives: bool,
        format: Option<&str>,
    ) -> PyResult<(String, Vec<String>)> {
        let format = match format {
            None if is_path => Format::from_path(Path::new(&source)).unwrap_or(Format::Jsonl),
            None => Format::Jsonl,
            Some(name) => Format::parse(name)
                .ok_or_else(|| PyValueError::new_err(format!("unknown format `{name}` (expected jsonl or tsv)")))?,
        };
        let options = EvalOptions {
            at_k,
            always_rerank_positives,
        };
        let engine = self.engine.clone();
        let report = py.detach(move || {
            guarded(|| {
                let samples = if is_path {
                    let file = std::fs::File::open(&source).map_err(|e| Error::io(&source, e))?;
                    read_samples(std::io::BufReader::new(file), &source, format)?
                } else {
                    read_samples(source.as_bytes(), "samples", format)?
                };
                evaluate(&engine, &samples, &options, &mut |_, _| {})
            })
        });
        let report = report.map_err(to_py_err)?;
        let per_query = report.per_query_json().map(|row| row.to_string()).collect();
        Ok((report.to_json().to_string(), per_query))
    }

    fn __repr__(&self) -> String {
        format!(
            "Engine(model_dir={:?}, device={:?}, max_length={}, batch_tokens={})",
            self.model_dir(),
            self.device(),
            self.max_length(),
            self.batch_tokens()
        )
    }
}

#[pymodule]
fn _crossrank(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add("__version__", crossrank::VERSION)?;
    m.add("long_version", crossrank::long_version())?;
    Ok(())
}
