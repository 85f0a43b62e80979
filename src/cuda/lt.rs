//! cuBLASLt: the row-major `Y[n, out] = X[n, in] · W[out, in]ᵀ` of [`crate::cuda::gemm`] with an
//! explicitly chosen algorithm, for the GEMM autotuner ([`crate::cuda::tune`]).
//!
//! Same column-major trick as `gemm.rs` (fp16 A/B/C/D, `CUBLAS_COMPUTE_32F`, fp32 scale, no
//! epilogue): the stored `W` bytes are the column-major `[in, out]` matrix A (ld = in) used
//! transposed, `X` is the column-major `[in, n]` matrix B (ld = in), `Y` is the column-major
//! `[out, n]` matrix C = D (ld = out):
//!
//! ```text
//! D[m = out, n] = op(A)·B,  op(A) = Aᵀ: A layout (rows in, cols out, ld in), TRANSA = T;
//!                            B layout (rows in, cols n, ld in); C = D layout (rows out, cols n, ld out)
//! ```
//!
//! Why cuBLASLt and not `cublasGemmEx` with `CUBLAS_GEMM_ALGO{0..15}_TENSOR_OP`: cuBLAS
//! documents those algorithm values as deprecated and without effect on Ampere and newer GPUs
//! (every value runs cuBLAS's own heuristic choice), so on the sm_80+ GPUs the kernels need
//! timing them would measure the default sixteen times. `cublasLtMatmulAlgoGetHeuristic`
//! returns several genuinely different kernels (tile shape, stages, split-K, swizzle) for
//! the exact problem; timing its top results is what can beat the default.
//!
//! Raw `cudarc::cublaslt::sys` calls (cudarc's safe cuBLASLt wrapper asks for one heuristic
//! result only). Descriptors are owned by [`LtPlan`] (destroyed on drop); the handle and its
//! workspace by [`LtHandle`].

use std::ffi::c_void;
use std::mem::size_of;

use cudarc::cublaslt::sys as lt;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::f16;

use crate::cuda::runtime::Gpu;
use crate::error::{Error, Result};

/// cuBLASLt workspace: NVIDIA's recommendation, 32 MiB on Hopper (sm_90+), 4 MiB before.
pub fn workspace_bytes(compute_capability: (i32, i32)) -> usize {
    if compute_capability.0 >= 9 {
        32 << 20
    } else {
        4 << 20
    }
}

fn lt_ok(status: lt::cublasStatus_t, what: impl FnOnce() -> String) -> Result<()> {
    match status {
        lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        lt::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED => {
            Err(Error::DeviceOutOfMemory(format!("{}: cuBLASLt {status:?}", what())))
        }
        other => Err(Error::Device(format!("{}: cuBLASLt {other:?}", what()))),
    }
}

/// `cublasLtMatmulHeuristicResult_t` with the status as a plain integer: the library writes
/// it, and a value outside cudarc's Rust enum would be undefined behaviour there.
#[repr(C)]
#[derive(Clone, Copy)]
struct HeuristicResult {
    algo: lt::cublasLtMatmulAlgo_t,
    workspace_size: usize,
    state: u32,
    waves_count: f32,
    reserved: [i32; 4],
}

const _: () = assert!(size_of::<HeuristicResult>() == size_of::<lt::cublasLtMatmulHeuristicResult_t>());

impl HeuristicResult {
    fn zeroed() -> Self {
        HeuristicResult {
            algo: lt::cublasLtMatmulAlgo_t { data: [0; 8] },
            workspace_size: 0,
            state: u32::MAX,
            waves_count: 0.0,
            reserved: [0; 4],
        }
    }
}

/// One algorithm for one problem, as the heuristic returned it.
#[derive(Clone, Copy, Debug)]
pub struct LtAlgo {
    pub algo: lt::cublasLtMatmulAlgo_t,
    /// Workspace it needs for the problem it was returned for.
    pub workspace_bytes: usize,
    /// The heuristic's waves estimate (1.0 = one full wave of CTAs).
    pub waves: f32,
    pub info: LtAlgoInfo,
}

/// The readable configuration of an algorithm (`cublasLtMatmulAlgoConfigGetAttribute`):
/// values of cuBLASLt's enums (`tile` is a `cublasLtMatmulTile_t`, `stages` a
/// `cublasLtMatmulStages_t`, `cluster` a `cublasLtClusterShape_t`), -1 where unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LtAlgoInfo {
    pub id: i64,
    pub tile: i64,
    pub stages: i64,
    pub split_k: i64,
    pub swizzle: i64,
    pub reduction: i64,
    pub cluster: i64,
}

impl std::fmt::Display for LtAlgoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lt algo {} tile {} stages {} splitK {} swizzle {} reduction {} cluster {}",
            self.id, self.tile, self.stages, self.split_k, self.swizzle, self.reduction, self.cluster
        )
    }
}

