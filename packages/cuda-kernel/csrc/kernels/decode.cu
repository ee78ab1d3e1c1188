// The DFloat11 decode kernel.
//
// Geometry is the format's: block k of 512 threads owns bytes [4096k, 4096k + 4096) of the Huffman
// stream, thread t owns 8 of them and decodes every code that starts there, from bit gaps[t] on.
// Inside that frame:
//  - one 8-byte and one 4-byte load per thread bring its 96 bits of stream into registers;
//  - 4096-entry first-level tables (built once per module, staged in shared memory with 16-byte loads)
//    resolve the codes lying within the next 12 bits in one lookup — up to 7 when only counting, up to
//    3 exponents when decoding; longer codes walk the LUTs;
//  - each thread's share of the block's sign/mantissa bytes is loaded before decoding starts, so
//    those loads complete under the decode;
//  - a warp-shuffle scan gives each thread its output offset (2 barriers for the whole block);
//  - decoded exponents go to shared memory as bytes, laid out so that each output chunk of 8 is one
//    aligned 8-byte load; the block writes BF16 with coalesced 16-byte stores, merging the
//    sign/mantissa bytes it prefetched with 8-byte loads.
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

// A code-length row staged in shared memory, and the first-level table.
struct Tables {
  const uint32_t* first;
  const uint8_t* lengths;
};

// One code at the head of `buf` (MSB first): its exponent and length.
__device__ __forceinline__ void singleCode(const ModuleView& m, const Tables& t, uint32_t entry, uint64_t buf, uint32_t& e, uint32_t& len) {
  if ((entry >> 24) & 3) {
    e = entry & 0xff;
    len = t.lengths[e];
  } else {
    e = walkLuts(m.luts, static_cast<uint32_t>(buf >> 32)) & 0xff;
    len = max(1u, static_cast<uint32_t>(t.lengths[e]));  // never stall on a bad table
  }
}

constexpr int kPrefetch = 4;  // sign/mantissa 8-byte chunks each thread loads before decoding

