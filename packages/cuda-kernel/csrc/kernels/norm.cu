// RMSNorm per row, optionally added into a residual stream (gemma's sandwich norms).
#include <cstdint>

#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kNormThreads = 256;

__device__ __forceinline__ float blockSum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < (blockDim.x >> 5) ? shared[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kNormThreads) rmsNormKernel(const float* __restrict__ x, int dim, const float* __restrict__ weight, float eps, bool unitOffset,
                                                             float* out, float* residual) {
  pdlWait();
  pdlLaunchDependents();
  __shared__ float partial[32];
  const float* row = x + static_cast<size_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += row[i] * row[i];
  const float inv = rsqrtf(blockSum(ss, partial) / dim + eps);
  float* dst = residual ? residual + static_cast<size_t>(blockIdx.x) * dim : out + static_cast<size_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float w = unitOffset ? 1.0f + weight[i] : weight[i];
    const float y = (row[i] * inv) * w;
    if (residual) dst[i] += y;
    else dst[i] = y;
  }
}

// The same, with the row held in registers: one read of x (float4 loads, all issued before the first
// use), one of the weight. For rows of up to kNormThreads · 4 · kNormVec elements (8192) that are a
// multiple of 4 long and 16-byte aligned — every decoder's hidden size. A decode step's norm (one row) is
// latency-bound: the scalar kernel above waits for 2 × dim / 256 loads in turn (≈ 15 µs on an H200 for
// 4096 elements, ncu), this one for about two. x may be out (the final norm runs in place): each thread
// writes only what it read, after the block's sum.
constexpr int kNormVec = 8;
__global__ void __launch_bounds__(kNormThreads) rmsNormRowKernel(const float* x, int dim, const float* __restrict__ weight, float eps, bool unitOffset, float* out,
                                                                float* residual) {
  pdlWait();
  pdlLaunchDependents();
  __shared__ float partial[32];
  const int n4 = dim / 4;
  const float4* row = reinterpret_cast<const float4*>(x + static_cast<size_t>(blockIdx.x) * dim);
  float4 v[kNormVec];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kNormVec; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i < n4) v[j] = row[i];
  }
#pragma unroll
  for (int j = 0; j < kNormVec; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i < n4) ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  }
  const float inv = rsqrtf(blockSum(ss, partial) / dim + eps);
  float4* dst = reinterpret_cast<float4*>((residual ? residual : out) + static_cast<size_t>(blockIdx.x) * dim);
  const float4* w4 = reinterpret_cast<const float4*>(weight);
#pragma unroll
  for (int j = 0; j < kNormVec; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i >= n4) continue;
    float4 w = w4[i];
    if (unitOffset) w = make_float4(1.0f + w.x, 1.0f + w.y, 1.0f + w.z, 1.0f + w.w);
    const float4 y = make_float4((v[j].x * inv) * w.x, (v[j].y * inv) * w.y, (v[j].z * inv) * w.z, (v[j].w * inv) * w.w);
    if (residual) {
      float4 r = dst[i];
      dst[i] = make_float4(r.x + y.x, r.y + y.y, r.z + y.z, r.w + y.w);
    } else {
      dst[i] = y;
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

cudaError_t launchRmsNorm(const float* x, int rows, int dim, const float* weight, float eps, bool unitOffset, float* out, float* residual, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (dim % 4 == 0 && dim <= kNormThreads * 4 * kNormVec && aligned16(x) && aligned16(weight) && aligned16(residual ? residual : out)) {
    return launchKernel(rmsNormRowKernel, dim3(rows), dim3(kNormThreads), 0, stream, x, dim, weight, eps, unitOffset, out, residual);
  }
  return launchKernel(rmsNormKernel, dim3(rows), dim3(kNormThreads), 0, stream, x, dim, weight, eps, unitOffset, out, residual);
}

}  // namespace df11
