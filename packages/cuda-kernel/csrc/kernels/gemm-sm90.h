// The Hopper GEMM (gemm-sm90.cu): wgmma + TMA, sm_90a. gemm.cu decides when to use it.
#pragma once
#include <cuda_runtime.h>

#include "inference.h"

namespace df11 {

// Row and K tile of the Hopper kernel; its column tile is 128 or 256.
constexpr int kSm90TileM = 128, kSm90TileK = 64;
// Whether the current device (compute capability 9.0) runs it and this build holds its sm_90a code.
bool gemmSm90Supported();
// One launch: out (+)= X·Wᵀ + bias, or with `partial` non-null (splits > 1) each split's sums of K tiles
// [z·tilesPerSplit, …) into partial[z][rows][N]. bn: column tile (128 or 256). Needs K % 8 == 0 and
// 16-byte aligned X and W; cudaErrorNotSupported, launching nothing, when the tensor maps cannot
// describe the operands (the caller falls back).
cudaError_t launchGemmSm90(const LinearArgs& a, const uint16_t* xBf16, int bn, float* partial, int tilesPerSplit, int splits, cudaStream_t stream);
// The same launch with W rows [0, a.N) of the fused matrix `w` (a.weight unused; column tile 128): the
// bulk copy engine loads its tiles and the producer warpgroup decodes them into the stages. Bit-identical
// to launchGemmSm90 on the BF16 matrix w encodes, with the same tilesPerSplit and splits.
cudaError_t launchGemmSm90Fused(const LinearArgs& a, const uint16_t* xBf16, const FusedView& w, float* partial, int tilesPerSplit, int splits, cudaStream_t stream);

}  // namespace df11
