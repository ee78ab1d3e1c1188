#include "pinned-buffer.h"

namespace df11addon {

Napi::FunctionReference PinnedBuffer::ctor;

void PinnedBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "PinnedBuffer",
                                 {InstanceAccessor("buffer", &PinnedBuffer::Buffer, nullptr), InstanceMethod("free", &PinnedBuffer::Free),
                                  InstanceAccessor("byteLength", &PinnedBuffer::ByteLength, nullptr)});
  ctor = Napi::Persistent(f);
  exports.Set("PinnedBuffer", f);
}

PinnedBuffer::PinnedBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PinnedBuffer>(info) {
  const double bytes = numberArg(info, 0, "byte length");
  if (!(bytes >= 1)) throw Napi::RangeError::New(info.Env(), "byte length must be ≥ 1");
  bytes_ = static_cast<size_t>(bytes);
  throwIfError(info.Env(), cudaHostAlloc(&ptr_, bytes_, cudaHostAllocPortable), "cudaHostAlloc");
  // The ArrayBuffer does not own the memory: free() detaches it first, so JS never sees freed memory.
  buffer_ = Napi::Persistent(Napi::ArrayBuffer::New(info.Env(), ptr_, bytes_));
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_) cudaFreeHost(ptr_);
  ptr_ = nullptr;
}

void PinnedBuffer::release() {
  if (!ptr_) return;
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer b = buffer_.Value();
    if (!b.IsDetached()) b.Detach();
    buffer_.Reset();
  }
  cudaFreeHost(ptr_);
  ptr_ = nullptr;
}

Napi::Value PinnedBuffer::Buffer(const Napi::CallbackInfo& info) {
  if (!ptr_) throw Napi::Error::New(info.Env(), "PinnedBuffer used after free()");
  return buffer_.Value();
}

Napi::Value PinnedBuffer::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value PinnedBuffer::ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }

}  // namespace df11addon
