//! The CUDA runtime pieces: library probing, the context, its one stream and cuBLAS handle,
//! host↔device copies. Device errors are [`crate::cuda::device_error`]; loading the kernel
//! modules is [`crate::cuda::module`].
//!
//! cudarc loads `libcuda` and `libcublas` lazily and *panics* when they are missing, so
//! [`probe_libraries`] checks both with a plain `dlopen` before the first call into either,
//! and turns their absence into an [`Error::Device`] that says what to do; cuBLAS and
//! cuBLASLt are pinned by their versioned names first ([`crate::cuda::blas`]). Context
//! creation is additionally wrapped in `catch_unwind` (a driver too old to export a symbol
//! cudarc wants also panics).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};

use crate::cuda::blas::{pin_versioned, BlasHandle, CUBLASLT_VERSIONED, CUBLAS_VERSIONED};

pub use crate::cuda::device_error::{describe_driver_error, load_error, DeviceResultExt};
use crate::cuda::module::{KernelOrigin, Kernels};
// Kept reachable here, where it lived before the module loading got its own file.
pub use crate::cuda::module::load_module;
use crate::error::{Error, Result};

/// Shown when `libcuda.so` cannot be loaded.
pub const NO_DRIVER: &str =
    "no CUDA driver found (libcuda.so could not be loaded); use --device cpu, or install the NVIDIA driver";
/// Shown when `libcublas.so` cannot be loaded.
pub const NO_CUBLAS: &str = "cuBLAS not found (libcublas.so.13 could not be loaded; it needs libcublasLt.so.13 \
     beside it): add the directory holding them to LD_LIBRARY_PATH, or use --device cpu";

/// Oldest GPU the kernels run on: sm_80 (cp.async, ldmatrix, mma.sync m16n8k16).
pub const MIN_COMPUTE_CAPABILITY: (i32, i32) = (8, 0);

/// Checks that the driver and cuBLAS libraries can be loaded, without calling into either,
/// and pins `libcublas.so.13` / `libcublasLt.so.13` so that cudarc gets those (not whatever
/// an unversioned `libcublas.so` points at).
pub fn probe_libraries() -> Result<()> {
    // SAFETY: this only dlopen()s candidate library names and closes them again.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    check_libraries(driver, true)?;
    for (stem, versioned) in [("cublas", CUBLAS_VERSIONED), ("cublasLt", CUBLASLT_VERSIONED)] {
        match pin_versioned(stem, versioned) {
            Ok(true) => {}
            Ok(false) => check_libraries(true, false)?,
            Err(msg) => return Err(Error::Device(format!("cuBLAS: {msg}"))),
        }
    }
    Ok(())
}

/// The decision of [`probe_libraries`], separated so it can be tested on any machine.
pub fn check_libraries(driver_present: bool, cublas_present: bool) -> Result<()> {
    if !driver_present {
        return Err(Error::Device(NO_DRIVER.into()));
    }
    if !cublas_present {
        return Err(Error::Device(NO_CUBLAS.into()));
    }
    Ok(())
}

/// Static facts about the device in use.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: i32,
    pub total_memory: usize,
    /// Where the kernels came from (embedded PTX or NVRTC).
    pub kernels: KernelOrigin,
}

impl DeviceInfo {
    /// `cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 80 GiB)`.
    pub fn describe(&self) -> String {
        format!(
            "cuda:{} {} (sm_{}{}, {} SMs, {:.0} GiB)",
            self.ordinal,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.multiprocessors,
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }
}

/// One CUDA device ready to run the kernels: a context, one stream that all work is issued on,
/// a cuBLAS handle bound to that stream, and the loaded kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pub(crate) blas: BlasHandle,
    pub(crate) kernels: Kernels,
    info: DeviceInfo,
}

/// Oldest driver API version the build works with: the PTX comes from nvcc / NVRTC 13.0, and
/// cudarc's `cuda-13000` bindings call entry points (e.g. `cuEventElapsedTime_v2`) that older
/// drivers lack, which cudarc reports by panicking rather than by an error.
const MIN_DRIVER_VERSION: i32 = 13000;

