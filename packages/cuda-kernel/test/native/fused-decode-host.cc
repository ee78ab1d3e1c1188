// Host run of the GPU's fused-layout decode arithmetic (csrc/kernels/fused-decode.cuh: the same
// lookupExponents, assembleAll and escape-patch offsets the GEMV and unpack kernels use, with the byte
// permute emulated), one emulated warp per row-step. Reads a fused matrix written by the test
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
  uint32_t header[4];  // rows, cols, steps, escapes
  if (fread(header, 4, 4, in) != 4) return 2;
  const uint32_t rows = header[0], cols = header[1], steps = header[2], escapes = header[3];
  const auto data = readArray<uint8_t>(in, static_cast<size_t>(rows) * steps * kFusedStepBytes);
  const auto tables = readArray<uint8_t>(in, static_cast<size_t>(rows) * 8);
  const auto offsets = readArray<uint32_t>(in, static_cast<size_t>(rows) * steps + 1);
  const auto positions = readArray<uint16_t>(in, escapes);
  const auto exponents = readArray<uint8_t>(in, escapes);
  fclose(in);
  std::vector<uint16_t> out(static_cast<size_t>(rows) * cols);
  alignas(16) uint8_t patch[1024];
  for (uint32_t row = 0; row < rows; ++row) {
    uint2 table;
    std::memcpy(&table, &tables[row * 8], 8);
    for (uint32_t s = 0; s < steps; ++s) {
      const size_t step = static_cast<size_t>(row) * steps + s;
      const uint8_t* block = &data[step * kFusedStepBytes];
      FusedLane lanes[32];
      uint32_t e[32][8];
      for (uint32_t lane = 0; lane < 32; ++lane) {  // as loadFusedStep + lookupExponents
        FusedLane& l = lanes[lane];
        std::memcpy(&l.a, block + lane * 16, 16);
        std::memcpy(&l.b, block + 512 + lane * 16, 16);
        std::memcpy(&l.c0, block + 1024 + lane * 4, 4);
        std::memcpy(&l.c1, block + 1152 + lane * 4, 4);
        std::memcpy(&l.c2, block + 1280 + lane * 4, 4);
        lookupExponents(l, table, e[lane]);
      }
      const uint32_t begin = offsets[step], count = offsets[step + 1] - begin;
      if (count != 0) {  // as decodeFusedStep: store, patch, reload through the warp's area
        for (uint32_t lane = 0; lane < 32; ++lane) {
          const uint32_t swap = (lane >> 2) & 1;
          std::memcpy(patch + lane * 32 + swap * 16, &e[lane][0], 16);
          std::memcpy(patch + lane * 32 + (swap ^ 1) * 16, &e[lane][4], 16);
        }
        for (uint32_t i = 0; i < count; ++i) patch[patchOffsetOfPosition(positions[begin + i])] = exponents[begin + i];
        for (uint32_t lane = 0; lane < 32; ++lane) {
          const uint32_t swap = (lane >> 2) & 1;
          std::memcpy(&e[lane][0], patch + lane * 32 + swap * 16, 16);
          std::memcpy(&e[lane][4], patch + lane * 32 + (swap ^ 1) * 16, 16);
        }
      }
      for (uint32_t lane = 0; lane < 32; ++lane) {
        uint4 w[4];
        assembleAll(lanes[lane], e[lane], w);
        for (int u = 0; u < 4; ++u) {
          const uint32_t k = s * kFusedStep + u * 256 + lane * 8;
          if (k < cols) std::memcpy(&out[static_cast<size_t>(row) * cols + k], &w[u], 16);
        }
      }
    }
  }
  FILE* o = fopen(argv[2], "wb");
  if (!o || fwrite(out.data(), 2, out.size(), o) != out.size()) return 2;
  fclose(o);
  return 0;
}
