// Matrix products for prefill: out[M, N] (+)= X[M, K] · W[N, K]ᵀ + bias, BF16 operands on the tensor
// cores (mma.sync m16n8k16, float32 accumulation). 128×128 block tiles, K in steps of 32 through a
// 3-stage cp.async pipeline; 8 warps of 64×32; rows padded to 80 bytes so ldmatrix is conflict-free.
// On compute capability 9.0 (H100, H200) the wgmma + TMA kernel of gemm-sm90.cu runs instead.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "gemm-sm90.h"
#include "inference.h"
#include "pdl.cuh"

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

// With `partial` non-null (split-K), block z multiplies K tiles [z·tilesPerSplit, …) and writes its sums to
// partial[z][M][N]; reduceSplitsKernel adds the splits in order (deterministic, no atomics).
__global__ void __launch_bounds__(kThreads) gemmKernel(const LinearArgs a, const uint16_t* __restrict__ xb, float* __restrict__ partial, int tilesPerSplit) {
  pdlWait();
  pdlLaunchDependents();
  extern __shared__ __align__(16) uint16_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int M = a.rows, N = a.N, K = a.K;
  const int firstTile = blockIdx.z * tilesPerSplit;
  const int kTiles = min((K + BK - 1) / BK - firstTile, tilesPerSplit);

  // Each thread copies 2 chunks of 16 bytes of A and 2 of B per stage.
  const auto loadStage = [&](int stage, int kt) {
    uint16_t* sa = smem + stage * kStageElems;
    uint16_t* sb = sa + BM * kPitch;
    const int k0 = (firstTile + kt) * BK;
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
          if (partial) {
            partial[(static_cast<size_t>(blockIdx.z) * M + row) * N + col] = acc[i][j][e];
          } else {
            const float v = acc[i][j][e] + (a.bias ? a.bias[col] : 0.0f);
            float* o = a.out + static_cast<size_t>(row) * a.ldo + col;
            *o = a.accumulate ? *o + v : v;
          }
        }
      }
}

// out (+)= Σ_z partial[z] + bias, splits added in order.
__global__ void reduceSplitsKernel(const LinearArgs a, const float* __restrict__ partial, int splits) {
  pdlWait();
  pdlLaunchDependents();
  const size_t total = static_cast<size_t>(a.rows) * a.N;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / a.N), col = static_cast<int>(i % a.N);
    float v = 0.0f;
    for (int z = 0; z < splits; ++z) v += partial[static_cast<size_t>(z) * total + i];
    v += a.bias ? a.bias[col] : 0.0f;
    float* o = a.out + static_cast<size_t>(row) * a.ldo + col;
    *o = a.accumulate ? *o + v : v;
  }
}