fn check_driver_version() -> Result<()> {
    let mut version: std::ffi::c_int = 0;
    // SAFETY: plain out-parameter call; the driver is initialized (a context exists).
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .device(|| "reading the CUDA driver version".to_string())?;
    if version < MIN_DRIVER_VERSION {
        return Err(Error::Device(format!(
            "the CUDA driver supports CUDA {}.{}; crossrank's kernels need {}.{} or newer (driver R580+); \
             update the driver or use --device cpu",
            version / 1000,
            version % 1000 / 10,
            MIN_DRIVER_VERSION / 1000,
            MIN_DRIVER_VERSION % 1000 / 10
        )));
    }
    Ok(())
}

impl Gpu {
    /// Opens device `ordinal` with the kernels from `origin`.
    pub fn new(ordinal: usize, origin: KernelOrigin) -> Result<Arc<Gpu>> {
        probe_libraries()?;
        let ctx = catch_unwind(AssertUnwindSafe(|| open_context(ordinal))).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::Device(format!("CUDA driver unusable: {msg}")))
        })?;
        check_driver_version()?;
        let what = || format!("cuda:{ordinal}: reading device attributes");
        let name = ctx.name().device(what)?;
        let compute_capability = ctx.compute_capability().device(what)?;
        let multiprocessors = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .device(what)?;
        let total_memory = ctx.total_mem().device(what)?;
        if compute_capability < MIN_COMPUTE_CAPABILITY {
            return Err(Error::Device(format!(
                "cuda:{ordinal} {name} has compute capability {}.{}; the kernels need {}.{} or newer (Ampere+); use --device cpu",
                compute_capability.0, compute_capability.1, MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
            )));
        }
        // One stream for everything: no cross-stream hazards, so no per-buffer events. Must be
        // switched off before the first allocation (it applies to buffers created afterwards).
        // SAFETY: every buffer of this context is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .device(|| format!("cuda:{ordinal}: creating a stream"))?;
        let blas = BlasHandle::new(stream.clone()).device(|| format!("cuda:{ordinal}: creating the cuBLAS handle"))?;
        let (kernels, origin) = Kernels::load(&ctx, origin)?;
        Ok(Arc::new(Gpu {
            info: DeviceInfo {
                ordinal,
                name,
                compute_capability,
                multiprocessors,
                total_memory,
                kernels: origin,
            },
            ctx,
            stream,
            blas,
            kernels,
        }))
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Makes this context current on the calling thread (cuBLAS calls need it; kernel
    /// launches and copies through cudarc do it themselves).
    pub fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().device(|| "binding the CUDA context".into())
    }

    /// Waits for all work issued so far; surfaces asynchronous kernel faults.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().device(|| "waiting for the GPU".into())
    }

    /// `(free, total)` device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().device(|| "querying GPU memory".into())
    }

    /// A new device buffer holding a copy of `host`.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(host)
            .device(|| format!("uploading {} bytes", std::mem::size_of_val(host)))
    }

    /// Copies `host` into the start of `dst`.
    pub fn upload_into<T: DeviceRepr>(&self, host: &[T], dst: &mut impl DevicePtrMut<T>) -> Result<()> {
        if dst.len() < host.len() {
            return Err(Error::Internal(format!(
                "upload of {} elements into a buffer of {}",
                host.len(),
                dst.len()
            )));
        }
        self.stream
            .memcpy_htod(host, dst)
            .device(|| format!("uploading {} bytes", std::mem::size_of_val(host)))
    }

    /// A zero-filled device buffer of `len` elements.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros(len.max(1))
            .device(|| format!("allocating {:.1} MiB of GPU memory", mib::<T>(len)))
    }

    /// A device buffer of `len` elements with unspecified contents.
    ///
    /// # Safety
    /// Every element must be written before it is read.
    pub unsafe fn alloc_uninit<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc(len.max(1))
            .device(|| format!("allocating {:.1} MiB of GPU memory", mib::<T>(len)))
    }

    /// Copies a device buffer (or view) to a new host vector, waiting for all prior work.
    pub fn download<T: DeviceRepr + Clone + Default>(&self, src: &impl DevicePtr<T>) -> Result<Vec<T>> {
        let mut host = vec![T::default(); src.len()];
        self.download_into(src, &mut host)?;
        Ok(host)
    }

    /// Copies the first `host.len()` elements of a device buffer into `host`, waiting for all
    /// prior work (the copy is synchronous, then the stream is synchronized so that faults of
    /// earlier kernels are reported here).
    pub fn download_into<T: DeviceRepr>(&self, src: &impl DevicePtr<T>, host: &mut [T]) -> Result<()> {
        self.copy_to_host(src, host)?;
        self.synchronize()
    }

    /// Copies the first `host.len()` elements of a device buffer into `host` without
    /// synchronizing the stream afterwards. Into pageable host memory (a `Vec`, a slice of
    /// one) the copy has completed when this returns (CUDA's rule for device-to-host copies
    /// to pageable memory), but faults of earlier kernels only surface at the next
    /// synchronization: call [`Gpu::synchronize`] before trusting `host`.
    pub fn copy_to_host<T: DeviceRepr>(&self, src: &impl DevicePtr<T>, host: &mut [T]) -> Result<()> {
        if src.len() < host.len() {
            return Err(Error::Internal(format!(
                "download of {} elements from a buffer of {}",
                host.len(),
                src.len()
            )));
        }
        let n = host.len();
        self.stream
            .memcpy_dtoh(&TruncatedView { src, len: n }, host)
            .device(|| format!("downloading {} bytes", std::mem::size_of_val(host)))
    }
}