impl LtAlgoInfo {
    /// `lt#21/t18/s9/k1`: id, tile, stages, split-K.
    pub fn short(&self) -> String {
        format!("lt#{}/t{}/s{}/k{}", self.id, self.tile, self.stages, self.split_k)
    }

    fn read(algo: &lt::cublasLtMatmulAlgo_t) -> Self {
        use lt::cublasLtMatmulAlgoConfigAttributes_t as A;
        let get = |attr: A, bytes: usize, signed: bool| -> i64 {
            let mut buf = [0u8; 8];
            let mut written = 0usize;
            // SAFETY: `algo` is an initialized algorithm; `buf` holds `bytes` <= 8 bytes.
            let status = unsafe {
                lt::cublasLtMatmulAlgoConfigGetAttribute(
                    algo,
                    attr,
                    buf.as_mut_ptr().cast::<c_void>(),
                    bytes,
                    &mut written,
                )
            };
            if status != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS || written != bytes {
                return -1;
            }
            match (bytes, signed) {
                (4, true) => i64::from(i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
                (4, false) => i64::from(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
                (2, _) => i64::from(u16::from_ne_bytes([buf[0], buf[1]])),
                _ => -1,
            }
        };
        LtAlgoInfo {
            id: get(A::CUBLASLT_ALGO_CONFIG_ID, 4, true),
            tile: get(A::CUBLASLT_ALGO_CONFIG_TILE_ID, 4, false),
            stages: get(A::CUBLASLT_ALGO_CONFIG_STAGES_ID, 4, false),
            split_k: get(A::CUBLASLT_ALGO_CONFIG_SPLITK_NUM, 4, false),
            swizzle: get(A::CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, 4, false),
            reduction: get(A::CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, 4, false),
            cluster: get(A::CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, 2, false),
        }
    }
}

/// The four cuBLASLt layout parameters `(rows, cols, ld)` of A, B and C = D for
/// `Y[n, out] = X[n, in] · W[out, in]ᵀ` (see the module docs).
pub fn lt_layouts(n: usize, in_features: usize, out_features: usize) -> [(u64, u64, i64); 3] {
    let (n, k, m) = (n as u64, in_features as u64, out_features as u64);
    [(k, m, k as i64), (k, n, k as i64), (m, n, m as i64)]
}

/// The operation and layout descriptors of one problem size.
pub struct LtPlan {
    pub n: usize,
    pub in_features: usize,
    pub out_features: usize,
    desc: lt::cublasLtMatmulDesc_t,
    a: lt::cublasLtMatrixLayout_t,
    b: lt::cublasLtMatrixLayout_t,
    c: lt::cublasLtMatrixLayout_t,
}

// SAFETY: the descriptors are plain host objects of cuBLASLt, used by one thread at a time
// (the owning tuner sits behind the model's mutex).
unsafe impl Send for LtPlan {}

impl LtPlan {
    pub fn new(n: usize, in_features: usize, out_features: usize) -> Result<Self> {
        for (what, v) in [
            ("rows", n),
            ("in_features", in_features),
            ("out_features", out_features),
        ] {
            if v == 0 || i32::try_from(v).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "cuBLASLt GEMM: {what} = {v} out of range"
                )));
            }
        }
        let mut plan = LtPlan {
            n,
            in_features,
            out_features,
            desc: std::ptr::null_mut(),
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            c: std::ptr::null_mut(),
        };
        let what = || format!("cuBLASLt descriptors for [{n} x {in_features}] x [{out_features} x {in_features}]^T");
        // SAFETY: out-pointers to fields of `plan`; each created object is destroyed by Drop
        // (null ones are skipped), also when a later call fails.
        unsafe {
            lt_ok(
                lt::cublasLtMatmulDescCreate(
                    &mut plan.desc,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    lt::cudaDataType_t::CUDA_R_32F,
                ),
                what,
            )?;
            let trans_a = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T as i32;
            lt_ok(
                lt::cublasLtMatmulDescSetAttribute(
                    plan.desc,
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    (&trans_a as *const i32).cast::<c_void>(),
                    size_of::<i32>(),
                ),
                what,
            )?;
            let [a, b, c] = lt_layouts(n, in_features, out_features);
            for ((rows, cols, ld), slot) in [(a, &mut plan.a), (b, &mut plan.b), (c, &mut plan.c)] {
                lt_ok(
                    lt::cublasLtMatrixLayoutCreate(slot, lt::cudaDataType_t::CUDA_R_16F, rows, cols, ld),
                    what,
                )?;
            }
        }
        Ok(plan)
    }
}

