// Programmatic dependent launch (Hopper, sm_90+): a kernel launched with launchKernel may start while
// the kernel before it on the stream is still running. It must call pdlWait() before touching anything
// that kernel writes (or reads); the work before it — streaming weights into registers, mostly — overlaps
// the previous kernel's tail and the launch gap. pdlLaunchDependents() lets the next kernel start early.
// Inside CUDA graphs these become programmatic edges. On older GPUs both are no-ops and launches are
// ordinary. DF11_PDL=0 in the environment turns it off (for comparisons).
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "launch.h"

namespace df11 {

__device__ __forceinline__ void pdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdlLaunchDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, sharedBytes, stream>>>(args...), as a programmatic dependent launch where enabled.
template <typename... KernelArgs, typename... Args>
cudaError_t launchKernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = sharedBytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdlEnabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace df11
