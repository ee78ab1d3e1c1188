// Kernel launchers of the DF11 fused layout (csrc/kernels/fused.h, launchFusedGemv): transcoding on the
// GPU, unpacking, and the fused GEMV. Arguments are device addresses; the TypeScript layer
// (src/backend/formats/fused.ts) owns the buffers and checks them.
#pragma once
#include "common.h"

namespace df11addon {

void InitFusedOps(Napi::Env env, Napi::Object exports);

}  // namespace df11addon
