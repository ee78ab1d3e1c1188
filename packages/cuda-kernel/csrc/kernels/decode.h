// DFloat11 decode on the GPU: launch interface shared by the addon and the kernel.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace df11 {

constexpr int kThreadsPerBlock = 512;  // the format's threads_per_block
constexpr int kBytesPerThread = 8;     // the format's bytes_per_thread
constexpr int kTableBits = 12;         // first-level table: codes of up to 12 bits in one lookup
constexpr int kTableSize = 1 << kTableBits;

// Device pointers and sizes of one resident module.
struct ModuleView {
  const uint8_t* luts;              // [nLuts, 256], code lengths in the last row
  const uint32_t* table;            // kTableSize entries, see buildFirstLevelTable
  const uint8_t* countTable;        // kTableSize entries: codes wholly inside the next 12 bits (bits 0-2), their length (3-6)
  const uint8_t* stream;            // encoded_exponent, zero-padded to a whole number of blocks + 16 B
  const uint8_t* signMantissa;      // [nElements]
  const uint32_t* outputPositions;  // [blocks + 1]
  const uint8_t* gaps;              // 5-bit packed, padded by 2 B
  int nLuts;
  uint32_t nElements;
  uint32_t blocks;
  uint32_t maxBlockElements;        // largest output_positions[k+1] - output_positions[k]
};

// Builds the first-level table from the LUTs (host side). Entry x describes the codes that the next 12
// bits x determine whatever follows: up to 3 exponents (bits 0-7, 8-15, 16-23), their count (bits
// 24-25; 0 = the first code is longer than 12 bits, walk the LUTs) and their total length (bits 27-31).
// The count table holds, for the counting pass, up to 7 codes per entry (count | total length << 3).
void buildFirstLevelTable(const uint8_t* luts, int nLuts, uint32_t* table, uint8_t* countTable);

// Dynamic shared memory the decode kernel needs for a module.
size_t decodeSharedBytes(const ModuleView& m);

// Where a decode launch writes. Range mode (rowIds null): CUDA block b decodes DF11 block firstBlock + b
// and writes its elements g in [lo, hi) to out[g - lo]. Row mode: rows of rowElements elements chosen by
// device-resident ids (embedding lookup inside a CUDA graph); blocksPerRow CUDA blocks per row, row r
// written to out + r * rowElements. lo and rowElements must be multiples of 8, out 16-byte aligned.
struct DecodeTarget {
  uint32_t firstBlock;
  uint32_t lo, hi;
  const int32_t* rowIds;
  uint32_t rowElements;
  uint32_t blocksPerRow;
  uint16_t* out;
};

// Decode a module into out[0 .. nElements) (BF16 bit patterns), asynchronously on `stream`.
cudaError_t launchDecode(const ModuleView& m, uint16_t* out, cudaStream_t stream);

// Decode elements [lo, hi) into out[0 .. hi - lo): blocks firstBlock … firstBlock + blockCount − 1 are
// the ones whose output overlaps the window (the caller finds them in output_positions).
cudaError_t launchDecodeRange(const ModuleView& m, uint32_t firstBlock, uint32_t blockCount, uint32_t lo, uint32_t hi, uint16_t* out, cudaStream_t stream);

// Decode rows ids[0..rows) of a [*, rowElements] matrix into out[rows, rowElements].
cudaError_t launchDecodeRows(const ModuleView& m, const int32_t* rowIds, uint32_t rows, uint32_t rowElements, uint32_t blocksPerRow, uint16_t* out, cudaStream_t stream);

}  // namespace df11