fn mib<T>(len: usize) -> f64 {
    (len * std::mem::size_of::<T>()) as f64 / (1u64 << 20) as f64
}

fn open_context(ordinal: usize) -> Result<Arc<CudaContext>> {
    let count = CudaContext::device_count().device(|| "CUDA initialization failed".into())?;
    if count <= 0 {
        return Err(Error::Device("the CUDA driver reports no GPU; use --device cpu".into()));
    }
    if ordinal >= count as usize {
        return Err(Error::Device(format!(
            "CUDA device {ordinal} does not exist ({count} device{} found: cuda:0{})",
            if count == 1 { "" } else { "s" },
            if count > 1 {
                format!("..cuda:{}", count - 1)
            } else {
                String::new()
            }
        )));
    }
    CudaContext::new(ordinal).device(|| format!("creating a CUDA context on device {ordinal}"))
}

/// The first `len` elements of a device buffer, as a [`DevicePtr`] (cudarc's views need a
/// concrete `CudaSlice`/`CudaView`; this works for any `DevicePtr`).
struct TruncatedView<'a, S> {
    src: &'a S,
    len: usize,
}

impl<T, S: DevicePtr<T>> cudarc::driver::DeviceSlice<T> for TruncatedView<'_, S> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        self.src.stream()
    }
}

impl<T, S: DevicePtr<T>> DevicePtr<T> for TruncatedView<'_, S> {
    fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (sys::CUdeviceptr, cudarc::driver::SyncOnDrop<'a>) {
        self.src.device_ptr(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libraries_are_device_errors_with_a_hint() {
        match check_libraries(false, true) {
            Err(Error::Device(msg)) => {
                assert!(msg.contains("libcuda.so"), "{msg}");
                assert!(msg.contains("--device cpu"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        match check_libraries(true, false) {
            Err(Error::Device(msg)) => {
                assert!(msg.contains("libcublas.so.13"), "{msg}");
                assert!(msg.contains("LD_LIBRARY_PATH"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_libraries(true, true).is_ok());
        assert_eq!(
            Error::Device(String::new()).exit_code(),
            crate::error::exit_code::DEVICE
        );
    }

    /// On a machine without a driver (CI, the development machine) opening a GPU must be a
    /// clean `Error::Device`, never a panic. Where a driver exists this checks nothing.
    #[test]
    fn opening_a_gpu_without_a_driver_is_a_clean_error() {
        // SAFETY: dlopen probe only.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            eprintln!("a CUDA driver is present here; nothing to check");
            return;
        }
        match Gpu::new(0, KernelOrigin::Auto) {
            Err(Error::Device(msg)) => assert_eq!(msg, NO_DRIVER),
            Err(other) => panic!("expected a device error, got {other:?}"),
            Ok(_) => panic!("opened a GPU without a driver"),
        }
    }
}
