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
};

DeviceBuffer* unwrapBuffer(const Napi::Value& v);

}  // namespace df11addon
