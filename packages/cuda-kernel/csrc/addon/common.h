// Helpers shared by the addon's classes: CUDA errors as JS errors, typed-array views, argument reading.
#pragma once
#include <napi.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace df11addon {

// Throws a JS Error with code "CUDA_ERROR" (and "CUDA_OUT_OF_MEMORY" for allocation failures).
inline void throwIfError(Napi::Env env, cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear non-sticky errors so later calls are not blamed
  Napi::Error err = Napi::Error::New(env, std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  err.Set("code", Napi::String::New(env, status == cudaErrorMemoryAllocation ? "CUDA_OUT_OF_MEMORY" : "CUDA_ERROR"));
  err.Set("cudaError", Napi::Number::New(env, static_cast<double>(status)));
  throw err;
}

struct Bytes {
  uint8_t* data;
  size_t length;
};

inline Bytes viewOf(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a typed array");
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer buf = a.ArrayBuffer();
  return {static_cast<uint8_t*>(buf.Data()) + a.ByteOffset(), a.ByteLength()};
}

inline double numberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline int intArg(const Napi::CallbackInfo& info, size_t i, const char* name) { return static_cast<int>(numberArg(info, i, name)); }

// A device address passed from JS as a number (exact below 2^53); 0 is null.
template <typename T>
T* pointerArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(numberArg(info, i, name)));
}

inline double addressOf(const void* p) { return static_cast<double>(reinterpret_cast<uintptr_t>(p)); }

}  // namespace df11addon
