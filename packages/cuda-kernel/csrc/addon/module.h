// Module: a DF11 module resident on the GPU (its tensors plus the kernel's first-level tables), decoded
// whole, by element window, or by rows chosen on the device.
#pragma once
#include <unordered_map>
#include <vector>

#include "../kernels/decode.h"
#include "common.h"

namespace df11addon {

class Module : public Napi::ObjectWrap<Module> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Module(const Napi::CallbackInfo& info);
  ~Module() override;
  const df11::ModuleView& view(Napi::Env env) const;

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Elements(const Napi::CallbackInfo& info);
  Napi::Value DeviceBytes(const Napi::CallbackInfo& info);
  Napi::Value DecodeRange(const Napi::CallbackInfo& info);
  Napi::Value DecodeRows(const Napi::CallbackInfo& info);
  Napi::Value Stored(const Napi::CallbackInfo& info);
  uint32_t blockOf(uint32_t element) const;
  uint32_t blocksPerRow(uint32_t rowElements);

  void* base_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  void release();
  df11::ModuleView view_{};
  size_t streamBytes_ = 0, gapsBytes_ = 0;               // encoded_exponent and gaps as stored (before padding)
  std::vector<uint32_t> positions_;                      // host copy of output_positions (blocks + 1)
  std::unordered_map<uint32_t, uint32_t> rowSpans_;      // rowElements → most blocks one row spans
};

}  // namespace df11addon
