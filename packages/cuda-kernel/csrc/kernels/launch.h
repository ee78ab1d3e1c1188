// Facts about the current device that kernel launches depend on, looked up once per device (host-safe:
// the addon's C++ includes it too). Defined in pdl.cu.
#pragma once

namespace df11 {

// Whether the current device takes programmatic dependent launches (compute capability ≥ 9.0, and not
// turned off with DF11_PDL=0): see pdl.cuh.
bool pdlEnabled();

// Streaming multiprocessors of the current device (sizes persistent and grid-stride grids).
int multiprocessors();

}  // namespace df11
