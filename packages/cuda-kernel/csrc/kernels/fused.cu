// The DF11 fused layout on the GPU: transcoding BF16 rows into it (a table pass, an escape-count pass,
// a scan, a write pass) and unpacking it back to BF16. Layout spec: packages/codec/src/fused-layout.ts;
// the GPU output is byte-identical to that reference encoder's (tested on the GPU).
#include <cub/device/device_scan.cuh>

#include "fused-decode.cuh"
#include "fused.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

__device__ __forceinline__ uint32_t exponentOf(uint32_t bits) { return (bits >> 7) & 0xffu; }
__device__ __forceinline__ uint32_t signMantissaOf(uint32_t bits) { return ((bits >> 8) & 0x80u) | (bits & 0x7fu); }

// BF16 element i (0…7, a compile-time constant after unrolling) of a 16-byte group.
__device__ __forceinline__ uint32_t elementOf(const uint4& v, int i) {
  const uint32_t word = i < 2 ? v.x : i < 4 ? v.y : i < 6 ? v.z : v.w;
  return (i & 1) ? word >> 16 : word & 0xffffu;
}

// One block per row: the exponent histogram, then the 8 most frequent (ties to the smaller exponent;
// with fewer distinct exponents the last repeats).
__global__ void __launch_bounds__(kThreads) tablesKernel(const uint16_t* __restrict__ src, int rowBegin, int cols, uint8_t* __restrict__ tables) {
  __shared__ uint32_t histogram[256];
  __shared__ uint32_t best[kWarpsPerBlock];
  __shared__ uint8_t table[8];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const uint16_t* row = src + static_cast<size_t>(blockIdx.x) * cols;
  histogram[t] = 0;
  __syncthreads();
  for (int k = t * 8; k < cols; k += kThreads * 8) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(row + k));
#pragma unroll
    for (int i = 0; i < 8; ++i) atomicAdd(&histogram[exponentOf(elementOf(v, i))], 1u);
  }
  __syncthreads();
  uint32_t count = histogram[t];  // cols < 2^24, so count << 8 fits
  for (int c = 0; c < 8; ++c) {
    const uint32_t key = __reduce_max_sync(0xffffffffu, count ? (count << 8) | (255u - t) : 0u);
    if (lane == 0) best[warp] = key;
    __syncthreads();
    if (t == 0) {
      uint32_t m = 0;
      for (int w = 0; w < kWarpsPerBlock; ++w) m = max(m, best[w]);
      table[c] = m ? static_cast<uint8_t>(255u - (m & 255u)) : table[c - 1];  // slot 0 always has a count
    }
    __syncthreads();
    if (t == table[c]) count = 0;
  }
  if (t < 8) tables[static_cast<size_t>(rowBegin + blockIdx.x) * 8 + t] = table[t];
}

// The code of every exponent (8 = escape) for each row of a group, from the tables; the first slot
// holding an exponent wins. maps: [8 rows][256].
__device__ __forceinline__ void buildCodeMaps(const FusedView& m, int group, uint8_t (*maps)[256]) {
  for (int x = threadIdx.x; x < 8 * 256; x += blockDim.x) {
    const int r = x >> 8, e = x & 255;
    const uint8_t* table = m.tables + (static_cast<size_t>(group) * 8 + r) * 8;
    uint8_t code = 8;
#pragma unroll
    for (int c = 7; c >= 0; --c)
      if (table[c] == e) code = static_cast<uint8_t>(c);
    maps[r][e] = code;
  }
}

// A lane's 64 weights of a tile: chunk c at k = 256t + 32c + 8q of its row (zeros past the rows or cols).
struct LaneWeights {
  uint4 w[8];
  bool valid[8];
};

__device__ __forceinline__ LaneWeights loadLaneWeights(const uint16_t* src, int rowBegin, int rows, int cols, int group, int t, int lane) {
  LaneWeights r;
  const int n = group * 8 + (lane >> 2);
  const bool rowInside = n < rowBegin + rows;
#pragma unroll
  for (int c = 0; c < 8; ++c) {
    const int k = t * kFusedTileK + 32 * c + 8 * (lane & 3);
    r.valid[c] = rowInside && k < cols;
    r.w[c] = r.valid[c] ? __ldg(reinterpret_cast<const uint4*>(src + static_cast<size_t>(n - rowBegin) * cols + k)) : make_uint4(0, 0, 0, 0);
  }
  return r;
}

