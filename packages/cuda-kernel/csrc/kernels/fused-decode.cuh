// Decoding the DF11 fused layout (spec: packages/codec/src/fused-layout.ts) in registers: one lane's 32
// weights of one row-step. Shared by the fused GEMV, the unpack kernel and a host test (the arithmetic is
// __host__ __device__; host builds emulate the byte permute).
#pragma once
#include <cstdint>

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

// A lane's share of one row-step: 32 sign+mantissa bytes (groups 0,1 in a; 2,3 in b) and 3 code words.
struct FusedLane {
  uint4 a, b;
  uint32_t c0, c1, c2;
};

// Exponent bytes of the lane's 32 weights from the row table: word 2u + h holds weights (u, 4h … 4h+3).
__host__ __device__ __forceinline__ void lookupExponents(const FusedLane& s, uint2 table, uint32_t (&e)[8]) {
  const uint32_t s0 = s.c0 & 0x77777777u, s1 = s.c1 & 0x77777777u, s2 = s.c2 & 0x77777777u;
  const uint32_t s3 = ((s.c0 >> 3) & 0x11111111u) | ((s.c1 >> 2) & 0x22222222u) | ((s.c2 >> 1) & 0x44444444u);
  e[0] = permute(table.x, table.y, s0);
  e[1] = permute(table.x, table.y, s0 >> 16);
  e[2] = permute(table.x, table.y, s1);
  e[3] = permute(table.x, table.y, s1 >> 16);
  e[4] = permute(table.x, table.y, s2);
  e[5] = permute(table.x, table.y, s2 >> 16);
  e[6] = permute(table.x, table.y, s3);
  e[7] = permute(table.x, table.y, s3 >> 16);
}

// Four BF16 values (two words, element order) from four exponent bytes and four sign+mantissa bytes:
// high byte = sign | exponent >> 1, low byte = exponent << 7 | mantissa.
__host__ __device__ __forceinline__ void assemble4(uint32_t e, uint32_t sm, uint32_t& p01, uint32_t& p23) {
  const uint32_t hi = bitSelect<0x80808080u>(e >> 1, sm);  // sign from sm, the rest from e >> 1
  const uint32_t lo = bitSelect<0x80808080u>(sm, e << 7);  // exponent bit 0 from e << 7, mantissa from sm
  p01 = permute(lo, hi, 0x5140);
  p23 = permute(lo, hi, 0x7362);
}

// The 8 BF16 values of group u (a 16-byte vector, as a BF16 GEMV lane loads them).
__host__ __device__ __forceinline__ uint4 assembleGroup(const uint32_t (&e)[8], uint32_t sm0, uint32_t sm1, int u) {
  uint4 v;
  assemble4(e[2 * u], sm0, v.x, v.y);
  assemble4(e[2 * u + 1], sm1, v.z, v.w);
  return v;
}

__host__ __device__ __forceinline__ void assembleAll(const FusedLane& s, const uint32_t (&e)[8], uint4 (&w)[4]) {
  w[0] = assembleGroup(e, s.a.x, s.a.y, 0);
  w[1] = assembleGroup(e, s.a.z, s.a.w, 1);
  w[2] = assembleGroup(e, s.b.x, s.b.y, 2);
  w[3] = assembleGroup(e, s.b.z, s.b.w, 3);
}

// Where escape byte q (= 8u + i) of lane l lies in a warp's 1 KB patch area: 32 bytes per lane, its two
// 16-byte halves swapped for lanes with bit 2 set, so that 8 lanes' 16-byte stores hit 32 distinct banks.
__host__ __device__ __forceinline__ uint32_t patchOffset(uint32_t lane, uint32_t q) { return lane * 32 + ((((q >> 4) ^ (lane >> 2)) & 1) << 4) + (q & 15); }

// The lane and byte an escape at step position p patches.
__host__ __device__ __forceinline__ uint32_t patchOffsetOfPosition(uint32_t p) { return patchOffset((p >> 3) & 31, (((p >> 8) & 3) << 3) | (p & 7)); }

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

// Loads lane `lane`'s part of step `s` of `row` and the step's first escape (if any) for this lane.
struct FusedStepLoad {
  FusedLane lane;
  uint2 table;
  uint32_t escBegin, escCount;
  uint32_t escPos, escExp;  // this lane's escape (lane < escCount)
};

__device__ __forceinline__ FusedStepLoad loadFusedStep(const FusedView& v, uint32_t row, uint32_t s, uint32_t lane) {
  FusedStepLoad r;
  const size_t step = static_cast<size_t>(row) * v.steps + s;
  const uint8_t* block = v.data + step * kFusedStepBytes;
  r.lane.a = loadStreaming16(block + lane * 16);
  r.lane.b = loadStreaming16(block + 512 + lane * 16);
  r.lane.c0 = loadStreaming4(block + 1024 + lane * 4);
  r.lane.c1 = loadStreaming4(block + 1152 + lane * 4);
  r.lane.c2 = loadStreaming4(block + 1280 + lane * 4);
  r.table = __ldg(reinterpret_cast<const uint2*>(v.tables) + row);
  r.escBegin = __ldg(v.escapeOffsets + step);
  r.escCount = __ldg(v.escapeOffsets + step + 1) - r.escBegin;
  r.escPos = 0;
  r.escExp = 0;
  if (lane < r.escCount) {
    r.escPos = __ldg(v.escapePositions + r.escBegin + lane);
    r.escExp = __ldg(v.escapeExponents + r.escBegin + lane);
  }
  return r;
}

// Decode a loaded step into the 4 groups of 8 BF16 values of this lane, patching escapes through the
// warp's 1 KB shared-memory area `patch` (16-byte aligned). All 32 lanes must call it together.
__device__ __forceinline__ void decodeFusedStep(const FusedView& v, const FusedStepLoad& r, uint32_t lane, uint8_t* patch, uint4 (&w)[4]) {
  uint32_t e[8];
  lookupExponents(r.lane, r.table, e);
  if (r.escCount != 0) {  // the same for the whole warp
    const uint32_t swap = (lane >> 2) & 1;
    *reinterpret_cast<uint4*>(patch + lane * 32 + swap * 16) = make_uint4(e[0], e[1], e[2], e[3]);
    *reinterpret_cast<uint4*>(patch + lane * 32 + (swap ^ 1) * 16) = make_uint4(e[4], e[5], e[6], e[7]);
    __syncwarp();
    if (lane < r.escCount) patch[patchOffsetOfPosition(r.escPos)] = static_cast<uint8_t>(r.escExp);
    for (uint32_t base = 32; base < r.escCount; base += 32) {  // more than 32 escapes in this step
      if (base + lane < r.escCount) {
        const uint32_t i = r.escBegin + base + lane;
        patch[patchOffsetOfPosition(__ldg(v.escapePositions + i))] = __ldg(v.escapeExponents + i);
      }
    }
    __syncwarp();
    const uint4 lo = *reinterpret_cast<const uint4*>(patch + lane * 32 + swap * 16);
    const uint4 hi = *reinterpret_cast<const uint4*>(patch + lane * 32 + (swap ^ 1) * 16);
    e[0] = lo.x, e[1] = lo.y, e[2] = lo.z, e[3] = lo.w;
    e[4] = hi.x, e[5] = hi.y, e[6] = hi.z, e[7] = hi.w;
  }
  assembleAll(r.lane, e, w);
}
#endif

}  // namespace df11
