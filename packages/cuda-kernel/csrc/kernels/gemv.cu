// Matrix products for decoding and batched decoding (1…64 rows of x), on the tensor cores:
// out[r, n] (+)= Σ_k x[r, k]·W[n, k] + bias[n], x rounded to BF16 as it is loaded (as the prefill GEMM
// and transformers do), float32 accumulation (mma.m16n8k16). One kernel body, three weight loaders: BF16
// rows copied into shared memory, or the DF11 fused layout (fused-decode.cuh) — its tiles in registers,
// or (two groups per warp) copied into shared memory — decoded in registers straight into the mma's B
// operands. All hand the body the same operands for the same k, the body sums them in the same order,
// and so a model gives bit-identical logits from any layout.
//
// Shape: W is taken 8 rows (a group: the mma's 8 columns) × 256 k (a tile) at a time; lane 4g + q holds
// row g's k = 32c + 8q … 8q + 7 of chunk c (16 bytes), two mma B operands. The 4 warps of a block split
// one group's tiles (or the same tiles of two groups, x's operands loaded once for both: at 17…32 rows,
// and for the fused layout at 9…16 on matrices of ≥ 5 groups per SM) and add their partial sums in warp
// order; blocks loop over groups. Each output
// element depends only on its own row of x and column of W, never on the batch: a sequence decoded in a
// batch gets exactly its solo logits. Memory-bound on the weights; launched as programmatic dependent
// launches (pdl.cuh): a warp's first weights are in flight before the previous kernel has finished.
#include "bf16.cuh"
#include "fused-decode.cuh"
#include "inference.h"
#include "pdl.cuh"

#include <type_traits>
#include <utility>

namespace df11 {
namespace {

constexpr int kWarps = 4;          // per block: warps sharing one group's tiles
constexpr int kTilesInFlight = 2;  // tiles a warp loads before decoding the first (the kernel loop takes two stages in turn)


__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// cp.async bookkeeping of the loaders that stage tiles in shared memory: a stage's copies are one group;
// before a stage is read, wait for it (`pending`: a later stage's group was committed since, and may stay
// in flight), then make every lane's copies visible to the warp.
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n"); }
__device__ __forceinline__ void cpAsyncWait(bool pending) {
  if (pending) asm volatile("cp.async.wait_group 1;\n");
  else asm volatile("cp.async.wait_group 0;\n");
  __syncwarp();
}

// ---- weight loaders ---------------------------------------------------------------------------------
// Two tiles per warp are in flight: while one is multiplied, the next one's loads are outstanding. With G
// groups per warp (gemvKernel), a stage holds the same tile of G groups: Stages = kTilesInFlight · G slots.
// group(g, lane): a lane's per-group state; load(state, group, t, slot): issue tile t's loads into `slot`;
// commit(): after a stage's loads; wait(pending): before a stage is read (all lanes together; `pending`:
// whether a later stage's loads were issued since); prepare(raw, state, slot): what the chunks need;
// chunk(raw, dec, slot, c): chunk c's 8 BF16 values in k order (the lane's two mma B operands);
// release(): before a stage's storage is loaded again.
template <bool Aligned, int Stages>
struct Bf16Weights {
  const uint16_t* weight;  // [N, K]
  int N, K;
  // Each warp copies its tiles' 8 rows × 512 bytes into shared memory with coalesced 16-byte copies
  // (a row per instruction) and reads the mma operands back: loading the operands straight from global
  // memory (8 rows × 64 bytes per instruction) ran at two thirds of the bandwidth. So that a
  // quarter-warp's reads of two rows hit 32 distinct banks, rows are padded by 64 bytes with one group
  // per warp; with two, odd rows' 16-byte units are swizzled instead (u ^ 4), which saves 2 KB per warp,
  // 8 KB per block (3 blocks per SM instead of 2). (Swizzled rows with one group per warp — 6 blocks per
  // SM instead of 5 — made one-row tokens slower on an H200: 4.47 → 4.61 ms; gemv-groups-experiment-h200.log,
  // runs 1–2.)
  static constexpr bool kSwizzle = Stages > kTilesInFlight;
  static constexpr int kRowBytes = kSwizzle ? 512 : 512 + 64;
  struct Shared {
    __align__(16) uint8_t stage[kWarps][Stages][8 * kRowBytes];
  };
  using Group = const uint16_t*;  // the warp's first row
  struct Raw {};
  struct Decoded {};
  static __device__ __forceinline__ int unit(int row, int u) { return kSwizzle ? u ^ ((row & 1) << 2) : u; }
  __device__ __forceinline__ Group group(int g, int) const { return weight + static_cast<size_t>(g) * 8 * K; }
  __device__ __forceinline__ Raw load(Group rows, int group, int t, int slot, Shared& shared) const {
    const int lane = threadIdx.x & 31;
    uint8_t* dst = shared.stage[threadIdx.x >> 5][slot];
    const int k = t * kFusedTileK + 8 * lane;
    const bool inside = Aligned || k < K;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      // Rows past N copy row N − 1: their outputs are dropped.
      const uint16_t* src = rows + static_cast<size_t>(min(group * 8 + j, N - 1) - group * 8) * K + (inside ? k : 0);
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(dst + j * kRowBytes + 16 * unit(j, lane)))), "l"(src),
                   "r"(inside ? 16 : 0));
    }
    return {};
  }
  __device__ __forceinline__ void commit() const { cpAsyncCommit(); }
  __device__ __forceinline__ void wait(bool pending) const { cpAsyncWait(pending); }
  __device__ __forceinline__ Decoded prepare(Raw&, Group, int, Shared&) const { return {}; }
  __device__ __forceinline__ uint4 chunk(const Raw&, const Decoded&, int slot, int c, Shared& shared) const {
    const int lane = threadIdx.x & 31, g = lane >> 2;
    return *reinterpret_cast<const uint4*>(shared.stage[threadIdx.x >> 5][slot] + g * kRowBytes + 16 * unit(g, 4 * c + (lane & 3)));
  }
  __device__ __forceinline__ void release() const { __syncwarp(); }
};

