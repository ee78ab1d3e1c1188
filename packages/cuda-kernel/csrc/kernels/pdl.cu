// Whether programmatic dependent launches are used (pdl.cuh): per device, compute capability ≥ 9.0 and
// not turned off with DF11_PDL=0.
#include <cstdlib>
#include <cstring>

#include "pdl.cuh"

namespace df11 {

bool pdlEnabled() {
  static const bool allowed = [] {
    const char* v = std::getenv("DF11_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  static signed char byDevice[64] = {};  // 0 unknown, 1 yes, -1 no
  if (!allowed) return false;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return false;
  if (byDevice[device] == 0) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    byDevice[device] = major >= 9 ? 1 : -1;
  }
  return byDevice[device] > 0;
}

}  // namespace df11
