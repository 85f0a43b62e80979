//! The C ABI declared in `include/crossrank.h` (the header is the contract and carries the
//! user documentation; this module implements it).
//!
//! Rules every function here follows:
//! - No panic crosses the boundary: each body runs under [`catch_unwind`], and a caught
//!   panic becomes `CROSSRANK_ERR_INTERNAL` with the panic message.
//! - Nothing trusted comes from C: pointers are checked for NULL and alignment, strings
//!   for UTF-8, enum values for range (C enums are read as `c_int`, never as a Rust enum,
//!   which would be undefined behaviour for an out-of-range value).
//! - Model handles are opaque tokens looked up in a registry (`REGISTRY`); they are
//!   never dereferenced, and a handle value is never reused, so a freed or foreign
//!   handle is reported as `CROSSRANK_ERR_INVALID_ARGUMENT` rather than crashing, even
//!   after other models were loaded.
//! - Outputs are computed into Rust vectors and copied out only on success, so a failed
//!   call leaves the caller's buffers untouched.
//! - The message of a failure goes into a thread-local `CString` ([`crossrank_last_error`]).

#![allow(non_camel_case_types)]

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::{Device, Engine, EngineOptions};
use crate::error::Error;

/// `crossrank_status`: a C enum, passed as `int`.
pub type crossrank_status = c_int;
pub const CROSSRANK_OK: crossrank_status = 0;
pub const CROSSRANK_ERR_INVALID_ARGUMENT: crossrank_status = 1;
pub const CROSSRANK_ERR_IO: crossrank_status = 2;
pub const CROSSRANK_ERR_MODEL: crossrank_status = 3;
pub const CROSSRANK_ERR_DEVICE: crossrank_status = 4;
pub const CROSSRANK_ERR_INTERNAL: crossrank_status = 5;

/// `crossrank_device`: a C enum, passed as `int`.
pub type crossrank_device = c_int;
pub const CROSSRANK_DEVICE_AUTO: crossrank_device = 0;
pub const CROSSRANK_DEVICE_CPU: crossrank_device = 1;
pub const CROSSRANK_DEVICE_CUDA: crossrank_device = 2;

/// `CROSSRANK_ABI_VERSION` of the header this library implements.
pub const ABI_VERSION: u32 = 1;

/// The opaque `crossrank_model`. Never instantiated: a `*mut crossrank_model` is a handle
/// value from the registry, not an address.
#[repr(C)]
pub struct crossrank_model {
    _opaque: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct crossrank_model_params {
    pub device: crossrank_device,
    pub cuda_device_index: i32,
    pub max_length: u32,
    pub batch_tokens: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct crossrank_model_info {
    pub device: crossrank_device,
    pub cuda_device_index: i32,
    pub max_length: u32,
    pub batch_tokens: u32,
    pub hidden_size: u32,
    pub num_layers: u32,
    pub vocab_size: u32,
}

// ---------------------------------------------------------------------------------------
// Errors

/// A failed call: its status and message.
struct Failure {
    status: crossrank_status,
    message: String,
}

type CResult<T> = Result<T, Failure>;

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        status: CROSSRANK_ERR_INVALID_ARGUMENT,
        message: message.into(),
    }
}

