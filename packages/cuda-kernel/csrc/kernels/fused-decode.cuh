// Decoding the DF11 fused layout (spec: packages/codec/src/fused-layout.ts) in registers: one lane's 64
// weights of one tile, as the B operands of mma.m16n8k16 (two BF16 values per register). Shared by the
// GEMV, the unpack kernel and a host test (the arithmetic is __host__ __device__; host builds emulate
// the byte permute).
#pragma once
#include <cstdint>
#include <cstring>

#include "fused.h"

namespace df11 {

// PRMT (generic mode): byte k of the result is byte (selector nibble k & 7) of the 8 bytes {y:x}.
__host__ __device__ __forceinline__ uint32_t permute(uint32_t x, uint32_t y, uint32_t selector) {
#ifdef __CUDA_ARCH__
  return __byte_perm(x, y, selector);
#else
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t r = 0;
  for (int k = 0; k < 4; ++k) r |= static_cast<uint32_t>((bytes >> (8 * ((selector >> (4 * k)) & 7))) & 0xff) << (8 * k);
  return r;
#endif
}

// Bitwise (Mask ? b : a): one LOP3 (the compiler splits the masked OR into two).
template <uint32_t Mask>
__host__ __device__ __forceinline__ uint32_t bitSelect(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xD8;" : "=r"(d) : "r"(a), "r"(b), "n"(Mask));
  return d;
#else
  return (b & Mask) | (a & ~Mask);
#endif
}

// A lane's share of one tile: 64 sign+mantissa bytes (chunks 2j, 2j+1 in sm[j]) and 6 code words.
struct FusedLane {
  uint4 sm[4];
  uint32_t code[6];
};

// Exponent bytes of the lane's 64 weights from its row's table: word 2c + h holds elements 4h … 4h+3 of chunk c.
__host__ __device__ __forceinline__ void lookupExponents(const FusedLane& s, uint2 table, uint32_t (&e)[16]) {
#pragma unroll
  for (int c = 0; c < 6; ++c) {
    const uint32_t sel = s.code[c] & 0x77777777u;
    e[2 * c] = permute(table.x, table.y, sel);
    e[2 * c + 1] = permute(table.x, table.y, sel >> 16);
  }
#pragma unroll
  for (int c = 6; c < 8; ++c) {
    const int w = 3 * (c - 6);
    const uint32_t sel = ((s.code[w] >> 3) & 0x11111111u) | ((s.code[w + 1] >> 2) & 0x22222222u) | ((s.code[w + 2] >> 1) & 0x44444444u);
    e[2 * c] = permute(table.x, table.y, sel);
    e[2 * c + 1] = permute(table.x, table.y, sel >> 16);
  }
}

// Four BF16 values (two words, element order) from four exponent bytes and four sign+mantissa bytes:
// high byte = sign | exponent >> 1, low byte = exponent << 7 | mantissa.
__host__ __device__ __forceinline__ void assemble4(uint32_t e, uint32_t sm, uint32_t& p01, uint32_t& p23) {
  const uint32_t hi = bitSelect<0x80808080u>(e >> 1, sm);  // sign from sm, the rest from e >> 1
  const uint32_t lo = bitSelect<0x80808080u>(sm, e << 7);  // exponent bit 0 from e << 7, mantissa from sm
  p01 = permute(lo, hi, 0x5140);
  p23 = permute(lo, hi, 0x7362);
}

// The 8 BF16 values of chunk c (a 16-byte vector in k order: two mma B operands' worth) from its 8
// sign+mantissa bytes (sm0: elements 0–3, sm1: 4–7).
__host__ __device__ __forceinline__ uint4 assembleChunk(uint32_t sm0, uint32_t sm1, const uint32_t (&e)[16], int c) {
  uint4 v;
  assemble4(e[2 * c], sm0, v.x, v.y);
  assemble4(e[2 * c + 1], sm1, v.z, v.w);
  return v;
}
__host__ __device__ __forceinline__ uint4 assembleChunk(const FusedLane& s, const uint32_t (&e)[16], int c) {
  const uint4 q = s.sm[c >> 1];
  return assembleChunk((c & 1) ? q.z : q.x, (c & 1) ? q.w : q.y, e, c);
}

// Where exponent byte q (= 8c + i) of lane l lies in a warp's 2 KB patch area: 64 bytes per lane, its
// 16-byte quarters rotated by lane so that 8 lanes' 16-byte stores hit 32 distinct banks.
__host__ __device__ __forceinline__ uint32_t patchOffset(uint32_t lane, uint32_t q) { return lane * 64 + ((((q >> 4) ^ (lane >> 1)) & 3) << 4) + (q & 15); }

// The lane and byte an escape at tile position p (= 64·lane + q) patches.
__host__ __device__ __forceinline__ uint32_t patchOffsetOfPosition(uint32_t p) { return patchOffset((p >> 6) & 31, p & 63); }

// ---- into the Hopper GEMM's shared-memory stages (gemm-sm90.cu) ----------------------------------------
// A stage holds 64 k of up to 128 W rows as the 128-byte-swizzle tensor map writes them: rows of 128
// bytes, 16-byte unit u of row r at unit u ^ (r % 8).
__host__ __device__ __forceinline__ uint32_t stageOffset(int r, int k) { return r * 128 + ((((k >> 3) ^ r) & 7) << 4) + (k & 7) * 2; }

__host__ __device__ __forceinline__ uint4 load16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint4*>(p);
#else
  uint4 v;
  std::memcpy(&v, p, 16);
  return v;
#endif
}
__host__ __device__ __forceinline__ uint32_t load4(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}
__host__ __device__ __forceinline__ void store16(uint8_t* p, const uint4& v) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<uint4*>(p) = v;
#else
  std::memcpy(p, &v, 16);