impl Drop for LtPlan {
    fn drop(&mut self) {
        // SAFETY: each object was created by LtPlan::new and is destroyed once; errors at
        // teardown are ignored.
        unsafe {
            for layout in [self.a, self.b, self.c] {
                if !layout.is_null() {
                    let _ = lt::cublasLtMatrixLayoutDestroy(layout);
                }
            }
            if !self.desc.is_null() {
                let _ = lt::cublasLtMatmulDescDestroy(self.desc);
            }
        }
    }
}

/// A cuBLASLt handle and its workspace, on the [`Gpu`]'s stream.
pub struct LtHandle {
    handle: lt::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    workspace_bytes: usize,
}

// SAFETY: the handle is used by one thread at a time (the owning tuner sits behind the
// model's mutex); cuBLASLt handles are not tied to a host thread.
unsafe impl Send for LtHandle {}

impl LtHandle {
    /// Loads libcublasLt (an [`Error::Device`] when it is missing), creates a handle and
    /// allocates the workspace.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        // SAFETY: dlopen probe only (cudarc panics on first use when the library is missing).
        if !unsafe { lt::is_culib_present() } {
            return Err(Error::Device(
                "cuBLASLt (libcublasLt.so.13) could not be loaded: add its directory to LD_LIBRARY_PATH".into(),
            ));
        }
        gpu.bind()?;
        let workspace_bytes = workspace_bytes(gpu.info().compute_capability);
        let workspace = gpu.alloc_zeros::<u8>(workspace_bytes)?;
        let mut handle: lt::cublasLtHandle_t = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; destroyed by Drop.
        lt_ok(unsafe { lt::cublasLtCreate(&mut handle) }, || {
            "creating the cuBLASLt handle".into()
        })?;
        Ok(LtHandle {
            handle,
            workspace,
            workspace_bytes,
        })
    }

    /// Up to `max` algorithms for `plan`, best first by cuBLASLt's own estimate, each usable
    /// with this handle's workspace.
    pub fn heuristics(&self, plan: &LtPlan, max: usize) -> Result<Vec<LtAlgo>> {
        let what = || {
            format!(
                "cuBLASLt heuristics for [{} x {}] x [{} x {}]^T",
                plan.n, plan.in_features, plan.out_features, plan.in_features
            )
        };
        let mut pref: lt::cublasLtMatmulPreference_t = std::ptr::null_mut();
        // SAFETY: out-pointer to a local, destroyed below on every path.
        lt_ok(unsafe { lt::cublasLtMatmulPreferenceCreate(&mut pref) }, what)?;
        let mut results = vec![HeuristicResult::zeroed(); max.max(1)];
        let mut returned: i32 = 0;
        let max_ws = self.workspace_bytes as u64;
        // SAFETY: `pref` is valid; the attribute is a u64; `results` holds `max` entries laid
        // out like cublasLtMatmulHeuristicResult_t (checked at compile time).
        let status = unsafe {
            let set = lt::cublasLtMatmulPreferenceSetAttribute(
                pref,
                lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&max_ws as *const u64).cast::<c_void>(),
                size_of::<u64>(),
            );
            let status = if set == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                lt::cublasLtMatmulAlgoGetHeuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.c,
                    plan.c,
                    pref,
                    results.len() as i32,
                    results.as_mut_ptr().cast::<lt::cublasLtMatmulHeuristicResult_t>(),
                    &mut returned,
                )
            } else {
                set
            };
            let _ = lt::cublasLtMatmulPreferenceDestroy(pref);
            status
        };
        lt_ok(status, what)?;
        let returned = (returned.max(0) as usize).min(results.len());
        Ok(results[..returned]
            .iter()
            .filter(|r| r.state == 0 && r.workspace_size <= self.workspace_bytes)
            .map(|r| LtAlgo {
                algo: r.algo,
                workspace_bytes: r.workspace_size,
                waves: r.waves_count,
                info: LtAlgoInfo::read(&r.algo),
            })
            .collect())
    }

    /// Whether `algo` (found for some other size) can run `plan` with this workspace.
    pub fn supports(&self, plan: &LtPlan, algo: &LtAlgo) -> bool {
        let mut result = HeuristicResult::zeroed();
        // SAFETY: valid handle, descriptors and algorithm; `result` is laid out like
        // cublasLtMatmulHeuristicResult_t.
        let status = unsafe {
            lt::cublasLtMatmulAlgoCheck(
                self.handle,
                plan.desc,
                plan.a,
                plan.b,
                plan.c,
                plan.c,
                &algo.algo,
                (&mut result as *mut HeuristicResult).cast::<lt::cublasLtMatmulHeuristicResult_t>(),
            )
        };
        status == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS
            && result.state == 0
            && result.workspace_size <= self.workspace_bytes
    }

    /// `y = x · wᵀ` for `plan`'s sizes with `algo`, on the GPU's stream. Every operand must
    /// start 256-byte aligned (a buffer's start: cuBLASLt's heuristics assume it).
    pub fn matmul(
        &self,
        gpu: &Gpu,
        plan: &LtPlan,
        algo: &LtAlgo,
        x: &impl DevicePtr<f16>,
        w: &impl DevicePtr<f16>,
        y: &mut impl DevicePtrMut<f16>,
    ) -> Result<()> {
        let (n, k, m) = (plan.n, plan.in_features, plan.out_features);
        for (what, have, want) in [("x", x.len(), n * k), ("w", w.len(), m * k), ("y", y.len(), n * m)] {
            if have < want {
                return Err(Error::Internal(format!(
                    "cuBLASLt GEMM: `{what}` holds {have} elements, needs {want}"
                )));
            }
        }
        gpu.bind()?;
        let stream = gpu.stream();
        let (xp, _g0) = x.device_ptr(stream);
        let (wp, _g1) = w.device_ptr(stream);
        let (yp, _g2) = y.device_ptr_mut(stream);
        let (ws, _g3) = self.workspace.device_ptr(stream);
        if [xp, wp, yp].iter().any(|p| p % 256 != 0) {
            return Err(Error::Internal("cuBLASLt GEMM: operand not 256-byte aligned".into()));
        }
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: A = w [out, in] row-major, B = x [n, in], C = D = y [n, out] (lengths
        // checked above); the workspace holds `workspace_bytes`; all on the GPU's stream with
        // its context bound.
        let status = unsafe {
            lt::cublasLtMatmul(
                self.handle,
                plan.desc,
                (&alpha as *const f32).cast::<c_void>(),
                wp as *const c_void,
                plan.a,
                xp as *const c_void,
                plan.b,
                (&beta as *const f32).cast::<c_void>(),
                yp as *const c_void,
                plan.c,
                yp as *mut c_void,
                plan.c,
                &algo.algo,
                ws as *mut c_void,
                self.workspace_bytes,
                stream.cu_stream() as lt::cudaStream_t,
            )
        };
        lt_ok(status, || {
            format!("cublasLtMatmul [{n} x {k}] x [{m} x {k}]^T ({})", algo.info.short())
        })
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: created by LtHandle::new, destroyed once; errors at teardown ignored.
            let _ = unsafe { lt::cublasLtDestroy(self.handle) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cuBLASLt layouts describe the same bytes as the cublasGemmEx arguments of gemm.rs.
    #[test]
    fn layouts_match_the_gemm_ex_arguments() {
        for (n, k, m) in [(16384, 768, 2304), (7, 3072, 768), (1, 64, 192)] {
            let cfg = crate::cuda::gemm::linear_gemm_config(n, k, m).unwrap();
            let [a, b, c] = lt_layouts(n, k, m);
            // A stored (rows k, cols m, ld = lda), used transposed: op(A) is m x k.
            assert_eq!(a, (cfg.k as u64, cfg.m as u64, cfg.lda as i64));
            assert_eq!(b, (cfg.k as u64, cfg.n as u64, cfg.ldb as i64));
            assert_eq!(c, (cfg.m as u64, cfg.n as u64, cfg.ldc as i64));
        }
    }

    #[test]
    fn workspace_follows_nvidia_recommendation() {
        assert_eq!(workspace_bytes((9, 0)), 32 << 20);
        assert_eq!(workspace_bytes((10, 0)), 32 << 20);
        assert_eq!(workspace_bytes((8, 0)), 4 << 20);
        assert_eq!(workspace_bytes((8, 9)), 4 << 20);
    }

    #[test]
    fn algo_info_formats() {
        let info = LtAlgoInfo {
            id: 21,
            tile: 18,
            stages: 9,
            split_k: 1,
            swizzle: 0,
            reduction: 0,
            cluster: 2,
        };
        assert_eq!(info.short(), "lt#21/t18/s9/k1");
        assert_eq!(
            info.to_string(),
            "lt algo 21 tile 18 stages 9 splitK 1 swizzle 0 reduction 0 cluster 2"
        );
    }

    #[test]
    fn status_mapping() {
        assert!(lt_ok(lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS, || "x".into()).is_ok());
        assert!(matches!(
            lt_ok(lt::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED, || "x".into()),
            Err(Error::DeviceOutOfMemory(_))
        ));
        match lt_ok(lt::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED, || "gemm".into()) {
            Err(Error::Device(m)) => assert!(m.starts_with("gemm: cuBLASLt"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_reject_empty_and_huge_sizes_before_calling_the_library() {
        assert!(matches!(LtPlan::new(0, 768, 768), Err(Error::InvalidArgument(_))));
        assert!(matches!(LtPlan::new(1 << 31, 768, 768), Err(Error::InvalidArgument(_))));
        assert!(matches!(LtPlan::new(16, 768, 0), Err(Error::InvalidArgument(_))));
    }
}
