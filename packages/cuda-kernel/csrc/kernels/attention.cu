// Attention: q/k head norms + RoPE + KV-cache write (qkvPrepare), then causal softmax attention of each
// query row over its own sequence's cache (GQA, sliding window, logit soft-capping), optionally split
// over the keys for long contexts and combined afterwards.
#include <cfloat>
#include "bf16.cuh"
#include "inference.h"
#include "pdl.cuh"

namespace df11 {
namespace {

constexpr int kHeadsPerBlock = 4;  // one warp per head
constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;

__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ size_t cacheIndex(const AttentionArgs& a, int slot, int kvHead, int position) {
  return ((static_cast<size_t>(slot) * a.numKvHeads + kvHead) * a.maxContext + position) * a.headDim;
}

__global__ void __launch_bounds__(kHeadsPerBlock * 32) qkvPrepareKernel(const AttentionArgs a, const float* __restrict__ qkv, const float* __restrict__ qNorm,
                                                                        const float* __restrict__ kNorm, float eps, bool unitOffset, const float* __restrict__ invFreq,
                                                                        int rotaryDim, float* __restrict__ qOut) {
  pdlWait();
  pdlLaunchDependents();
  __shared__ float staged[kHeadsPerBlock][kMaxHeadDim];
  __shared__ float ropeCos[kMaxHeadDim / 2], ropeSin[kMaxHeadDim / 2];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = blockIdx.x;
  const int head = blockIdx.y * kHeadsPerBlock + warp;  // 0…H-1: q heads, H…H+KV-1: k heads (with their v)
  const int H = a.numHeads, KV = a.numKvHeads, d = a.headDim;
  const int position = a.positions[r];
  const int half = rotaryDim / 2;
  // One cos/sin per frequency, shared by the block's heads (double-precision sincos is the kernel's
  // cost: once per frequency instead of once per element of every head). Angle in float32 as
  // transformers computes it; cos/sin in double, then rounded (no fast-math).
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float angle = static_cast<float>(position) * invFreq[j];
    double sn, cs;
    sincos(static_cast<double>(angle), &sn, &cs);
    ropeCos[j] = static_cast<float>(cs);
    ropeSin[j] = static_cast<float>(sn);
  }
  __syncthreads();
  if (head >= H + KV) return;
  const bool isQuery = head < H;
  const float* row = qkv + static_cast<size_t>(r) * (H + 2 * KV) * d;
  const float* src = row + static_cast<size_t>(head) * d;  // k heads follow the q heads
  const float* norm = isQuery ? qNorm : kNorm;
  float v[kPerLane];
  float ss = 0.0f;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int i = lane + 32 * t;
    v[t] = i < d ? src[i] : 0.0f;
    ss += v[t] * v[t];
  }
  if (norm) {
    const float inv = rsqrtf(warpSum(ss) / d + eps);
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int i = lane + 32 * t;
      if (i < d) v[t] = (v[t] * inv) * (unitOffset ? 1.0f + norm[i] : norm[i]);
    }
  }
#pragma unroll
  for (int t = 0; t < kPerLane; ++t)
    if (lane + 32 * t < d) staged[warp][lane + 32 * t] = v[t];
  __syncwarp();

  const int slot = a.slots[r];
  const int kvHead = head - H;
  for (int i = lane; i < d; i += 32) {
    float y = staged[warp][i];
    if (i < rotaryDim) {
      const int j = i < half ? i : i - half;
      const float cf = ropeCos[j], sf = ropeSin[j];
      y = i < half ? y * cf - staged[warp][i + half] * sf : y * cf + staged[warp][j] * sf;
    }
    if (isQuery) qOut[(static_cast<size_t>(r) * H + head) * d + i] = y;
    else {
      const size_t at = cacheIndex(a, slot, kvHead, position) + i;
      a.keys[at] = floatToBf16(y);
      a.values[at] = floatToBf16(row[static_cast<size_t>(H + KV + kvHead) * d + i]);
    }
  }
}

// Dims of the output a lane owns: D contiguous ones (d = 32·D, one vector load of V per key), or with
// D = 0 every 32nd one (other head sizes).
template <int D>
__device__ __forceinline__ int laneDim(int lane, int t) { return D ? lane * D + t : lane + 32 * t; }