// The fused layout's per-group state: the lane's row table, and the escape ranges of the warp's tiles of
// the group (lane j: its j-th tile), read once per group so that a tile's escapes are loaded with its
// data, with no round trip between.
struct FusedGroupState {
  uint2 table;
  uint32_t begin, end;
  bool direct;  // more than 32 tiles per warp: ranges read per tile

  __device__ __forceinline__ static FusedGroupState of(const FusedView& view, int g, int lane) {
    FusedGroupState s;
    s.table = fusedTable(view, g, lane);
    const int warp = threadIdx.x >> 5;
    const int mine = (view.tiles - warp + kWarps - 1) / kWarps;
    s.direct = mine > 32;
    s.begin = s.end = 0;
    if (!s.direct && lane < mine) {
      const uint32_t tile = static_cast<uint32_t>(g) * view.tiles + warp + kWarps * lane;
      s.begin = __ldg(view.escapeOffsets + tile);
      s.end = __ldg(view.escapeOffsets + tile + 1);
    }
    return s;
  }
  // Tile t's escape range [begin, end) (all lanes together).
  __device__ __forceinline__ uint2 range(const FusedView& view, uint32_t tile, int t) const {
    if (direct) return make_uint2(__ldg(view.escapeOffsets + tile), __ldg(view.escapeOffsets + tile + 1));
    const int j = (t - static_cast<int>(threadIdx.x >> 5)) / kWarps;
    return make_uint2(__shfl_sync(0xffffffffu, begin, j), __shfl_sync(0xffffffffu, end, j));
  }
};

// Fused tiles loaded into registers (one group per warp).
struct FusedWeights {
  FusedView view;
  struct Shared {
    __align__(16) uint8_t patch[kWarps][2048];  // per warp, for escapes
  };
  using Group = FusedGroupState;
  using Raw = FusedTileLoad;
  struct Decoded {
    uint32_t e[16];
  };
  __device__ __forceinline__ Group group(int g, int lane) const { return FusedGroupState::of(view, g, lane); }
  __device__ __forceinline__ Raw load(const Group& s, int group, int t, int, Shared&) const {
    const uint32_t tile = static_cast<uint32_t>(group) * view.tiles + t;
    const uint2 r = s.range(view, tile, t);
    return loadFusedTile(view, tile, threadIdx.x & 31, r.x, r.y);
  }
  __device__ __forceinline__ void commit() const {}
  __device__ __forceinline__ void wait(bool) const {}
  __device__ __forceinline__ Decoded prepare(Raw& r, const Group& s, int, Shared& shared) const {
    Decoded d;
    fusedExponents(view, r, s.table, threadIdx.x & 31, shared.patch[threadIdx.x >> 5], d.e);
    return d;
  }
  __device__ __forceinline__ uint4 chunk(const Raw& r, const Decoded& d, int, int c, Shared&) const { return assembleChunk(r.lane, d.e, c); }
  __device__ __forceinline__ void release() const {}
};

