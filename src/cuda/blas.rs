//! The cuBLAS handle, and which `libcublas` it comes from.
//!
//! **Library names.** cudarc 0.19 (`dynamic-loading`) opens the first name of
//! `cudarc::get_lib_name_candidates("cublas")` that `dlopen` accepts, and that list starts
//! with the unversioned `libcublas.so`, the developer symlink, which may point at another CUDA
//! major (a CUDA 12 toolkit next to the CUDA 13 wheels), or exist where `libcublas.so.13`
//! does not. [`pin_versioned`] opens `libcublas.so.13` (and `libcublasLt.so.13`) first and
//! keeps it loaded; `dlopen` then hands cudarc the same loaded object for any name that is
//! the same file. When cudarc's first loadable name is a *different* library, the GPU is
//! refused with an error naming it, instead of running on a mismatched cuBLAS.
//!
//! **The handle.** cudarc's `CudaBlas::drop` unwraps `cublasDestroy`; after a sticky device
//! fault that returns an error, and the panic would replace the fault the user should see
//! (or abort while unwinding from it). [`BlasHandle`] owns the raw handle and destroys it
//! without unwrapping: the first error stays the one reported.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::result::{self as blas, CublasError};
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasHandle_t, cudaDataType_t};
use cudarc::cublas::GemmConfig;
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};
use half::f16;

/// The cuBLAS the build's cudarc bindings (`cuda-13000`) and kernels are made for.
pub const CUBLAS_VERSIONED: &str = "libcublas.so.13";
/// cuBLASLt of the same release (libcublas needs it; the GEMM autotuner calls it directly).
pub const CUBLASLT_VERSIONED: &str = "libcublasLt.so.13";

/// How a candidate library name opened, relative to the versioned library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// `dlopen` failed: cudarc would try the next name.
    No,
    /// The same loaded object as the versioned library.
    Same,
    /// Another library.
    Other,
}

/// The decision of [`pin_versioned`]: cudarc opens the first candidate that loads; that must
/// be the versioned library itself. `open` tells how each name opens.
pub fn check_candidates(versioned: &str, candidates: &[String], open: impl Fn(&str) -> Opened) -> Result<(), String> {
    for name in candidates {
        match open(name) {
            Opened::No => continue,
            Opened::Same => return Ok(()),
            Opened::Other => {
                return Err(format!(
                    "`{name}` on the library path is not {versioned}, and cudarc would load it first: put the \
                     directory holding {versioned} first on LD_LIBRARY_PATH, or remove the stray `{name}` from it"
                ))
            }
        }
    }
    Err(format!(
        "none of cudarc's names for {versioned} loads ({})",
        candidates.join(", ")
    ))
}

/// Raw `dlopen` handles of the pinned libraries, kept open for the life of the process.
fn pinned() -> &'static Mutex<Vec<(String, usize)>> {
    static PINNED: OnceLock<Mutex<Vec<(String, usize)>>> = OnceLock::new();
    PINNED.get_or_init(|| Mutex::new(Vec::new()))
}

fn dlopen(name: &str) -> Option<libloading::os::unix::Library> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading a CUDA library runs its initializers, which have no preconditions.
    unsafe { Library::open(Some(name), RTLD_NOW | RTLD_LOCAL) }.ok()
}

