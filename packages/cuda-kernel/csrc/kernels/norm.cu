// RMSNorm per row, optionally added into a residual stream (gemma's sandwich norms).
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

}  // namespace

cudaError_t launchRmsNorm(const float* x, int rows, int dim, const float* weight, float eps, bool unitOffset, float* out, float* residual, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return launchKernel(rmsNormKernel, dim3(rows), dim3(kNormThreads), 0, stream, x, dim, weight, eps, unitOffset, out, residual);
}

}  // namespace df11