template <int D>
__device__ __forceinline__ void loadValues(const uint16_t* row, int lane, int d, float (&v)[kPerLane]) {
  if constexpr (D == 8) {
    float f[8];
    widen8(__ldg(reinterpret_cast<const uint4*>(row + lane * 8)), f);
#pragma unroll
    for (int t = 0; t < 8; ++t) v[t] = f[t];
  } else if constexpr (D == 4) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(row + lane * 4));
    v[0] = __uint_as_float(u.x << 16);
    v[1] = __uint_as_float(u.x & 0xffff0000u);
    v[2] = __uint_as_float(u.y << 16);
    v[3] = __uint_as_float(u.y & 0xffff0000u);
  } else if constexpr (D == 2) {
    const uint32_t u = __ldg(reinterpret_cast<const uint32_t*>(row + lane * 2));
    v[0] = __uint_as_float(u << 16);
    v[1] = __uint_as_float(u & 0xffff0000u);
  } else if constexpr (D == 1) {
    v[0] = bf16ToFloat(__ldg(row + lane));
  } else {
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) v[t] = lane + 32 * t < d ? bf16ToFloat(__ldg(row + lane + 32 * t)) : 0.0f;
  }
}

constexpr int kMaxGroup = 8;  // most query heads one warp serves
// Value rows loaded at once (fewer where a row takes 8 registers per lane).
template <int D>
constexpr int kValueBatch = D == 0 || D == 8 ? 4 : 8;

// One warp per (row, KV head, split), serving up to G of the query heads that share the KV head (GQA),
// so each key and value is loaded once for all of them. Lanes take 32 keys at a time (a full dot product per
// query head each), the warp keeps an online softmax per head, and each lane accumulates its share of
// the output dims of every head.
template <int D, int G>
__global__ void __launch_bounds__(kHeadsPerBlock * 32) attentionKernel(const AttentionArgs a, const float* __restrict__ q, float* __restrict__ out, float* __restrict__ partial) {
  pdlWait();
  pdlLaunchDependents();
  constexpr int kDims = D ? D : kPerLane;
  __shared__ __align__(16) float qs[kHeadsPerBlock][G][kMaxHeadDim];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int H = a.numHeads, d = a.headDim;
  // A KV head's group of query heads, served G at a time (a group of 7 takes one warp of G = 8, a
  // group of 32 four warps).
  const int group = H / a.numKvHeads;
  const int parts = (group + G - 1) / G;
  const int unit = blockIdx.x * kHeadsPerBlock + warp;
  if (unit >= a.numKvHeads * parts) return;
  const int kvHead = unit / parts;
  const int firstHead = kvHead * group + (unit % parts) * G;
  const int heads = min(G, group - (unit % parts) * G);
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* qh = q + (static_cast<size_t>(r) * H + firstHead + g) * d;
    for (int i = lane; i < d; i += 32) qs[warp][g][i] = g < heads ? qh[i] : 0.0f;
  }
  __syncwarp();

  const int position = a.positions[r];
  const int first = a.window > 0 ? max(0, position - a.window + 1) : 0;
  const int count = position - first + 1;
  const int chunk = (count + splits - 1) / splits;
  const int start = first + split * chunk;
  const int end = min(position + 1, start + chunk);
  const uint16_t* keys = a.keys + cacheIndex(a, a.slots[r], kvHead, 0);
  const uint16_t* values = a.values + cacheIndex(a, a.slots[r], kvHead, 0);

  float m[G], l[G], acc[G][kDims];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.0f;
