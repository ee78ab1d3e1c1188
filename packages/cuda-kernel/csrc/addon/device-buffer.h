// DeviceBuffer: one cudaMalloc allocation; upload/download (optionally ordered on a stream), fill, and
// its device address for the kernel launchers in ops.cc.
#pragma once
#include "common.h"

namespace df11addon {

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit DeviceBuffer(const Napi::CallbackInfo& info);
  ~DeviceBuffer() override;  // the safety net when JS forgets dispose()

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void check(Napi::Env env) const;

 private:
  void release();
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Download(const Napi::CallbackInfo& info);
  Napi::Value Fill(const Napi::CallbackInfo& info);
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value ByteLength(const Napi::CallbackInfo& info);
  Napi::Value Freed(const Napi::CallbackInfo& info);
  Napi::Value Address(const Napi::CallbackInfo& info);

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

DeviceBuffer* unwrapBuffer(const Napi::Value& v);

// Bytes held by DeviceBuffers on a device now, and the most held at once since the last reset (as
// torch's memory_allocated / max_memory_allocated: the CUDA context itself is not counted).
struct AllocationStats {
  double allocated;
  double peak;
};
AllocationStats allocationStats(int device);
// Every cudaMalloc / cudaFree of the addon reports here (bytes < 0 for a free).
void countAllocation(int device, long long bytes);
void resetPeakAllocation(int device);

}  // namespace df11addon
