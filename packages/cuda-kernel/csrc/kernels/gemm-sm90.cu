// Matrix products for prefill on Hopper (sm_90a): out[M, N] (+)= X[M, K] · W[N, K]ᵀ + bias with wgmma.
// Warp-specialised: warpgroup 0 issues the bulk tensor copies (TMA, 128-byte swizzle, K in steps of 64)
// into a ring of shared-memory stages guarded by mbarriers; warpgroups 1 and 2 each multiply 64 rows of
// the 128-row block tile (wgmma m64nBNk16, float32 accumulators in registers, one stage's products in
// flight while the next stage is waited for) and write their results straight from the registers.
// Each output's sum runs over K in order, 16 at a time inside the tensor cores; with split-K each split
// writes its partial sums and gemm.cu adds them in a fixed order. Compiled for sm_90a only: on every
// other target the kernel is empty and launchGemm never picks it (gemmSm90Supported).
//
// The same kernel reads W in the DF11 fused layout (fused.h) with different producers: the bulk copy
// engine brings each 256-k tile of the block's 16 row groups into shared memory a tile ahead, and two
// producer warpgroups (8 warps, 2 groups each) decode them, 64 k at a time, into the very bytes the W
// tensor map would have written (BF16, 128-byte swizzle), escapes patched in place, before arriving on
// the stage's barrier.
// The consumers are untouched: the fused product is bit-identical to the BF16 product of the same weights.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <mutex>

#include "fused-decode.cuh"
#include "gemm-sm90.h"
#include "pdl.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define DF11_WGMMA 1
#endif

namespace df11 {
namespace {

constexpr int BM = 128, BK = 64, kThreads = 384;
// The fused kernel: two producer warpgroups decode (a lone warp per scheduler cannot hide its own latencies).
constexpr int kFusedProducers = 8;  // warps
constexpr int kFusedThreads = kFusedProducers * 32 + 256;

template <int BN, bool Fused = false>
struct Sm90Tile {
  static constexpr int kStages = Fused ? 4 : BN == 256 ? 4 : 6;
  static constexpr int kStageBytes = (BM + BN) * BK * 2;
  // Fused: two slots of a 256-k tile of the block's row groups behind the stages.
  static constexpr int kSlotBytes = Fused ? BN / kFusedGroupRows * kFusedTileBytes : 0;
  static constexpr size_t kSharedBytes = static_cast<size_t>(kStages) * kStageBytes + 2 * kSlotBytes + 1024;  // + alignment to 1024
};
constexpr int kFusedBN = 128;                                // the fused kernel's column tile
[[maybe_unused]] constexpr int kFusedGroupsPerWarp = kFusedBN / kFusedGroupRows / kFusedProducers;  // row groups each producer warp decodes

#ifdef DF11_WGMMA
__device__ __forceinline__ uint32_t smemAddr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbarInit(uint64_t* bar, uint32_t count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory"); }
__device__ __forceinline__ void mbarExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarArrive(uint64_t* bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory"); }
// Waits until `bar` completes the phase of `parity` (try_wait in a loop). SuspendHint (ns, 0: none) is
// try_wait's suspend-time hint: with it a waiting producer warp sleeps instead of taking issue slots from
// the other warps of its scheduler (kSleepHint).
template <uint32_t SuspendHint = 0>
__device__ __forceinline__ void mbarWait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    if constexpr (SuspendHint == 0)
      asm volatile(
          "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(smemAddr(bar)), "r"(parity)
          : "memory");
    else
      asm volatile(
          "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\nselp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(smemAddr(bar)), "r"(parity), "r"(SuspendHint)
          : "memory");
  } while (!done);
}
constexpr uint32_t kSleepHint = 10000000;  // ns (0x989680)
// Box of the tensor map at (c0 = k, c1 = row) into shared memory, completing on `bar`; out-of-bounds
// elements are zero.
__device__ __forceinline__ void tmaLoad(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(smemAddr(dst)),
               "l"(reinterpret_cast<uint64_t>(map)), "r"(smemAddr(bar)), "r"(c0), "r"(c1)
               : "memory");
}
// Shared-memory matrix descriptor: K-major rows of 128 bytes, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t smemDesc(uint32_t addr) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) | (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
template <int R>
__device__ __forceinline__ void fenceRegs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmmaWait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

// D[64×128] += A[64×16] · B[128×16]ᵀ, both K-major in shared memory (128-byte swizzle).
__device__ __forceinline__ void wgmma128(float (&d)[64], uint64_t descA, uint64_t descB) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(descA), "l"(descB), "r"(1));
}