#endif
}

// Quarter s (k 64s … 64s + 63) of one group's tile block (`tile`: its 2816 bytes) into stage rows
// rowBase … rowBase + 7: lane 4g + q writes row g's k 8q … 8q + 7 and 32 + 8q … (its chunks 2s and 2s + 1),
// with the table's exponents (escapes: applyStagePatch after). Tail: k ≥ kLeft (past K) written as zeros.
template <bool Tail>
__host__ __device__ __forceinline__ void decodeStageQuarter(const uint8_t* tile, uint2 table, int s, uint32_t lane, int kLeft, uint8_t* stage, int rowBase) {
  const int g = static_cast<int>(lane >> 2), q = static_cast<int>(lane & 3);
  const uint4 sm = load16(tile + 512 * s + 16 * lane);
  const uint8_t* code = tile + 2048 + 4 * lane;  // word w at code + 128·w
  uint32_t sel0, sel1;
  if (s < 3) {
    sel0 = load4(code + 128 * (2 * s)) & 0x77777777u;
    sel1 = load4(code + 128 * (2 * s + 1)) & 0x77777777u;
  } else {  // chunks 6 and 7: bit 3 of the six words' nibbles
    sel0 = ((load4(code) >> 3) & 0x11111111u) | ((load4(code + 128) >> 2) & 0x22222222u) | ((load4(code + 256) >> 1) & 0x44444444u);
    sel1 = ((load4(code + 384) >> 3) & 0x11111111u) | ((load4(code + 512) >> 2) & 0x22222222u) | ((load4(code + 640) >> 1) & 0x44444444u);
  }
  // Odd rows store their second chunk first: a quarter-warp's 8 stores then hit 32 distinct banks.
  const bool odd = g & 1;
  const uint32_t selA = odd ? sel1 : sel0, selB = odd ? sel0 : sel1;
  uint4 a, b;
  assemble4(permute(table.x, table.y, selA), odd ? sm.z : sm.x, a.x, a.y);
  assemble4(permute(table.x, table.y, selA >> 16), odd ? sm.w : sm.y, a.z, a.w);
  assemble4(permute(table.x, table.y, selB), odd ? sm.x : sm.z, b.x, b.y);
  assemble4(permute(table.x, table.y, selB >> 16), odd ? sm.y : sm.w, b.z, b.w);
  const int kA = odd ? 32 + 8 * q : 8 * q, kB = odd ? 8 * q : 32 + 8 * q;
  if (Tail) {
    if (kA >= kLeft) a = make_uint4(0, 0, 0, 0);
    if (kB >= kLeft) b = make_uint4(0, 0, 0, 0);
  }
  const int r = rowBase + g;
  store16(stage + stageOffset(r, kA), a);
  store16(stage + stageOffset(r, kB), b);
}

// Zeros for the 8 rows of a group past the matrix.
__host__ __device__ __forceinline__ void zeroStageQuarter(uint32_t lane, uint8_t* stage, int rowBase) {
  const int r = rowBase + static_cast<int>(lane >> 2), q = static_cast<int>(lane & 3);
  store16(stage + stageOffset(r, 8 * q), make_uint4(0, 0, 0, 0));
  store16(stage + stageOffset(r, 32 + 8 * q), make_uint4(0, 0, 0, 0));
}

// An escape (tile position | exponent << 16) of the group at stage row rowBase, made ready for
// applyStagePatch: its byte offset in the stage (14 bits), quarter (bits 14–15), exponent (16–23), bit 24 set.
__host__ __device__ __forceinline__ uint32_t stagePatch(uint32_t escape, int rowBase) {
  const uint32_t p = escape & 0xffffu, pl = p >> 6, c = (p & 63) >> 3;
  const int r = rowBase + static_cast<int>(pl >> 2);
  const int k = static_cast<int>(32 * (c & 1) + 8 * (pl & 3) + (p & 7));
  return stageOffset(r, k) | ((c >> 1) << 14) | ((escape >> 16) << 16) | (1u << 24);
}