#pragma unroll
    for (int t = 0; t < kDims; ++t) acc[g][t] = 0.0f;
  }

  for (int j0 = start; j0 < end; j0 += 32) {
    const int j = j0 + lane;
    float s[G];
#pragma unroll
    for (int g = 0; g < G; ++g) s[g] = 0.0f;
    if (j < end) {
      const uint4* kr = reinterpret_cast<const uint4*>(keys + static_cast<size_t>(j) * d);
      // With the head size known at compile time (D > 0) the loop unrolls and all of the key's loads
      // are in flight at once.
#pragma unroll 8
      for (int i = 0; i < (D ? 32 * D : kMaxHeadDim); i += 8) {
        if (!D && i >= d) break;
        float kf[8];
        widen8(__ldg(kr + i / 8), kf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          s[g] = dot8(*reinterpret_cast<const float4*>(&qs[warp][g][i]), *reinterpret_cast<const float4*>(&qs[warp][g][i + 4]), kf, s[g]);
        }
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        s[g] *= a.scale;
        if (a.softcap > 0.0f) s[g] = tanhf(s[g] / a.softcap) * a.softcap;
      }
    }
    float p[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float mNew = fmaxf(m[g], warpMax(j < end ? s[g] : -FLT_MAX));
      p[g] = j < end ? __expf(s[g] - mNew) : 0.0f;
      const float correction = __expf(m[g] - mNew);
      l[g] = l[g] * correction + warpSum(p[g]);
#pragma unroll
      for (int t = 0; t < kDims; ++t) acc[g][t] *= correction;
      m[g] = mNew;
    }
    // Values: kValueBatch rows loaded before they are used (the loads overlap instead of one L2 round
    // trip per key); the sums run in key order as before.
    const int n = min(32, end - j0);
    int jj = 0;
    for (; jj + kValueBatch<D> <= n; jj += kValueBatch<D>) {
      float v[kValueBatch<D>][kPerLane];
#pragma unroll
      for (int u = 0; u < kValueBatch<D>; ++u) loadValues<D>(values + static_cast<size_t>(j0 + jj + u) * d, lane, d, v[u]);
#pragma unroll
      for (int u = 0; u < kValueBatch<D>; ++u)
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float pj = __shfl_sync(0xffffffffu, p[g], jj + u);
#pragma unroll
          for (int t = 0; t < kDims; ++t) acc[g][t] = fmaf(pj, v[u][t], acc[g][t]);
        }
    }
    // The rest (fewer than a batch): loaded together too, summed in key order.
    if (jj < n) {
      float v[kValueBatch<D>][kPerLane];
#pragma unroll
      for (int u = 0; u < kValueBatch<D>; ++u)
        if (jj + u < n) loadValues<D>(values + static_cast<size_t>(j0 + jj + u) * d, lane, d, v[u]);
#pragma unroll
      for (int u = 0; u < kValueBatch<D>; ++u) {
        if (jj + u >= n) break;  // n is the same for the whole warp
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float pj = __shfl_sync(0xffffffffu, p[g], jj + u);
#pragma unroll
          for (int t = 0; t < kDims; ++t) acc[g][t] = fmaf(pj, v[u][t], acc[g][t]);
        }
      }
    }
  }

#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g >= heads) break;
    const int head = firstHead + g;
    if (splits == 1) {
      float* o = out + (static_cast<size_t>(r) * H + head) * d;
      const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
#pragma unroll
      for (int t = 0; t < kDims; ++t)
        if (laneDim<D>(lane, t) < d) o[laneDim<D>(lane, t)] = acc[g][t] * inv;
    } else {
      float* pp = partial + ((static_cast<size_t>(r) * H + head) * splits + split) * (d + 2);
      if (lane == 0) {
        pp[0] = start < end ? m[g] : -FLT_MAX;
        pp[1] = l[g];
      }
#pragma unroll
      for (int t = 0; t < kDims; ++t)
        if (laneDim<D>(lane, t) < d) pp[2 + laneDim<D>(lane, t)] = acc[g][t];
    }
  }
}

// Merge the splits of one (row, head): a warp per 32 of its output dims. Lane s holds split s's (and
// s + 32's) max and sum, so their loads are issued together; each lane then sums its dim over the splits
// in split order, the loads of 32 splits at a time in flight (the last, partial batch predicated): a
// decode step's attention is a chain of dependent round trips, one more for every batch of loads. The
// same sums as one warp per head taking them in batches: the weights come from the same butterfly, the
// dims from the same in-order sum.
constexpr int kMaxSplits = 64;
__global__ void combineKernel(const AttentionArgs a, int splits, const float* __restrict__ partial, float* __restrict__ out) {
  pdlWait();
  pdlLaunchDependents();
  const int lane = threadIdx.x & 31;
  const int H = a.numHeads, d = a.headDim;
  const int slices = (d + 31) / 32;
  const int unit = blockIdx.x * kHeadsPerBlock + (threadIdx.x >> 5);
  const int head = unit / slices, r = blockIdx.y;
  if (head >= H) return;
  const int stride = d + 2;
  const float* p = partial + (static_cast<size_t>(r) * H + head) * splits * stride;
  const bool has0 = lane < splits, has1 = lane + 32 < splits;
  const float m0 = has0 ? p[lane * stride] : -FLT_MAX, m1 = has1 ? p[(lane + 32) * stride] : -FLT_MAX;
  const float l0 = has0 ? p[lane * stride + 1] : 0.0f, l1 = has1 ? p[(lane + 32) * stride + 1] : 0.0f;
  const float m = warpMax(fmaxf(m0, m1));
  const float w0 = has0 ? __expf(m0 - m) : 0.0f, w1 = has1 ? __expf(m1 - m) : 0.0f;
  const float l = warpSum(l0 * w0 + l1 * w1);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  // Every lane runs every iteration (the shuffles need the whole warp); lanes past d load nothing.
  const int i = (unit % slices) * 32 + lane;
  const bool in = i < d;
  float v = 0.0f;
  for (int s = 0; s < splits; s += 32) {
    float x[32];
#pragma unroll
    for (int u = 0; u < 32; ++u) x[u] = in && s + u < splits ? p[(s + u) * stride + 2 + i] : 0.0f;
#pragma unroll
    for (int u = 0; u < 32; ++u) {
      const int su = s + u;
      if (su >= splits) break;  // the same for the whole warp
      v += x[u] * __shfl_sync(0xffffffffu, su < 32 ? w0 : w1, su & 31);
    }
  }
  if (in) out[(static_cast<size_t>(r) * H + head) * d + i] = v * inv;
}