// D[64×256] += A[64×16] · B[256×16]ᵀ, both K-major in shared memory (128-byte swizzle).
__device__ __forceinline__ void wgmma256(float (&d)[128], uint64_t descA, uint64_t descB) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
      "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(descA), "l"(descB), "r"(1));
}

template <int BN>
__device__ __forceinline__ void wgmmaTile(float (&d)[BN / 2], uint64_t descA, uint64_t descB) {
  if constexpr (BN == 128) wgmma128(d, descA, descB);
  else wgmma256(d, descA, descB);
}

// ---- the fused producer ----------------------------------------------------------------------------
__device__ __forceinline__ void bulkLoad(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smemAddr(dst)), "l"(src), "r"(bytes),
               "r"(smemAddr(bar))
               : "memory");
}

// A producer warp's escape ranges [b, e) of one tile for its groups (zeros for groups or tiles past the end).
struct EscapeRanges {
  uint32_t b[kFusedGroupsPerWarp], e[kFusedGroupsPerWarp];
};
// The first 64 escapes of each of those ranges (lane l: entries l and 32 + l) as stage patches (stagePatch; 0: none).
struct EscapePatches {
  uint32_t v[kFusedGroupsPerWarp][2];
};

__device__ __forceinline__ EscapeRanges loadRanges(const FusedView& w, int g0, int T, bool inside) {
  EscapeRanges r;
#pragma unroll
  for (int j = 0; j < kFusedGroupsPerWarp; ++j) {
    r.b[j] = r.e[j] = 0;
    if (inside && g0 + j < w.groups) {
      const uint32_t* o = w.escapeOffsets + static_cast<size_t>(g0 + j) * w.tiles + T;
      r.b[j] = __ldg(o);
      r.e[j] = __ldg(o + 1);
    }
  }
  return r;
}

__device__ __forceinline__ uint32_t loadEscape(const FusedView& w, uint32_t i) {
  return static_cast<uint32_t>(__ldg(w.escapePositions + i)) | (static_cast<uint32_t>(__ldg(w.escapeExponents + i)) << 16);
}

// Raw entries (position | exponent << 16, or 0 past the range: position 0 with exponent 0 is told apart
// by the range when it is turned into a patch).
struct EscapeEntries {
  uint32_t v[kFusedGroupsPerWarp][2];
};
__device__ __forceinline__ EscapeEntries loadEntries(const FusedView& w, const EscapeRanges& r, uint32_t lane) {
  EscapeEntries x;
#pragma unroll
  for (int j = 0; j < kFusedGroupsPerWarp; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t i = r.b[j] + 32 * h + lane;
      x.v[j][h] = i < r.e[j] ? loadEscape(w, i) : 0;
    }
  return x;
}
__device__ __forceinline__ EscapePatches toPatches(const EscapeEntries& x, const EscapeRanges& r, uint32_t lane, int rowBase) {
  EscapePatches p;
#pragma unroll
  for (int j = 0; j < kFusedGroupsPerWarp; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) p.v[j][h] = r.b[j] + 32 * h + lane < r.e[j] ? stagePatch(x.v[j][h], rowBase + j * kFusedGroupRows) : 0;
  return p;
}

#endif  // DF11_WGMMA