/// The status of a crate error (the C counterpart of [`Error::exit_code`]).
pub fn status_of(error: &Error) -> crossrank_status {
    match error {
        Error::Io { .. } => CROSSRANK_ERR_IO,
        Error::Config { .. }
        | Error::Tensor { .. }
        | Error::Checkpoint { .. }
        | Error::Tokenizer { .. }
        | Error::Hub(_) => CROSSRANK_ERR_MODEL,
        Error::Device(_) | Error::DeviceOutOfMemory(_) => CROSSRANK_ERR_DEVICE,
        Error::InvalidArgument(_) | Error::Input { .. } => CROSSRANK_ERR_INVALID_ARGUMENT,
        Error::Internal(_) | Error::Interrupted => CROSSRANK_ERR_INTERNAL,
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            status: status_of(&error),
            message: error.to_string(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // An interior NUL would truncate the message in C; make it visible instead.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; the status still reports it.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = Some(message));
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs `body` with panics caught; records the message of a failure.
fn guard(name: &str, body: impl FnOnce() -> CResult<()>) -> crossrank_status {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return CROSSRANK_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let failure = Failure {
                status: CROSSRANK_ERR_INTERNAL,
                message: format!("internal error: panic in {name}: {}", panic_message(payload.as_ref())),
            };
            // Dropping a payload can itself panic; never let that unwind into C.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            failure
        }
    };
    set_last_error(&failure.message);
    failure.status
}

// ---------------------------------------------------------------------------------------
// Handle registry

/// A loaded model and the device it ended up on.
struct Model {
    engine: Engine,
    device: crossrank_device,
    cuda_device_index: i32,
}

struct Registry {
    /// Live models by handle value. An `Arc` so a call in flight keeps its model alive
    /// while another thread frees the handle.
    live: BTreeMap<usize, Arc<Model>>,
    /// Handles issued so far; the next handle is `(issued + 1) * HANDLE_STEP`.
    issued: usize,
}

/// Handle values are multiples of this (pointer-aligned, never NULL) and never reused.
const HANDLE_STEP: usize = 16;

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeMap::new(),
    issued: 0,
});

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock, but a poisoned registry is still consistent.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(model: Model) -> CResult<*mut crossrank_model> {
    let mut reg = registry();
    let handle = reg
        .issued
        .checked_add(1)
        .and_then(|n| n.checked_mul(HANDLE_STEP))
        .ok_or_else(|| Failure {
            status: CROSSRANK_ERR_INTERNAL,
            message: "internal error: model handles exhausted".into(),
        })?;
    reg.issued += 1;
    reg.live.insert(handle, Arc::new(model));
    Ok(std::ptr::without_provenance_mut(handle))
}

fn lookup(model: *const crossrank_model) -> CResult<Arc<Model>> {
    if model.is_null() {
        return Err(invalid("model is NULL"));
    }
    registry().live.get(&model.addr()).cloned().ok_or_else(|| {
        invalid(format!(
            "model {model:p} is not a live crossrank_model handle (freed, or never returned by crossrank_model_load)"
        ))
    })
}

/// Number of live model handles (for tests).
pub fn live_models() -> usize {
    registry().live.len()
}

// ---------------------------------------------------------------------------------------
// Reading C arguments

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn c_str<'a>(ptr: *const c_char, what: &dyn Fn() -> String) -> CResult<&'a str> {
    if ptr.is_null() {
        return Err(invalid(format!("{} is NULL", what())));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        invalid(format!(
            "{} is not valid UTF-8 (invalid byte at offset {})",
            what(),
            e.valid_up_to()
        ))
    })
}

/// `n` elements at `ptr` as a slice; NULL is allowed when `n` is 0.
///
/// # Safety
/// `ptr` is NULL or points to `n` initialized `T`s that stay valid during the call.
unsafe fn c_array<'a, T>(ptr: *const T, n: usize, what: &str) -> CResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    check_out(ptr, n, what)?;
    // SAFETY: non-NULL, aligned, not larger than isize::MAX bytes (checked above), and
    // `n` initialized elements per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// Checks what can be checked of an array pointer: NULL, alignment, total size.
fn check_out<T>(ptr: *const T, n: usize, what: &str) -> CResult<()> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL but {n} elements were given")));
    }
    if !ptr.is_aligned() {
        return Err(invalid(format!(
            "{what} ({ptr:p}) is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    if n > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(invalid(format!(
            "{what}: {n} elements is more than the address space holds"
        )));
    }
    Ok(())
}

/// The strings of a `const char *const *` array of `n`.
///
/// # Safety
/// As [`c_array`] and [`c_str`] for every element.
unsafe fn c_strings<'a>(ptr: *const *const c_char, n: usize, what: &str) -> CResult<Vec<&'a str>> {
    // SAFETY: forwarded contract.
    let pointers = unsafe { c_array(ptr, n, what)? };
    pointers
        .iter()
        .enumerate()
        // SAFETY: forwarded contract.
        .map(|(i, &p)| unsafe { c_str(p, &|| format!("{what}[{i}]")) })
        .collect()
}

/// Copies `values` to `out` (if not NULL) after checking it.
///
/// # Safety
/// `out` is NULL or points to room for `values.len()` elements of `T`.
unsafe fn write_out<T: Copy>(out: *mut T, values: &[T]) {
    if !out.is_null() && !values.is_empty() {
        // SAFETY: checked by `check_out` before anything was written; room for
        // values.len() elements per the caller's contract; `values` is our own vector,
        // so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
    }
}