// Fused tiles copied into shared memory (cp.async, like the BF16 rows): several groups per warp, whose
// tiles would not fit in registers. The escapes still come into registers (one per lane).
template <int Stages>
struct FusedStagedWeights {
  FusedView view;
  struct Shared {
    __align__(16) uint8_t stage[kWarps][Stages][kFusedTileBytes];
    __align__(16) uint8_t patch[kWarps][2048];
  };
  using Group = FusedGroupState;
  struct Raw {
    uint32_t escBegin, escEnd, escPos, escExp;
  };
  struct Decoded {
    uint32_t e[16];
  };
  __device__ __forceinline__ Group group(int g, int lane) const { return FusedGroupState::of(view, g, lane); }
  __device__ __forceinline__ Raw load(const Group& s, int group, int t, int slot, Shared& shared) const {
    const uint32_t tile = static_cast<uint32_t>(group) * view.tiles + t, lane = threadIdx.x & 31;
    const uint8_t* src = view.data + static_cast<size_t>(tile) * kFusedTileBytes;
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared.stage[threadIdx.x >> 5][slot]));
    constexpr int kUnits = kFusedTileBytes / 16;  // 176 16-byte units, 5.5 per lane
#pragma unroll
    for (int j = 0; j < (kUnits + 31) / 32; ++j) {
      const uint32_t u = lane + 32 * j;
      if (u < kUnits) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst + 16 * u), "l"(src + 16 * u));
    }
    const uint2 r = s.range(view, tile, t);
    Raw raw{r.x, r.y, 0, 0};
    if (r.x + lane < r.y) {
      raw.escPos = __ldg(view.escapePositions + r.x + lane);
      raw.escExp = __ldg(view.escapeExponents + r.x + lane);
    }
    return raw;
  }
  __device__ __forceinline__ void commit() const { cpAsyncCommit(); }
  __device__ __forceinline__ void wait(bool pending) const { cpAsyncWait(pending); }
  __device__ __forceinline__ Decoded prepare(Raw& raw, const Group& s, int slot, Shared& shared) const {
    const uint32_t lane = threadIdx.x & 31;
    const uint8_t* stage = shared.stage[threadIdx.x >> 5][slot];
    FusedTileLoad r;  // the code words from shared memory (the sign+mantissa bytes are read per chunk)
#pragma unroll
    for (int w = 0; w < 6; ++w) r.lane.code[w] = *reinterpret_cast<const uint32_t*>(stage + 2048 + 128 * w + 4 * lane);
    r.escBegin = raw.escBegin, r.escEnd = raw.escEnd, r.escPos = raw.escPos, r.escExp = raw.escExp;
    Decoded d;
    fusedExponents(view, r, s.table, lane, shared.patch[threadIdx.x >> 5], d.e);
    return d;
  }
  __device__ __forceinline__ uint4 chunk(const Raw&, const Decoded& d, int slot, int c, Shared& shared) const {
    const uint2 sm = *reinterpret_cast<const uint2*>(shared.stage[threadIdx.x >> 5][slot] + 512 * (c >> 1) + 16 * (threadIdx.x & 31) + 8 * (c & 1));
    return assembleChunk(sm.x, sm.y, d.e, c);
  }
  __device__ __forceinline__ void release() const { __syncwarp(); }
};

// The loader of a weight source for G groups per warp.
struct Bf16Source {
  const uint16_t* weight;
  int N, K;
};
template <int G, bool Aligned>
__host__ __device__ Bf16Weights<Aligned, kTilesInFlight * G> weightsFor(const Bf16Source& s) {
  return {s.weight, s.N, s.K};
}
template <int G, bool>
__host__ __device__ auto weightsFor(const FusedView& v) {
  if constexpr (G == 1) return FusedWeights{v};
  else return FusedStagedWeights<kTilesInFlight * G>{v};
}