// Block (blockIdx.x, blockIdx.y) = rows [128·x, …), columns [BN·y, …) (row tiles vary fastest: the blocks
// running together share W tiles through L2); blockIdx.z = split of K (K tiles [z·tilesPerSplit, …)).
// Fused: W from `w` (mapW unused), BN = 128.
template <int BN, bool Fused>
__global__ void __launch_bounds__(Fused ? kFusedThreads : kThreads, 1)
    gemmSm90Kernel(const LinearArgs a, const __grid_constant__ CUtensorMap mapX, const __grid_constant__ CUtensorMap mapW, const FusedView w, float* __restrict__ partial,
                   int tilesPerSplit) {
#ifdef DF11_WGMMA
  using T = Sm90Tile<BN, Fused>;
  constexpr int S = T::kStages;
  __shared__ __align__(8) uint64_t full[S], empty[S], slotFull[2], slotEmpty[2];
  extern __shared__ uint8_t dynamicSmem[];
  uint8_t* smem = dynamicSmem + ((1024 - (smemAddr(dynamicSmem) & 1023)) & 1023);
  const int tid = threadIdx.x, wg = tid >> 7;
  constexpr int kProducerGroups = Fused ? kFusedProducers / 4 : 1;  // warpgroups before the consumers
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int M = a.rows, N = a.N, K = a.K;
  const int firstTile = blockIdx.z * tilesPerSplit;
  const int kTiles = max(0, min((K + BK - 1) / BK - firstTile, tilesPerSplit));
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      mbarInit(&full[s], Fused ? 1 + kFusedProducers : 1);  // fused: the X copy's expect_tx and each decoding warp
      mbarInit(&empty[s], 2);
    }
    if constexpr (Fused) {
      for (int s = 0; s < 2; ++s) {
        mbarInit(&slotFull[s], 1);
        mbarInit(&slotEmpty[s], kFusedProducers);
      }
    }
    asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  if constexpr (Fused) {
    if (wg < kProducerGroups) {
      // 256-k tiles T0 … TN of the fused layout hold this block's K tiles (of 64); tile T sits in slot (T − T0) % 2.
      const uint32_t warp = tid >> 5, lane = tid & 31;
      const int T0 = firstTile >> 2, TN = (firstTile + kTiles - 1) >> 2;
      const int g0 = n0 / kFusedGroupRows + static_cast<int>(warp) * kFusedGroupsPerWarp;  // the warp's first group
      const int rowBase = static_cast<int>(warp) * kFusedGroupsPerWarp * kFusedGroupRows;   // its first row in a stage
      uint8_t* slots = smem + S * T::kStageBytes;
      const auto issueTile = [&](int tile) {
        const int slot = (tile - T0) & 1;
        const int first = n0 / kFusedGroupRows, count = min(BN / kFusedGroupRows, w.groups - first);
        mbarExpectTx(&slotFull[slot], static_cast<uint32_t>(count) * kFusedTileBytes);
        for (int j = 0; j < count; ++j)
          bulkLoad(slots + slot * T::kSlotBytes + j * kFusedTileBytes, w.data + (static_cast<size_t>(first + j) * w.tiles + tile) * kFusedTileBytes, kFusedTileBytes,
                   &slotFull[slot]);
      };
      if (kTiles == 0) return;
      // Weights only (constant): fetched before waiting for the previous kernel.
      if (tid == 0) {
        issueTile(T0);
        if (T0 + 1 <= TN) issueTile(T0 + 1);
      }
      uint2 table[kFusedGroupsPerWarp];
#pragma unroll
      for (int j = 0; j < kFusedGroupsPerWarp; ++j) table[j] = g0 + j < w.groups ? fusedTable(w, g0 + j, lane) : make_uint2(0, 0);
      // Escapes: ranges two tiles ahead and entries one tile ahead in registers; a tile's entries become
      // stage patches (offset, quarter, exponent) when the tile starts.
      EscapeRanges now = loadRanges(w, g0, T0, true), next = loadRanges(w, g0, T0 + 1, T0 + 1 <= TN), after;
      EscapeEntries nextEntries = loadEntries(w, now, lane);
      EscapePatches patches;
      pdlWait();
      pdlLaunchDependents();
      for (int kt = 0; kt < kTiles; ++kt) {
        const int k64 = firstTile + kt, tile = k64 >> 2, quarter = k64 & 3, s = kt % S, slot = (tile - T0) & 1;
        if (kt == 0 || quarter == 0) {
          if (tile > T0) {
            now = next;
            next = after;
            // Slot of tile + 1 last held tile − 1: refill it once every warp is done with it.
            if (tid == 0 && tile + 1 <= TN) {
              mbarWait<kSleepHint>(&slotEmpty[slot ^ 1], ((tile - 1 - T0) >> 1) & 1);
              issueTile(tile + 1);
            }
          }
          patches = toPatches(nextEntries, now, lane, rowBase);
          after = loadRanges(w, g0, tile + 2, tile + 2 <= TN);
          nextEntries = loadEntries(w, next, lane);
          mbarWait<kSleepHint>(&slotFull[slot], ((tile - T0) >> 1) & 1);
        }
        if (kt >= S) mbarWait<kSleepHint>(&empty[s], ((kt / S) - 1) & 1);
        uint8_t* sx = smem + s * T::kStageBytes;
        uint8_t* sw = sx + BM * BK * 2;
        if (tid == 0) {
          mbarExpectTx(&full[s], BM * BK * 2);
          tmaLoad(sx, &mapX, &full[s], k64 * BK, m0);
        }
        const uint8_t* src = slots + slot * T::kSlotBytes + warp * kFusedGroupsPerWarp * kFusedTileBytes;
        const int kLeft = K - k64 * BK;
#pragma unroll
        for (int j = 0; j < kFusedGroupsPerWarp; ++j) {
          const int rows = rowBase + j * kFusedGroupRows;
          if (g0 + j >= w.groups) zeroStageQuarter(lane, sw, rows);
          else if (kLeft >= BK) decodeStageQuarter<false>(src + j * kFusedTileBytes, table[j], quarter, lane, kLeft, sw, rows);
          else decodeStageQuarter<true>(src + j * kFusedTileBytes, table[j], quarter, lane, kLeft, sw, rows);
        }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < kFusedGroupsPerWarp; ++j) {
          applyStagePatch(patches.v[j][0], quarter, sw);
          applyStagePatch(patches.v[j][1], quarter, sw);
          for (uint32_t i = now.b[j] + 64 + lane; i < now.e[j]; i += 32)  // rare: more than 64 escapes in the tile
            applyStagePatch(stagePatch(loadEscape(w, i), rowBase + j * kFusedGroupRows), quarter, sw);
        }
        // The stage's bytes, written through the generic proxy, are read by wgmma (the async proxy).
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncwarp();
        if (lane == 0) {
          mbarArrive(&full[s]);
          if (quarter == 3 || kt == kTiles - 1) mbarArrive(&slotEmpty[slot]);
        }
      }
      return;
    }
  } else if (wg == 0) {
    pdlWait();
    pdlLaunchDependents();
    if (tid == 0) {
      for (int kt = 0; kt < kTiles; ++kt) {
        const int s = kt % S;
        if (kt >= S) mbarWait(&empty[s], ((kt / S) - 1) & 1);
        uint8_t* sx = smem + s * T::kStageBytes;
        mbarExpectTx(&full[s], T::kStageBytes);
        const int k0 = (firstTile + kt) * BK;
        tmaLoad(sx, &mapX, &full[s], k0, m0);
        tmaLoad(sx + BM * BK * 2, &mapW, &full[s], k0, n0);
      }
    }
    return;
  }
  pdlWait();
  pdlLaunchDependents();

  // Consumers: warpgroup c multiplies rows [64·c, 64·c + 64) of the block tile.
  const int c = wg - kProducerGroups;
  float d[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) d[i] = 0.0f;
  for (int kt = 0; kt < kTiles; ++kt) {
    const int s = kt % S;
    // Fused: the consumers sleep while they wait, leaving the issue slots to the decoding warps.
    mbarWait<Fused ? kSleepHint : 0>(&full[s], (kt / S) & 1);
    const uint32_t sx = smemAddr(smem + s * T::kStageBytes) + c * 64 * BK * 2;
    const uint32_t sw = smemAddr(smem + s * T::kStageBytes + BM * BK * 2);
    fenceRegs(d);
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) wgmmaTile<BN>(d, smemDesc(sx + kk * 32), smemDesc(sw + kk * 32));
    wgmmaCommit();
    // The products of the stage before are done: hand its buffers back to the producer.
    wgmmaWait<1>();
    fenceRegs(d);
    if (kt > 0 && (tid & 127) == 0) mbarArrive(&empty[(kt - 1) % S]);
  }
  wgmmaWait<0>();
  fenceRegs(d);

  // d[i]: row 16·warp + lane/4 + 8·((i/2) % 2), column 8·(i/4) + 2·(lane % 4) + i % 2 of this warpgroup's 64×BN.
  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int rowBase = m0 + c * 64 + warp * 16 + (lane >> 2);
  const int colBase = n0 + (lane & 3) * 2;
  float* base = partial ? partial + static_cast<size_t>(blockIdx.z) * M * N : a.out;
  const size_t ld = partial ? static_cast<size_t>(N) : static_cast<size_t>(a.ldo);
  const bool bias = !partial && a.bias, acc = !partial && a.accumulate;
  const bool pairs = (ld & 1) == 0 && (reinterpret_cast<uintptr_t>(base) & 7) == 0;
