// The DF11 fused layout on the GPU: transcoding BF16 rows into it (a table pass, a scan, a write pass)
// and unpacking it back to BF16. Layout spec: packages/codec/src/fused-layout.ts; the GPU output is
// byte-identical to that reference encoder's (tested on the GPU).
#include <cub/device/device_scan.cuh>

#include "fused-decode.cuh"
#include "fused.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// Lane `lane`'s 32 weights of step s of a row (4 groups of 8), zeros past the row's end (cols % 8 == 0).
__device__ __forceinline__ void loadLaneWeights(const uint16_t* row, int cols, int s, int lane, uint4 (&w)[4]) {
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int k = s * kFusedStep + u * 256 + lane * 8;
    w[u] = k < cols ? __ldg(reinterpret_cast<const uint4*>(row + k)) : make_uint4(0, 0, 0, 0);
  }
}

// BF16 element i (0…7, a compile-time constant after unrolling) of a group.
__device__ __forceinline__ uint32_t elementOf(const uint4& v, int i) {
  const uint32_t word = i < 2 ? v.x : i < 4 ? v.y : i < 6 ? v.z : v.w;
  return (i & 1) ? word >> 16 : word & 0xffffu;
}

__device__ __forceinline__ uint32_t exponentOf(uint32_t bits) { return (bits >> 7) & 0xffu; }
__device__ __forceinline__ uint32_t signMantissaOf(uint32_t bits) { return ((bits >> 8) & 0x80u) | (bits & 0x7fu); }

// Code of every exponent (8 = escape) under a row's table; the first slot holding it wins.
__device__ __forceinline__ void buildCodeMap(const uint8_t* table, uint8_t* map) {
  for (int e = threadIdx.x; e < 256; e += blockDim.x) {
    uint8_t code = 8;
#pragma unroll
    for (int c = 7; c >= 0; --c)
      if (table[c] == e) code = static_cast<uint8_t>(c);
    map[e] = code;
  }
}

// One block per row: the exponent histogram, the 8 most frequent (ties to the smaller exponent; with
// fewer distinct exponents the last repeats), then each step's escape count (one warp per step).
__global__ void __launch_bounds__(kThreads) tablesKernel(const uint16_t* __restrict__ src, int rowBegin, int cols, int steps, uint8_t* __restrict__ tables,
                                                         uint32_t* __restrict__ counts) {
  __shared__ uint32_t histogram[256];
  __shared__ uint32_t best[kWarpsPerBlock];
  __shared__ uint8_t table[8];
  __shared__ uint8_t map[256];
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
  buildCodeMap(table, map);
  if (t < 8) tables[static_cast<size_t>(rowBegin + blockIdx.x) * 8 + t] = table[t];
  __syncthreads();
  for (int s = warp; s < steps; s += kWarpsPerBlock) {
    uint4 w[4];
    loadLaneWeights(row, cols, s, lane, w);
    uint32_t escapes = 0;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (s * kFusedStep + u * 256 + lane * 8 >= cols) continue;
#pragma unroll
      for (int i = 0; i < 8; ++i) escapes += map[exponentOf(elementOf(w[u], i))] == 8;
    }
    escapes = __reduce_add_sync(0xffffffffu, escapes);
    if (lane == 0) counts[static_cast<size_t>(rowBegin + blockIdx.x) * steps + s] = escapes;
  }
}

// One block per row, one warp per step: sign+mantissa bytes, code words and the step's escapes.
__global__ void __launch_bounds__(kThreads) writeKernel(const uint16_t* __restrict__ src, int rowBegin, const FusedView m) {
  __shared__ uint8_t table[8];
  __shared__ uint8_t map[256];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int cols = m.cols, steps = m.steps;
  const size_t row = static_cast<size_t>(rowBegin) + blockIdx.x;
  if (t < 8) table[t] = m.tables[row * 8 + t];
  __syncthreads();
  buildCodeMap(table, map);
  __syncthreads();
  const uint16_t* weights = src + static_cast<size_t>(blockIdx.x) * cols;
  uint8_t* data = const_cast<uint8_t*>(m.data);
  uint16_t* positions = const_cast<uint16_t*>(m.escapePositions);
  uint8_t* exponents = const_cast<uint8_t*>(m.escapeExponents);
  for (int s = warp; s < steps; s += kWarpsPerBlock) {
    uint4 w[4];
    loadLaneWeights(weights, cols, s, lane, w);
    uint32_t sm[8];        // sign+mantissa words: word 2u + h holds elements 4h … 4h+3 of group u
    uint32_t codes[4] = {};  // group u: code of element i in bits 3i … 3i+2
    uint32_t escaped = 0;  // bit 8u + i
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const bool inside = s * kFusedStep + u * 256 + lane * 8 < cols;
      sm[2 * u] = sm[2 * u + 1] = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint32_t bits = inside ? elementOf(w[u], i) : 0u;
        sm[2 * u + (i >> 2)] |= signMantissaOf(bits) << (8 * (i & 3));
        const uint32_t code = map[exponentOf(bits)];
        if (inside && code == 8) escaped |= 1u << (8 * u + i);
        else if (inside) codes[u] |= code << (3 * i);
      }
    }
    const size_t step = row * steps + s;
    uint8_t* block = data + step * kFusedStepBytes;
    *reinterpret_cast<uint4*>(block + lane * 16) = make_uint4(sm[0], sm[1], sm[2], sm[3]);
    *reinterpret_cast<uint4*>(block + 512 + lane * 16) = make_uint4(sm[4], sm[5], sm[6], sm[7]);
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      uint32_t word = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) word |= (((codes[j] >> (3 * i)) & 7u) | (((codes[3] >> (3 * i + j)) & 1u) << 3)) << (4 * i);
      *reinterpret_cast<uint32_t*>(block + 1024 + 128 * j + 4 * lane) = word;
    }
    // Escapes in (lane, group, element) order: a warp-wide exclusive prefix sum gives each lane its place.
    const uint32_t mine = __popc(escaped);
    uint32_t inclusive = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(0xffffffffu, inclusive, o);
      if (lane >= o) inclusive += y;
    }
    uint32_t at = m.escapeOffsets[step] + inclusive - mine;
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if ((escaped >> (8 * u + i)) & 1u) {
          positions[at] = static_cast<uint16_t>(u * 256 + lane * 8 + i);
          exponents[at] = static_cast<uint8_t>(exponentOf(elementOf(w[u], i)));
          ++at;
        }
  }
}

