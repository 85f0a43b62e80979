//! `Y[n, out] = X[n, in] · W[out, in]ᵀ` on row-major fp16 matrices through `cublasGemmEx`
//! (on the handle of [`crate::cuda::blas::BlasHandle`])
//! (fp16 A/B/C, `CUBLAS_COMPUTE_32F`, default algorithm: tensor cores, fp32 accumulation).
//!
//! cuBLAS is column-major. A row-major `[r, c]` matrix is the column-major `[c, r]` matrix of
//! the same bytes, so the row-major product `Y = X·Wᵀ` is the column-major product
//! `Yᵀ = W·Xᵀ`, where column-major `Yᵀ` is `[out, n]` (ld = out), `Xᵀ` is `[in, n]` (ld = in)
//! and the stored `W` bytes read column-major are `Wᵀ` `[in, out]` (ld = in), hence op(A) = T:
//!
//! ```text
//! gemm(opA = T, opB = N, m = out, n = n, k = in, A = W, lda = in, B = X, ldb = in, C = Y, ldc = out)
//! ```
//!
//! No bias: the kernel that follows adds it (qkv bias in `qkv_bias_rope`, o_proj and down_proj
//! biases in `bias_residual_layernorm`), so the GEMM needs no epilogue.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::GemmConfig;
use cudarc::driver::{DevicePtr, DevicePtrMut};
use half::f16;

use crate::cuda::runtime::{DeviceResultExt, Gpu};
use crate::error::{Error, Result};

/// The cuBLAS arguments of `Y[n, out] = X[n, in] · W[out, in]ᵀ` (row-major), see the module docs.
pub fn linear_gemm_config(n: usize, in_features: usize, out_features: usize) -> Result<GemmConfig<f16>> {
    let dim = |what: &str, v: usize| {
        i32::try_from(v).map_err(|_| Error::InvalidArgument(format!("GEMM {what} = {v} exceeds 2^31 - 1")))
    };
    Ok(GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: dim("out_features", out_features)?,
        n: dim("rows", n)?,
        k: dim("in_features", in_features)?,
        alpha: f16::ONE,
        lda: dim("in_features", in_features)?,
        ldb: dim("in_features", in_features)?,
        beta: f16::ZERO,
        ldc: dim("out_features", out_features)?,
    })
}

impl Gpu {
    /// `y[n, out] = x[n, in] · w[out, in]ᵀ` (fp16, fp32 accumulation), no bias.
    pub fn linear(
        &self,
        x: &impl DevicePtr<f16>,
        w: &impl DevicePtr<f16>,
        y: &mut impl DevicePtrMut<f16>,
        n: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<()> {
        let need = |what: &str, have: usize, want: usize| {
            if have < want {
                Err(Error::Internal(format!(
                    "GEMM: `{what}` holds {have} elements, needs {want}"
                )))
            } else {
                Ok(())
            }
        };
        need("x", x.len(), n * in_features)?;
        need("w", w.len(), out_features * in_features)?;
        need("y", y.len(), n * out_features)?;
        if n == 0 || out_features == 0 {
            return Ok(());
        }
        let cfg = linear_gemm_config(n, in_features, out_features)?;
        self.bind()?;
        // SAFETY: A = w is [out, in] row-major (lda = in), B = x is [n, in] row-major
        // (ldb = in), C = y is [n, out] row-major (ldc = out): all in bounds (checked above).
        unsafe { self.blas.gemm_f16(cfg, w, x, y) }
            .device(|| format!("cublasGemmEx [{n} x {in_features}] x [{out_features} x {in_features}]^T"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS semantics on the CPU: `C = alpha·op(A)·op(B) + beta·C`, all column-major.
    fn colmajor_gemm(cfg: &GemmConfig<f16>, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
        let t = |op| op == cublasOperation_t::CUBLAS_OP_T;
        // op(A)[i, p]: A is m x k (N) or k x m stored (T).
        let op_a = |i: usize, p: usize| if t(cfg.transa) { a[p + i * lda] } else { a[i + p * lda] };
        let op_b = |p: usize, j: usize| if t(cfg.transb) { b[j + p * ldb] } else { b[p + j * ldb] };
        for j in 0..n {
            for i in 0..m {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc += op_a(i, p) * op_b(p, j);
                }
                c[i + j * ldc] = cfg.alpha.to_f32() * acc + cfg.beta.to_f32() * c[i + j * ldc];
            }
        }
    }

    #[test]
    fn row_major_trick_matches_matmul_wt() {
        for (n, in_f, out_f) in [(1, 8, 3), (5, 7, 4), (17, 16, 48), (3, 64, 1)] {
            let x: Vec<f32> = (0..n * in_f).map(|i| ((i * 7 + 3) % 11) as f32 - 5.0).collect();
            let w: Vec<f32> = (0..out_f * in_f).map(|i| ((i * 5 + 1) % 13) as f32 - 6.0).collect();
            let mut want = vec![0.0; n * out_f];
            crate::model::cpu::ops::matmul_wt(&x, &w, in_f, &mut want, 1);
            let cfg = linear_gemm_config(n, in_f, out_f).unwrap();
            let mut got = vec![0.0; n * out_f];
            // The same bytes handed to cuBLAS: A = w, B = x, C = y.
            colmajor_gemm(&cfg, &w, &x, &mut got);
            assert_eq!(got, want, "n {n} in {in_f} out {out_f}");
        }
    }

    #[test]
    fn gemm_config_fields() {
        let c = linear_gemm_config(16384, 768, 2304).unwrap();
        assert_eq!(c.transa, cublasOperation_t::CUBLAS_OP_T);
        assert_eq!(c.transb, cublasOperation_t::CUBLAS_OP_N);
        assert_eq!((c.m, c.n, c.k), (2304, 16384, 768));
        assert_eq!((c.lda, c.ldb, c.ldc), (768, 768, 2304));
        assert_eq!((c.alpha, c.beta), (f16::ONE, f16::ZERO));
        assert!(linear_gemm_config(1 << 31, 768, 768).is_err());
    }
}
