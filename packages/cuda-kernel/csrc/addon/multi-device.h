// Free functions for a process that drives several GPUs: peer access between devices (direct loads,
// stores and copies over NVLink or PCIe). Which device is current: setDevice/getDevice in ops.cc.
#pragma once
#include "common.h"

namespace df11addon {

void InitMultiDevice(Napi::Env env, Napi::Object exports);

}  // namespace df11addon
