// Matrix products for decoding and batched decoding (1…64 rows of x), on the tensor cores:
// out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n], x rounded to BF16 (as the prefill GEMM and transformers
// do), float32 accumulation (mma.m16n8k16). x comes laid out as the mma's A operands (launchToMmaA), so
// a lane's operands are two 16-byte loads. One kernel body, two weight loaders: BF16 rows read with
// 16-byte loads, or the DF11 fused layout (fused-decode.cuh) decoded in registers straight into the
// mma's B operands. Both hand the body the same operands for the same k, the body sums them in the same
// order, and so a model gives bit-identical logits from either layout.
//
// Shape: W is taken 8 rows (a group: the mma's 8 columns) × 256 k (a tile) at a time; lane 4g + q holds
// row g's k = 32c + 8q … 8q + 7 of chunk c (16 bytes), two mma B operands. The 4 warps of a block split
// one group's tiles and add their partial sums in warp order; blocks loop over groups. Each output
// element depends only on its own row of x and column of W, never on the batch: a sequence decoded in a
// batch gets exactly its solo logits. Memory-bound on the weights; launched as programmatic dependent
// launches (pdl.cuh): a warp's first weights are in flight before the previous kernel has finished.
#include "bf16.cuh"
#include "fused-decode.cuh"
#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kWarps = 4;          // per block: warps sharing one group's tiles
constexpr int kTilesInFlight = 2;  // tiles a warp loads before decoding the first

// Whether BF16 weight loads bypass L1, keeping x there (setGemvVariant, for benchmarks).
bool gNoAllocate = true;

__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ---- weight loaders ---------------------------------------------------------------------------------
// group(g): per-group state of a lane; load(state, tile): issue the tile's loads; prepare(raw): work on
// the whole tile once loaded (all lanes together); chunk(raw, c): chunk c's 8 BF16 values in k order.
template <bool NoAllocate, bool Aligned>
struct Bf16Weights {
  const uint16_t* weight;  // [N, K]
  int N, K;
  struct Shared {};
  using Group = const uint16_t*;  // the lane's row (rows past N read row N − 1: their outputs are dropped)
  struct Raw {
    uint4 w[8];
  };
  __device__ __forceinline__ Group group(int g, int lane) const { return weight + static_cast<size_t>(min(g * 8 + (lane >> 2), N - 1)) * K; }
  __device__ __forceinline__ Raw load(Group row, int group, int t, int lane) const {
    Raw r;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int k = t * kFusedTileK + 32 * c + 8 * (lane & 3);
      if (!Aligned && k >= K) r.w[c] = make_uint4(0, 0, 0, 0);
      else if constexpr (NoAllocate) r.w[c] = loadStreaming16(row + k);
      else r.w[c] = __ldg(reinterpret_cast<const uint4*>(row + k));
    }
    return r;
  }
  __device__ __forceinline__ void prepare(Raw&, Group, int, Shared&) const {}
  __device__ __forceinline__ uint4 chunk(const Raw& r, int c) const { return r.w[c]; }
};

struct FusedWeights {
  FusedView view;
  struct Shared {
    __align__(16) uint8_t patch[kWarps][2048];  // per warp, for escapes
  };
  using Group = uint2;  // the lane's row table
  struct Raw {
    FusedTileLoad tile;
    uint32_t e[16];
  };
  __device__ __forceinline__ Group group(int g, int lane) const { return fusedTable(view, g, lane); }
  __device__ __forceinline__ Raw load(Group, int group, int t, int lane) const {
    Raw r;
    r.tile = loadFusedTile(view, static_cast<uint32_t>(group) * view.tiles + t, lane);
    return r;
  }
  __device__ __forceinline__ void prepare(Raw& r, Group table, int lane, Shared& shared) const {
    fusedExponents(view, r.tile, table, lane, shared.patch[threadIdx.x >> 5], r.e);
  }
  __device__ __forceinline__ uint4 chunk(const Raw& r, int c) const { return assembleChunk(r.tile.lane, r.e, c); }
};