/// Checks an optional output array of `n` elements (NULL means "not wanted").
fn check_optional_out<T>(out: *const T, n: usize, what: &str) -> CResult<()> {
    if out.is_null() || n == 0 {
        Ok(())
    } else {
        check_out(out, n, what)
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// The API

static VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// See `crossrank_version` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_version() -> *const c_char {
    VERSION_C.as_ptr().cast()
}

/// See `crossrank_abi_version` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_abi_version() -> u32 {
    ABI_VERSION
}

/// See `crossrank_status_name` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_status_name(status: crossrank_status) -> *const c_char {
    let name: &'static CStr = match status {
        CROSSRANK_OK => c"CROSSRANK_OK",
        CROSSRANK_ERR_INVALID_ARGUMENT => c"CROSSRANK_ERR_INVALID_ARGUMENT",
        CROSSRANK_ERR_IO => c"CROSSRANK_ERR_IO",
        CROSSRANK_ERR_MODEL => c"CROSSRANK_ERR_MODEL",
        CROSSRANK_ERR_DEVICE => c"CROSSRANK_ERR_DEVICE",
        CROSSRANK_ERR_INTERNAL => c"CROSSRANK_ERR_INTERNAL",
        _ => c"CROSSRANK_ERR_UNKNOWN",
    };
    name.as_ptr()
}

/// See `crossrank_model_params_default` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_model_params_default() -> crossrank_model_params {
    crossrank_model_params {
        device: CROSSRANK_DEVICE_AUTO,
        cuda_device_index: 0,
        max_length: 0,
        batch_tokens: 0,
    }
}

fn load(dir: &Path, params: &crossrank_model_params) -> CResult<Model> {
    let index = params.cuda_device_index;
    let cuda_index =
        || usize::try_from(index).map_err(|_| invalid(format!("cuda_device_index must be >= 0, got {index}")));
    let mut options = EngineOptions {
        device: Device::Cpu,
        max_length: (params.max_length > 0).then_some(params.max_length as usize),
        batch_tokens: (params.batch_tokens > 0).then_some(params.batch_tokens as usize),
        threads: 0,
        precision: crate::model::Precision::F32,
    };
    let model = |engine: Engine, on_cuda: bool| Model {
        engine,
        device: if on_cuda {
            CROSSRANK_DEVICE_CUDA
        } else {
            CROSSRANK_DEVICE_CPU
        },
        cuda_device_index: if on_cuda { index } else { -1 },
    };
    match params.device {
        CROSSRANK_DEVICE_CPU => Ok(model(Engine::load(dir, &options)?, false)),
        CROSSRANK_DEVICE_CUDA => {
            options.device = Device::Cuda(cuda_index()?);
            Ok(model(Engine::load(dir, &options)?, true))
        }
        CROSSRANK_DEVICE_AUTO => {
            let ordinal = cuda_index()?;
            if ordinal == 0 {
                options.device = Device::Auto;
                let engine = Engine::load(dir, &options)?;
                // Engine's Auto explains why it fell back to the CPU, and only then.
                let on_cuda = engine.device_note().is_none();
                return Ok(model(engine, on_cuda));
            }
            options.device = Device::Cuda(ordinal);
            match Engine::load(dir, &options) {
                Ok(engine) => Ok(model(engine, true)),
                Err(Error::Device(_)) => {
                    options.device = Device::Cpu;
                    Ok(model(Engine::load(dir, &options)?, false))
                }
                Err(other) => Err(other.into()),
            }
        }
        other => Err(invalid(format!(
            "unknown device {other} (expected CROSSRANK_DEVICE_AUTO, _CPU or _CUDA)"
        ))),
    }
}

/// See `crossrank_model_load` in include/crossrank.h.
///
/// # Safety
/// `model_dir` is NULL or a NUL-terminated string; `params` is NULL or points to a
/// `crossrank_model_params`; `out_model` is NULL or points to writable room for a pointer.
#[no_mangle]
pub unsafe extern "C" fn crossrank_model_load(
    model_dir: *const c_char,
    params: *const crossrank_model_params,
    out_model: *mut *mut crossrank_model,
) -> crossrank_status {
    guard("crossrank_model_load", || {
        // SAFETY: per this function's contract.
        let dir = unsafe { c_str(model_dir, &|| "model_dir".into())? };
        if out_model.is_null() {
            return Err(invalid("out_model is NULL"));
        }
        if !out_model.is_aligned() {
            return Err(invalid(format!("out_model ({out_model:p}) is not aligned")));
        }
        let params = if params.is_null() {
            crossrank_model_params_default()
        } else if !params.is_aligned() {
            return Err(invalid(format!("params ({params:p}) is not aligned")));
        } else {
            // SAFETY: non-NULL, aligned, points to a params struct per the contract. Every
            // field is a plain integer, so any bit pattern is a valid value.
            unsafe { params.read() }
        };
        let handle = register(load(Path::new(dir), &params)?)?;
        // SAFETY: non-NULL and aligned (checked above), writable per the contract.
        unsafe { out_model.write(handle) };
        Ok(())
    })
}