template <int G>
cudaError_t launchForGroup(const AttentionArgs& a, dim3 grid, const float* q, float* out, float* partial, cudaStream_t stream) {
  const dim3 block(kHeadsPerBlock * 32);
  switch (a.headDim) {
    case 256: return launchKernel(attentionKernel<8, G>, grid, block, 0, stream, a, q, out, partial);
    case 128: return launchKernel(attentionKernel<4, G>, grid, block, 0, stream, a, q, out, partial);
    case 64: return launchKernel(attentionKernel<2, G>, grid, block, 0, stream, a, q, out, partial);
    case 32: return launchKernel(attentionKernel<1, G>, grid, block, 0, stream, a, q, out, partial);
    default: return launchKernel(attentionKernel<0, G>, grid, block, 0, stream, a, q, out, partial);
  }
}

cudaError_t launchGrouped(const AttentionArgs& a, int group, dim3 grid, const float* q, float* out, float* partial, cudaStream_t stream) {
  switch (group) {
    case 1: return launchForGroup<1>(a, grid, q, out, partial, stream);
    case 2: return launchForGroup<2>(a, grid, q, out, partial, stream);
    case 4: return launchForGroup<4>(a, grid, q, out, partial, stream);
    default: return launchForGroup<8>(a, grid, q, out, partial, stream);
  }
}

}  // namespace

cudaError_t launchQkvPrepare(const AttentionArgs& a, const float* qkv, const float* qNorm, const float* kNorm, float normEps, bool unitOffset, const float* invFreq,
                             int rotaryDim, float* qOut, cudaStream_t stream) {
  if (a.rows == 0) return cudaSuccess;
  if (a.headDim > kMaxHeadDim || rotaryDim > a.headDim || (rotaryDim & 1)) return cudaErrorInvalidValue;
  const dim3 grid(a.rows, (a.numHeads + a.numKvHeads + kHeadsPerBlock - 1) / kHeadsPerBlock);
  return launchKernel(qkvPrepareKernel, dim3(grid), dim3(kHeadsPerBlock * 32), 0, stream, a, qkv, qNorm, kNorm, normEps, unitOffset, invFreq, rotaryDim, qOut);
}

cudaError_t launchAttention(const AttentionArgs& a, const float* q, float* out, int splits, float* partial, cudaStream_t stream) {
  if (a.rows == 0) return cudaSuccess;
  if (a.headDim > kMaxHeadDim || (a.headDim & 7) || a.numHeads % a.numKvHeads) return cudaErrorInvalidValue;
  if (splits < 1 || splits > kMaxSplits || (splits > 1 && !partial)) return cudaErrorInvalidValue;
  const int group = a.numHeads / a.numKvHeads;
  const int G = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : kMaxGroup;
  const int warps = a.numKvHeads * ((group + G - 1) / G);
  const dim3 grid((warps + kHeadsPerBlock - 1) / kHeadsPerBlock, a.rows, splits);
  const cudaError_t e = launchGrouped(a, G, grid, q, out, partial, stream);
  if (e != cudaSuccess || splits == 1) return e;
  const int warpsPerRow = a.numHeads * ((a.headDim + 31) / 32);
  return launchKernel(combineKernel, dim3((warpsPerRow + kHeadsPerBlock - 1) / kHeadsPerBlock, a.rows), dim3(kHeadsPerBlock * 32), 0, stream, a, splits, partial, out);
}

}  // namespace df11