// ---- the kernel body --------------------------------------------------------------------------------
// MT m-tiles of 16 rows of x; Half: one m-tile of which only rows 0…7 exist (the mma's rows 8…15 are zero).
template <int MT, bool Half, class Weights>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a, const uint4* __restrict__ xa, const Weights weights) {
  __shared__ typename Weights::Shared shared;
  __shared__ float partial[kWarps][MT][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int K = a.K;
  const int groups = (a.N + 7) / 8;
  const int tiles = (K + kFusedTileK - 1) / kFusedTileK;
  const int kChunks = tiles * (kFusedTileK / 8);  // 8-k chunks per row of xa
  bool waited = false;
  for (int group = blockIdx.x; group < groups; group += gridDim.x) {
    float acc[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][e] = 0.0f;
    const typename Weights::Group state = weights.group(group, lane);
    for (int t0 = warp; t0 < tiles; t0 += kWarps * kTilesInFlight) {
      typename Weights::Raw raw[kTilesInFlight];
#pragma unroll
      for (int i = 0; i < kTilesInFlight; ++i) {
        const int t = t0 + i * kWarps;
        if (t < tiles) raw[i] = weights.load(state, group, t, lane);
      }
      if (!waited) {  // weights only so far: x is the previous kernel's output
        pdlWait();
        pdlLaunchDependents();
        waited = true;
      }
#pragma unroll
      for (int i = 0; i < kTilesInFlight; ++i) {
        const int t = t0 + i * kWarps;
        if (t >= tiles) break;  // the same for the whole warp
        weights.prepare(raw[i], state, lane, shared);
        // x's A operands for k = 256t + 32c + 8q … + 7: two 16-byte pieces per m-tile (zeros past rows and
        // K), chunk c 8 pieces further on, m-tile mt 16·kChunks pieces further on.
        const uint4* xt = xa + (g * kChunks + t * (kFusedTileK / 8) + q) * 2;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          const uint4 b = weights.chunk(raw[i], c);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            // Only lanes whose rows of x exist load them (one row: 4 lanes of 32); the rest multiply zeros.
            const uint4* xp = xt + mt * 16 * kChunks + 8 * c;
            const bool rows = 16 * mt + g < a.rows;
            const uint4 x0 = rows ? __ldg(xp) : make_uint4(0, 0, 0, 0), x1 = rows ? __ldg(xp + 1) : make_uint4(0, 0, 0, 0);
            mma16816(acc[mt], x0.x, x0.y, x0.z, x0.w, b.x, b.y);
            mma16816(acc[mt], x1.x, x1.y, x1.z, x1.w, b.z, b.w);
          }
        }
      }
    }
    // The block's warps add their partial sums in warp order (fixed: deterministic in any batch).
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) partial[warp][mt][e][lane] = acc[mt][e];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (Half && e >= 2) continue;
          float s = partial[0][mt][e][lane];
#pragma unroll
          for (int w = 1; w < kWarps; ++w) s += partial[w][mt][e][lane];
          const int m = 16 * mt + g + (e >= 2 ? 8 : 0);
          const int n = group * 8 + 2 * q + (e & 1);
          if (m < a.rows && n < a.N) {
            const float v = s + (a.bias ? a.bias[n] : 0.0f);
            float* o = a.out + static_cast<size_t>(m) * a.ldo + n;
            *o = a.accumulate ? *o + v : v;
          }
        }
      }
    }
    __syncthreads();
  }
  if (!waited) {
    pdlWait();
    pdlLaunchDependents();
  }
}