// One block per group, one warp per tile: the tile's escape count.
__global__ void __launch_bounds__(kThreads) countsKernel(const uint16_t* __restrict__ src, int rowBegin, int rows, const FusedView m, uint32_t* __restrict__ counts) {
  __shared__ uint8_t maps[8][256];
  const int group = rowBegin / 8 + blockIdx.x;
  buildCodeMaps(m, group, maps);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint8_t* map = maps[lane >> 2];
  for (int t = warp; t < m.tiles; t += kWarpsPerBlock) {
    const LaneWeights lw = loadLaneWeights(src, rowBegin, rows, m.cols, group, t, lane);
    uint32_t escapes = 0;
#pragma unroll
    for (int c = 0; c < 8; ++c)
#pragma unroll
      for (int i = 0; i < 8; ++i) escapes += lw.valid[c] && map[exponentOf(elementOf(lw.w[c], i))] == 8;
    escapes = __reduce_add_sync(0xffffffffu, escapes);
    if (lane == 0) counts[static_cast<size_t>(group) * m.tiles + t] = escapes;
  }
}

// One block per group, one warp per tile: sign+mantissa bytes, code words and the tile's escapes.
__global__ void __launch_bounds__(kThreads) writeKernel(const uint16_t* __restrict__ src, int rowBegin, int rows, const FusedView m) {
  __shared__ uint8_t maps[8][256];
  const int group = rowBegin / 8 + blockIdx.x;
  buildCodeMaps(m, group, maps);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint8_t* map = maps[lane >> 2];
  uint8_t* data = const_cast<uint8_t*>(m.data);
  uint16_t* positions = const_cast<uint16_t*>(m.escapePositions);
  uint8_t* exponents = const_cast<uint8_t*>(m.escapeExponents);
  for (int t = warp; t < m.tiles; t += kWarpsPerBlock) {
    const LaneWeights lw = loadLaneWeights(src, rowBegin, rows, m.cols, group, t, lane);
    uint32_t sm[16];       // word 2c + h: elements 4h … 4h+3 of chunk c
    uint32_t codes[8];     // chunk c: code of element i in bits 3i … 3i+2
    uint64_t escaped = 0;  // bit 8c + i
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      sm[2 * c] = sm[2 * c + 1] = 0;
      codes[c] = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint32_t bits = elementOf(lw.w[c], i);
        sm[2 * c + (i >> 2)] |= signMantissaOf(bits) << (8 * (i & 3));
        const uint32_t code = map[exponentOf(bits)];
        if (lw.valid[c] && code == 8) escaped |= 1ull << (8 * c + i);
        else if (lw.valid[c]) codes[c] |= code << (3 * i);
      }
    }
    const size_t tile = static_cast<size_t>(group) * m.tiles + t;
    uint8_t* block = data + tile * kFusedTileBytes;
#pragma unroll
    for (int j = 0; j < 4; ++j) *reinterpret_cast<uint4*>(block + 512 * j + 16 * lane) = make_uint4(sm[4 * j], sm[4 * j + 1], sm[4 * j + 2], sm[4 * j + 3]);
#pragma unroll
    for (int w = 0; w < 6; ++w) {
      const uint32_t spread = codes[6 + w / 3];
      uint32_t word = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) word |= (((codes[w] >> (3 * i)) & 7u) | (((spread >> (3 * i + w % 3)) & 1u) << 3)) << (4 * i);
      *reinterpret_cast<uint32_t*>(block + 2048 + 128 * w + 4 * lane) = word;
    }
    // Escapes in position (lane-major) order: a warp-wide exclusive prefix sum gives each lane its place.
    const uint32_t mine = __popcll(escaped);
    uint32_t inclusive = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(0xffffffffu, inclusive, o);
      if (lane >= o) inclusive += y;
    }
    uint32_t at = m.escapeOffsets[tile] + inclusive - mine;
#pragma unroll
    for (int c = 0; c < 8; ++c)
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if ((escaped >> (8 * c + i)) & 1ull) {
          positions[at] = static_cast<uint16_t>(64 * lane + 8 * c + i);
          exponents[at] = static_cast<uint8_t>(exponentOf(elementOf(lw.w[c], i)));
          ++at;
        }
  }
}