// Largest block k with outputPositions[k] <= element (the block whose output holds it).
__device__ __forceinline__ uint32_t blockOfElement(const ModuleView& m, uint32_t element) {
  uint32_t lo = 0, hi = m.blocks;  // invariant: op[lo] <= element < op[hi] (op[blocks] = nElements)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) >> 1;
    if (__ldg(&m.outputPositions[mid]) <= element) lo = mid;
    else hi = mid;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreadsPerBlock) decodeKernel(const ModuleView m, const DecodeTarget target) {
  extern __shared__ __align__(16) uint8_t smem[];
  uint32_t* table = reinterpret_cast<uint32_t*>(smem);                        // 16 KB
  uint8_t* lengths = smem + 4 * kTableSize;                                   // 256 B
  uint8_t* counts = smem + 4 * kTableSize + 256;                              // 4 KB
  uint32_t* warpOffsets = reinterpret_cast<uint32_t*>(counts + kTableSize);  // 16 words (128 B slot)
  uint8_t* exps = counts + kTableSize + 128;                                  // decoded exponents

  const uint32_t tid = threadIdx.x;
  // Which DF11 block this CUDA block decodes, and the element window [winLo, winHi) it writes (to out[g - winLo]).
  uint32_t block, winLo, winHi;
  uint16_t* __restrict__ out;
  if (target.rowIds) {
    const uint32_t row = blockIdx.x / target.blocksPerRow;
    winLo = static_cast<uint32_t>(__ldg(&target.rowIds[row])) * target.rowElements;
    winHi = winLo + target.rowElements;
    if (winHi > m.nElements) return;  // the host validates ids; never read past the module
    block = blockOfElement(m, winLo) + blockIdx.x % target.blocksPerRow;
    if (block >= m.blocks || __ldg(&m.outputPositions[block]) >= winHi) return;  // the row ended in an earlier block
    out = target.out + static_cast<size_t>(row) * target.rowElements;
  } else {
    block = target.firstBlock + blockIdx.x;
    winLo = target.lo;
    winHi = target.hi;
    out = target.out;
  }
  // Issue every global load first (tables, this thread's stream bytes, gap, block range, and the
  // block's sign/mantissa bytes, needed only at the end) so their latencies overlap.
  static_assert(kTableSize * 4 == kThreadsPerBlock * 32, "two 16-byte loads per thread stage the table");
  const uint4* tableSrc = reinterpret_cast<const uint4*>(m.table);
  const uint4 t0 = __ldg(tableSrc + tid), t1 = __ldg(tableSrc + kThreadsPerBlock + tid);
  const uint2 c0 = __ldg(reinterpret_cast<const uint2*>(m.countTable) + tid);
  uint32_t lengthWord = 0;
  if (tid < 64) lengthWord = __ldg(reinterpret_cast<const uint32_t*>(m.luts + (m.nLuts - 1) * 256) + tid);

  const uint64_t thread = static_cast<uint64_t>(block) * kThreadsPerBlock + tid;
  const uint8_t* p = m.stream + thread * kBytesPerThread;
  const uint2 w = __ldg(reinterpret_cast<const uint2*>(p));
  const uint32_t lo = bswap32(__ldg(reinterpret_cast<const uint32_t*>(p + 8)));
  const uint64_t gapBit = thread * 5;
  const uint32_t gapPair = (static_cast<uint32_t>(__ldg(&m.gaps[gapBit >> 3])) << 8) | __ldg(&m.gaps[(gapBit >> 3) + 1]);
  const uint32_t blockStart = __ldg(&m.outputPositions[block]);
  const uint32_t blockElements = __ldg(&m.outputPositions[block + 1]) - blockStart;
  // Written part of the block: [wStart, wEnd). winLo is a multiple of 8, so output chunks of 8 elements
  // (16-byte stores at out + g - winLo) start at multiples of 8 and their sign/mantissa loads are aligned.
  const uint32_t wStart = max(blockStart, winLo);
  const uint32_t wEnd = max(wStart, min(blockStart + blockElements, winHi));
  const uint32_t alignedStart = min(wEnd, (wStart + 7) & ~7u);
  const uint32_t chunks = (wEnd - alignedStart) >> 3;
  uint2 signMantissa[kPrefetch];
#pragma unroll
  for (int j = 0; j < kPrefetch; ++j) {
    const uint32_t c = tid + j * kThreadsPerBlock;
    if (c < chunks) signMantissa[j] = __ldg(reinterpret_cast<const uint2*>(m.signMantissa + alignedStart + c * 8));
  }

  reinterpret_cast<uint4*>(table)[tid] = t0;
  reinterpret_cast<uint4*>(table)[kThreadsPerBlock + tid] = t1;
  reinterpret_cast<uint2*>(counts)[tid] = c0;
  if (tid < 64) reinterpret_cast<uint32_t*>(lengths)[tid] = lengthWord;
  const uint64_t hi = (static_cast<uint64_t>(bswap32(w.x)) << 32) | bswap32(w.y);
  const uint32_t gap = (gapPair >> (11 - (gapBit & 7))) & 31;
  const Tables tables{table, lengths};
  __syncthreads();  // tables staged

  // Pass 1: count the codes starting in this thread's 64 bits, up to 7 per lookup. While fewer than 32
  // bits are used, the 64-bit buffer still holds ≥ 32 valid bits and no code can reach bit 64, so that
  // phase needs neither a refill nor a window-end test; the 96-bit refill happens once, between phases.
  uint32_t count = 0;
  {
    uint64_t buf = hi << gap;
    uint32_t used = gap;
    // One lookup; past the refill a multi-code entry may run beyond bit 64, so take one code then.
    const auto step = [&](bool nearWindowEnd) {
      const uint32_t idx = static_cast<uint32_t>(buf >> (64 - kTableBits));
      const uint32_t c = counts[idx];
      uint32_t n = c & 7, bits = c >> 3;
      if (n == 0 || (nearWindowEnd && used + bits > 64)) {
        uint32_t e;
        singleCode(m, tables, table[idx], buf, e, bits);
        n = 1;
      }
      count += n;
      buf <<= bits;
      used += bits;
    };
    while (used < 32) step(false);
    buf |= static_cast<uint64_t>(lo) << (used - 32);
    while (used < 64) step(true);
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
  // Exponent of block element L goes to exps[skew + L], so that chunks of 8 aligned in the output are
  // 8-byte aligned in shared memory too (one 8-byte load per chunk when writing out).
  const uint32_t skew = (blockStart - winLo) & 7;
  const uint32_t first = skew + warpOffsets[warp] + inclusive - count;

  // Pass 2: decode again, placing exponents (same two phases); codes past the block's elements are padding.
  {
    uint64_t buf = hi << gap;
    uint32_t used = gap;
    const uint32_t stop = min(first + count, skew + blockElements);
    uint32_t i = first;
    const auto step = [&](uint32_t idx) {
      const uint32_t entry = table[idx];
      const uint32_t n = (entry >> 24) & 3;
      if (n != 0 && i + n <= stop) {
        exps[i] = static_cast<uint8_t>(entry);
        if (n > 1) exps[i + 1] = static_cast<uint8_t>(entry >> 8);
        if (n > 2) exps[i + 2] = static_cast<uint8_t>(entry >> 16);
        i += n;
        const uint32_t bits = entry >> 27;
        buf <<= bits;
        used += bits;
      } else {
        uint32_t e, len;
        singleCode(m, tables, entry, buf, e, len);
        exps[i++] = static_cast<uint8_t>(e);
        buf <<= len;
        used += len;
      }
    };
    while (used < 32 && i < stop) step(static_cast<uint32_t>(buf >> (64 - kTableBits)));
    if (used >= 32) buf |= static_cast<uint64_t>(lo) << (used - 32);
    while (i < stop) step(static_cast<uint32_t>(buf >> (64 - kTableBits)));
  }
  __syncthreads();

  // Write BF16: unaligned head, 8 elements (16 B) per thread per step, tail.
  const auto merge = [](uint32_t s, uint32_t e) -> uint16_t {
    return static_cast<uint16_t>(((s & 0x80) << 8) | (e << 7) | (s & 0x7f));
  };
  const uint32_t base = blockStart - skew;  // element index of exps[0]
  out -= winLo;                             // element g goes to out[g]
  if (tid < alignedStart - wStart) {
    const uint32_t g = wStart + tid;
    out[g] = merge(__ldg(&m.signMantissa[g]), exps[g - base]);
  }
  const auto writeChunk = [&](uint32_t c, uint2 s) {
    const uint32_t g = alignedStart + c * 8;
    const uint2 e = *reinterpret_cast<const uint2*>(exps + (g - base));
    // Interleave sign/mantissa and exponent bytes into 16-bit lanes x = s | e << 8, then
    // bf16 = (x & 0x7f) | ((x >> 1) & 0x7f80) | ((x << 8) & 0x8000), two lanes per word.
    const auto pair = [](uint32_t sm, uint32_t ex, uint32_t selector) {
      const uint32_t x = __byte_perm(sm, ex, selector);
      return (x & 0x007f007fu) | ((x >> 1) & 0x7f807f80u) | ((x << 8) & 0x80008000u);
    };
    uint4 v;
    v.x = pair(s.x, e.x, 0x5140);
    v.y = pair(s.x, e.x, 0x7362);
    v.z = pair(s.y, e.y, 0x5140);
    v.w = pair(s.y, e.y, 0x7362);
    *reinterpret_cast<uint4*>(out + g) = v;
  };
#pragma unroll
  for (int j = 0; j < kPrefetch; ++j) {
    const uint32_t c = tid + j * kThreadsPerBlock;
    if (c < chunks) writeChunk(c, signMantissa[j]);
  }
  for (uint32_t c = tid + kPrefetch * kThreadsPerBlock; c < chunks; c += kThreadsPerBlock) {
    writeChunk(c, __ldg(reinterpret_cast<const uint2*>(m.signMantissa + alignedStart + c * 8)));
  }
  const uint32_t tailStart = alignedStart + chunks * 8;
  if (tid < wEnd - tailStart) {
    const uint32_t g = tailStart + tid;
    out[g] = merge(__ldg(&m.signMantissa[g]), exps[g - base]);
  }
}

uint32_t hostWalk(const uint8_t* luts, uint32_t window) {
  uint32_t v = luts[window >> 24];
  for (int level = 1; level < 4 && v >= 240; ++level) v = luts[(256 - v) * 256 + ((window >> (24 - 8 * level)) & 0xff)];
  return v;
}

}  // namespace

