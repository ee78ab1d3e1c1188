// PinnedBuffer: page-locked host memory (cudaHostAlloc) seen from JS as an ArrayBuffer: files are read
// straight into it and copied to the device asynchronously (DMA), overlapping the next read; offloaded
// layers live in it and are copied to device addresses on a stream (copyToDevice / copyFromDevice).
#pragma once
#include "common.h"

namespace df11addon {

class PinnedBuffer : public Napi::ObjectWrap<PinnedBuffer> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit PinnedBuffer(const Napi::CallbackInfo& info);
  ~PinnedBuffer() override;

 private:
  void release();
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value ByteLength(const Napi::CallbackInfo& info);
  Napi::Value CopyFromDevice(const Napi::CallbackInfo& info);
  Napi::Value CopyToDevice(const Napi::CallbackInfo& info);
  uint8_t* range(const Napi::CallbackInfo& info, size_t offsetArg, size_t bytesArg) const;

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

}  // namespace df11addon
