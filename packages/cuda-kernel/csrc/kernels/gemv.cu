// Matrix-vector products for decoding (1…8 rows): out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n].
// Memory-bound on the weights: a warp streams one row of W at a time with 16-byte loads, eight in flight
// per lane; x (float32, a few KB) comes through L1. Accumulation is float32.
#include "bf16.cuh"
#include "inference.h"

namespace df11 {
namespace {

constexpr int kWarps = 8;  // per block

// Which variant launchGemv runs (setGemvVariant, for benchmarks): loads in flight per lane, and whether
// weight loads bypass L1 (keeping x there).
int gUnroll = 8;
bool gNoAllocate = true;  // measured on an H100: 139.8 tok/s vs 133.5 (8B model, BF16) with L1-allocating loads

template <bool NoAllocate>
__device__ __forceinline__ uint4 loadWeights(const uint16_t* p) {
  if constexpr (NoAllocate) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
  } else {
    return __ldg(reinterpret_cast<const uint4*>(p));
  }
}

// One warp per row of W at a time, rows dealt round-robin over a grid sized to the GPU, so every SM
// streams about the same number of bytes (whole rows per block left some SMs with twice the work).
template <int R, int kUnroll, bool NoAllocate>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a) {
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarps;
  const int K = a.K;
  const bool vectorized = (K & 7) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && (a.ldx & 3) == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  for (int n = blockIdx.x * kWarps + (threadIdx.x >> 5); n < a.N; n += warps) {
    const uint16_t* w = a.weight + static_cast<size_t>(n) * K;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    if (vectorized) {
      constexpr int kStep = 32 * 8;  // elements a warp covers per load
      for (int base = lane * 8; base < K; base += kStep * kUnroll) {
        uint4 wv[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = base + u * kStep;
          wv[u] = k < K ? loadWeights<NoAllocate>(w + k) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = base + u * kStep;
          if (k >= K) break;
          float wf[8];
          widen8(wv[u], wf);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            if (r >= a.rows) break;
            const float4* xp = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(r) * a.ldx + k);
            acc[r] = dot8(__ldg(xp), __ldg(xp + 1), wf, acc[r]);
          }
        }
      }
    } else {
      for (int k = lane; k < K; k += 32) {
        const float wf = __uint_as_float(static_cast<uint32_t>(__ldg(w + k)) << 16);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= a.rows) break;
          acc[r] = fmaf(__ldg(a.x + static_cast<size_t>(r) * a.ldx + k), wf, acc[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
    // Every lane holds the sums; lane r writes row r.
    const float b = a.bias ? a.bias[n] : 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < a.rows && lane == r) {
        float* o = a.out + static_cast<size_t>(r) * a.ldo + n;
        *o = a.accumulate ? *o + (acc[r] + b) : acc[r] + b;
      }
    }
  }
}

int residentWarps() {
  static int warps = 0;
  if (warps == 0) {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    warps = sms * (2048 / 32);
  }
  return warps;
}

template <int R>
cudaError_t launchRows(const LinearArgs& a, cudaStream_t stream) {
  const int blocks = (min(a.N, residentWarps()) + kWarps - 1) / kWarps;
  if (gUnroll == 16) {
    if (gNoAllocate) gemvKernel<R, 16, true><<<blocks, kWarps * 32, 0, stream>>>(a);
    else gemvKernel<R, 16, false><<<blocks, kWarps * 32, 0, stream>>>(a);
  } else {
    if (gNoAllocate) gemvKernel<R, 8, true><<<blocks, kWarps * 32, 0, stream>>>(a);
    else gemvKernel<R, 8, false><<<blocks, kWarps * 32, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace

void setGemvVariant(int unroll, bool noAllocate) {
  gUnroll = unroll == 16 ? 16 : 8;
  gNoAllocate = noAllocate;
}

cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  if (a.rows == 1) return launchRows<1>(a, stream);
  if (a.rows == 2) return launchRows<2>(a, stream);
  if (a.rows <= 4) return launchRows<4>(a, stream);
  return launchRows<8>(a, stream);
}

}  // namespace df11
