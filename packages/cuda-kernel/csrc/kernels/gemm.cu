// Matrix products for prefill: out[M, N] (+)= X[M, K] · W[N, K]ᵀ + bias, BF16 operands on the tensor
// cores (mma.sync m16n8k16, float32 accumulation). 128×128 block tiles, K in steps of 32 through a
// 3-stage cp.async pipeline; 8 warps of 64×32; rows padded to 80 bytes so ldmatrix is conflict-free.
#include "inference.h"

namespace df11 {
namespace {

constexpr int BM = 128, BN = 128, BK = 32, kStages = 3, kThreads = 256;
constexpr int kPitch = BK + 8;  // elements per shared-memory row (80 bytes)
constexpr int kStageElems = (BM + BN) * kPitch;
constexpr size_t kSharedBytes = static_cast<size_t>(kStages) * kStageElems * 2;

__device__ __forceinline__ uint32_t smemAddress(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void copy16(uint16_t* dst, const uint16_t* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddress(dst)), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void ldmatrix4(uint32_t (&r)[4], const uint16_t* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smemAddress(p)));
}

__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__global__ void __launch_bounds__(kThreads) gemmKernel(const LinearArgs a, const uint16_t* __restrict__ xb) {
  extern __shared__ __align__(16) uint16_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int M = a.rows, N = a.N, K = a.K;
  const int kTiles = (K + BK - 1) / BK;

  // Each thread copies 2 chunks of 16 bytes of A and 2 of B per stage.
  const auto loadStage = [&](int stage, int kt) {
    uint16_t* sa = smem + stage * kStageElems;
    uint16_t* sb = sa + BM * kPitch;
    const int k0 = kt * BK;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int c = tid + i * kThreads;
      const int row = c >> 2, col = (c & 3) * 8;
      const bool kIn = k0 + col < K;
      const bool aIn = kIn && m0 + row < M;
      copy16(sa + row * kPitch + col, aIn ? xb + static_cast<size_t>(m0 + row) * K + k0 + col : xb, aIn);
      const bool bIn = kIn && n0 + row < N;
      copy16(sb + row * kPitch + col, bIn ? a.weight + static_cast<size_t>(n0 + row) * K + k0 + col : a.weight, bIn);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kTiles) loadStage(s, s);
    asm volatile("cp.async.commit_group;\n");
  }

  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  for (int kt = 0; kt < kTiles; ++kt) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
    __syncthreads();
    if (kt + kStages - 1 < kTiles) loadStage((kt + kStages - 1) % kStages, kt + kStages - 1);
    asm volatile("cp.async.commit_group;\n");

    const uint16_t* sa = smem + (kt % kStages) * kStageElems;
    const uint16_t* sb = sa + BM * kPitch;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) ldmatrix4(af[i], sa + (wm + i * 16 + (lane & 15)) * kPitch + kk + (lane >> 4) * 8);
#pragma unroll
      for (int j = 0; j < 4; j += 2) {
        uint32_t r[4];
        ldmatrix4(r, sb + (wn + j * 8 + (lane >> 4) * 8 + (lane & 7)) * kPitch + kk + ((lane >> 3) & 1) * 8);
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  }
  asm volatile("cp.async.wait_group 0;\n");

#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = m0 + wm + i * 16 + (lane >> 2) + (e >> 1) * 8;
        const int col = n0 + wn + j * 8 + (lane & 3) * 2 + (e & 1);
        if (row < M && col < N) {
          const float v = acc[i][j][e] + (a.bias ? a.bias[col] : 0.0f);
          float* o = a.out + static_cast<size_t>(row) * a.ldo + col;
          *o = a.accumulate ? *o + v : v;
        }
      }
}

// Any shape, float32 x: one thread per output (odd K, unaligned rows).
__global__ void linearFallbackKernel(const LinearArgs a) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const int r = blockIdx.y;
  if (n >= a.N) return;
  const uint16_t* w = a.weight + static_cast<size_t>(n) * a.K;
  const float* x = a.x + static_cast<size_t>(r) * a.ldx;
  float s = 0.0f;
  for (int k = 0; k < a.K; ++k) s = fmaf(x[k], __uint_as_float(static_cast<uint32_t>(w[k]) << 16), s);
  s += a.bias ? a.bias[n] : 0.0f;
  float* o = a.out + static_cast<size_t>(r) * a.ldo + n;
  *o = a.accumulate ? *o + s : s;
}

}  // namespace

cudaError_t launchGemm(const LinearArgs& a, const uint16_t* xBf16, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  const bool tensorCores = xBf16 && (a.K % 8) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && (reinterpret_cast<uintptr_t>(xBf16) & 15) == 0;
  if (!tensorCores) {
    linearFallbackKernel<<<dim3((a.N + 127) / 128, a.rows), 128, 0, stream>>>(a);
    return cudaGetLastError();
  }
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(gemmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSharedBytes));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  gemmKernel<<<dim3((a.N + BN - 1) / BN, (a.rows + BM - 1) / BM), kThreads, kSharedBytes, stream>>>(a, xBf16);
  return cudaGetLastError();
}

}  // namespace df11
