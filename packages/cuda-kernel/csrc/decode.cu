// The DFloat11 decode kernel.
//
// Geometry is the format's: block k of 512 threads owns bytes [4096k, 4096k + 4096) of the Huffman
// stream, thread t owns 8 of them and decodes every code that starts there, from bit gaps[t] on.
// Inside that frame:
//  - one 8-byte and one 4-byte load per thread bring its 96 bits of stream into registers;
//  - a 4096-entry first-level table (built once per module, staged in shared memory with one 16-byte
//    load per thread) resolves codes of up to 12 bits in one lookup; longer codes walk the LUTs;
//  - a warp-shuffle scan gives each thread its output offset (2 barriers for the whole block);
//  - decoded exponents go to shared memory as bytes, then the block writes BF16 with coalesced
//    16-byte stores, merging the sign/mantissa bytes it reads with 8-byte loads.
#include "decode.h"

namespace df11 {
namespace {

__device__ __forceinline__ uint32_t bswap32(uint32_t x) { return __byte_perm(x, 0, 0x0123); }

// Exponent at the head of a 32-bit window, by walking the LUT rows (at most 4 levels).
__device__ __forceinline__ uint32_t walkLuts(const uint8_t* __restrict__ luts, uint32_t window) {
  uint32_t v = __ldg(&luts[window >> 24]);
#pragma unroll
  for (int level = 1; level < 4; ++level) {
    if (v < 240) break;
    v = __ldg(&luts[(256 - v) * 256 + ((window >> (24 - 8 * level)) & 0xff)]);
  }
  return v;
}

// The code at the head of `buf` (MSB first): its exponent and length.
__device__ __forceinline__ void nextCode(const ModuleView& m, const uint16_t* table, uint64_t buf, uint32_t& e, uint32_t& len) {
  const uint32_t top = static_cast<uint32_t>(buf >> 32);
  const uint32_t entry = table[top >> (32 - kTableBits)];
  if (entry != 0) {
    e = entry & 0xff;
    len = entry >> 8;
  } else {
    e = walkLuts(m.luts, top) & 0xff;
    len = max(1u, static_cast<uint32_t>(__ldg(&m.luts[(m.nLuts - 1) * 256 + e])));  // never stall on a bad table
  }
}

__global__ void __launch_bounds__(kThreadsPerBlock) decodeKernel(const ModuleView m, uint16_t* __restrict__ out) {
  extern __shared__ __align__(16) uint8_t smem[];
  uint16_t* table = reinterpret_cast<uint16_t*>(smem);                       // 8 KB
  uint32_t* warpOffsets = reinterpret_cast<uint32_t*>(smem + 2 * kTableSize);  // 16 words (128 B slot)
  uint8_t* exps = smem + 2 * kTableSize + 128;                                // decoded exponents

  const uint32_t tid = threadIdx.x;
  const uint32_t block = blockIdx.x;
  static_assert(kTableSize * 2 == kThreadsPerBlock * 16, "one 16-byte load per thread stages the table");
  reinterpret_cast<uint4*>(table)[tid] = __ldg(reinterpret_cast<const uint4*>(m.table) + tid);

  const uint64_t thread = static_cast<uint64_t>(block) * kThreadsPerBlock + tid;
  const uint8_t* p = m.stream + thread * kBytesPerThread;
  const uint2 w = __ldg(reinterpret_cast<const uint2*>(p));
  const uint32_t lo = bswap32(__ldg(reinterpret_cast<const uint32_t*>(p + 8)));
  const uint64_t hi = (static_cast<uint64_t>(bswap32(w.x)) << 32) | bswap32(w.y);
  const uint64_t gapBit = thread * 5;
  const uint32_t gapPair = (static_cast<uint32_t>(__ldg(&m.gaps[gapBit >> 3])) << 8) | __ldg(&m.gaps[(gapBit >> 3) + 1]);
  const uint32_t gap = (gapPair >> (11 - (gapBit & 7))) & 31;
  const uint32_t blockStart = __ldg(&m.outputPositions[block]);
  const uint32_t blockElements = __ldg(&m.outputPositions[block + 1]) - blockStart;
  __syncthreads();  // table staged

  // Pass 1: count the codes starting in this thread's 64 bits.
  uint32_t count = 0;
  {
    uint64_t buf = hi << gap;
    uint32_t used = gap;
    bool refilled = false;
    while (used < 64) {
      if (!refilled && used >= 32) {
        buf |= static_cast<uint64_t>(lo) << (used - 32);
        refilled = true;
      }
      uint32_t e, len;
      nextCode(m, table, buf, e, len);
      buf <<= len;
      used += len;
      ++count;
    }
  }

  // Block-wide exclusive scan of the counts: shuffles inside each warp, then across the 16 warps.
  const uint32_t lane = tid & 31;
  const uint32_t warp = tid >> 5;
  uint32_t inclusive = count;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t y = __shfl_up_sync(0xffffffffu, inclusive, o);
    if (lane >= static_cast<uint32_t>(o)) inclusive += y;
  }
  if (lane == 31) warpOffsets[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    constexpr uint32_t kWarps = kThreadsPerBlock / 32;
    const uint32_t total = lane < kWarps ? warpOffsets[lane] : 0;
    uint32_t scan = total;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(0xffffffffu, scan, o);
      if (lane >= static_cast<uint32_t>(o)) scan += y;
    }
    if (lane < kWarps) warpOffsets[lane] = scan - total;
  }
  __syncthreads();
  const uint32_t first = warpOffsets[warp] + inclusive - count;

