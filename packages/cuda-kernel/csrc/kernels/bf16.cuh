// BF16 ⇄ float32 on the device, shared by the inference kernels.
#pragma once
#include <cstdint>

namespace df11 {

__device__ __forceinline__ float bf16ToFloat(uint16_t v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }

// Round to nearest even; NaN stays NaN.
__device__ __forceinline__ uint16_t floatToBf16(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// The 8 BF16 values of a 16-byte load, as float32.
__device__ __forceinline__ void widen8(const uint4 w, float (&f)[8]) {
  f[0] = __uint_as_float(w.x << 16);
  f[1] = __uint_as_float(w.x & 0xffff0000u);
  f[2] = __uint_as_float(w.y << 16);
  f[3] = __uint_as_float(w.y & 0xffff0000u);
  f[4] = __uint_as_float(w.z << 16);
  f[5] = __uint_as_float(w.z & 0xffff0000u);
  f[6] = __uint_as_float(w.w << 16);
  f[7] = __uint_as_float(w.w & 0xffff0000u);
}

// acc + Σ x[i]·w[i] over 8 values (x as two float4), fused multiply-adds in order.
__device__ __forceinline__ float dot8(const float4 x0, const float4 x1, const float (&w)[8], float acc) {
  acc = fmaf(x0.x, w[0], acc);
  acc = fmaf(x0.y, w[1], acc);
  acc = fmaf(x0.z, w[2], acc);
  acc = fmaf(x0.w, w[3], acc);
  acc = fmaf(x1.x, w[4], acc);
  acc = fmaf(x1.y, w[5], acc);
  acc = fmaf(x1.z, w[6], acc);
  return fmaf(x1.w, w[7], acc);
}

}  // namespace df11