// ---- the kernel body --------------------------------------------------------------------------------
// MT m-tiles of 16 rows of x; Half: one m-tile of which only rows 0…7 exist (the mma's rows 8…15 are zero).
// Two BF16 (round to nearest even) in one register, `lo` in the low half: an mma operand pair.
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// x row r's k … k + 7 as two mma A-operand pairs each for the two mmas of a chunk (zeros past rows and K).
template <bool Aligned>
__device__ __forceinline__ void loadX(const LinearArgs& a, int r, int k, uint32_t (&lo)[2], uint32_t (&hi)[2]) {
  if (r < a.rows && (Aligned || k < a.K)) {
    const float4* p = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(r) * a.ldx + k);
    const float4 v0 = __ldg(p), v1 = __ldg(p + 1);
    lo[0] = packBf16(v0.x, v0.y);
    hi[0] = packBf16(v0.z, v0.w);
    lo[1] = packBf16(v1.x, v1.y);
    hi[1] = packBf16(v1.z, v1.w);
  } else {
    lo[0] = hi[0] = lo[1] = hi[1] = 0;
  }
}

// The same operands from x already rounded to BF16 (LinearArgs::xb, row stride K): one 16-byte load.
template <bool Aligned>
__device__ __forceinline__ void loadXb(const LinearArgs& a, int r, int k, uint32_t (&lo)[2], uint32_t (&hi)[2]) {
  if (r < a.rows && (Aligned || k < a.K)) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(a.xb + static_cast<size_t>(r) * a.K + k));
    lo[0] = v.x;
    hi[0] = v.y;
    lo[1] = v.z;
    hi[1] = v.w;
  } else {
    lo[0] = hi[0] = lo[1] = hi[1] = 0;
  }
}

// The A operands of chunk k … k + 7 of an m-tile whose lane rows are `row` and row + 8, in mma order
// {g0[0], g0[1], g1[0], g1[1], e0[0], e0[1], e1[0], e1[1]} (zeros where a row does not exist).
template <bool Half, bool Aligned, bool FromXb>
__device__ __forceinline__ void loadA(const LinearArgs& a, int row, int k, uint32_t (&x)[8]) {
  uint32_t g0[2], g1[2], e0[2] = {0, 0}, e1[2] = {0, 0};
  if constexpr (FromXb) {
    loadXb<Aligned>(a, row, k, g0, g1);
    loadXb<Aligned>(a, row + 8, k, e0, e1);
  } else {
    loadX<Aligned>(a, row, k, g0, g1);
    if (!Half) loadX<Aligned>(a, row + 8, k, e0, e1);
  }
  x[0] = g0[0], x[1] = g0[1], x[2] = g1[0], x[3] = g1[1], x[4] = e0[0], x[5] = e0[1], x[6] = e1[0], x[7] = e1[1];
}

template <int MT, int G, class Weights>
struct GemvShared {
  typename Weights::Shared weights;
  float partial[kWarps][G][MT][4][32];
};

// XAhead: the A operands of a tile's first XAhead chunks are loaded before its weights are decoded (their
// L2 round trip then overlaps the decode instead of following it). G: groups each warp multiplies per
// tile (x's operands loaded once for all of them: at 9…64 rows x's re-reads from L2, not the weights,
// bound the kernel). Neither changes any sum: each output element gets the same mmas in the same order.
template <int MT, bool Half, bool Aligned, bool FromXb, int XAhead, int G, class Weights>
__device__ __forceinline__ void gemvTiles(const LinearArgs& a, const Weights& weights, typename Weights::Shared& shared, float (&partial)[kWarps][G][MT][4][32]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int groups = (a.N + 7) / 8;
  const int sets = (groups + G - 1) / G;  // G groups each
  const int tiles = (a.K + kFusedTileK - 1) / kFusedTileK;
  bool waited = false;
  float acc[G][MT][4];
  using Group = typename Weights::Group;
  using Raw = typename Weights::Raw;
  // Multiply one loaded stage (tile t of the set's groups) into acc.
  const auto multiply = [&](Raw (&raw)[G], int t, int stage, bool pending, const Group (&state)[G]) {
    uint32_t ahead[XAhead > 0 ? XAhead : 1][MT][8];
#pragma unroll
    for (int c = 0; c < XAhead; ++c)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) loadA<Half, Aligned, FromXb>(a, 16 * mt + g, t * kFusedTileK + 32 * c + 8 * q, ahead[c][mt]);
    weights.wait(pending);
    typename Weights::Decoded dec[G];
#pragma unroll
    for (int j = 0; j < G; ++j) dec[j] = weights.prepare(raw[j], state[j], stage * G + j, shared);
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      uint4 b[G];
#pragma unroll
      for (int j = 0; j < G; ++j) b[j] = weights.chunk(raw[j], dec[j], stage * G + j, c, shared);
      const int k = t * kFusedTileK + 32 * c + 8 * q;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        // The A operands: rows g and g + 8 of the m-tile at k … k + 7, the lanes whose rows exist loading
        // them (one row of x: 4 lanes of 32), the rest multiplying zeros.
        uint32_t x[8];
        if (c < XAhead) {
#pragma unroll
          for (int i = 0; i < 8; ++i) x[i] = ahead[c < XAhead ? c : 0][mt][i];  // (the index stays in bounds when XAhead is 0)
        } else {
          loadA<Half, Aligned, FromXb>(a, 16 * mt + g, k, x);
        }
#pragma unroll
        for (int j = 0; j < G; ++j) {
          mma16816(acc[j][mt], x[0], x[4], x[2], x[6], b[j].x, b[j].y);
          mma16816(acc[j][mt], x[1], x[5], x[3], x[7], b[j].z, b[j].w);
        }
      }
    }
    weights.release();
  };
  for (int set = blockIdx.x; set < sets; set += gridDim.x) {
#pragma unroll
    for (int j = 0; j < G; ++j)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][mt][e] = 0.0f;
    // The set's groups; past the last group (an odd count), the last one again (its outputs dropped).
    int group[G];
    Group state[G];
