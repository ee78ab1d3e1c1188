// Prefill attention on the tensor cores (FlashAttention-2 structure, mma.sync m16n8k16 BF16 → float32):
// a step whose rows are all one sequence at consecutive positions (CausalLM.extend's prompt chunks), the
// KV cache already holding every position up to the last row's (qkvPrepare ran first).
//
// A block per (query head, 64 query rows): 4 warps of 16 rows. K/V tiles of kKeys keys stream through
// shared memory (cp.async, two stages); per tile each warp computes S = Q·Kᵀ (Q rounded to BF16 as it is
// staged, as transformers' BF16 attention has it), scales it into log2 units (soft-capping first where the
// model has it), masks keys past each row's position or outside its sliding window, keeps an online softmax
// per row in registers (exp2), and adds P·V with P rounded to BF16 (the A operand) and V read transposed
// with ldmatrix.trans. Output float32, divided by the row's sum at the end.
//
// Shared-memory rows are padded by 16 bytes (stride d + 8 elements): the 8 rows an ldmatrix reads then
// fall on distinct banks for every supported head size.
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kPrefillRows = 64;  // query rows per block
constexpr int kPrefillWarps = kPrefillRows / 16;
constexpr int kPrefillThreads = kPrefillWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct PrefillShape {
  static constexpr int kKeys = D > 128 || D < 32 ? 32 : 64;  // keys per K/V tile (fewer for d = 256: registers; d = 16: ptxas spills with 64)
  static constexpr int kStride = D + 8;            // shared-memory row stride in elements
  static constexpr bool kQInRegisters = D <= 128;  // else re-read from shared memory per tile
  static constexpr int kQElems = kPrefillRows * kStride;
  static constexpr int kTileElems = kKeys * kStride;
  static constexpr size_t kSharedBytes = static_cast<size_t>(kQElems + 4 * kTileElems) * 2;  // Q, K0, V0, K1, V1
  static_assert(D % 16 == 0, "head size: a multiple of 16");
};

__device__ __forceinline__ uint32_t sharedAddress(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16 bytes global → shared, asynchronously; zeros instead where !valid (src is not read then).
__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrixX4(uint32_t address, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address) : "memory");
}
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t address, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

