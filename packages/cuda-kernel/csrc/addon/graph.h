// Graph: an instantiated CUDA graph (a recorded sequence of launches), replayed with launch(stream).
#pragma once
#include "common.h"

namespace df11addon {

class Graph : public Napi::ObjectWrap<Graph> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, cudaGraphExec_t exec);
  explicit Graph(const Napi::CallbackInfo& info);
  ~Graph() override;

 private:
  Napi::Value Launch(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace df11addon