/// See `crossrank_model_free` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_model_free(model: *mut crossrank_model) {
    // The handle is only compared, never dereferenced, so this function is safe to call
    // with any pointer. Unknown handles are a documented no-op.
    let _ = guard("crossrank_model_free", || {
        if !model.is_null() {
            // Drop the model (or our reference to it, when calls are in flight) outside
            // the registry lock: releasing weights can take a while.
            let removed = registry().live.remove(&model.addr());
            drop(removed);
        }
        Ok(())
    });
}

/// See `crossrank_model_get_info` in include/crossrank.h.
///
/// # Safety
/// `out_info` is NULL or points to writable room for a `crossrank_model_info`.
#[no_mangle]
pub unsafe extern "C" fn crossrank_model_get_info(
    model: *const crossrank_model,
    out_info: *mut crossrank_model_info,
) -> crossrank_status {
    guard("crossrank_model_get_info", || {
        let model = lookup(model)?;
        if out_info.is_null() {
            return Err(invalid("out_info is NULL"));
        }
        check_out(out_info, 1, "out_info")?;
        let engine = &model.engine;
        let config = engine.config();
        let info = crossrank_model_info {
            device: model.device,
            cuda_device_index: model.cuda_device_index,
            max_length: to_u32(engine.max_length()),
            batch_tokens: to_u32(engine.batch_tokens()),
            hidden_size: to_u32(config.hidden_size),
            num_layers: to_u32(config.num_layers),
            vocab_size: to_u32(config.vocab_size),
        };
        // SAFETY: checked non-NULL and aligned; writable per the contract.
        unsafe { out_info.write(info) };
        Ok(())
    })
}

/// See `crossrank_score` in include/crossrank.h.
///
/// # Safety
/// `queries` and `documents` are NULL or point to `n_pairs` pointers, each NULL or a
/// NUL-terminated string; `out_logits` and `out_scores` are NULL or point to room for
/// `n_pairs` floats.
#[no_mangle]
pub unsafe extern "C" fn crossrank_score(
    model: *mut crossrank_model,
    n_pairs: usize,
    queries: *const *const c_char,
    documents: *const *const c_char,
    out_logits: *mut f32,
    out_scores: *mut f32,
) -> crossrank_status {
    guard("crossrank_score", || {
        let model = lookup(model)?;
        // SAFETY: per this function's contract.
        let queries = unsafe { c_strings(queries, n_pairs, "queries")? };
        // SAFETY: per this function's contract.
        let documents = unsafe { c_strings(documents, n_pairs, "documents")? };
        check_optional_out(out_logits, n_pairs, "out_logits")?;
        check_optional_out(out_scores, n_pairs, "out_scores")?;
        if n_pairs == 0 {
            return Ok(());
        }
        let pairs: Vec<(&str, &str)> = queries.into_iter().zip(documents).collect();
        let scored = model.engine.score_pairs(&pairs)?;
        if scored.len() != n_pairs {
            return Err(Error::Internal(format!("{} scores for {n_pairs} pairs", scored.len())).into());
        }
        let logits: Vec<f32> = scored.iter().map(|s| s.logit).collect();
        let scores: Vec<f32> = scored.iter().map(|s| s.score).collect();
        // SAFETY: outputs checked above; room for n_pairs floats per the contract.
        unsafe {
            write_out(out_logits, &logits);
            write_out(out_scores, &scores);
        }
        Ok(())
    })
}