void buildFirstLevelTable(const uint8_t* luts, int nLuts, uint32_t* table, uint8_t* countTable) {
  const uint8_t* lengths = luts + (nLuts - 1) * 256;
  // The exponent at the head of `valid` known bits, or -1 if its code is longer or depends on later
  // bits. Both fills must agree: the end-of-stream symbol's unowned entries repeat a neighbour's value,
  // so a zero fill alone could mistake a long code's prefix for a short code.
  const auto resolve = [&](uint32_t bits, uint32_t valid) -> int {
    const uint32_t head = bits << (32 - valid);
    const uint32_t e = hostWalk(luts, head);
    const uint32_t e1 = hostWalk(luts, head | (0xffffffffu >> valid));
    if (e >= 240 || e != e1 || lengths[e] == 0 || lengths[e] > valid) return -1;
    return static_cast<int>(e);
  };
  for (uint32_t x = 0; x < kTableSize; ++x) {
    uint32_t used = 0, count = 0, entry = 0;
    while (count < 7 && used < kTableBits) {
      const uint32_t valid = kTableBits - used;
      const int e = resolve(x & ((1u << valid) - 1), valid);
      if (e < 0) break;
      if (count < 3) entry |= static_cast<uint32_t>(e) << (8 * count);
      used += lengths[e];
      ++count;
      if (count == 3) table[x] = entry | (3u << 24) | (used << 27);
    }
    if (count < 3) table[x] = entry | (count << 24) | (used << 27);
    countTable[x] = static_cast<uint8_t>(count | (used << 3));
  }
}