#pragma unroll
  for (int i = 0; i < BN / 2; i += 2) {
    const int row = rowBase + ((i >> 1) & 1) * 8;
    const int col = colBase + (i >> 2) * 8;
    if (row >= M || col >= N) continue;
    float v0 = d[i], v1 = d[i + 1];
    float* o = base + static_cast<size_t>(row) * ld + col;
    if (pairs && col + 1 < N) {
      if (bias) {
        v0 += a.bias[col];
        v1 += a.bias[col + 1];
      }
      float2 v = make_float2(v0, v1);
      if (acc) {
        const float2 prev = *reinterpret_cast<const float2*>(o);
        v.x = prev.x + v.x;
        v.y = prev.y + v.y;
      }
      *reinterpret_cast<float2*>(o) = v;
    } else {
      if (bias) v0 += a.bias[col];
      o[0] = acc ? o[0] + v0 : v0;
      if (col + 1 < N) {
        if (bias) v1 += a.bias[col + 1];
        o[1] = acc ? o[1] + v1 : v1;
      }
    }
  }
#endif  // DF11_WGMMA
}

PFN_cuTensorMapEncodeTiled_v12000 encodeTiled() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess && q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  });
  return fn;
}

// [rows, K] BF16, row-major, boxes of 64 × boxRows, 128-byte swizzle, zeros outside.
bool tensorMap(CUtensorMap* map, const uint16_t* p, int rows, int K, int boxRows) {
  const auto encode = encodeTiled();
  if (!encode) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(K) * 2};
  const cuuint32_t box[2] = {BK, static_cast<cuuint32_t>(boxRows)};
  const cuuint32_t elementStrides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<uint16_t*>(p), dims, strides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// One launch of the kernel: BF16 W through its tensor map, or (w non-null) W in the fused layout.
