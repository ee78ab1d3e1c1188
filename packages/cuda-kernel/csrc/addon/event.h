// Event: a CUDA event, for timing and ordering work on the GPU.
#pragma once
#include "common.h"

namespace df11addon {

class Event : public Napi::ObjectWrap<Event> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Event(const Napi::CallbackInfo& info);
  ~Event() override;
  cudaEvent_t get() const { return event_; }

 private:
  Napi::Value Record(const Napi::CallbackInfo& info);
  Napi::Value Synchronize(const Napi::CallbackInfo& info);
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  cudaEvent_t event_ = nullptr;
};

cudaEvent_t eventOf(const Napi::Value& v);

}  // namespace df11addon
