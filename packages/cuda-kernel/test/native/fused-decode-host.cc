// Host run of the GPU's fused-layout decode arithmetic (csrc/kernels/fused-decode.cuh: the same
// lookupExponents, assembleChunk and escape-patch offsets the GEMV and unpack kernels use, with the byte
// permute emulated), one emulated warp per tile. Reads a fused matrix written by the test
// (fused-decode-host.test.ts) and writes the BF16 matrix it decodes to.
// Usage: fused-decode-host IN OUT
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../csrc/kernels/fused-decode.cuh"

using namespace df11;

template <typename T>
static std::vector<T> readArray(FILE* f, size_t n) {
  std::vector<T> v(n);
  if (n && fread(v.data(), sizeof(T), n, f) != n) {
    fprintf(stderr, "short read\n");
    std::exit(2);
  }
  return v;
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  FILE* in = fopen(argv[1], "rb");
  if (!in) return 2;
  uint32_t header[5];  // rows, cols, groups, tiles, escapes
  if (fread(header, 4, 5, in) != 5) return 2;
  const uint32_t rows = header[0], cols = header[1], groups = header[2], tiles = header[3], escapes = header[4];
  const auto data = readArray<uint8_t>(in, static_cast<size_t>(groups) * tiles * kFusedTileBytes);
  const auto tables = readArray<uint8_t>(in, static_cast<size_t>(groups) * 8 * 8);
  const auto offsets = readArray<uint32_t>(in, static_cast<size_t>(groups) * tiles + 1);
  const auto positions = readArray<uint16_t>(in, escapes);
  const auto exponents = readArray<uint8_t>(in, escapes);
  fclose(in);
  std::vector<uint16_t> out(static_cast<size_t>(rows) * cols);
  alignas(16) uint8_t patch[2048];
  for (uint32_t group = 0; group < groups; ++group) {
    for (uint32_t t = 0; t < tiles; ++t) {
      const size_t tile = static_cast<size_t>(group) * tiles + t;
      const uint8_t* block = &data[tile * kFusedTileBytes];
      FusedLane lanes[32];
      uint32_t e[32][16];
      for (uint32_t lane = 0; lane < 32; ++lane) {  // as loadFusedTile + lookupExponents
        FusedLane& l = lanes[lane];
        for (int j = 0; j < 4; ++j) std::memcpy(&l.sm[j], block + 512 * j + 16 * lane, 16);
        for (int w = 0; w < 6; ++w) std::memcpy(&l.code[w], block + 2048 + 128 * w + 4 * lane, 4);
        uint2 table;
        std::memcpy(&table, &tables[(group * 8 + (lane >> 2)) * 8], 8);
        lookupExponents(l, table, e[lane]);
      }
      const uint32_t begin = offsets[tile], count = offsets[tile + 1] - begin;
      if (count != 0) {  // as fusedExponents: store, patch, reload through the warp's area
        for (uint32_t lane = 0; lane < 32; ++lane)
          for (uint32_t j = 0; j < 4; ++j) std::memcpy(patch + patchOffset(lane, 16 * j), &e[lane][4 * j], 16);
        for (uint32_t i = 0; i < count; ++i) patch[patchOffsetOfPosition(positions[begin + i])] = exponents[begin + i];
        for (uint32_t lane = 0; lane < 32; ++lane)
          for (uint32_t j = 0; j < 4; ++j) std::memcpy(&e[lane][4 * j], patch + patchOffset(lane, 16 * j), 16);
      }
      for (uint32_t lane = 0; lane < 32; ++lane) {
        const uint32_t n = group * 8 + (lane >> 2);
        if (n >= rows) continue;
        for (int c = 0; c < 8; ++c) {
          const uint4 v = assembleChunk(lanes[lane], e[lane], c);
          const uint32_t k = t * kFusedTileK + 32 * c + 8 * (lane & 3);
          if (k < cols) std::memcpy(&out[static_cast<size_t>(n) * cols + k], &v, 16);
        }
      }
    }
  }
  FILE* o = fopen(argv[2], "wb");
  if (!o || fwrite(out.data(), 2, out.size(), o) != out.size()) return 2;
  fclose(o);
  return 0;
}