template <int BN, bool Fused>
cudaError_t launchTile(const LinearArgs& a, const uint16_t* xBf16, const FusedView* w, float* partial, int tilesPerSplit, int splits, cudaStream_t stream) {
  using T = Sm90Tile<BN, Fused>;
  static bool configured[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  if (device < 0 || device >= 64 || !configured[device]) {
    const cudaError_t e = cudaFuncSetAttribute(gemmSm90Kernel<BN, Fused>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(T::kSharedBytes));
    if (e != cudaSuccess) return e;
    if (device >= 0 && device < 64) configured[device] = true;
  }
  // A shape the tensor maps cannot describe is said before anything is launched (the caller falls back).
  CUtensorMap mapX{}, mapW{};
  if (!tensorMap(&mapX, xBf16, a.rows, a.K, BM)) return cudaErrorNotSupported;
  if (!Fused && !tensorMap(&mapW, a.weight, a.N, a.K, BN)) return cudaErrorNotSupported;
  const dim3 grid((a.rows + BM - 1) / BM, (a.N + BN - 1) / BN, splits);
  return launchKernel(gemmSm90Kernel<BN, Fused>, grid, dim3(Fused ? kFusedThreads : kThreads), T::kSharedBytes, stream, a, mapX, mapW, w ? *w : FusedView{}, partial, tilesPerSplit);
}

}  // namespace

bool gemmSm90Supported() {
#ifdef DF11_SM90A
  static int supported[64] = {};  // 0 unknown, 1 yes, 2 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return false;
  if (!supported[device]) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    supported[device] = major == 9 && minor == 0 && encodeTiled() ? 1 : 2;
  }
  return supported[device] == 1;
#else
  return false;
#endif
}

cudaError_t launchGemmSm90(const LinearArgs& a, const uint16_t* xBf16, int bn, float* partial, int tilesPerSplit, int splits, cudaStream_t stream) {
  return bn == 256 ? launchTile<256, false>(a, xBf16, nullptr, partial, tilesPerSplit, splits, stream)
                   : launchTile<128, false>(a, xBf16, nullptr, partial, tilesPerSplit, splits, stream);
}

cudaError_t launchGemmSm90Fused(const LinearArgs& a, const uint16_t* xBf16, const FusedView& w, float* partial, int tilesPerSplit, int splits, cudaStream_t stream) {
  return launchTile<kFusedBN, true>(a, xBf16, &w, partial, tilesPerSplit, splits, stream);
}

}  // namespace df11
