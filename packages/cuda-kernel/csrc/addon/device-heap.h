// DeviceHeap: device memory handed out by a bump allocator over reserved virtual address ranges, whose physical memory is
// mapped in on demand, a few granules at a time (CUDA driver API, "Virtual Memory Management": cuMemAddressReserve,
// cuMemCreate, cuMemMap, cuMemSetAccess). cudaMalloc rounds mid-sized allocations up to 2 MiB pages (on an H200,
// 100 × (3 MiB + 4 KiB) take 419 MB for 315 MB asked); the heap wastes less than one granule per range. Allocations are
// not freed one by one: free() releases the whole heap. The driver functions come from the runtime's entry points (the
// addon does not link libcuda), and nothing here runs when the addon loads.
#pragma once
#include <cuda.h>

#include <vector>

#include "common.h"

namespace df11addon {

class DeviceHeap : public Napi::ObjectWrap<DeviceHeap> {
 public:
  static Napi::FunctionReference ctor;
  // Registers the class and the free function virtualMemorySupported().
  static void Init(Napi::Env env, Napi::Object exports);
  explicit DeviceHeap(const Napi::CallbackInfo& info);
  ~DeviceHeap() override;  // the safety net when JS forgets dispose()

 private:
  // One cuMemCreate, mapped at `at`.
  struct Mapping {
    CUmemGenericAllocationHandle handle;
    CUdeviceptr at;
    size_t bytes;
  };
  // One cuMemAddressReserve, [base, base + bytes): [base, base + mapped) is mapped, the bump pointer is base + used.
  struct Range {
    CUdeviceptr base;
    size_t bytes;
    size_t used;
    size_t mapped;
    std::vector<Mapping> mappings;
  };

  void reserve(Napi::Env env, size_t bytes);
  void map(Napi::Env env, Range& r, size_t end, size_t request);
  void release();
  void check(Napi::Env env) const;
  Napi::Value Alloc(const Napi::CallbackInfo& info);
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value MappedBytes(const Napi::CallbackInfo& info);
  Napi::Value UsedBytes(const Napi::CallbackInfo& info);
  Napi::Value ReservedBytes(const Napi::CallbackInfo& info);
  Napi::Value Granularity(const Napi::CallbackInfo& info);
  Napi::Value Freed(const Napi::CallbackInfo& info);

  int device_ = 0;
  size_t granularity_ = 0;
  size_t reserveBytes_ = 0;  // the size of a range (a larger request gets a range of its own size)
  size_t mapped_ = 0;
  size_t used_ = 0;
  size_t reserved_ = 0;
  bool freed_ = false;
  std::vector<Range> ranges_;
};

}  // namespace df11addon
