// The arguments linear, fusedLinear and fusedGemm share, read and checked one way for all three.
#pragma once
#include <napi.h>

#include "../kernels/inference.h"
#include "common.h"

namespace df11addon {

// Reads [x, ldx,] rows, bias, out, ldo, accumulate from info[first] on into a (x and ldx only withX; the
// fused GEMM reads x as BF16 instead), in that order; returns the index of the argument after them.
inline size_t readLinearArgs(const Napi::CallbackInfo& info, size_t first, bool withX, df11::LinearArgs& a) {
  size_t i = first;
  if (withX) {
    a.x = pointerArg<const float>(info, i++, "x");
    a.ldx = intArg(info, i++, "ldx");
  }
  a.rows = intArg(info, i++, "rows");
  a.bias = pointerArg<const float>(info, i++, "bias");
  a.out = pointerArg<float>(info, i++, "out");
  a.ldo = intArg(info, i++, "ldo");
  a.accumulate = info[i++].ToBoolean().Value();
  return i;
}

}  // namespace df11addon
