// Free functions for a process that drives several GPUs: which device is current, and peer access
// between devices (direct loads/stores and copies over NVLink or PCIe). Existing calls keep working on
// the current device; these only add what a multi-GPU caller needs to choose and restore it.
#pragma once
#include "common.h"

namespace df11addon {

void InitMultiDevice(Napi::Env env, Napi::Object exports);

}  // namespace df11addon