/// See `crossrank_rank` in include/crossrank.h.
///
/// # Safety
/// `query` is NULL or a NUL-terminated string; `documents` is NULL or points to
/// `n_documents` pointers, each NULL or a NUL-terminated string; `out_order` and
/// `out_scores` are NULL or point to room for `n_documents` elements.
#[no_mangle]
pub unsafe extern "C" fn crossrank_rank(
    model: *mut crossrank_model,
    query: *const c_char,
    n_documents: usize,
    documents: *const *const c_char,
    out_order: *mut usize,
    out_scores: *mut f32,
) -> crossrank_status {
    guard("crossrank_rank", || {
        let model = lookup(model)?;
        // SAFETY: per this function's contract.
        let query = unsafe { c_str(query, &|| "query".into())? };
        // SAFETY: per this function's contract.
        let documents = unsafe { c_strings(documents, n_documents, "documents")? };
        check_optional_out(out_order, n_documents, "out_order")?;
        check_optional_out(out_scores, n_documents, "out_scores")?;
        if n_documents == 0 {
            return Ok(());
        }
        let ranked = model.engine.rank(query, &documents)?;
        if ranked.len() != n_documents {
            return Err(Error::Internal(format!("{} ranked for {n_documents} documents", ranked.len())).into());
        }
        let order: Vec<usize> = ranked.iter().map(|r| r.index).collect();
        let scores: Vec<f32> = ranked.iter().map(|r| r.score).collect();
        // SAFETY: outputs checked above; room for n_documents elements per the contract.
        unsafe {
            write_out(out_order, &order);
            write_out(out_scores, &scores);
        }
        Ok(())
    })
}

/// See `crossrank_last_error` in include/crossrank.h.
#[no_mangle]
pub extern "C" fn crossrank_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ref().map_or(std::ptr::null(), |m| m.as_ptr()))
        .unwrap_or(std::ptr::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let p = crossrank_last_error();
        assert!(!p.is_null());
        // SAFETY: a NUL-terminated string owned by this thread's slot.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn status_names_cover_the_enum() {
        let name = |s| unsafe { CStr::from_ptr(crossrank_status_name(s)) }.to_str().unwrap();
        assert_eq!(name(CROSSRANK_OK), "CROSSRANK_OK");
        assert_eq!(name(CROSSRANK_ERR_INTERNAL), "CROSSRANK_ERR_INTERNAL");
        assert_eq!(name(-1), "CROSSRANK_ERR_UNKNOWN");
        assert_eq!(name(6), "CROSSRANK_ERR_UNKNOWN");
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(status_of(&Error::io("x", std::io::Error::other("e"))), CROSSRANK_ERR_IO);
        assert_eq!(status_of(&Error::config("x", "e")), CROSSRANK_ERR_MODEL);
        assert_eq!(status_of(&Error::tensor("x", "t", "e")), CROSSRANK_ERR_MODEL);
        assert_eq!(status_of(&Error::checkpoint("x", "e")), CROSSRANK_ERR_MODEL);
        assert_eq!(status_of(&Error::tokenizer("x", "e")), CROSSRANK_ERR_MODEL);
        assert_eq!(status_of(&Error::Hub("e".into())), CROSSRANK_ERR_MODEL);
        assert_eq!(status_of(&Error::Device("e".into())), CROSSRANK_ERR_DEVICE);
        assert_eq!(status_of(&Error::DeviceOutOfMemory("e".into())), CROSSRANK_ERR_DEVICE);
        assert_eq!(
            status_of(&Error::InvalidArgument("e".into())),
            CROSSRANK_ERR_INVALID_ARGUMENT
        );
        assert_eq!(status_of(&Error::input("f", 1, "e")), CROSSRANK_ERR_INVALID_ARGUMENT);
        assert_eq!(status_of(&Error::Internal("e".into())), CROSSRANK_ERR_INTERNAL);
        assert_eq!(status_of(&Error::Interrupted), CROSSRANK_ERR_INTERNAL);
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let status = guard("test", || panic!("boom {}", 42));
        assert_eq!(status, CROSSRANK_ERR_INTERNAL);
        assert_eq!(last_error(), "internal error: panic in test: boom 42");
        let status = guard("test", || std::panic::panic_any(7u8));
        assert_eq!(status, CROSSRANK_ERR_INTERNAL);
        assert!(last_error().contains("non-string payload"));
    }

    #[test]
    fn messages_with_nul_survive() {
        assert_eq!(guard("t", || Err(invalid("a\0b"))), CROSSRANK_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn last_error_is_per_thread_and_not_cleared_by_success() {
        assert_eq!(guard("t", || Err(invalid("mine"))), CROSSRANK_ERR_INVALID_ARGUMENT);
        std::thread::spawn(|| {
            assert!(crossrank_last_error().is_null());
            assert_eq!(guard("t", || Err(invalid("theirs"))), CROSSRANK_ERR_INVALID_ARGUMENT);
        })
        .join()
        .unwrap();
        assert_eq!(guard("t", || Ok(())), CROSSRANK_OK);
        assert_eq!(last_error(), "mine");
    }
}