// If `patch` (from stagePatch; 0: none) lies in quarter s, its exponent replaces the table's in the stage.
__host__ __device__ __forceinline__ void applyStagePatch(uint32_t patch, int s, uint8_t* stage) {
  if ((patch & 0x0100c000u) != (0x01000000u | (static_cast<uint32_t>(s) << 14))) return;
  uint8_t* e = stage + (patch & 0x3fffu);
#ifdef __CUDA_ARCH__
  uint16_t* v = reinterpret_cast<uint16_t*>(e);
  *v = static_cast<uint16_t>((*v & 0x807fu) | (((patch >> 16) & 0xffu) << 7));
#else
  const uint32_t now = ((e[0] | (e[1] << 8)) & 0x807fu) | (((patch >> 16) & 0xffu) << 7);
  e[0] = static_cast<uint8_t>(now);
  e[1] = static_cast<uint8_t>(now >> 8);
#endif
}

#ifdef __CUDACC__
__device__ __forceinline__ uint4 loadStreaming16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t loadStreaming4(const void* p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// A lane's loads for one tile, and the tile's first escape for this lane (when lane < end − begin).
struct FusedTileLoad {
  FusedLane lane;
  uint32_t escBegin, escEnd;
  uint32_t escPos, escExp;
};

// Issue lane `lane`'s loads of tile `tile` (group · tiles + t) whose escapes are entries [begin, end). All
// 32 lanes call it with the same tile.
__device__ __forceinline__ FusedTileLoad loadFusedTile(const FusedView& v, uint32_t tile, uint32_t lane, uint32_t begin, uint32_t end) {
  FusedTileLoad r;
  const uint8_t* block = v.data + static_cast<size_t>(tile) * kFusedTileBytes;
#pragma unroll
  for (int j = 0; j < 4; ++j) r.lane.sm[j] = loadStreaming16(block + 512 * j + 16 * lane);
#pragma unroll
  for (int w = 0; w < 6; ++w) r.lane.code[w] = loadStreaming4(block + 2048 + 128 * w + 4 * lane);
  r.escBegin = begin;
  r.escEnd = end;
  r.escPos = 0;
  r.escExp = 0;
  if (begin + lane < end) {
    r.escPos = __ldg(v.escapePositions + begin + lane);
    r.escExp = __ldg(v.escapeExponents + begin + lane);
  }
  return r;
}

// The same, reading the tile's escape range first (one round trip more: for lone tiles).
__device__ __forceinline__ FusedTileLoad loadFusedTile(const FusedView& v, uint32_t tile, uint32_t lane) {
  return loadFusedTile(v, tile, lane, __ldg(v.escapeOffsets + tile), __ldg(v.escapeOffsets + tile + 1));
}

// The exponents of a loaded tile, escapes patched through the warp's 2 KB shared-memory area `patch`
// (16-byte aligned). All 32 lanes must call it together.
__device__ __forceinline__ void fusedExponents(const FusedView& v, const FusedTileLoad& r, uint2 table, uint32_t lane, uint8_t* patch, uint32_t (&e)[16]) {
  lookupExponents(r.lane, table, e);
  const uint32_t count = r.escEnd - r.escBegin;
  if (count == 0) return;  // the same for the whole warp
#pragma unroll
  for (int j = 0; j < 4; ++j) *reinterpret_cast<uint4*>(patch + patchOffset(lane, 16 * j)) = make_uint4(e[4 * j], e[4 * j + 1], e[4 * j + 2], e[4 * j + 3]);
  __syncwarp();
  if (lane < count) patch[patchOffsetOfPosition(r.escPos)] = static_cast<uint8_t>(r.escExp);
  if (count > 32) {  // rare: more escapes in this tile than lanes
    for (uint32_t base = 32; base < count; base += 32) {
      if (base + lane < count) {
        const uint32_t i = r.escBegin + base + lane;
        patch[patchOffsetOfPosition(__ldg(v.escapePositions + i))] = __ldg(v.escapeExponents + i);
      }
    }
  }
  __syncwarp();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint4 q = *reinterpret_cast<const uint4*>(patch + patchOffset(lane, 16 * j));
    e[4 * j] = q.x, e[4 * j + 1] = q.y, e[4 * j + 2] = q.z, e[4 * j + 3] = q.w;
  }
}

// The table of a lane's row in group `group` (rows are padded to whole groups).
__device__ __forceinline__ uint2 fusedTable(const FusedView& v, uint32_t group, uint32_t lane) {
  return __ldg(reinterpret_cast<const uint2*>(v.tables) + group * kFusedGroupRows + (lane >> 2));
}
#endif

}  // namespace df11