  // Pass 2: decode again, placing exponents; codes past the block's elements are padding.
  {
    uint64_t buf = hi << gap;
    uint32_t used = gap;
    bool refilled = false;
    const uint32_t stop = min(first + count, blockElements);
    for (uint32_t i = first; i < stop; ++i) {
      if (!refilled && used >= 32) {
        buf |= static_cast<uint64_t>(lo) << (used - 32);
        refilled = true;
      }
      uint32_t e, len;
      nextCode(m, table, buf, e, len);
      exps[i] = static_cast<uint8_t>(e);
      buf <<= len;
      used += len;
    }
  }
  __syncthreads();

  // Write BF16: unaligned head, 8 elements (16 B) per thread per step, tail.
  const uint32_t end = blockStart + blockElements;
  const uint32_t alignedStart = min(end, (blockStart + 7) & ~7u);
  const auto merge = [](uint32_t s, uint32_t e) -> uint16_t {
    return static_cast<uint16_t>(((s & 0x80) << 8) | (e << 7) | (s & 0x7f));
  };
  if (tid < alignedStart - blockStart) {
    out[blockStart + tid] = merge(__ldg(&m.signMantissa[blockStart + tid]), exps[tid]);
  }
  const uint32_t chunks = (end - alignedStart) >> 3;
  const uint32_t* exps32 = reinterpret_cast<const uint32_t*>(exps);
  for (uint32_t c = tid; c < chunks; c += kThreadsPerBlock) {
    const uint32_t g = alignedStart + c * 8;
    const uint2 s = __ldg(reinterpret_cast<const uint2*>(m.signMantissa + g));
    const uint32_t local = g - blockStart;
    const uint32_t shift = (local & 3) * 8;
    const uint32_t w0 = exps32[local >> 2], w1 = exps32[(local >> 2) + 1], w2 = exps32[(local >> 2) + 2];
    const uint32_t e0 = __funnelshift_r(w0, w1, shift);
    const uint32_t e1 = __funnelshift_r(w1, w2, shift);
    // Spread bytes 0,1 (or 2,3) of a word into the low bytes of two 16-bit lanes, then merge.
    const auto pair = [](uint32_t sm, uint32_t ex, uint32_t selector) {
      const uint32_t s2 = __byte_perm(sm, 0, selector);
      const uint32_t e2 = __byte_perm(ex, 0, selector);
      return ((s2 & 0x00800080u) << 8) | (e2 << 7) | (s2 & 0x007f007fu);
    };
    uint4 v;
    v.x = pair(s.x, e0, 0x4140);
    v.y = pair(s.x, e0, 0x4342);
    v.z = pair(s.y, e1, 0x4140);
    v.w = pair(s.y, e1, 0x4342);
    *reinterpret_cast<uint4*>(out + g) = v;
  }
  const uint32_t tailStart = alignedStart + chunks * 8;
  if (tid < end - tailStart) {
    const uint32_t g = tailStart + tid;
    out[g] = merge(__ldg(&m.signMantissa[g]), exps[g - blockStart]);
  }
}

uint32_t hostWalk(const uint8_t* luts, uint32_t window) {
  uint32_t v = luts[window >> 24];
  for (int level = 1; level < 4 && v >= 240; ++level) v = luts[(256 - v) * 256 + ((window >> (24 - 8 * level)) & 0xff)];
  return v;
}

}  // namespace

void buildFirstLevelTable(const uint8_t* luts, int nLuts, uint16_t* table) {
  const uint8_t* lengths = luts + (nLuts - 1) * 256;
  for (uint32_t x = 0; x < kTableSize; ++x) {
    const uint32_t head = x << (32 - kTableBits);
    const uint32_t e = hostWalk(luts, head);
    // Both fills must agree: the end-of-stream symbol's unowned entries repeat a neighbour's value, so a
    // zero fill alone could mistake a long code's prefix for a short code.
    const uint32_t e1 = hostWalk(luts, head | ((1u << (32 - kTableBits)) - 1));
    table[x] = (e < 240 && e == e1 && lengths[e] >= 1 && lengths[e] <= kTableBits) ? static_cast<uint16_t>(e | (lengths[e] << 8)) : 0;
  }
}

size_t decodeSharedBytes(const ModuleView& m) {
  return 2 * kTableSize + 128 + ((m.maxBlockElements + 16 + 15) & ~size_t{15});
}

cudaError_t launchDecode(const ModuleView& m, uint16_t* out, cudaStream_t stream) {
  if (m.blocks == 0) return cudaSuccess;
  const size_t shared = decodeSharedBytes(m);
  if (shared > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(decodeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (e != cudaSuccess) return e;
  }
  decodeKernel<<<m.blocks, kThreadsPerBlock, shared, stream>>>(m, out);
  return cudaGetLastError();
}

}  // namespace df11