// Any shape, float32 x: one thread per output (odd K, unaligned rows).
__global__ void linearFallbackKernel(const LinearArgs a) {
  pdlWait();
  pdlLaunchDependents();
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

namespace {

// GemmVariant from DF11_GEMM (auto | mma | sm90 | sm90-128 | sm90-256), read once; setGemmVariant overrides.
GemmVariant variantFromEnvironment() {
  const char* v = std::getenv("DF11_GEMM");
  if (!v) return GemmVariant::Auto;
  if (!std::strcmp(v, "mma")) return GemmVariant::Mma;
  if (!std::strcmp(v, "sm90")) return GemmVariant::Sm90;
  if (!std::strcmp(v, "sm90-128")) return GemmVariant::Sm90Tile128;
  if (!std::strcmp(v, "sm90-256")) return GemmVariant::Sm90Tile256;
  return GemmVariant::Auto;
}
std::atomic<int> gemmVariantSetting{-1};

GemmVariant currentVariant() {
  int v = gemmVariantSetting.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(variantFromEnvironment());
    gemmVariantSetting.store(v, std::memory_order_relaxed);
  }
  return static_cast<GemmVariant>(v);
}

// Whether Auto takes the Hopper kernel where it can (validated on the H200: kernels.test.mjs, generation tests).
constexpr bool kSm90ByDefault = true;

// The Hopper kernel. K splits from rows and K only (never from N, which differs between a whole matrix and
// the DF11 windows of it), so every output's reduction order depends only on (rows, K): each split sums its
// K tiles in order, 16 at a time, whatever the column tile (128 and 256 give the same bits: tested), and
// the splits are added in order.
template <class Launch>
cudaError_t launchSm90(const LinearArgs& a, float* workspace, size_t workspaceFloats, int bn, Launch launch, cudaStream_t stream) {
  const int rowTiles = (a.rows + kSm90TileM - 1) / kSm90TileM;
  const int kTiles = (a.K + kSm90TileK - 1) / kSm90TileK;
  // Few row tiles (a batch of sequences): split K so that N = 4096 gives ~128 blocks.
  int splits = rowTiles >= 4 ? 1 : 4 / rowTiles;
  while (splits > 1 && kTiles < 4 * splits) splits /= 2;
  const int tilesPerSplit = (kTiles + splits - 1) / splits;
  if (splits > 1) splits = (kTiles + tilesPerSplit - 1) / tilesPerSplit;
  if (bn == 0) {
    // Column tile: 256 runs ~15 % faster per tile (measured on the H200) unless 128 fills the
    // multiprocessors' last wave that much better.
    const int sms = std::max(1, multiprocessors());
    const auto score = [&](int tile) {
      const long tiles = static_cast<long>(rowTiles) * splits * ((a.N + tile - 1) / tile);
      const long waves = (tiles + sms - 1) / sms;
      return static_cast<double>(tiles) / static_cast<double>(waves * sms) * (tile == 256 ? 1.15 : 1.0);
    };
    bn = score(256) >= score(128) ? 256 : 128;
  }
  if (splits <= 1) return launch(a, 0, bn, nullptr, std::max(kTiles, 1), 1);
  // Columns in pieces whose partial sums fit the workspace (tile-aligned; the order of each sum is unchanged).
  const size_t perColumn = static_cast<size_t>(splits) * a.rows;
  const int maxColumns = static_cast<int>(std::min<size_t>(workspaceFloats / perColumn, 1 << 30)) / 256 * 256;
  if (maxColumns == 0) return cudaErrorNotSupported;  // before any launch: the caller falls back (mma.sync, or DF11 windows)
  for (int c0 = 0; c0 < a.N; c0 += maxColumns) {
    LinearArgs part = a;
    part.N = std::min(maxColumns, a.N - c0);
    part.weight = a.weight ? a.weight + static_cast<size_t>(c0) * a.K : nullptr;
    part.bias = a.bias ? a.bias + c0 : nullptr;
    part.out = a.out + c0;
    cudaError_t e = launch(part, c0, bn, workspace, tilesPerSplit, splits);
    if (e != cudaSuccess) return e;
    const size_t perSplit = static_cast<size_t>(part.rows) * part.N;
    e = launchKernel(reduceSplitsKernel, dim3(static_cast<unsigned>(std::min<size_t>((perSplit + 255) / 256, 4096))), dim3(256), 0, stream, part, workspace, splits);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// FusedGemmMode from DF11_FUSED_GEMM (auto | always | off, or 0), read once; setFusedGemm overrides.
std::atomic<int> fusedGemmSetting{-1};

}  // namespace

void setGemmVariant(GemmVariant v) { gemmVariantSetting.store(static_cast<int>(v), std::memory_order_relaxed); }

bool gemmUsesSm90(int rows, int K) {
  const GemmVariant v = currentVariant();
  if (v == GemmVariant::Mma || (v == GemmVariant::Auto && !kSm90ByDefault)) return false;
  (void)rows;
  (void)K;
  return gemmSm90Supported();
}

void setFusedGemm(FusedGemmMode mode) { fusedGemmSetting.store(static_cast<int>(mode), std::memory_order_relaxed); }

FusedGemmMode fusedGemmMode() {
  int v = fusedGemmSetting.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("DF11_FUSED_GEMM");
    v = static_cast<int>(!e ? FusedGemmMode::Auto
                         : !std::strcmp(e, "0") || !std::strcmp(e, "off") ? FusedGemmMode::Off
                         : !std::strcmp(e, "always")                      ? FusedGemmMode::Always
                                                                          : FusedGemmMode::Auto);
    fusedGemmSetting.store(v, std::memory_order_relaxed);
  }
  return static_cast<FusedGemmMode>(v);
}

cudaError_t launchFusedGemm(const LinearArgs& a, const FusedView& w, const uint16_t* xBf16, float* workspace, size_t workspaceFloats, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  const FusedGemmMode mode = fusedGemmMode();
  if (mode == FusedGemmMode::Off || (mode == FusedGemmMode::Auto && a.rows > kFusedGemmAutoMaxRows) || !gemmUsesSm90(a.rows, a.K)) return cudaErrorNotSupported;
  if (!xBf16 || (reinterpret_cast<uintptr_t>(xBf16) & 15) != 0) return cudaErrorNotSupported;
  if (a.N > w.rows || a.K != w.cols || (a.K & 7) != 0) return cudaErrorInvalidValue;
  // Column pieces start on multiples of 256 rows: whole groups of the layout.
  const auto launch = [&](const LinearArgs& part, int c0, int, float* partial, int tilesPerSplit, int splits) {
    FusedView v = w;
    const int group = c0 / kFusedGroupRows;
    v.data += static_cast<size_t>(group) * w.tiles * kFusedTileBytes;
    v.tables += static_cast<size_t>(c0) * 8;
    v.escapeOffsets += static_cast<size_t>(group) * w.tiles;
    v.rows = w.rows - c0;
    v.groups = (v.rows + kFusedGroupRows - 1) / kFusedGroupRows;
    return launchGemmSm90Fused(part, xBf16, v, partial, tilesPerSplit, splits, stream);
  };
  return launchSm90(a, workspace, workspaceFloats, 128, launch, stream);
}

cudaError_t launchGemm(const LinearArgs& a, const uint16_t* xBf16, float* workspace, size_t workspaceFloats, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  const bool tensorCores = xBf16 && (a.K % 8) == 0 && (reinterpret_cast<uintptr_t>(a.weight) & 15) == 0 && (reinterpret_cast<uintptr_t>(xBf16) & 15) == 0;
  if (!tensorCores) {
    return launchKernel(linearFallbackKernel, dim3((a.N + 127) / 128, a.rows), dim3(128), 0, stream, a);
  }
  if (gemmUsesSm90(a.rows, a.K)) {
    const GemmVariant v = currentVariant();
    const int bn = v == GemmVariant::Sm90Tile128 ? 128 : v == GemmVariant::Sm90Tile256 ? 256 : 0;
    const auto launch = [&](const LinearArgs& part, int, int tile, float* partial, int tilesPerSplit, int splits) {
      return launchGemmSm90(part, xBf16, tile, partial, tilesPerSplit, splits, stream);
    };
    const cudaError_t e = launchSm90(a, workspace, workspaceFloats, bn, launch, stream);
    if (e != cudaErrorNotSupported) return e;
  }
  // The shared-memory opt-in is a per-device attribute of the kernel: set once on each device.
  static bool configured[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= 64 || !configured[device]) {
    const cudaError_t e = cudaFuncSetAttribute(gemmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSharedBytes));
    if (e != cudaSuccess) return e;
    if (device >= 0 && device < 64) configured[device] = true;
  }
  // Few rows (a batch of sequences) leave most SMs idle with one block per 128×128 tile: split K over
  // blocks until the GPU is about full, as far as the workspace allows.
  const dim3 tiles((a.N + BN - 1) / BN, (a.rows + BM - 1) / BM);
  const int kTiles = (a.K + BK - 1) / BK;
  int splits = 1;
  const size_t perSplit = static_cast<size_t>(a.rows) * a.N;
  while (splits < 16 && tiles.x * tiles.y * splits * 2 <= static_cast<unsigned>(multiprocessors()) * 2 && kTiles / (splits * 2) >= 4 &&
         static_cast<size_t>(splits * 2) * perSplit <= workspaceFloats)
    splits *= 2;
  const int tilesPerSplit = (kTiles + splits - 1) / splits;
  splits = (kTiles + tilesPerSplit - 1) / tilesPerSplit;
  const cudaError_t e = launchKernel(gemmKernel, dim3(tiles.x, tiles.y, splits), dim3(kThreads), kSharedBytes, stream, a, xBf16, splits > 1 ? workspace : nullptr, tilesPerSplit);
  if (e != cudaSuccess || splits == 1) return e;
  return launchKernel(reduceSplitsKernel, dim3(static_cast<unsigned>(std::min<size_t>((perSplit + 255) / 256, 4096))), dim3(256), 0, stream, a, workspace, splits);
}

}  // namespace df11