#pragma unroll
    for (int j = 0; j < G; ++j) {
      group[j] = G == 1 ? set : min(set * G + j, groups - 1);
      state[j] = weights.group(group[j], lane);
    }
    const auto load = [&](Raw (&raw)[G], int t, int stage) {
#pragma unroll
      for (int j = 0; j < G; ++j) raw[j] = weights.load(state[j], group[j], t, stage * G + j, shared);
      weights.commit();
    };
    // This warp's tiles: warp, warp + kWarps, …, two in flight (stages 0 and 1, taken in turn).
    int t = warp;
    Raw r0[G], r1[G];
    bool has0 = t < tiles, has1 = t + kWarps < tiles;
    if (has0) load(r0, t, 0);
    if (has1) load(r1, t + kWarps, 1);
    if (!waited) {  // weights only so far: x is the previous kernel's output
      pdlWait();
      pdlLaunchDependents();
      waited = true;
    }
    while (has0) {
      multiply(r0, t, 0, has1, state);
      const bool next0 = t + 2 * kWarps < tiles;
      if (next0) load(r0, t + 2 * kWarps, 0);
      if (!has1) break;
      multiply(r1, t + kWarps, 1, next0, state);
      const bool next1 = t + 3 * kWarps < tiles;
      if (next1) load(r1, t + 3 * kWarps, 1);
      t += 2 * kWarps;
      has0 = next0;
      has1 = next1;
    }
    // The block's warps add their partial sums in warp order (fixed: deterministic in any batch); warp j
    // adds the set's group j.
