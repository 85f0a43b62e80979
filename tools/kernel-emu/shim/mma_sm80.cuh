// Emulated mma_sm80.cuh: the warp-level primitives the flash attention kernel uses, from the
// PTX ISA fragment tables.
// - cp.async copies synchronously (one legal ordering; races inside the real asynchronous
//   pipeline are not modelled, only the data it moves).
// - ldmatrix.x4 (plain and .trans): lanes 8m..8m+7 give the row addresses of matrix m; thread
//   (group g = lane/4, c = lane%4) receives row g, columns 2c and 2c+1 (transposed: rows 2c,
//   2c+1 of column g).
// - mma.m16n8k16 f16 x f16 -> f32: A fragments a0..a3 = rows g / g+8, columns 2c.. / 2c+8..;
//   B fragments b0, b1 = rows 2c.. / 2c+8.., column g; C/D rows g / g+8, columns 2c, 2c+1.
//   The products are summed in f32 (the hardware's order differs; results agree to rounding).
// Replaces kernels/mma_sm80.cuh.
#pragma once
#include "common.cuh"
// Synchronous cp.async (one legal ordering); ldmatrix / mma per PTX ISA fragment layouts.
inline void cr_cp_async_16(void* dst, const void* src, bool valid) {
    if (valid) memcpy(dst, src, 16); else memset(dst, 0, 16);
}
inline void cr_cp_async_commit() {}
template <int N> inline void cr_cp_async_wait() {}
inline void ldm_impl(unsigned (&r)[4], const cr_half* p, bool trans) {
    WarpCtx& w = my_warp(); int lane = threadIdx.x & 31;
    uint64_t a = (uint64_t)p; w.slot[lane][0] = a;
    w.bar.arrive_and_wait();
    for (int m = 0; m < 4; ++m) {
        // matrix m rows come from lanes 8m..8m+7
        int g = lane >> 2, c = lane & 3;
        cr_half e[2];
        for (int k = 0; k < 2; ++k) {
            int row, col;
            if (!trans) { row = g; col = 2 * c + k; } else { row = 2 * c + k; col = g; }
            const cr_half* rp = (const cr_half*)w.slot[8 * m + row][0];
            e[k] = rp[col];
        }
        r[m] = (unsigned)e[0] | ((unsigned)e[1] << 16);
    }
    w.bar.arrive_and_wait();
}
inline void cr_ldmatrix_x4(unsigned (&r)[4], const cr_half* s) { ldm_impl(r, s, false); }
inline void cr_ldmatrix_x4_trans(unsigned (&r)[4], const cr_half* s) { ldm_impl(r, s, true); }
inline void cr_mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    WarpCtx& w = my_warp(); int lane = threadIdx.x & 31;
    uint64_t* s = w.slot[lane];
    for (int i = 0; i < 4; ++i) s[i] = a[i];
    s[4] = b0; s[5] = b1;
    for (int i = 0; i < 4; ++i) { uint32_t u; memcpy(&u, &d[i], 4); s[6 + i] = u; }
    w.bar.arrive_and_wait();
    float A[16][16], B[16][8], C[16][8];
    auto lo = [](uint64_t u) { return cr_half_to_float(u & 0xffff); };
    auto hi = [](uint64_t u) { return cr_half_to_float((u >> 16) & 0xffff); };
    for (int L = 0; L < 32; ++L) {
        int g = L >> 2, c = L & 3; uint64_t* q = w.slot[L];
        A[g][2*c] = lo(q[0]); A[g][2*c+1] = hi(q[0]);
        A[g+8][2*c] = lo(q[1]); A[g+8][2*c+1] = hi(q[1]);
        A[g][2*c+8] = lo(q[2]); A[g][2*c+9] = hi(q[2]);
        A[g+8][2*c+8] = lo(q[3]); A[g+8][2*c+9] = hi(q[3]);
        B[2*c][g] = lo(q[4]); B[2*c+1][g] = hi(q[4]);
        B[2*c+8][g] = lo(q[5]); B[2*c+9][g] = hi(q[5]);
        float f[4]; for (int i = 0; i < 4; ++i) { uint32_t u = (uint32_t)q[6+i]; memcpy(&f[i], &u, 4); }
        C[g][2*c] = f[0]; C[g][2*c+1] = f[1]; C[g+8][2*c] = f[2]; C[g+8][2*c+1] = f[3];
    }
    w.bar.arrive_and_wait();
    int g = lane >> 2, c = lane & 3;
    int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2*c, 2*c+1, 2*c, 2*c+1};
    for (int i = 0; i < 4; ++i) {
        float acc = C[rows[i]][cols[i]];
        for (int k = 0; k < 16; ++k) acc += A[rows[i]][k] * B[k][cols[i]];
        d[i] = acc;
    }
}
