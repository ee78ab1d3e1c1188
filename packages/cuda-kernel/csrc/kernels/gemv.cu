// Matrix-vector products for decoding (1…16 rows of x): out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n].
// One kernel body, two weight loaders: BF16 rows read with 16-byte loads, or the DF11 fused layout
// (fused-decode.cuh) decoded in registers. Both hand the body the same 16-byte groups of 8 BF16 values
// for the same k, and each output's per-lane sums run over the same k in the same order, then the same
// warp reduction: a model gives bit-identical logits from either layout.
//
// Memory-bound on the weights: warps stream rows of W, several loads in flight per lane; x (float32, a
// few KB per row) comes through L1. Accumulation is float32, per row independent of the batch, so a
// sequence decoded in a batch gets the same logits as alone. Launched as programmatic dependent
// launches (pdl.cuh): a warp's first weights are in flight before the previous kernel has finished.
#include "bf16.cuh"
#include "fused-decode.cuh"
#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kWarps = 8;  // per block
constexpr int kGroup = 256;  // k a warp covers with one 16-byte load per lane

// Whether BF16 weight loads bypass L1, keeping x there (setGemvVariant, for benchmarks). Measured on an
// H100: 139.8 tok/s vs 133.5 with L1-allocating loads (8B model, BF16, batch 1).
bool gNoAllocate = true;

// ---- weight loaders: rows n0 … n0 + NR − 1 (clamped to the last row), groups g0 … g0 + G − 1 ----------
template <bool NoAllocate>
struct Bf16Weights {
  const uint16_t* weight;  // [N, K]
  int K;
  struct Shared {};
  // Rows of W per warp and groups per load batch, by rows of x: one row and 8 loads in flight for a
  // single sequence (even load per SM); for batches several rows, so each x load (from L1) serves them
  // all — with one row per warp, 8–16 rows of x would make L1, not memory, the limit.
  template <int R>
  struct Shape {
    static constexpr int kRows = R >= 8 ? 2 : R >= 4 ? 4 : R;
    static constexpr int kGroups = R >= 8 ? 4 : R >= 4 ? 2 : R == 2 ? 4 : 8;
  };
  template <int NR, int G>
  __device__ __forceinline__ void load(int n0, int N, int g0, int lane, Shared&, uint4 (&wv)[NR][G]) const {
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      const uint16_t* row = weight + static_cast<size_t>(min(n0 + j, N - 1)) * K;
#pragma unroll
      for (int u = 0; u < G; ++u) {
        const int k = (g0 + u) * kGroup + lane * 8;
        if (k >= K) wv[j][u] = make_uint4(0, 0, 0, 0);
        else if constexpr (NoAllocate) wv[j][u] = loadStreaming16(row + k);
        else wv[j][u] = __ldg(reinterpret_cast<const uint4*>(row + k));
      }
    }
  }
};

struct FusedWeights {
  FusedView view;
  struct Shared {
    __align__(16) uint8_t patch[kWarps][1024];  // per warp, for escapes
  };
  // Whole steps (4 groups) per batch: two steps in flight for one sequence, one for batches.
  template <int R>
  struct Shape {
    static constexpr int kRows = R == 1 ? 1 : 2;
    static constexpr int kGroups = R == 1 ? 8 : 4;
  };
  template <int NR, int G>
  __device__ __forceinline__ void load(int n0, int N, int g0, int lane, Shared& shared, uint4 (&wv)[NR][G]) const {
    static_assert(G % 4 == 0, "whole steps");
    constexpr int F = G / 4;
    const int s0 = g0 / 4;
    FusedStepLoad steps[NR][F];
#pragma unroll
    for (int j = 0; j < NR; ++j)
#pragma unroll
      for (int f = 0; f < F; ++f) steps[j][f] = loadFusedStep(view, min(n0 + j, N - 1), min(s0 + f, view.steps - 1), lane);
    uint8_t* patch = shared.patch[threadIdx.x >> 5];
#pragma unroll
    for (int j = 0; j < NR; ++j)
#pragma unroll
      for (int f = 0; f < F; ++f) {
        uint4 w[4];
        decodeFusedStep(view, steps[j][f], lane, patch, w);
#pragma unroll
        for (int u = 0; u < 4; ++u) wv[j][4 * f + u] = w[u];
      }
  }
};

