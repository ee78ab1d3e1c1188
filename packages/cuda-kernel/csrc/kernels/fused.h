// The DF11 fused layout on the GPU (spec: packages/codec/src/fused-layout.ts): building it from BF16
// (transcoding, on the GPU, window by window) and reading it back (unpack to BF16 for the tensor-core
// GEMM and embedding lookups). The fused GEMV is in gemv.cu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace df11 {

constexpr int kFusedStep = 1024;        // weights per row-step
constexpr int kFusedStepBytes = 1408;   // bytes per row-step block

// Device pointers of one matrix [rows, cols] in the fused layout.
struct FusedView {
  const uint8_t* data;              // rows · steps · 1408 B
  const uint8_t* tables;            // rows · 8 exponent bytes (8-byte aligned)
  const uint32_t* escapeOffsets;    // rows · steps + 1
  const uint16_t* escapePositions;  // per escape: position in its step
  const uint8_t* escapeExponents;   // per escape: exponent
  int rows, cols, steps;
};

// ---- transcoding BF16 → fused (rows [rowBegin, rowBegin + rows) of the matrix, from `src` holding those
// rows, row-major with `cols` elements each) ----------------------------------------------------------
// Pass 1: each row's table (tables + 8·rowBegin …) and each row-step's escape count into
// counts[rowBegin·steps …] (counts has rows·steps + 1 entries overall; the last is left alone).
cudaError_t launchFusedTablesAndCounts(const uint16_t* src, int rowBegin, int rows, int cols, uint8_t* tables, uint32_t* counts, cudaStream_t stream);
// offsets[i] = Σ counts[0 … i) for i < n (CUB's device scan). With counts[n − 1] = 0, offsets[n − 1] is
// the total. `temp`/`tempBytes`: scratch (with temp = null only its size is returned in tempBytes).
cudaError_t launchExclusiveScan(const uint32_t* counts, uint32_t* offsets, int n, void* temp, size_t& tempBytes, cudaStream_t stream);
// Pass 2: the step blocks and escapes of the rows (escape offsets from the scan).
cudaError_t launchFusedWrite(const uint16_t* src, int rowBegin, int rows, const FusedView& dst, cudaStream_t stream);

// ---- fused → BF16 ------------------------------------------------------------------------------------
// Rows [rowBegin, rowEnd) into out[(row − rowBegin)·ldo …] (ldo ≥ cols, a multiple of 8; out 16-byte aligned).
cudaError_t launchFusedUnpack(const FusedView& m, int rowBegin, int rowEnd, uint16_t* out, int ldo, cudaStream_t stream);
// Rows ids[0 … count) (device memory, e.g. token ids: an embedding lookup inside a CUDA graph) into
// out[i·cols …]; ids outside [0, rows) leave their row untouched.
cudaError_t launchFusedUnpackRows(const FusedView& m, const int32_t* ids, int count, uint16_t* out, cudaStream_t stream);

}  // namespace df11
