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

// Decode a module into out[0 .. nElements) (BF16 bit patterns), asynchronously on `stream`.
cudaError_t launchDecode(const ModuleView& m, uint16_t* out, cudaStream_t stream);

}  // namespace df11
