// Free functions of the addon: devices and memory, copies, and the kernel launchers (arguments are
// device addresses and sizes; the TypeScript layer checks them against its buffers).
#pragma once
#include "common.h"

namespace df11addon {

void InitOps(Napi::Env env, Napi::Object exports);

}  // namespace df11addon
