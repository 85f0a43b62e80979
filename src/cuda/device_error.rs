//! Device errors: CUDA driver and cuBLAS failures become [`Error::Device`] (what was being
//! done, the driver's name and text for the error, a hint for the known traps) or
//! [`Error::DeviceOutOfMemory`], which the engine answers by splitting the batch.

use cudarc::cublas::result::CublasError;
use cudarc::driver::{sys, DriverError};

use crate::error::{Error, Result};

/// `CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)`.
pub fn describe_driver_error(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(text) => format!("{name} ({})", text.to_string_lossy()),
        Err(_) => name,
    }
}

/// Adds what was being done to CUDA and cuBLAS errors and makes them [`Error::Device`], or
/// [`Error::DeviceOutOfMemory`] when the device ran out of memory (the engine then splits the
/// batch; [`crate::cuda::GpuModel::load`] turns it back into `Device` so `Device::Auto` falls
/// back to the CPU).
pub trait DeviceResultExt<T> {
    fn device(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> DeviceResultExt<T> for std::result::Result<T, DriverError> {
    fn device(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let msg = format!("{}: {}", what(), describe_driver_error(e));
            match e.0 {
                sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                    Error::DeviceOutOfMemory(format!("{msg}; lower --batch-tokens or free GPU memory"))
                }
                sys::CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION => Error::Device(format!(
                    "{msg}; a kernel precondition trap (cr_require): a launch-configuration or shape bug"
                )),
                sys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => Error::Device(format!(
                    "{msg}; the PTX comes from an nvcc/NVRTC newer than this driver supports: build with \
                     (or point LD_LIBRARY_PATH at) a CUDA toolkit no newer than the driver"
                )),
                _ => Error::Device(msg),
            }
        })
    }
}

impl<T> DeviceResultExt<T> for std::result::Result<T, CublasError> {
    fn device(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let msg = format!("{}: cuBLAS {:?}", what(), e.0);
            if e.0 == cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED {
                Error::DeviceOutOfMemory(msg)
            } else {
                Error::Device(msg)
            }
        })
    }
}

/// Errors of loading a model are all [`Error::Device`] (out of memory included), so that
/// `Device::Auto` falls back to the CPU.
pub fn load_error(e: Error) -> Error {
    match e {
        Error::DeviceOutOfMemory(msg) => Error::Device(format!("out of device memory while loading the model: {msg}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_its_own_error_except_while_loading() {
        let oom: std::result::Result<(), CublasError> = Err(CublasError(
            cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED,
        ));
        let e = oom.device(|| "gemm".into()).unwrap_err();
        assert!(matches!(e, Error::DeviceOutOfMemory(_)), "{e:?}");
        assert!(matches!(load_error(e), Error::Device(m) if m.contains("loading the model")));
        let other: std::result::Result<(), CublasError> = Err(CublasError(
            cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_EXECUTION_FAILED,
        ));
        assert!(matches!(other.device(|| "gemm".into()), Err(Error::Device(_))));
        assert!(matches!(load_error(Error::Hub("x".into())), Error::Hub(_)));
    }
}
