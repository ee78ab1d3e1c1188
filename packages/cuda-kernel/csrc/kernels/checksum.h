// df11-sum64 (see checksum.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace df11 {

// Add the df11-sum64 lanes of `bytes` bytes at `data` (16-byte aligned), whose first word is word
// `firstWord` of the stream, to out[0] (lane a) and out[1] (lane b). Asynchronous on `stream`.
cudaError_t launchSum64(const void* data, uint64_t bytes, uint32_t firstWord, uint32_t* out, cudaStream_t stream);

}  // namespace df11