size_t decodeSharedBytes(const ModuleView& m) {
  return 5 * kTableSize + 256 + 128 + ((m.maxBlockElements + 16 + 15) & ~size_t{15});
}

namespace {
cudaError_t launch(const ModuleView& m, const DecodeTarget& t, uint32_t grid, cudaStream_t stream) {
  if (grid == 0) return cudaSuccess;
  const size_t shared = decodeSharedBytes(m);
  if (shared > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(decodeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (e != cudaSuccess) return e;
  }
  decodeKernel<<<grid, kThreadsPerBlock, shared, stream>>>(m, t);
  return cudaGetLastError();
}
}  // namespace

cudaError_t launchDecode(const ModuleView& m, uint16_t* out, cudaStream_t stream) {
  return launchDecodeRange(m, 0, m.blocks, 0, m.nElements, out, stream);
}

cudaError_t launchDecodeRange(const ModuleView& m, uint32_t firstBlock, uint32_t blockCount, uint32_t lo, uint32_t hi, uint16_t* out, cudaStream_t stream) {
  DecodeTarget t{};
  t.firstBlock = firstBlock;
  t.lo = lo;
  t.hi = hi;
  t.out = out;
  return launch(m, t, blockCount, stream);
}

cudaError_t launchDecodeRows(const ModuleView& m, const int32_t* rowIds, uint32_t rows, uint32_t rowElements, uint32_t blocksPerRow, uint16_t* out, cudaStream_t stream) {
  DecodeTarget t{};
  t.rowIds = rowIds;
  t.rowElements = rowElements;
  t.blocksPerRow = blocksPerRow;
  t.out = out;
  return launch(m, t, rows * blocksPerRow, stream);
}

}  // namespace df11
