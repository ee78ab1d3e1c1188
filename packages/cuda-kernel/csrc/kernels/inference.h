// Launchers of the inference kernels (everything but the DF11 decode, see decode.h). Activations are
// float32 row-major; weights are BF16 bit patterns, row-major [outFeatures, inFeatures]; the KV cache is
// BF16. Every launcher is asynchronous on `stream` and returns the launch's error.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "fused.h"

namespace df11 {

// ---- elementwise.cu -------------------------------------------------------------------------------
// out[r, :] = float(table[ids[r], :]) * scale; with ids null, row r of the table.
cudaError_t launchEmbedding(const uint16_t* table, const int32_t* ids, int rows, int dim, float scale, float* out, cudaStream_t stream);
// out[r, :I] = act(gu[r, :I]) * gu[r, I:2I]; act 0 = SiLU, 1 = GELU (tanh approximation).
cudaError_t launchGatedActivation(const float* gu, int rows, int inner, int activation, float* out, cudaStream_t stream);
// a += b over n elements.
cudaError_t launchAdd(float* a, const float* b, size_t n, cudaStream_t stream);
// x = tanh(x / cap) * cap over n elements.
cudaError_t launchSoftcap(float* x, size_t n, float cap, cudaStream_t stream);
// out[r] = index of the largest of x[r, :n] (first on ties).
// values (may be null): each row's largest value (for combining vocabulary shards under tensor parallelism).
cudaError_t launchArgmax(const float* x, int rows, int n, int32_t* out, float* values, cudaStream_t stream);
// out[i] = bf16(x[i]) (round to nearest even), n elements.
cudaError_t launchToBf16(const float* x, size_t n, uint16_t* out, cudaStream_t stream);
// out[i, :] = x[rows[i], :] for i < count (gathers the rows whose logits are wanted).
cudaError_t launchGatherRows(const float* x, const int32_t* rows, int count, int dim, float* out, cudaStream_t stream);

// ---- norm.cu --------------------------------------------------------------------------------------
// y = x / rms(x) * w (or * (1 + w) with unitOffset) per row of `dim`. With residual non-null the result
// is added to it (residual += y, gemma's sandwich norms); otherwise written to out (may alias x).
cudaError_t launchRmsNorm(const float* x, int rows, int dim, const float* weight, float eps, bool unitOffset, float* out, float* residual, cudaStream_t stream);

// ---- gemv.cu / gemm.cu -----------------------------------------------------------------------------
// out[r, n] (+)= Σ_k x[r, k] · W[n, k] + bias[n], for r < rows, n < N. ldx/ldo: row strides (elements).
struct LinearArgs {
  const uint16_t* weight;  // [N, K] BF16
  int N, K;
  const float* x;  // [rows, ldx] float32
  int ldx;
  int rows;
  const float* bias;  // [N] or null
  float* out;         // [rows, ldo]
  int ldo;
  bool accumulate;
  // x rounded to BF16 ([rows, K], row stride K, 16-byte aligned), or null. The GEMV reads it for more than
  // 8 rows instead of rounding x as it reads it: the same operands at half the bytes (x is re-read for
  // every group of 8 weight rows, and with many rows those reads, not the weights, bound the kernel).
  const uint16_t* xb = nullptr;
};
// Few rows (decoding, batches up to kGemvMaxRows): tensor cores on x rounded to BF16 as it is read,
// every weight read once, each row's result independent of the batch. With K % 8 ≠ 0 or unaligned
// rows: a float32 kernel on x.
constexpr int kGemvMaxRows = 64;
cudaError_t launchGemv(const LinearArgs& a, cudaStream_t stream);
// The same products with W in the DF11 fused layout (N ≤ w.rows, K = w.cols, K % 8 == 0), decoded in
// registers: bit-identical to launchGemv on the BF16 matrix it encodes.
cudaError_t launchFusedGemv(const LinearArgs& a, const FusedView& w, cudaStream_t stream);
// Many rows (prefill, large batches): tensor cores (BF16 × BF16 → float32). xBf16 is x converted to
// BF16, [rows, K]; needs K % 8 == 0 and 16-byte aligned rows, else falls back to a simple float32 kernel
// on x. With few rows, K is split over blocks whose partial sums go to `workspace` (up to
// workspaceFloats floats) and are added in a fixed order.
// On compute capability 9.0 (with the sm_90a code in the build) a wgmma + TMA kernel (gemm-sm90.cu), elsewhere
// mma.sync; which one, its tiles and its K splits depend only on the device, the variant, rows and K (and
// the workspace), so a product's reduction order is the same for a whole matrix and for windows of its rows.
cudaError_t launchGemm(const LinearArgs& a, const uint16_t* xBf16, float* workspace, size_t workspaceFloats, cudaStream_t stream);
// Which GEMM kernel launchGemm runs: Auto (the Hopper kernel where the device has it, when enabled by
// default), Mma (always mma.sync), Sm90 (Hopper where possible), or the Hopper kernel with a fixed column
// tile. Initially from DF11_GEMM=auto|mma|sm90|sm90-128|sm90-256 (read once); tests and benchmarks set it.
enum class GemmVariant { Auto = 0, Mma = 1, Sm90 = 2, Sm90Tile128 = 3, Sm90Tile256 = 4 };
void setGemmVariant(GemmVariant v);
// Whether launchGemm takes the Hopper kernel on the current device for a product of `rows` rows.
bool gemmUsesSm90(int rows, int K);
// launchGemm's product with W in the DF11 fused layout (N ≤ w.rows, K = w.cols), its tiles decoded inside
// the Hopper kernel: bit-identical to launchGemm on the BF16 matrix w encodes. cudaErrorNotSupported
// where launchGemm would not take the Hopper kernel (other GPUs, DF11_GEMM=mma, too small a workspace),
// where the mode turns it off, or (Auto) above kFusedGemmAutoMaxRows rows, where decoding W to BF16
// windows and the BF16 kernel is faster on the H200 (gemm-kernels bench): the caller then does that.
enum class FusedGemmMode { Off = 0, Auto = 1, Always = 2 };
constexpr int kFusedGemmAutoMaxRows = 128;
cudaError_t launchFusedGemm(const LinearArgs& a, const FusedView& w, const uint16_t* xBf16, float* workspace, size_t workspaceFloats, cudaStream_t stream);
// Initially from DF11_FUSED_GEMM=auto|always|off (read once); tests and benchmarks set it.
void setFusedGemm(FusedGemmMode mode);

// ---- attention.cu ----------------------------------------------------------------------------------
struct AttentionArgs {
  int rows;            // query rows in this step
  const int32_t* positions;  // [rows] position of each row in its sequence
  const int32_t* slots;      // [rows] KV-cache slot (sequence) of each row
  int numHeads, numKvHeads, headDim;
  int maxContext;      // positions per slot in the cache
  uint16_t* keys;      // this layer's cache: [slots, kvHeads, maxContext, headDim] BF16
  uint16_t* values;
  float scale;         // query scaling (1/sqrt(d) or gemma's query_pre_attn_scalar)
  float softcap;       // 0 = none
  int window;          // sliding window, 0 = full attention
};
// From the fused projection qkv [rows, (H + 2·KV)·d] (q heads, k heads, v heads): RMS-normalise each q
// and k head (when qNorm/kNorm are given), rotate the first rotaryDim dims of each (RoPE, frequencies
// invFreq[rotaryDim/2] at each row's position), write q to qOut [rows, H·d] and k, v into the cache.
cudaError_t launchQkvPrepare(const AttentionArgs& a, const float* qkv, const float* qNorm, const float* kNorm, float normEps, bool unitOffset,
                             const float* invFreq, int rotaryDim, float* qOut, cudaStream_t stream);
// out[rows, H·d] = causal softmax attention of q over each row's slot, positions ≤ its own (and inside
// the window). splits > 1 divides each row's keys among that many warps (long contexts, few rows);
// partial needs rows · H · splits · (d + 2) floats then.
cudaError_t launchAttention(const AttentionArgs& a, const float* q, float* out, int splits, float* partial, cudaStream_t stream);

// ---- attention-prefill.cu --------------------------------------------------------------------------
// The same attention on the tensor cores (FlashAttention-2 style, mma.sync) for a step whose rows all
// belong to `slot` at consecutive positions firstPosition … firstPosition + rows − 1 (a prompt chunk; the
// cache holds every position up to the last row's). a.positions and a.slots are not read. Q and P are
// rounded to BF16 for the tensor cores (as in transformers' BF16 attention), sums in float32.
// cudaErrorNotSupported (nothing launched) for a head size other than 16, 32, 64, 80, 96, 128, 256, too
// little shared memory on the device, or misaligned pointers: the caller runs launchAttention instead.
cudaError_t launchPrefillAttention(const AttentionArgs& a, int slot, int firstPosition, const float* q, float* out, cudaStream_t stream);
// Whether launchPrefillAttention takes this head size.
bool prefillAttentionSupports(int headDim);

}  // namespace df11