#pragma unroll
    for (int j = 0; j < G; ++j)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) partial[warp][j][mt][e][lane] = acc[j][mt][e];
    __syncthreads();
    if (warp < G && set * G + warp < groups) {
      const int j = warp;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (Half && e >= 2) continue;
          float s = partial[0][j][mt][e][lane];
#pragma unroll
          for (int w = 1; w < kWarps; ++w) s += partial[w][j][mt][e][lane];
          const int m = 16 * mt + g + (e >= 2 ? 8 : 0);
          const int n = (set * G + j) * 8 + 2 * q + (e & 1);
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

// Shared memory up to 48 KB (what a kernel may have without opting in to more) is static, as two arrays (not one struct): the compiler schedules the kernels
// differently otherwise, and on an H200 that cost BF16 rows 11 % at 1 row (dynamic shared memory: ptxas
// gave 54 registers instead of 96; tokens 4.01 → 4.47 ms) and 13 % at 33…64 rows (one struct: 17.0 →
// 19.3 ms; apps/bench/results/gemv-ab-previous-session-h200.log).
constexpr size_t kStaticShared = 48 * 1024;
template <int MT, bool Half, bool Aligned, bool FromXb, int XAhead, int G, class Weights>
__global__ void __launch_bounds__(kWarps * 32) gemvKernel(const LinearArgs a, const Weights weights) {
  using Shared = GemvShared<MT, G, Weights>;
  if constexpr (sizeof(Shared) <= kStaticShared) {
    __shared__ typename Weights::Shared stages;
    __shared__ float partial[kWarps][G][MT][4][32];
    gemvTiles<MT, Half, Aligned, FromXb, XAhead, G>(a, weights, stages, partial);
  } else {
    extern __shared__ __align__(16) uint8_t sharedBytes[];
    Shared& sh = *reinterpret_cast<Shared*>(sharedBytes);
    gemvTiles<MT, Half, Aligned, FromXb, XAhead, G>(a, weights, sh.weights, sh.partial);
  }
}

// Unaligned rows or K % 8 ≠ 0 (BF16 weights only): one warp per row, float32 x, any shape.
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

// Blocks of this kernel one SM holds with `sharedBytes` of dynamic shared memory; 0 where it cannot run
// (the shared-memory opt-in failed). The first call on a device opts the kernel in to that much shared
// memory (a per-device attribute). Grids are persistent: every block starts right away, which is what
// lets it prefetch weights under the previous kernel.
template <auto Kernel>
int blocksPerSm(int threads, size_t sharedBytes) {
  static int cached[64] = {};  // per kernel and device; -1: cannot run
  int device = 0;
  cudaGetDevice(&device);
  const bool cacheable = device >= 0 && device < 64;
  if (cacheable && cached[device] != 0) return cached[device] > 0 ? cached[device] : 0;
  int n = 0;
  if (sharedBytes > kStaticShared && cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sharedBytes)) != cudaSuccess) n = -1;
  else if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, Kernel, threads, sharedBytes) != cudaSuccess || n < 1) n = sharedBytes > 0 ? -1 : 1;
  if (n < 0) cudaGetLastError();  // the caller falls back: the failed query must not be reported by a later op
  if (cacheable) cached[device] = n;
  return n > 0 ? n : 0;
}

// How many chunks' A operands go ahead of the decode: only for 9…16 rows from x's BF16 copy, where x
// (16 rows: twice the weights' bytes) is re-read from L2 for every group. Measured on an H200
// (apps/bench/results/gemv-x-ahead-h200.md): a 16-row token's products 5.06 → 4.65 ms with BF16 rows
// (8 ahead) and 4.88 → 4.54 ms fused (4 ahead; with 8 the fused kernel needs 168 registers, 3 blocks per
// SM instead of 4, and was slower); with ≤ 8 rows (x in float32, one row per lane) decode steps were
// slower with loading ahead in both layouts.
template <class Weights>
constexpr int kXAheadFromXb = 4;
template <bool Aligned, int Stages>
constexpr int kXAheadFromXb<Bf16Weights<Aligned, Stages>> = 8;

// Groups each warp multiplies per tile, from x's BF16 copy (9…64 rows). Measured on an H200
// (apps/bench/results/gemv-groups-experiment-h200.log, a token's products / decode steps of the 8B shape):
// two at 17…32 rows (32 rows: BF16 8.63 → 7.18 ms, fused 8.83 → 6.43 ms; steps of 24 and 32 sequences
// 15–27 % faster); one at 9…16 (two everywhere: BF16 9 %, fused 6 % slower — 3 blocks per SM instead of
// 4, and half as many blocks for the small matrices — but see the fused exception below) and at 33…64
// (two groups of 4 m-tiles need 255 registers and spill, per ptxas).
template <int MT>
constexpr int kGroupsPerWarp = MT == 2 ? 2 : 1;
// At 9…16 rows, the fused layout only (the choice changes no sum, so the layouts stay bit-identical): two
// groups per warp on matrices of at least 5 groups per SM. 16-sequence decode steps, fused: 5.76 → 5.56 ms
// (BF16 rows were slower so: 5.63 → 5.72 ms; apps/bench/results/gemv-groups-experiment-h200.log).
constexpr int kTwoGroupsMinGroupsPerSm = 5;

