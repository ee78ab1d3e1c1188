#include "pinned-buffer.h"

#include "stream.h"

namespace df11addon {

Napi::FunctionReference PinnedBuffer::ctor;

void PinnedBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "PinnedBuffer",
                                 {InstanceAccessor("buffer", &PinnedBuffer::Buffer, nullptr), InstanceMethod("free", &PinnedBuffer::Free),
                                  InstanceMethod("copyFromDevice", &PinnedBuffer::CopyFromDevice), InstanceMethod("copyToDevice", &PinnedBuffer::CopyToDevice),
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

// The host range [offset, offset + bytes) of the buffer, checked.
uint8_t* PinnedBuffer::range(const Napi::CallbackInfo& info, size_t offsetArg, size_t bytesArg) const {
  if (!ptr_) throw Napi::Error::New(info.Env(), "PinnedBuffer used after free()");
  const double offset = numberArg(info, offsetArg, "byte offset");
  const double bytes = numberArg(info, bytesArg, "byte length");
  if (!(offset >= 0) || !(bytes >= 0) || offset + bytes > static_cast<double>(bytes_)) throw Napi::RangeError::New(info.Env(), "the copy runs past the end of the pinned buffer");
  return static_cast<uint8_t*>(ptr_) + static_cast<size_t>(offset);
}

// copyFromDevice(byteOffset, srcAddress, bytes, stream) — device memory into this buffer, asynchronous on
// the stream (page-locked memory: a DMA that does not block the host).
Napi::Value PinnedBuffer::CopyFromDevice(const Napi::CallbackInfo& info) {
  uint8_t* dst = range(info, 0, 2);
  const size_t bytes = static_cast<size_t>(numberArg(info, 2, "byte length"));
  throwIfError(info.Env(), cudaMemcpyAsync(dst, pointerArg<const void>(info, 1, "src"), bytes, cudaMemcpyDeviceToHost, streamOf(info[3])), "cudaMemcpyAsync (pinned from device)");
  return info.Env().Undefined();
}

// copyToDevice(dstAddress, byteOffset, bytes, stream) — bytes of this buffer to device memory, asynchronous
// on the stream; inside a stream capture it becomes a memcpy node of the graph (legal from pinned memory).
Napi::Value PinnedBuffer::CopyToDevice(const Napi::CallbackInfo& info) {
  const uint8_t* src = range(info, 1, 2);
  const size_t bytes = static_cast<size_t>(numberArg(info, 2, "byte length"));
  throwIfError(info.Env(), cudaMemcpyAsync(pointerArg<void>(info, 0, "dst"), src, bytes, cudaMemcpyHostToDevice, streamOf(info[3])), "cudaMemcpyAsync (pinned to device)");
  return info.Env().Undefined();
}

Napi::Value PinnedBuffer::ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }

}  // namespace df11addon
