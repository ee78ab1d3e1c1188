// The DF11 fused layout on the GPU (spec: packages/codec/src/fused-layout.ts): building it from BF16
// (transcoding, on the GPU, window by window) and reading it back (unpack to BF16 for the tensor-core
// GEMM and embedding lookups). The GEMV that decodes it in registers is in gemv.cu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace df11 {

constexpr int kFusedGroupRows = 8;     // rows per group
constexpr int kFusedTileK = 256;       // k per tile
constexpr int kFusedTileBytes = 2816;  // bytes per tile block: 2048 sign+mantissa bytes, 6 × 32 code words

// Device pointers of one matrix [rows, cols] in the fused layout.
struct FusedView {
  const uint8_t* data;              // groups · tiles · 2816 B
  const uint8_t* tables;            // groups · 8 rows · 8 exponent bytes (8-byte aligned)
  const uint32_t* escapeOffsets;    // groups · tiles + 1
  const uint16_t* escapePositions;  // per escape: position in its tile
  const uint8_t* escapeExponents;   // per escape: exponent
  int rows, cols, groups, tiles;
};

// ---- transcoding BF16 → fused -------------------------------------------------------------------------
// `src` holds rows [rowBegin, rowBegin + rows) of the matrix, row-major with `cols` elements each;
// rowBegin is a multiple of 8 (windows hold whole groups).
// Pass 1: each row's table (into tables + 8·row).
cudaError_t launchFusedTables(const uint16_t* src, int rowBegin, int rows, int cols, uint8_t* tables, cudaStream_t stream);
// Pass 2: each tile's escape count, into counts[group·tiles + t] (counts has groups·tiles + 1 entries; the
// last is left alone). Needs the tables of the rows.
cudaError_t launchFusedCounts(const uint16_t* src, int rowBegin, int rows, const FusedView& m, uint32_t* counts, cudaStream_t stream);
// offsets[i] = Σ counts[0 … i) for i < n (CUB's device scan). With counts[n − 1] = 0, offsets[n − 1] is
// the total. `temp`/`tempBytes`: scratch (with temp = null only its size is returned in tempBytes).
cudaError_t launchExclusiveScan(const uint32_t* counts, uint32_t* offsets, int n, void* temp, size_t& tempBytes, cudaStream_t stream);
// Pass 3: the tile blocks and escapes of the rows' groups (escape offsets from the scan).
cudaError_t launchFusedWrite(const uint16_t* src, int rowBegin, int rows, const FusedView& m, cudaStream_t stream);

// ---- fused → BF16 --------------------------------------------------------------------------------------
// Rows [rowBegin, rowEnd) into out[(row − rowBegin)·ldo …] (ldo ≥ cols, a multiple of 8; out 16-byte aligned).
cudaError_t launchFusedUnpack(const FusedView& m, int rowBegin, int rowEnd, uint16_t* out, int ldo, cudaStream_t stream);
// Rows ids[0 … count) (device memory, e.g. token ids: an embedding lookup inside a CUDA graph) into
// out[i·cols …]; ids outside [0, rows) leave their row untouched.
cudaError_t launchFusedUnpackRows(const FusedView& m, const int32_t* ids, int count, uint16_t* out, cudaStream_t stream);

}  // namespace df11
