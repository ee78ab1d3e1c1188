// Host run of the GPU's fused-layout decode arithmetic (csrc/kernels/fused-decode.cuh: the same
// lookupExponents, assembleChunk and escape-patch offsets the GEMV and unpack kernels use, with the byte
// permute emulated), one emulated warp per tile. Reads a fused matrix written by the test
// (fused-decode-host.test.ts) and writes the BF16 matrix it decodes to.
// With `stage`: with the Hopper GEMM producers' decode arithmetic (decodeStageQuarter, zeroStageQuarter,
// stagePatch, applyStagePatch), 64 k × 128 rows at a time into a swizzled stage, then read back through
// the swizzle; exits 3 when a stage's k past the matrix is not zero. (The arithmetic only: the kernel's
// pipeline — tiles and escapes loaded ahead, K splits, column pieces — runs in the GPU tests.)
// Usage: fused-decode-host IN OUT [stage]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
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

// The GEMM producer's way: every 128-row block tile and 64-k stage.
static int decodeStages(uint32_t rows, uint32_t cols, uint32_t groups, uint32_t tiles, const std::vector<uint8_t>& data, const std::vector<uint8_t>& tables,
                        const std::vector<uint32_t>& offsets, const std::vector<uint16_t>& positions, const std::vector<uint8_t>& exponents, std::vector<uint16_t>& out) {
  std::vector<uint8_t> stage(128 * 128);
  for (uint32_t n0 = 0; n0 < rows; n0 += 128) {
    for (uint32_t k64 = 0; k64 * 64 < cols; ++k64) {
      std::fill(stage.begin(), stage.end(), 0xab);
      const uint32_t t = k64 >> 2;
      const int quarter = static_cast<int>(k64 & 3);
      for (int local = 0; local < 16; ++local) {
        const uint32_t group = n0 / 8 + local;
        const bool inside = group < groups;
        const uint8_t* block = inside ? &data[(static_cast<size_t>(group) * tiles + t) * kFusedTileBytes] : data.data();
        for (uint32_t lane = 0; lane < 32; ++lane) {
          if (!inside) {
            zeroStageQuarter(lane, stage.data(), local * 8);
            continue;
          }
          uint2 table;
          std::memcpy(&table, &tables[(group * 8 + (lane >> 2)) * 8], 8);
          const int kLeft = static_cast<int>(cols - k64 * 64);  // as the kernel: the masking variant for the last stage only
          if (kLeft >= 64) decodeStageQuarter<false>(block, table, quarter, lane, kLeft, stage.data(), local * 8);
          else decodeStageQuarter<true>(block, table, quarter, lane, kLeft, stage.data(), local * 8);
        }
        if (!inside) continue;
        const size_t tile = static_cast<size_t>(group) * tiles + t;
        for (uint32_t i = offsets[tile]; i < offsets[tile + 1]; ++i)
          applyStagePatch(stagePatch(positions[i] | (static_cast<uint32_t>(exponents[i]) << 16), local * 8), quarter, stage.data());
      }
      for (uint32_t r = 0; r < 128; ++r) {
        for (uint32_t k = 0; k < 64; ++k) {
          uint16_t v;
          std::memcpy(&v, &stage[stageOffset(static_cast<int>(r), static_cast<int>(k))], 2);
          const uint32_t n = n0 + r, kk = k64 * 64 + k;
          if (n / 8 < groups && kk >= cols && v != 0) return 3;
          if (n < rows && kk < cols) out[static_cast<size_t>(n) * cols + kk] = v;
        }
      }
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 4 && !std::strcmp(argv[3], "stage"))) return 2;
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
  if (argc == 4) {
    const int status = decodeStages(rows, cols, groups, tiles, data, tables, offsets, positions, exponents, out);
    if (status != 0) return status;
    FILE* o = fopen(argv[2], "wb");
    if (!o || fwrite(out.data(), 2, out.size(), o) != out.size()) return 2;
    fclose(o);
    return 0;
  }
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