// c += a·b: a 16×16 (row), b 16×8 (col), BF16 in, float32 accumulate.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to BF16 (nearest even), lo in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// Fragment layouts (m16n8k16; g = lane / 4, t = lane % 4):
//   A (16×16): a0 = (row g, cols 2t, 2t+1), a1 = (g+8, 2t…), a2 = (g, 2t+8…), a3 = (g+8, 2t+8…)
//   B (16×8, k × n): b0 = (k 2t, 2t+1; n g), b1 = (k 2t+8, 2t+9; n g)
//   C (16×8): c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1)
// ldmatrix.x4: lanes 8i…8i+7 give the row addresses of matrix i, register i holds its (row g, cols 2t, 2t+1)
// (.trans: its (rows 2t, 2t+1; col g)).
template <int D>
__global__ void __launch_bounds__(kPrefillThreads) prefillAttentionKernel(const AttentionArgs a, int slot, int firstPosition, const float* __restrict__ q,
                                                                        float* __restrict__ out) {
  using Shape = PrefillShape<D>;
  constexpr int kKeys = Shape::kKeys, kStride = Shape::kStride;
  constexpr int kKeyTiles = kKeys / 8;  // n-tiles of S per warp
  constexpr int kDimTiles = D / 8;      // n-tiles of O per warp
  constexpr int kDimSteps = D / 16;     // k-steps of Q·Kᵀ
  extern __shared__ __align__(16) uint16_t prefillShared[];
  uint16_t* qs = prefillShared;
  uint16_t* kvs = prefillShared + Shape::kQElems;  // stage s: K at kvs + 2s·kTileElems, V after it

  pdlWait();
  pdlLaunchDependents();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  // Blocks start in order of blockIdx.x + gridDim.x · blockIdx.y: every head's last row tile (most keys) first.
  const int tile = gridDim.y - 1 - blockIdx.y;
  const int r0 = tile * kPrefillRows;
  const int head = blockIdx.x;
  const int H = a.numHeads;
  const int kvHead = head / (H / a.numKvHeads);
  const int rowsHere = min(kPrefillRows, a.rows - r0);
  const int blockFirst = firstPosition + r0;  // position of the block's first row
  const int keyEnd = blockFirst + rowsHere;   // keys < keyEnd: never past the block's last row
  const int window = a.window;
  const int keyStart = window > 0 ? max(0, blockFirst - window + 1) : 0;
  const int tiles = (keyEnd - keyStart + kKeys - 1) / kKeys;
  const size_t cacheBase = (static_cast<size_t>(slot) * a.numKvHeads + kvHead) * a.maxContext;
  const uint16_t* keys = a.keys + cacheBase * D;
  const uint16_t* values = a.values + cacheBase * D;

  const auto loadTile = [&](int t, int stage) {
    const int j0 = keyStart + t * kKeys;
    uint16_t* ks = kvs + 2 * stage * Shape::kTileElems;
    uint16_t* vs = ks + Shape::kTileElems;
    constexpr int kChunks = D / 8;  // 16-byte pieces per row
#pragma unroll 4
    for (int c = threadIdx.x; c < kKeys * kChunks; c += kPrefillThreads) {
      const int row = c / kChunks, chunk = c - row * kChunks;
      const int j = j0 + row;
      const bool valid = j < keyEnd;
      const size_t at = static_cast<size_t>(valid ? j : keyStart) * D + chunk * 8;
      const int to = row * kStride + chunk * 8;
      cpAsync16(sharedAddress(ks + to), keys + at, valid);
      cpAsync16(sharedAddress(vs + to), values + at, valid);
    }
    cpAsyncCommit();
  };
  loadTile(0, 0);  // in flight while Q is staged

  // Q: float32 → BF16 (nearest even), rows past the step zeros.
  {
    constexpr int kQuads = D / 4;
    for (int c = threadIdx.x; c < kPrefillRows * kQuads; c += kPrefillThreads) {
      const int row = c / kQuads, quad = c - row * kQuads;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (row < rowsHere) v = __ldg(reinterpret_cast<const float4*>(q + (static_cast<size_t>(r0 + row) * H + head) * D) + quad);
      *reinterpret_cast<uint2*>(qs + row * kStride + quad * 4) = make_uint2(packBf16(v.x, v.y), packBf16(v.z, v.w));
    }
  }
  __syncthreads();

  const int warpRow = warp * 16;
  // A operand (Q, 16×16 per k-step): lane l addresses row l % 16, column block l / 16.
  const uint32_t qAddress = sharedAddress(qs + (warpRow + (lane & 15)) * kStride + (lane >> 4) * 8);
  uint32_t qf[Shape::kQInRegisters ? kDimSteps : 1][4];
  if constexpr (Shape::kQInRegisters) {
#pragma unroll
    for (int k = 0; k < kDimSteps; ++k) ldmatrixX4(qAddress + k * 32, qf[k]);
  }
  // B operand of Q·Kᵀ (two n-tiles of 8 keys × 16 dims): lane l addresses key (l % 8) + 8·(l / 16), dims + 8·((l / 8) % 2).
  const int kOffset = ((lane & 7) + (lane >> 4) * 8) * kStride + ((lane >> 3) & 1) * 8;
  // B operand of P·V, transposed (16 keys × two n-tiles of 8 dims): lane l addresses key (l % 8) + 8·((l / 8) % 2), dims + 8·(l / 16).
  const int vOffset = ((lane & 7) + ((lane >> 3) & 1) * 8) * kStride + (lane >> 4) * 8;

  const bool capped = a.softcap > 0.0f;
  const float scaleLog2 = a.scale * kLog2e;
  const float capInner = capped ? a.scale / a.softcap : 0.0f, capOuter = a.softcap * kLog2e;
  const int warpFirst = blockFirst + warpRow, warpLast = warpFirst + 15;  // positions of the warp's rows
  const int rowPos0 = warpFirst + g;                                     // this lane's rows: rowPos0, rowPos0 + 8
  const bool warpActive = warpRow < rowsHere;

  float o[kDimTiles][4];
#pragma unroll
  for (int j = 0; j < kDimTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < tiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < tiles) {
      loadTile(t + 1, stage ^ 1);
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const int j0 = keyStart + t * kKeys;
    // Whole tile masked for every row of the warp: past its last row, or before its first row's window.
    const bool skip = !warpActive || j0 > warpLast || (window > 0 && j0 + kKeys - 1 <= warpFirst - window);
    if (!skip) {
      const uint16_t* ks = kvs + 2 * stage * Shape::kTileElems;
      const uint32_t kAddress = sharedAddress(ks + kOffset), vAddress = sharedAddress(ks + Shape::kTileElems + vOffset);
      float s[kKeyTiles][4];
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int k = 0; k < kDimSteps; ++k) {
        uint32_t af[4];
        if constexpr (Shape::kQInRegisters) {
#pragma unroll
          for (int i = 0; i < 4; ++i) af[i] = qf[k][i];
        } else {
          ldmatrixX4(qAddress + k * 32, af);
        }
#pragma unroll
        for (int p = 0; p < kKeyTiles / 2; ++p) {
          uint32_t b[4];
          ldmatrixX4(kAddress + (p * 16 * kStride + k * 16) * 2, b);
          mma16816(s[2 * p], af, b[0], b[1]);
          mma16816(s[2 * p + 1], af, b[2], b[3]);
        }
      }
      // Scores in log2 units (soft-capped first), masked.
      const bool masked = j0 + kKeys - 1 > warpFirst || (window > 0 && j0 <= warpLast - window);
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[j][e];
          x = capped ? tanhf(x * capInner) * capOuter : x * scaleLog2;
          if (masked) {
            const int key = j0 + 8 * j + 2 * t4 + (e & 1);
            const int pos = rowPos0 + (e >> 1) * 8;
            if (key > pos || (window > 0 && key <= pos - window)) x = -INFINITY;
          }
          s[j][e] = x;
        }
      // Online softmax: the 4 lanes of a group hold one row's scores.
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
        mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
      }
      float base[2], correction[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        base[i] = mx[i] == -INFINITY ? 0.0f : mx[i];  // a row with no key yet: p = 0, not NaN
        correction[i] = exp2f(m[i] - base[i]);
        m[i] = mx[i];
        l[i] *= correction[i];
      }
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
        s[j][0] = exp2f(s[j][0] - base[0]);
        s[j][1] = exp2f(s[j][1] - base[0]);
        s[j][2] = exp2f(s[j][2] - base[1]);
        s[j][3] = exp2f(s[j][3] - base[1]);
        l[0] += s[j][0] + s[j][1];
        l[1] += s[j][2] + s[j][3];
      }