/// Loads `versioned` (e.g. `libcublas.so.13`) and checks that the first of cudarc's candidate
/// names for `stem` (e.g. `cublas`) that loads is that same library. `Ok(false)` when
/// `versioned` itself cannot be loaded.
pub fn pin_versioned(stem: &str, versioned: &str) -> Result<bool, String> {
    let mut pins = pinned().lock().unwrap_or_else(|p| p.into_inner());
    let handle = match pins.iter().find(|(n, _)| n == versioned) {
        Some(&(_, h)) => h,
        None => match dlopen(versioned) {
            Some(lib) => {
                let h = lib.into_raw() as usize;
                pins.push((versioned.to_string(), h));
                h
            }
            None => return Ok(false),
        },
    };
    let candidates = cudarc::get_lib_name_candidates(stem);
    check_candidates(versioned, &candidates, |name| match dlopen(name) {
        // dlopen returns the same handle for every name of one loaded object; closing this
        // extra reference keeps the pinned one.
        Some(lib) => {
            let raw = lib.into_raw();
            let same = raw as usize == handle;
            // SAFETY: `raw` came from `into_raw` just above; this drops that extra reference
            // only (the pinned one stays).
            drop(unsafe { libloading::os::unix::Library::from_raw(raw) });
            if same {
                Opened::Same
            } else {
                Opened::Other
            }
        }
        None => Opened::No,
    })
    .map(|()| true)
}

/// A cuBLAS handle bound to one stream, destroyed without unwrapping (see the module docs).
pub struct BlasHandle {
    handle: cublasHandle_t,
    stream: Arc<CudaStream>,
}

// SAFETY: a cuBLAS handle may be used from any thread, one call at a time; every use goes
// through `&self` methods that the engine serializes on its one stream.
unsafe impl Send for BlasHandle {}
unsafe impl Sync for BlasHandle {}