// One instantiation of the kernel: its loader for G groups per warp, shared memory, launch.
template <int MT, bool Half, bool Aligned, bool FromXb, int G, class Source>
struct Tiles {
  using Weights = decltype(weightsFor<G, Aligned>(std::declval<Source>()));
  static constexpr int kAhead = MT == 1 && FromXb ? kXAheadFromXb<Weights> : 0;
  static constexpr auto kernel = gemvKernel<MT, Half, Aligned, FromXb, kAhead, G, Weights>;
  static constexpr size_t kShared = sizeof(GemvShared<MT, G, Weights>);
  static constexpr size_t kDynamic = kShared > kStaticShared ? kShared : 0;
  static int blocksPerSm() { return df11::blocksPerSm<kernel>(kWarps * 32, kDynamic); }
  static cudaError_t launch(const LinearArgs& a, const Source& source, cudaStream_t stream) {
    const int perSm = blocksPerSm();
    if (perSm == 0) return cudaErrorInvalidConfiguration;
    const int sets = ((a.N + 7) / 8 + G - 1) / G;
    return launchKernel(kernel, dim3(min(sets, perSm * multiprocessors())), dim3(kWarps * 32), kDynamic, stream, a, weightsFor<G, Aligned>(source));
  }
};

template <int MT, bool Half, bool Aligned, bool FromXb, int G, class Source>
cudaError_t launchTiles(const LinearArgs& a, const Source& source, cudaStream_t stream) {
  return Tiles<MT, Half, Aligned, FromXb, G, Source>::launch(a, source, stream);
}

// Two groups per warp only where an SM holds at least 3 of their blocks, as on the H200 they were measured
// on (their 56–72 KB of shared memory per block leave sm_86/sm_89 one block per SM): elsewhere one group.
template <int MT, bool Aligned, class Source>
bool twoGroupsFit() {
  return Tiles<MT, false, Aligned, true, 2, Source>::blocksPerSm() >= 3;
}

template <int MT, bool Aligned, class Source>
cudaError_t launchFull(const LinearArgs& a, const Source& s, cudaStream_t stream) {
  if (!a.xb) return launchTiles<MT, false, Aligned, false, 1>(a, s, stream);
  // The fused layout at 9…16 rows: two groups per warp where the matrix has groups enough to fill the
  // GPU with half as many blocks (q|k|v, gate|up, lm_head of the 8B shape; not o or down).
  if constexpr (MT == 1 && std::is_same_v<Source, FusedView>)
    if ((a.N + 7) / 8 >= kTwoGroupsMinGroupsPerSm * multiprocessors() && twoGroupsFit<1, Aligned, Source>()) return launchTiles<1, false, Aligned, true, 2>(a, s, stream);
  if constexpr (kGroupsPerWarp<MT> == 2)
    if (twoGroupsFit<MT, Aligned, Source>()) return launchTiles<MT, false, Aligned, true, 2>(a, s, stream);
  return launchTiles<MT, false, Aligned, true, 1>(a, s, stream);
}

template <bool Aligned, class Source>
cudaError_t launchAnyRows(const LinearArgs& a, const Source& s, cudaStream_t stream) {
  if (a.rows <= 8) return launchTiles<1, true, Aligned, false, 1>(a, s, stream);
  if (a.rows <= 16) return launchFull<1, Aligned>(a, s, stream);
  if (a.rows <= 32) return launchFull<2, Aligned>(a, s, stream);
  return launchFull<4, Aligned>(a, s, stream);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace


// x's rows must be 16-byte aligned for the float4 loads (ldx % 4 == 0, x aligned); xb's too when given.
bool xAligned(const LinearArgs& a) { return (a.ldx & 3) == 0 && aligned16(a.x) && (!a.xb || aligned16(a.xb)); }

cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows) return cudaErrorInvalidValue;
  if ((a.K & 7) != 0 || !aligned16(a.weight) || !xAligned(a)) {
    const int blocks = min((a.N + 7) / 8, blocksPerSm<gemvScalarKernel>(256, 0) * multiprocessors());
    return launchKernel(gemvScalarKernel, dim3(blocks), dim3(256), 0, stream, a);
  }
  if (a.K % kFusedTileK == 0) return launchAnyRows<true>(a, Bf16Source{a.weight, a.N, a.K}, stream);
  return launchAnyRows<false>(a, Bf16Source{a.weight, a.N, a.K}, stream);
}

cudaError_t launchFusedGemv(const LinearArgs& a, const FusedView& w, cudaStream_t stream) {
  if (a.rows == 0 || a.N == 0) return cudaSuccess;
  if (a.rows > kGemvMaxRows || a.N > w.rows || a.K != w.cols || (a.K & 7) != 0 || !xAligned(a)) return cudaErrorInvalidValue;
  if (a.K % kFusedTileK == 0) return launchAnyRows<true>(a, w, stream);
  return launchAnyRows<false>(a, w, stream);
}

}  // namespace df11