// One warp per (row, step) item: decode, patch escapes, store BF16. Rows from ids (embedding lookups) or
// the range [rowBegin, rowEnd).
__global__ void __launch_bounds__(kThreads) unpackKernel(const FusedView m, int rowBegin, int rowEnd, const int32_t* __restrict__ ids, int count,
                                                         uint16_t* __restrict__ out, int ldo) {
  __shared__ __align__(16) uint8_t patch[kWarpsPerBlock][1024];
  pdlWait();
  pdlLaunchDependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const size_t rows = ids ? static_cast<size_t>(count) : static_cast<size_t>(rowEnd - rowBegin);
  const size_t items = rows * m.steps;
  for (size_t item = static_cast<size_t>(blockIdx.x) * kWarpsPerBlock + warp; item < items; item += static_cast<size_t>(gridDim.x) * kWarpsPerBlock) {
    const size_t i = item / m.steps;
    const int s = static_cast<int>(item % m.steps);
    const int row = ids ? __ldg(ids + i) : rowBegin + static_cast<int>(i);
    if (row < 0 || row >= m.rows) continue;  // the same for the whole warp
    const FusedStepLoad r = loadFusedStep(m, row, s, lane);
    uint4 w[4];
    decodeFusedStep(m, r, lane, patch[warp], w);
    uint16_t* dst = out + i * ldo;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int k = s * kFusedStep + u * 256 + lane * 8;
      if (k < m.cols) *reinterpret_cast<uint4*>(dst + k) = w[u];
    }
  }
}

int unpackBlocks(size_t items) {
  static int perDevice = 0;
  if (perDevice == 0) {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    perDevice = sms * 4;
  }
  const size_t needed = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<int>(needed < static_cast<size_t>(perDevice) ? needed : perDevice);
}

}  // namespace

cudaError_t launchFusedTablesAndCounts(const uint16_t* src, int rowBegin, int rows, int cols, uint8_t* tables, uint32_t* counts, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (cols % 8 != 0 || cols >= (1 << 24)) return cudaErrorInvalidValue;
  tablesKernel<<<rows, kThreads, 0, stream>>>(src, rowBegin, cols, (cols + kFusedStep - 1) / kFusedStep, tables, counts);
  return cudaGetLastError();
}

cudaError_t launchExclusiveScan(const uint32_t* counts, uint32_t* offsets, int n, void* temp, size_t& tempBytes, cudaStream_t stream) {
  return cub::DeviceScan::ExclusiveSum(temp, tempBytes, counts, offsets, n, stream);
}

cudaError_t launchFusedWrite(const uint16_t* src, int rowBegin, int rows, const FusedView& dst, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  writeKernel<<<rows, kThreads, 0, stream>>>(src, rowBegin, dst);
  return cudaGetLastError();
}

cudaError_t launchFusedUnpack(const FusedView& m, int rowBegin, int rowEnd, uint16_t* out, int ldo, cudaStream_t stream) {
  if (rowEnd <= rowBegin) return cudaSuccess;
  if (ldo < m.cols || ldo % 8 != 0 || (reinterpret_cast<uintptr_t>(out) & 15) != 0) return cudaErrorInvalidValue;
  const size_t items = static_cast<size_t>(rowEnd - rowBegin) * m.steps;
  return launchKernel(unpackKernel, dim3(unpackBlocks(items)), dim3(kThreads), 0, stream, m, rowBegin, rowEnd, static_cast<const int32_t*>(nullptr), 0, out, ldo);
}

cudaError_t launchFusedUnpackRows(const FusedView& m, const int32_t* ids, int count, uint16_t* out, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if ((reinterpret_cast<uintptr_t>(out) & 15) != 0) return cudaErrorInvalidValue;
  const size_t items = static_cast<size_t>(count) * m.steps;
  return launchKernel(unpackKernel, dim3(unpackBlocks(items)), dim3(kThreads), 0, stream, m, 0, 0, ids, count, out, m.cols);
}

}  // namespace df11
