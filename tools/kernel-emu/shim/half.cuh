// Emulated half.cuh: fp16 storage as the compiler's _Float16 (IEEE binary16, round to
// nearest even on conversion, like __float2half_rn). Replaces kernels/half.cuh.
#pragma once
#include "cuda_emu.h"
typedef unsigned short cr_half;
inline float cr_half_to_float(cr_half h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
inline cr_half cr_float_to_half(float f) { _Float16 h = (_Float16)f; cr_half r; memcpy(&r, &h, 2); return r; }
inline float2 cr_u32_to_float2(unsigned int u) { float2 r; r.x = cr_half_to_float(u & 0xffffu); r.y = cr_half_to_float(u >> 16); return r; }
inline unsigned int cr_float2_to_u32(float lo, float hi) { return (unsigned)cr_float_to_half(lo) | ((unsigned)cr_float_to_half(hi) << 16); }