// Unaligned rows, K % 8 ≠ 0 or x not in BF16 (BF16 weights only): one warp per row, float32 x, any shape.
__global__ void __launch_bounds__(256) gemvScalarKernel(const LinearArgs a) {
  pdlWait();
  pdlLaunchDependents();
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * 8;
  for (int n = blockIdx.x * 8 + (threadIdx.x >> 5); n < a.N; n += warps) {
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
int residentBlocks(int threads) {
  static int blocks = 0;  // per kernel
  if (blocks == 0) {
    int device = 0, sms = 0, perSm = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, Kernel, threads, 0);
    blocks = sms * (perSm > 0 ? perSm : 1);
  }
  return blocks;
}

template <int MT, bool Half, class Weights>
cudaError_t launchTiles(const LinearArgs& a, const uint4* xa, const Weights& w, cudaStream_t stream) {
  const int groups = (a.N + 7) / 8;
  const int blocks = min(groups, residentBlocks<gemvKernel<MT, Half, Weights>>(kWarps * 32));
  return launchKernel(gemvKernel<MT, Half, Weights>, dim3(blocks), dim3(kWarps * 32), 0, stream, a, xa, w);
}

template <class Weights>
cudaError_t launchAnyRows(const LinearArgs& a, const uint4* xa, const Weights& w, cudaStream_t stream) {
  if (a.rows <= 8) return launchTiles<1, true>(a, xa, w, stream);
  if (a.rows <= 16) return launchTiles<1, false>(a, xa, w, stream);
  if (a.rows <= 32) return launchTiles<2, false>(a, xa, w, stream);
  return launchTiles<4, false>(a, xa, w, stream);
}

// x [rows, ldx] float32 → xa: for m-tile mt, row pair (g, g + 8) and 8-k chunk j, two 16-byte pieces
// [x[g][8j, 8j+1], x[g+8][8j, 8j+1], x[g][8j+2, 8j+3], x[g+8][8j+2, 8j+3]] and the same for 8j+4 … 8j+7:
// exactly the A operands (a0 … a3) of the two mma.m16n8k16 a lane issues for that chunk. Rows past
// `rows` and k past K are zeros (K padded to whole tiles).
__global__ void toMmaAKernel(const float* __restrict__ x, int rows, int K, int ldx, int mTiles, int kChunks, uint4* __restrict__ xa) {
  pdlWait();
  pdlLaunchDependents();
  const size_t total = static_cast<size_t>(mTiles) * 8 * kChunks;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(i % kChunks);
    const int pair = static_cast<int>(i / kChunks);  // mt · 8 + g
    const int r0 = (pair / 8) * 16 + pair % 8, r8 = r0 + 8;
    uint32_t h[2][4];  // [row 0/8][k pair 0…3]
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const int r = s ? r8 : r0;
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const int k = 8 * j + 2 * p;
        const float v0 = r < rows && k < K ? x[static_cast<size_t>(r) * ldx + k] : 0.0f;
        const float v1 = r < rows && k + 1 < K ? x[static_cast<size_t>(r) * ldx + k + 1] : 0.0f;
        h[s][p] = static_cast<uint32_t>(floatToBf16(v0)) | (static_cast<uint32_t>(floatToBf16(v1)) << 16);
      }
    }
    xa[2 * i] = make_uint4(h[0][0], h[1][0], h[0][1], h[1][1]);
    xa[2 * i + 1] = make_uint4(h[0][2], h[1][2], h[0][3], h[1][3]);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
int mTilesOf(int rows) { return rows <= 16 ? 1 : rows <= 32 ? 2 : 4; }

}  // namespace

void setGemvVariant(bool noAllocate) { gNoAllocate = noAllocate; }

size_t mmaABytes(int rows, int K) { return static_cast<size_t>(mTilesOf(rows)) * 16 * ((K + kFusedTileK - 1) / kFusedTileK) * kFusedTileK * 2; }

cudaError_t launchToMmaA(const float* x, int rows, int K, int ldx, uint16_t* xa, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (rows > kGemvMaxRows || !aligned16(xa)) return cudaErrorInvalidValue;
  const int mTiles = mTilesOf(rows);
  const int kChunks = (K + kFusedTileK - 1) / kFusedTileK * (kFusedTileK / 8);
  const size_t total = static_cast<size_t>(mTiles) * 8 * kChunks;
  const unsigned blocks = static_cast<unsigned>((total + 255) / 256 < 1024 ? (total + 255) / 256 : 1024);
  return launchKernel(toMmaAKernel, dim3(blocks), dim3(256), 0, stream, x, rows, K, ldx, mTiles, kChunks, reinterpret_cast<uint4*>(xa));
}

cudaError_t launchGemv(const LinearArgs& a, const uint16_t* xa, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  if (!xa || (a.K & 7) != 0 || !aligned16(a.weight) || !aligned16(xa)) {
    const int blocks = min((a.N + 7) / 8, residentBlocks<gemvScalarKernel>(256));
    return launchKernel(gemvScalarKernel, dim3(blocks), dim3(256), 0, stream, a);
  }
  const uint4* x = reinterpret_cast<const uint4*>(xa);
  if (a.K % kFusedTileK == 0) {
    if (gNoAllocate) return launchAnyRows(a, x, Bf16Weights<true, true>{a.weight, a.N, a.K}, stream);
    return launchAnyRows(a, x, Bf16Weights<false, true>{a.weight, a.N, a.K}, stream);
  }
  if (gNoAllocate) return launchAnyRows(a, x, Bf16Weights<true, false>{a.weight, a.N, a.K}, stream);
  return launchAnyRows(a, x, Bf16Weights<false, false>{a.weight, a.N, a.K}, stream);
}

cudaError_t launchFusedGemv(const LinearArgs& a, const uint16_t* xa, const FusedView& w, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows || a.N > w.rows || a.K != w.cols || (a.K & 7) != 0 || !xa || !aligned16(xa)) return cudaErrorInvalidValue;
  return launchAnyRows(a, reinterpret_cast<const uint4*>(xa), FusedWeights{w}, stream);
}

}  // namespace df11
