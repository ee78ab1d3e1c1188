// Small memory-bound kernels of the forward pass: embedding gather, gated activation, residual add,
// soft-capping, argmax, BF16 conversion, row gather.
#include <cfloat>
#include <cstdint>
#include "bf16.cuh"
#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

__global__ void embeddingKernel(const uint16_t* __restrict__ table, const int32_t* __restrict__ ids, int dim, float scale, float* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  const int r = blockIdx.y;
  const size_t row = ids ? static_cast<size_t>(__ldg(&ids[r])) : static_cast<size_t>(r);
  const uint16_t* src = table + row * dim;
  float* dst = out + static_cast<size_t>(r) * dim;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x) dst[i] = bf16ToFloat(__ldg(&src[i])) * scale;
}

__global__ void gatedActivationKernel(const float* __restrict__ gu, int inner, int activation, float* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  const int r = blockIdx.y;
  const float* g = gu + static_cast<size_t>(r) * 2 * inner;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inner; i += gridDim.x * blockDim.x) {
    const float v = g[i];
    float a;
    if (activation == 0) a = v / (1.0f + expf(-v));
    else a = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    out[static_cast<size_t>(r) * inner + i] = a * g[inner + i];
  }
}

__global__ void addKernel(float* __restrict__ a, const float* __restrict__ b, size_t n) {
  pdlWait();
  pdlLaunchDependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) a[i] += b[i];
}

__global__ void softcapKernel(float* __restrict__ x, size_t n, float cap) {
  pdlWait();
  pdlLaunchDependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) x[i] = tanhf(x[i] / cap) * cap;
}

__global__ void toBf16Kernel(const float* __restrict__ x, size_t n, uint16_t* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) out[i] = floatToBf16(x[i]);
}

// 8 values per thread (two 16-byte loads, one 16-byte store) when x and out are 16-byte aligned and
// n % 8 == 0: one value per thread with 2-byte stores ran at ~0.4 TB/s (a 512-token prefill spent
// 3.5 ms converting). Same rounding (floatToBf16) value by value.
__global__ void toBf16x8Kernel(const float4* __restrict__ x, size_t n8, uint4* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n8; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 a = __ldg(x + 2 * i), b = __ldg(x + 2 * i + 1);
    uint4 o;
    o.x = floatToBf16(a.x) | (static_cast<uint32_t>(floatToBf16(a.y)) << 16);
    o.y = floatToBf16(a.z) | (static_cast<uint32_t>(floatToBf16(a.w)) << 16);
    o.z = floatToBf16(b.x) | (static_cast<uint32_t>(floatToBf16(b.y)) << 16);
    o.w = floatToBf16(b.z) | (static_cast<uint32_t>(floatToBf16(b.w)) << 16);
    out[i] = o;
  }
}

__global__ void gatherRowsKernel(const float* __restrict__ x, const int32_t* __restrict__ rows, int dim, float* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  const float* src = x + static_cast<size_t>(__ldg(&rows[blockIdx.y])) * dim;
  float* dst = out + static_cast<size_t>(blockIdx.y) * dim;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x) dst[i] = src[i];
}

// The warp's largest value and its index (ties → lowest index), in lane 0.
__device__ __forceinline__ void warpBest(float& best, int& index) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_down_sync(0xffffffffu, best, o);
    const int i = __shfl_down_sync(0xffffffffu, index, o);
    if (v > best || (v == best && i < index)) {
      best = v;
      index = i;
    }
  }
}

// One block per row: each thread scans a strided part, then a block reduction (ties → lowest index).
constexpr int kArgmaxThreads = 1024;
__global__ void __launch_bounds__(kArgmaxThreads) argmaxKernel(const float* __restrict__ x, int n, int32_t* __restrict__ out, float* __restrict__ bestValues) {
  pdlWait();
  pdlLaunchDependents();
  const float* row = x + static_cast<size_t>(blockIdx.x) * n;
  float best = -FLT_MAX;
  int index = n;  // beyond any real index, so NaN-only rows still pick a valid one below
  const auto consider = [&](float v, int i) {
    if (v > best || index == n) {
      best = v;
      index = i;
    }
  };
  if (n % 4 == 0 && (reinterpret_cast<uintptr_t>(row) & 15) == 0) {
    // float4 loads, four in flight per thread (a vocabulary row is latency-bound otherwise: ncu measured
    // 52 µs for 128256 logits with one load in flight); each thread still sees its indices in order.
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const int n4 = n / 4;
    for (int base = threadIdx.x; base < n4; base += 4 * kArgmaxThreads) {
      float4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (base + u * kArgmaxThreads < n4) v[u] = r4[base + u * kArgmaxThreads];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = base + u * kArgmaxThreads;
        if (i >= n4) break;
        consider(v[u].x, 4 * i);
        consider(v[u].y, 4 * i + 1);
        consider(v[u].z, 4 * i + 2);
        consider(v[u].w, 4 * i + 3);
      }
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) consider(row[i], i);
  }
  warpBest(best, index);
  __shared__ float values[32];
  __shared__ int indices[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    values[warp] = best;
    indices[warp] = index;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? values[lane] : -FLT_MAX;
    index = lane < warps ? indices[lane] : n;
    warpBest(best, index);
    if (lane == 0) {
      out[blockIdx.x] = index < n ? index : 0;
      if (bestValues) bestValues[blockIdx.x] = index < n ? row[index] : row[0];
    }
  }
}

unsigned gridFor(size_t n, unsigned threads) {
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

cudaError_t launchEmbedding(const uint16_t* table, const int32_t* ids, int rows, int dim, float scale, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return launchKernel(embeddingKernel, dim3((dim + 255) / 256, rows), dim3(256), 0, stream, table, ids, dim, scale, out);
}

cudaError_t launchGatedActivation(const float* gu, int rows, int inner, int activation, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return launchKernel(gatedActivationKernel, dim3((inner + 255) / 256, rows), dim3(256), 0, stream, gu, inner, activation, out);
}

cudaError_t launchAdd(float* a, const float* b, size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return launchKernel(addKernel, dim3(gridFor(n, 256)), dim3(256), 0, stream, a, b, n);
}

cudaError_t launchSoftcap(float* x, size_t n, float cap, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return launchKernel(softcapKernel, dim3(gridFor(n, 256)), dim3(256), 0, stream, x, n, cap);
}

cudaError_t launchArgmax(const float* x, int rows, int n, int32_t* out, float* values, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return launchKernel(argmaxKernel, dim3(rows), dim3(kArgmaxThreads), 0, stream, x, n, out, values);
}

cudaError_t launchToBf16(const float* x, size_t n, uint16_t* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n % 8 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0) {
    const size_t n8 = n / 8;
    return launchKernel(toBf16x8Kernel, dim3(gridFor(n8, 256)), dim3(256), 0, stream, reinterpret_cast<const float4*>(x), n8, reinterpret_cast<uint4*>(out));
  }
  return launchKernel(toBf16Kernel, dim3(gridFor(n, 256)), dim3(256), 0, stream, x, n, out);
}

cudaError_t launchGatherRows(const float* x, const int32_t* rows, int count, int dim, float* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  return launchKernel(gatherRowsKernel, dim3((dim + 255) / 256, count), dim3(256), 0, stream, x, rows, dim, out);
}

}  // namespace df11
