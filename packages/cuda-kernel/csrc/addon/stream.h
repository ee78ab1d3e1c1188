// Stream: a CUDA stream; it also records CUDA graphs (beginCapture / endCapture → Graph).
#pragma once
#include "common.h"

namespace df11addon {

class Stream : public Napi::ObjectWrap<Stream> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Stream(const Napi::CallbackInfo& info);
  ~Stream() override;
  cudaStream_t get() const { return stream_; }

 private:
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value BeginCapture(const Napi::CallbackInfo& info);
  Napi::Value EndCapture(const Napi::CallbackInfo& info);
  Napi::Value WaitEvent(const Napi::CallbackInfo& info);
  cudaStream_t stream_ = nullptr;
};

// The stream named by a JS value: a Stream, or undefined/null for the default stream.
cudaStream_t streamOf(const Napi::Value& v);

}  // namespace df11addon
