// Launch facts of each device (launch.h): whether it takes programmatic dependent launches (pdl.cuh),
// and its multiprocessor count. Each is looked up once per device.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "launch.h"

namespace df11 {
namespace {

constexpr int kMaxDevices = 64;

// `attribute` of the current device, from `cache` (0: not looked up yet); 0 when there is no device.
int cachedAttribute(int (&cache)[kMaxDevices], cudaDeviceAttr attribute) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return 0;
  if (cache[device] == 0) {
    int value = 0;
    cudaDeviceGetAttribute(&value, attribute, device);
    cache[device] = value;
  }
  return cache[device];
}

}  // namespace

bool pdlEnabled() {
  static const bool allowed = [] {
    const char* v = std::getenv("DF11_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  static int major[kMaxDevices] = {};
  return allowed && cachedAttribute(major, cudaDevAttrComputeCapabilityMajor) >= 9;
}

int multiprocessors() {
  static int sms[kMaxDevices] = {};
  const int n = cachedAttribute(sms, cudaDevAttrMultiProcessorCount);
  return n > 0 ? n : 1;
}

}  // namespace df11
