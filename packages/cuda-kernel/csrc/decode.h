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
  const uint16_t* table;            // kTableSize entries: exponent | length << 8, 0 = take the LUTs
  const uint8_t* stream;            // encoded_exponent, zero-padded to a whole number of blocks + 16 B
  const uint8_t* signMantissa;      // [nElements]
  const uint32_t* outputPositions;  // [blocks + 1]
  const uint8_t* gaps;              // 5-bit packed, padded by 2 B
  int nLuts;
  uint32_t nElements;
  uint32_t blocks;
  uint32_t maxBlockElements;        // largest output_positions[k+1] - output_positions[k]
};

// Builds the first-level table from the LUTs (host side). Entry x is nonzero when the first 12 bits
// x determine a code of at most 12 bits whatever follows.
void buildFirstLevelTable(const uint8_t* luts, int nLuts, uint16_t* table);

// Dynamic shared memory the decode kernel needs for a module.
size_t decodeSharedBytes(const ModuleView& m);

// Decode a module into out[0 .. nElements) (BF16 bit patterns), asynchronously on `stream`.
cudaError_t launchDecode(const ModuleView& m, uint16_t* out, cudaStream_t stream);

}  // namespace df11
