// Matrix-vector products for decoding (1…8 rows): out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n].
// Memory-bound on the weights: warps stream rows of W with 16-byte loads, several in flight per lane;
// x (float32, a few KB per row) comes through L1. Accumulation is float32, per row independent of the
// batch, so a sequence decoded in a batch gets the same logits as alone.
#include "bf16.cuh"
#include "inference.h"

namespace df11 {
namespace {

constexpr int kWarps = 8;  // per block

// Whether weight loads bypass L1, keeping x there (setGemvVariant, for benchmarks). Measured on an H100:
// 139.8 tok/s vs 133.5 with L1-allocating loads (8B model, BF16, batch 1).
bool gNoAllocate = true;

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

// Rows of W a warp takes at once, and loads per row in flight per lane: one row and 8 loads for a
// single sequence (even load per SM); for batches several rows, so each x load (from L1) serves them
// all — with one row per warp, 8–16 rows of x would make L1, not memory, the limit.
template <int R>
struct GemvShape {
  // 8–16 rows of x: two rows of W per warp keep registers (~120) low enough for two blocks per SM.
  static constexpr int kRows = R >= 8 ? 2 : R >= 4 ? 4 : R;
  static constexpr int kUnroll = R >= 8 ? 4 : R >= 4 ? 2 : R == 2 ? 4 : 8;
};

// Rows of W are dealt round-robin, in groups of kRows, over a grid sized to the GPU, so every SM
// streams about the same number of bytes.
template <int R, bool NoAllocate>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a) {
  constexpr int NR = GemvShape<R>::kRows;
  constexpr int kUnroll = GemvShape<R>::kUnroll;
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarps;
  const int K = a.K;
  const bool vectorized = (K & 7) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && (a.ldx & 3) == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
  for (int n0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * NR; n0 < a.N; n0 += warps * NR) {
    const uint16_t* w[NR];
#pragma unroll
    for (int j = 0; j < NR; ++j) w[j] = a.weight + static_cast<size_t>(min(n0 + j, a.N - 1)) * K;
    float acc[R][NR];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
    if (vectorized) {
      constexpr int kStep = 32 * 8;  // elements a warp covers per load
      for (int base = lane * 8; base < K; base += kStep * kUnroll) {
        uint4 wv[kUnroll][NR];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = base + u * kStep;
#pragma unroll
          for (int j = 0; j < NR; ++j) wv[u][j] = k < K ? loadWeights<NoAllocate>(w[j] + k) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = base + u * kStep;
          if (k >= K) break;
          float wf[NR][8];
#pragma unroll
          for (int j = 0; j < NR; ++j) widen8(wv[u][j], wf[j]);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            if (r >= a.rows) break;
            const float4* xp = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(r) * a.ldx + k);
            const float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
#pragma unroll
            for (int j = 0; j < NR; ++j) acc[r][j] = dot8(x0, x1, wf[j], acc[r][j]);
          }
        }
      }
    } else {
      for (int k = lane; k < K; k += 32) {
        float wf[NR];
#pragma unroll
        for (int j = 0; j < NR; ++j) wf[j] = __uint_as_float(static_cast<uint32_t>(__ldg(w[j] + k)) << 16);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= a.rows) break;
          const float xv = __ldg(a.x + static_cast<size_t>(r) * a.ldx + k);
#pragma unroll
          for (int j = 0; j < NR; ++j) acc[r][j] = fmaf(xv, wf[j], acc[r][j]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int j = 0; j < NR; ++j)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[r][j] += __shfl_xor_sync(0xffffffffu, acc[r][j], o);
    // Every lane holds the sums; output (r, j) is written by lane (r·NR + j) mod 32.
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int j = 0; j < NR; ++j) {
        const int n = n0 + j;
        if (r < a.rows && n < a.N && lane == (r * NR + j) % 32) {
          const float v = acc[r][j] + (a.bias ? a.bias[n] : 0.0f);
          float* o = a.out + static_cast<size_t>(r) * a.ldo + n;
          *o = a.accumulate ? *o + v : v;
        }
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
  constexpr int NR = GemvShape<R>::kRows;
  const int groups = (a.N + NR - 1) / NR;
  const int blocks = (min(groups, residentWarps()) + kWarps - 1) / kWarps;
  if (gNoAllocate) gemvKernel<R, true><<<blocks, kWarps * 32, 0, stream>>>(a);
  else gemvKernel<R, false><<<blocks, kWarps * 32, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

void setGemvVariant(bool noAllocate) { gNoAllocate = noAllocate; }

cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  if (a.rows == 1) return launchRows<1>(a, stream);
  if (a.rows == 2) return launchRows<2>(a, stream);
  if (a.rows <= 4) return launchRows<4>(a, stream);
  if (a.rows <= 8) return launchRows<8>(a, stream);
  return launchRows<16>(a, stream);
}

}  // namespace df11
