// df11-sum64 on the GPU (the checksum df11 records; spec in @df11/codec's checksum.ts). Each 32-bit
// little-endian word w[i] adds fmix32(w ^ keyA(i)) to lane a and lowbias32(w + keyB(i)) to lane b, mod
// 2^32. The terms are independent, so every thread sums its own words, warps and blocks reduce, and one
// atomicAdd per block and lane lands in `out` — which also lets a caller sum a module window by window
// into the same two words.
#include <cstdint>

#include "checksum.h"
#include "launch.h"

namespace df11 {
namespace {

constexpr uint32_t kKeyAMul = 0x9e3779b1u, kKeyAAdd = 0x7f4a7c15u, kKeyBMul = 0x85ebca77u, kKeyBAdd = 0x165667b1u;
constexpr int kChecksumThreads = 256;

__device__ __forceinline__ uint32_t mixA(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  return x ^ (x >> 16);
}

__device__ __forceinline__ uint32_t mixB(uint32_t y) {
  y ^= y >> 16;
  y *= 0x7feb352du;
  y ^= y >> 15;
  y *= 0x846ca68bu;
  return y ^ (y >> 16);
}

__device__ __forceinline__ void addWord(uint32_t w, uint32_t index, uint32_t& a, uint32_t& b) {
  a += mixA(w ^ (index * kKeyAMul + kKeyAAdd));
  b += mixB(w + index * kKeyBMul + kKeyBAdd);
}

// data is 16-byte aligned; words = whole 32-bit words; tailBytes (0–3) follow them.
__global__ void __launch_bounds__(kChecksumThreads) sum64Kernel(const uint8_t* __restrict__ data, uint64_t words, uint32_t tailBytes, uint32_t firstWord,
                                                                 uint32_t* __restrict__ out) {
  uint32_t a = 0, b = 0;
  const uint4* vec = reinterpret_cast<const uint4*>(data);
  const uint64_t quads = words / 4;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t q = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads; q += stride) {
    const uint4 v = __ldg(vec + q);
    const uint32_t i = firstWord + static_cast<uint32_t>(q * 4);
    addWord(v.x, i, a, b);
    addWord(v.y, i + 1, a, b);
    addWord(v.z, i + 2, a, b);
    addWord(v.w, i + 3, a, b);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const uint32_t* w32 = reinterpret_cast<const uint32_t*>(data);
    for (uint64_t j = quads * 4; j < words; ++j) addWord(w32[j], firstWord + static_cast<uint32_t>(j), a, b);
    if (tailBytes > 0) {
      uint32_t w = 0;
      for (uint32_t k = 0; k < tailBytes; ++k) w |= static_cast<uint32_t>(data[words * 4 + k]) << (8 * k);
      addWord(w, firstWord + static_cast<uint32_t>(words), a, b);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  __shared__ uint32_t partial[2][kChecksumThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[0][warp] = a, partial[1][warp] = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t sa = 0, sb = 0;
    for (int k = 0; k < kChecksumThreads / 32; ++k) sa += partial[0][k], sb += partial[1][k];
    atomicAdd(out, sa);
    atomicAdd(out + 1, sb);
  }
}

}  // namespace

cudaError_t launchSum64(const void* data, uint64_t bytes, uint32_t firstWord, uint32_t* out, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(data) % 16 != 0) return cudaErrorMisalignedAddress;
  const uint64_t words = bytes / 4;
  const int blocks = multiprocessors() * 8;
  const uint64_t needed = (words / 4 + kChecksumThreads - 1) / kChecksumThreads;
  const int grid = static_cast<int>(needed < 1 ? 1 : (needed < static_cast<uint64_t>(blocks) ? needed : blocks));
  sum64Kernel<<<grid, kChecksumThreads, 0, stream>>>(static_cast<const uint8_t*>(data), words, static_cast<uint32_t>(bytes % 4), firstWord, out);
  return cudaGetLastError();
}

}  // namespace df11