// ---- the kernel body -----------------------------------------------------------------------------------
// Rows of W are dealt round-robin, in groups of NR, over a grid sized to the GPU, so every SM streams
// about the same number of bytes.
template <int R, class Weights>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a, const Weights weights) {
  constexpr int NR = Weights::template Shape<R>::kRows;
  constexpr int G = Weights::template Shape<R>::kGroups;
  __shared__ typename Weights::Shared shared;
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarps;
  const int K = a.K;
  const int groups = (K + kGroup - 1) / kGroup;
  bool waited = false;
  for (int n0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * NR; n0 < a.N; n0 += warps * NR) {
    float acc[R][NR];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
    for (int g0 = 0; g0 < groups; g0 += G) {
      uint4 wv[NR][G];
      weights.template load<NR, G>(n0, a.N, g0, lane, shared, wv);
      if (!waited) {  // weights only so far: x is the previous kernel's output
        pdlWait();
        pdlLaunchDependents();
        waited = true;
      }
#pragma unroll
      for (int u = 0; u < G; ++u) {
        const int k = (g0 + u) * kGroup + lane * 8;
        if (k >= K) break;
        float wf[NR][8];
#pragma unroll
        for (int j = 0; j < NR; ++j) widen8(wv[j][u], wf[j]);
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
  if (!waited) {
    pdlWait();
    pdlLaunchDependents();
  }
}

// Unaligned rows or K % 8 ≠ 0 (BF16 only): one lane per k, any shape.
__global__ void __launch_bounds__(kWarps * 32) gemvScalarKernel(const LinearArgs a) {
  pdlWait();
  pdlLaunchDependents();
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * kWarps;
  for (int n = blockIdx.x * kWarps + (threadIdx.x >> 5); n < a.N; n += warps) {
    const uint16_t* w = a.weight + static_cast<size_t>(n) * a.K;
    for (int r = 0; r < a.rows; ++r) {
      float acc = 0.0f;
      for (int k = lane; k < a.K; k += 32) acc = fmaf(__ldg(a.x + static_cast<size_t>(r) * a.ldx + k), bf16ToFloat(__ldg(w + k)), acc);
      for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
      if (lane == 0) {
        const float v = acc + (a.bias ? a.bias[n] : 0.0f);
        float* o = a.out + static_cast<size_t>(r) * a.ldo + n;
        *o = a.accumulate ? *o + v : v;
      }
    }
  }
}

// Blocks that fit on the GPU at once for this kernel (a persistent grid: every block starts right away,
// which is what lets it prefetch weights under the previous kernel).
template <auto Kernel>
int residentBlocks() {
  static int blocks = 0;  // per kernel
  if (blocks == 0) {
    int device = 0, sms = 0, perSm = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, Kernel, kWarps * 32, 0);
    blocks = sms * (perSm > 0 ? perSm : 1);
  }
  return blocks;
}

template <int R, class Weights>
cudaError_t launchRows(const LinearArgs& a, const Weights& w, cudaStream_t stream) {
  constexpr int NR = Weights::template Shape<R>::kRows;
  const int rowGroups = (a.N + NR - 1) / NR;
  const int blocks = min((rowGroups + kWarps - 1) / kWarps, residentBlocks<gemvKernel<R, Weights>>());
  return launchKernel(gemvKernel<R, Weights>, dim3(blocks), dim3(kWarps * 32), 0, stream, a, w);
}

template <class Weights>
cudaError_t launchAnyRows(const LinearArgs& a, const Weights& w, cudaStream_t stream) {
  if (a.rows == 1) return launchRows<1>(a, w, stream);
  if (a.rows == 2) return launchRows<2>(a, w, stream);
  if (a.rows <= 4) return launchRows<4>(a, w, stream);
  if (a.rows <= 8) return launchRows<8>(a, w, stream);
  return launchRows<16>(a, w, stream);
}

bool xAligned(const LinearArgs& a) { return (a.ldx & 3) == 0 && (reinterpret_cast<uintptr_t>(a.x) & 15) == 0; }

}  // namespace

void setGemvVariant(bool noAllocate) { gNoAllocate = noAllocate; }

cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  const bool vectorized = (a.K & 7) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && xAligned(a);
  if (!vectorized) {
    const int blocks = min((a.N + kWarps - 1) / kWarps, residentBlocks<gemvScalarKernel>());
    return launchKernel(gemvScalarKernel, dim3(blocks), dim3(kWarps * 32), 0, stream, a);
  }
  if (gNoAllocate) return launchAnyRows(a, Bf16Weights<true>{a.weight, a.K}, stream);
  return launchAnyRows(a, Bf16Weights<false>{a.weight, a.K}, stream);
}

cudaError_t launchFusedGemv(const LinearArgs& a, const FusedView& w, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows || a.N != w.rows || a.K != w.cols || (a.K & 7) != 0 || !xAligned(a)) return cudaErrorInvalidValue;
  return launchAnyRows(a, FusedWeights{w}, stream);
}

}  // namespace df11