// One warp per tile of the requested rows' groups: decode, patch escapes, store the rows' BF16. Rows
// from ids (embedding lookups: the group of each id) or the range [rowBegin, rowEnd).
__global__ void __launch_bounds__(kThreads) unpackKernel(const FusedView m, int rowBegin, int rowEnd, const int32_t* __restrict__ ids, int count,
                                                         uint16_t* __restrict__ out, int ldo) {
  __shared__ __align__(16) uint8_t patch[kWarpsPerBlock][2048];
  pdlWait();
  pdlLaunchDependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int firstGroup = rowBegin / 8;
  const size_t units = ids ? static_cast<size_t>(count) : static_cast<size_t>((rowEnd + 7) / 8 - firstGroup);
  const size_t items = units * m.tiles;
  for (size_t item = static_cast<size_t>(blockIdx.x) * kWarpsPerBlock + warp; item < items; item += static_cast<size_t>(gridDim.x) * kWarpsPerBlock) {
    const size_t unit = item / m.tiles;
    const int t = static_cast<int>(item % m.tiles);
    int group, only = -1;
    if (ids) {
      only = __ldg(ids + unit);
      if (only < 0 || only >= m.rows) continue;  // the same for the whole warp
      group = only / 8;
    } else {
      group = firstGroup + static_cast<int>(unit);
    }
    const FusedTileLoad r = loadFusedTile(m, static_cast<uint32_t>(group) * m.tiles + t, lane);
    uint32_t e[16];
    fusedExponents(m, r, fusedTable(m, group, lane), lane, patch[warp], e);
    const int n = group * 8 + (lane >> 2);
    const bool write = ids ? n == only : n >= rowBegin && n < rowEnd;
    if (!write) continue;
    uint16_t* dst = out + (ids ? unit : static_cast<size_t>(n - rowBegin)) * ldo;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int k = t * kFusedTileK + 32 * c + 8 * (lane & 3);
      if (k < m.cols) *reinterpret_cast<uint4*>(dst + k) = assembleChunk(r.lane, e, c);
    }
  }
}

int unpackBlocks(size_t items) {
  const size_t most = static_cast<size_t>(multiprocessors()) * 4;
  const size_t needed = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<int>(needed < most ? needed : most);
}

}  // namespace

cudaError_t launchFusedTables(const uint16_t* src, int rowBegin, int rows, int cols, uint8_t* tables, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (cols % 8 != 0 || cols >= (1 << 24)) return cudaErrorInvalidValue;
  tablesKernel<<<rows, kThreads, 0, stream>>>(src, rowBegin, cols, tables);
  return cudaGetLastError();
}

cudaError_t launchFusedCounts(const uint16_t* src, int rowBegin, int rows, const FusedView& m, uint32_t* counts, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (rowBegin % 8 != 0) return cudaErrorInvalidValue;
  countsKernel<<<(rows + 7) / 8, kThreads, 0, stream>>>(src, rowBegin, rows, m, counts);
  return cudaGetLastError();
}

cudaError_t launchExclusiveScan(const uint32_t* counts, uint32_t* offsets, int n, void* temp, size_t& tempBytes, cudaStream_t stream) {
  return cub::DeviceScan::ExclusiveSum(temp, tempBytes, counts, offsets, n, stream);
}

cudaError_t launchFusedWrite(const uint16_t* src, int rowBegin, int rows, const FusedView& m, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (rowBegin % 8 != 0) return cudaErrorInvalidValue;
  writeKernel<<<(rows + 7) / 8, kThreads, 0, stream>>>(src, rowBegin, rows, m);
  return cudaGetLastError();
}

cudaError_t launchFusedUnpack(const FusedView& m, int rowBegin, int rowEnd, uint16_t* out, int ldo, cudaStream_t stream) {
  if (rowEnd <= rowBegin) return cudaSuccess;
  if (ldo < m.cols || ldo % 8 != 0 || (reinterpret_cast<uintptr_t>(out) & 15) != 0) return cudaErrorInvalidValue;
  const size_t items = static_cast<size_t>((rowEnd + 7) / 8 - rowBegin / 8) * m.tiles;
  return launchKernel(unpackKernel, dim3(unpackBlocks(items)), dim3(kThreads), 0, stream, m, rowBegin, rowEnd, static_cast<const int32_t*>(nullptr), 0, out, ldo);
}

cudaError_t launchFusedUnpackRows(const FusedView& m, const int32_t* ids, int count, uint16_t* out, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if ((reinterpret_cast<uintptr_t>(out) & 15) != 0) return cudaErrorInvalidValue;
  const size_t items = static_cast<size_t>(count) * m.tiles;
  return launchKernel(unpackKernel, dim3(unpackBlocks(items)), dim3(kThreads), 0, stream, m, 0, 0, ids, count, out, m.cols);
}

}  // namespace df11