#pragma unroll
      for (int j = 0; j < kDimTiles; ++j) {
        o[j][0] *= correction[0];
        o[j][1] *= correction[0];
        o[j][2] *= correction[1];
        o[j][3] *= correction[1];
      }
      // O += P·V, P (the S accumulators of key tiles 2kk, 2kk+1) as the A operand of k-step kk.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pf[4] = {packBf16(s[2 * kk][0], s[2 * kk][1]), packBf16(s[2 * kk][2], s[2 * kk][3]), packBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                packBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int p = 0; p < kDimTiles / 2; ++p) {
          uint32_t b[4];
          ldmatrixX4Trans(vAddress + (kk * 16 * kStride + p * 16) * 2, b);
          mma16816(o[2 * p], pf, b[0], b[1]);
          mma16816(o[2 * p + 1], pf, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the stage is refilled next iteration
  }

  // Row sums across the group's 4 lanes, then O / l.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = warpRow + g + 8 * i;
    if (row >= rowsHere) continue;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    float* dst = out + (static_cast<size_t>(r0 + row) * H + head) * D + 2 * t4;
#pragma unroll
    for (int j = 0; j < kDimTiles; ++j) *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[j][2 * i] * inv, o[j][2 * i + 1] * inv);
  }
}

constexpr int kMaxDevices = 64;

template <int D>
cudaError_t launchPrefill(const AttentionArgs& a, int slot, int firstPosition, const float* q, float* out, cudaStream_t stream) {
  using Shape = PrefillShape<D>;
  constexpr size_t bytes = Shape::kSharedBytes;
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  // Shared memory above 48 KiB is opted into once per device (and refused where the device has less).
  static int configured[kMaxDevices];  // 0 unknown, 1 ready, -1 too little shared memory
  int unlisted = 0;
  int& state = device < kMaxDevices ? configured[device] : unlisted;
  if (state == 0) {
    int optin = 0;
    e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e != cudaSuccess) return e;
    if (static_cast<size_t>(optin) < bytes) {
      state = -1;
    } else {
      e = cudaFuncSetAttribute(prefillAttentionKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
      if (e != cudaSuccess) return e;
      state = 1;
    }
  }
  if (state < 0) return cudaErrorNotSupported;
  const dim3 grid(a.numHeads, (a.rows + kPrefillRows - 1) / kPrefillRows);
  return launchKernel(prefillAttentionKernel<D>, grid, dim3(kPrefillThreads), bytes, stream, a, slot, firstPosition, q, out);
}

}  // namespace

bool prefillAttentionSupports(int headDim) {
  switch (headDim) {
    case 16: case 32: case 64: case 80: case 96: case 128: case 256: return true;
    default: return false;
  }
}

cudaError_t launchPrefillAttention(const AttentionArgs& a, int slot, int firstPosition, const float* q, float* out, cudaStream_t stream) {
  if (a.rows == 0) return cudaSuccess;
  if (a.numKvHeads <= 0 || a.numHeads % a.numKvHeads || a.rows < 0) return cudaErrorInvalidValue;
  if (slot < 0 || firstPosition < 0 || static_cast<int64_t>(firstPosition) + a.rows > a.maxContext) return cudaErrorInvalidValue;
  if ((a.rows + kPrefillRows - 1) / kPrefillRows > 65535) return cudaErrorNotSupported;
  if (!prefillAttentionSupports(a.headDim) || reinterpret_cast<uintptr_t>(q) % 16 || reinterpret_cast<uintptr_t>(out) % 8 ||
      reinterpret_cast<uintptr_t>(a.keys) % 16 || reinterpret_cast<uintptr_t>(a.values) % 16)
    return cudaErrorNotSupported;
  switch (a.headDim) {
    case 16: return launchPrefill<16>(a, slot, firstPosition, q, out, stream);
    case 32: return launchPrefill<32>(a, slot, firstPosition, q, out, stream);
    case 64: return launchPrefill<64>(a, slot, firstPosition, q, out, stream);
    case 80: return launchPrefill<80>(a, slot, firstPosition, q, out, stream);
    case 96: return launchPrefill<96>(a, slot, firstPosition, q, out, stream);
    case 128: return launchPrefill<128>(a, slot, firstPosition, q, out, stream);
    default: return launchPrefill<256>(a, slot, firstPosition, q, out, stream);
  }
}

}  // namespace df11
