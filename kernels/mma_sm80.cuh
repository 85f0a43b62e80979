// mma_sm80.cuh: thin inline-PTX wrappers for the sm_80+ data-movement and tensor-core
// instructions used by the flash attention kernel (attention.cu, v2):
//   cp.async (16-byte global -> shared copies, zero-fill form), commit / wait groups,
//   ldmatrix .x4 (plain and .trans), mma.sync m16n8k16 f16 x f16 -> f32.
// Kept in one header so the exact PTX lives in one place (and a host-side emulator used for
// GPU-less logic tests can provide the same five functions with the documented semantics).
// All "memory" clobbers are deliberate: they stop the compiler from moving ordinary shared
// memory accesses across these instructions.
#pragma once

#include "common.cuh"

__device__ __forceinline__ unsigned int cr_smem_u32(const void* p) {
    return (unsigned int)__cvta_generic_to_shared(p);
}

// 16-byte global -> shared async copy. When !valid, src-size = 0: nothing is read and the 16
// destination bytes are zero-filled (src must still be a mapped address; we pass a valid one).
__device__ __forceinline__ void cr_cp_async_16(void* smem_dst, const void* gmem_src, bool valid) {
    const unsigned int dst = cr_smem_u32(smem_dst);
    const int src_size = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(dst), "l"(gmem_src), "r"(src_size) : "memory");
}
__device__ __forceinline__ void cr_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cr_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}

__device__ __forceinline__ void cr_ldmatrix_x4(unsigned int (&r)[4], const cr_half* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(cr_smem_u32(smem)) : "memory");
}
__device__ __forceinline__ void cr_ldmatrix_x4_trans(unsigned int (&r)[4], const cr_half* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(cr_smem_u32(smem)) : "memory");
}

// D(16x8, f32) += A(16x16, f16, row) * B(16x8, f16, col).
// Fragment layout (PTX ISA, m16n8k16 .f16), with g = lane/4 and c = lane%4:
//   a[0] = A[g][2c..2c+1]   a[1] = A[g+8][2c..]   a[2] = A[g][2c+8..]   a[3] = A[g+8][2c+8..]
//   b[0] = B[2c..2c+1][g]   b[1] = B[2c+8..2c+9][g]
//   d[0..1] = D[g][2c..2c+1]   d[2..3] = D[g+8][2c..2c+1]
__device__ __forceinline__ void cr_mma_16816(float (&d)[4], const unsigned int (&a)[4],
                                             unsigned int b0, unsigned int b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
