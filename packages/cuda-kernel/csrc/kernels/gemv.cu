// Matrix-vector products for decoding (1…8 rows): out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n].
// Memory-bound on the weights: each warp owns two rows of W and streams them with 16-byte loads, four
// per row in flight per lane; x (float32, a few KB) comes through L1. Accumulation is float32.
#include "inference.h"

namespace df11 {
namespace {

constexpr int kWarps = 8;          // per block
constexpr int kRowsPerWarp = 2;    // rows of W per warp
constexpr int kUnroll = 4;         // 16-byte loads per W row in flight

__device__ __forceinline__ void widen(const uint4 w, float (&f)[8]) {
  f[0] = __uint_as_float(w.x << 16);
  f[1] = __uint_as_float(w.x & 0xffff0000u);
  f[2] = __uint_as_float(w.y << 16);
  f[3] = __uint_as_float(w.y & 0xffff0000u);
  f[4] = __uint_as_float(w.z << 16);
  f[5] = __uint_as_float(w.z & 0xffff0000u);
  f[6] = __uint_as_float(w.w << 16);
  f[7] = __uint_as_float(w.w & 0xffff0000u);
}

template <int R>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a) {
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  if (n0 >= a.N) return;
  const int K = a.K;
  const uint16_t* w[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) w[j] = a.weight + static_cast<size_t>(min(n0 + j, a.N - 1)) * K;
  float acc[R][kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) acc[r][j] = 0.0f;

  const bool vectorized = (K & 7) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && (a.ldx & 3) == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  if (vectorized) {
    constexpr int kStep = 32 * 8;  // elements a warp covers per load
    for (int base = lane * 8; base < K; base += kStep * kUnroll) {
      uint4 wv[kUnroll][kRowsPerWarp];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int k = base + u * kStep;
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) wv[u][j] = k < K ? __ldg(reinterpret_cast<const uint4*>(w[j] + k)) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int k = base + u * kStep;
        if (k >= K) break;
        float wf[kRowsPerWarp][8];
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) widen(wv[u][j], wf[j]);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= a.rows) break;
          const float4* xp = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(r) * a.ldx + k);
          const float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
          const float xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
          for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][j] = fmaf(xv[e], wf[j][e], acc[r][j]);
        }
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      float wf[kRowsPerWarp];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) wf[j] = __uint_as_float(static_cast<uint32_t>(__ldg(w[j] + k)) << 16);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= a.rows) break;
        const float xv = __ldg(a.x + static_cast<size_t>(r) * a.ldx + k);
#pragma unroll
        for (int j = 0; j < kRowsPerWarp; ++j) acc[r][j] = fmaf(xv, wf[j], acc[r][j]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][j] += __shfl_xor_sync(0xffffffffu, acc[r][j], o);
  if (lane < kRowsPerWarp) {
    const int n = n0 + lane;
    if (n < a.N) {
      const float b = a.bias ? a.bias[n] : 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= a.rows) break;
        // Select this lane's row without dynamic register indexing.
        float v = acc[r][0];
#pragma unroll
        for (int j = 1; j < kRowsPerWarp; ++j)
          if (lane == j) v = acc[r][j];
        float* o = a.out + static_cast<size_t>(r) * a.ldo + n;
        *o = a.accumulate ? *o + (v + b) : v + b;
      }
    }
  }
}

template <int R>
cudaError_t launchRows(const LinearArgs& a, cudaStream_t stream) {
  const int perBlock = kWarps * kRowsPerWarp;
  gemvKernel<R><<<(a.N + perBlock - 1) / perBlock, kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  if (a.rows == 1) return launchRows<1>(a, stream);
  if (a.rows == 2) return launchRows<2>(a, stream);
  if (a.rows <= 4) return launchRows<4>(a, stream);
  return launchRows<8>(a, stream);
}

}  // namespace df11
