// Registration of the DFloat11 CUDA addon: each JS-visible class lives in its own file; the free
// functions (devices, copies, kernel launchers) in ops.cc. CUDA failures become JS errors with
// code "CUDA_ERROR" (or "CUDA_OUT_OF_MEMORY").
#include "device-buffer.h"
#include "device-heap.h"
#include "event.h"
#include "fused-ops.h"
#include "graph.h"
#include "module.h"
#include "multi-device.h"
#include "nccl-clique.h"
#include "ops.h"
#include "pinned-buffer.h"
#include "stream.h"

namespace df11addon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  DeviceBuffer::Init(env, exports);
  DeviceHeap::Init(env, exports);
  Stream::Init(env, exports);
  Event::Init(env, exports);
  Graph::Init(env, exports);
  Module::Init(env, exports);
  PinnedBuffer::Init(env, exports);
  InitOps(env, exports);
  InitFusedOps(env, exports);
  InitMultiDevice(env, exports);
  NcclClique::Init(env, exports);
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  exports.Set("cudaRuntimeVersion", runtime);
  return exports;
}

}  // namespace df11addon

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return df11addon::Init(env, exports); }

NODE_API_MODULE(df11_cuda, InitAddon)