impl BlasHandle {
    /// Creates a handle whose work goes to `stream`.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self, CublasError> {
        // cuBLAS needs the context current; a failure to bind shows up as the create error.
        let _ = stream.context().bind_to_thread();
        let handle = blas::create_handle()?;
        let this = BlasHandle { handle, stream };
        // SAFETY: the handle was just created; the stream outlives it (held in `this`).
        unsafe { blas::set_stream(this.handle, this.stream.cu_stream() as _) }?;
        Ok(this)
    }

    /// `C = op(A)·op(B)` on fp16 matrices, fp32 accumulation and scale (`cublasGemmEx`,
    /// `CUBLAS_COMPUTE_32F`, default algorithm), as cudarc's `Gemm<f16>` does it.
    ///
    /// # Safety
    /// `cfg` must describe matrices within the buffers' bounds.
    pub unsafe fn gemm_f16(
        &self,
        cfg: GemmConfig<f16>,
        a: &impl DevicePtr<f16>,
        b: &impl DevicePtr<f16>,
        c: &mut impl DevicePtrMut<f16>,
    ) -> Result<(), CublasError> {
        let alpha = cfg.alpha.to_f32();
        let beta = cfg.beta.to_f32();
        let (a, _record_a) = a.device_ptr(&self.stream);
        let (b, _record_b) = b.device_ptr(&self.stream);
        let (c, _record_c) = c.device_ptr_mut(&self.stream);
        blas::gemm_ex(
            self.handle,
            cfg.transa,
            cfg.transb,
            cfg.m,
            cfg.n,
            cfg.k,
            (&alpha) as *const f32 as *const c_void,
            a as *const c_void,
            cudaDataType_t::CUDA_R_16F,
            cfg.lda,
            b as *const c_void,
            cudaDataType_t::CUDA_R_16F,
            cfg.ldb,
            (&beta) as *const f32 as *const c_void,
            c as *mut c_void,
            cudaDataType_t::CUDA_R_16F,
            cfg.ldc,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
}

/// Destroys `handle` with `destroy` unless it is null, and returns (never unwraps) the status.
/// After a sticky device fault `cublasDestroy` fails too; that second error is not the one to
/// report, so the caller only logs it.
pub fn release<H>(handle: *mut H, destroy: impl FnOnce(*mut H) -> Result<(), CublasError>) -> Result<(), CublasError> {
    if handle.is_null() {
        return Ok(());
    }
    destroy(handle)
}

impl Drop for BlasHandle {
    fn drop(&mut self) {
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        // SAFETY: the handle was created by `create_handle` and is destroyed once.
        if let Err(e) = release(handle, |h| unsafe { blas::destroy_handle(h) }) {
            if std::env::var_os("CROSSRANK_DEBUG").is_some() {
                eprintln!("crossrank: cublasDestroy after an earlier failure: {e:?} (ignored)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::cublas::sys::cublasStatus_t;

    /// cudarc 0.19 lists the unversioned name first and the versioned one later: the reason
    /// the versioned library is pinned before cudarc's first cuBLAS call. If cudarc changes its
    /// order this fails, and the pinning can be revisited.
    #[test]
    fn cudarc_tries_the_unversioned_name_before_the_versioned_one() {
        let names = cudarc::get_lib_name_candidates("cublas");
        let unversioned = names
            .iter()
            .position(|n| n == "libcublas.so")
            .expect("libcublas.so listed");
        let versioned = names
            .iter()
            .position(|n| n == CUBLAS_VERSIONED)
            .expect("libcublas.so.13 listed");
        assert!(unversioned < versioned, "{names:?}");
        let lt = cudarc::get_lib_name_candidates("cublasLt");
        assert!(lt.iter().any(|n| n == CUBLASLT_VERSIONED), "{lt:?}");
    }

    #[test]
    fn the_first_loadable_candidate_must_be_the_versioned_library() {
        let names = cudarc::get_lib_name_candidates("cublas");
        // The developer symlink points at the same file: cudarc gets the pinned library.
        let same = |n: &str| {
            if n == "libcublas.so" || n == CUBLAS_VERSIONED {
                Opened::Same
            } else {
                Opened::No
            }
        };
        assert_eq!(check_candidates(CUBLAS_VERSIONED, &names, same), Ok(()));
        // No unversioned name (the pip wheels): cudarc reaches the versioned name.
        let wheel = |n: &str| {
            if n == CUBLAS_VERSIONED {
                Opened::Same
            } else {
                Opened::No
            }
        };
        assert_eq!(check_candidates(CUBLAS_VERSIONED, &names, wheel), Ok(()));
        // A stray libcublas.so of another CUDA major ahead on the path: refused, named.
        let stray = |n: &str| match n {
            "libcublas.so" => Opened::Other,
            CUBLAS_VERSIONED => Opened::Same,
            _ => Opened::No,
        };
        let e = check_candidates(CUBLAS_VERSIONED, &names, stray).unwrap_err();
        assert!(e.contains("`libcublas.so`") && e.contains("LD_LIBRARY_PATH"), "{e}");
        // libcublas.so.12 listed after .13 never matters once .13 opened.
        let twelve = |n: &str| match n {
            CUBLAS_VERSIONED => Opened::Same,
            "libcublas.so.12" => Opened::Other,
            _ => Opened::No,
        };
        assert_eq!(check_candidates(CUBLAS_VERSIONED, &names, twelve), Ok(()));
        assert!(check_candidates(CUBLAS_VERSIONED, &names, |_| Opened::No).is_err());
    }

    /// Where no cuBLAS is installed (CI) the versioned library does not load: `Ok(false)`,
    /// which `probe_libraries` turns into the "cuBLAS not found" error; never a panic.
    #[test]
    fn pinning_without_cublas_is_a_clean_answer() {
        match pin_versioned("cublas", CUBLAS_VERSIONED) {
            Ok(false) => {}
            Ok(true) => eprintln!("{CUBLAS_VERSIONED} is installed here and cudarc resolves to it"),
            Err(e) => eprintln!("a mismatched cuBLAS is installed here: {e}"),
        }
    }

    #[test]
    fn release_never_panics_on_a_failed_destroy() {
        let mut called = false;
        let fake = 0x10usize as *mut u8;
        let status = release(fake, |_| {
            called = true;
            Err(CublasError(cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED))
        });
        assert!(called);
        assert_eq!(status.unwrap_err().0, cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED);
        // A null handle (never created, or already released) is not destroyed again.
        assert!(release(std::ptr::null_mut::<u8>(), |_| panic!("destroyed a null handle")).is_ok());
    }
}
