#include "device-buffer.h"

#include "stream.h"

namespace df11addon {

namespace {
constexpr int kMaxDevices = 64;
size_t gAllocated[kMaxDevices] = {};
size_t gPeak[kMaxDevices] = {};
}  // namespace

AllocationStats allocationStats(int device) {
  if (device < 0 || device >= kMaxDevices) return {0, 0};
  return {static_cast<double>(gAllocated[device]), static_cast<double>(gPeak[device])};
}

void countAllocation(int device, long long bytes) {
  if (device < 0 || device >= kMaxDevices) return;
  gAllocated[device] = static_cast<size_t>(static_cast<long long>(gAllocated[device]) + bytes);
  if (gAllocated[device] > gPeak[device]) gPeak[device] = gAllocated[device];
}

void resetPeakAllocation(int device) {
  if (device >= 0 && device < kMaxDevices) gPeak[device] = gAllocated[device];
}

Napi::FunctionReference DeviceBuffer::ctor;

void DeviceBuffer::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "DeviceBuffer",
                                 {InstanceMethod("upload", &DeviceBuffer::Upload), InstanceMethod("download", &DeviceBuffer::Download),
                                  InstanceMethod("fill", &DeviceBuffer::Fill), InstanceMethod("free", &DeviceBuffer::Free),
                                  InstanceAccessor("byteLength", &DeviceBuffer::ByteLength, nullptr), InstanceAccessor("freed", &DeviceBuffer::Freed, nullptr),
                                  InstanceAccessor("address", &DeviceBuffer::Address, nullptr)});
  ctor = Napi::Persistent(f);
  exports.Set("DeviceBuffer", f);
}

DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
  const double bytes = numberArg(info, 0, "byte length");
  if (!(bytes >= 0)) throw Napi::RangeError::New(info.Env(), "byte length must be ≥ 0");
  bytes_ = static_cast<size_t>(bytes);
  if (bytes_ > 0) {
    throwIfError(info.Env(), cudaMalloc(&ptr_, bytes_), "cudaMalloc");
    cudaGetDevice(&device_);
    countAllocation(device_, static_cast<long long>(bytes_));
  }
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::check(Napi::Env env) const {
  if (!ptr_ && bytes_ > 0) throw Napi::Error::New(env, "DeviceBuffer used after free()");
}

void DeviceBuffer::release() {
  if (!ptr_) return;
  cudaFree(ptr_);
  ptr_ = nullptr;
  countAllocation(device_, -static_cast<long long>(bytes_));
}

// upload(source, byteOffset = 0, stream?) — with a stream, ordered after the work queued on it.
Napi::Value DeviceBuffer::Upload(const Napi::CallbackInfo& info) {
  check(info.Env());
  Bytes src = viewOf(info[0], "source");
  const size_t offset = info.Length() > 1 && info[1].IsNumber() ? static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue()) : 0;
  if (offset + src.length > bytes_) throw Napi::RangeError::New(info.Env(), "upload runs past the end of the device buffer");
  uint8_t* dst = static_cast<uint8_t*>(ptr_) + offset;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    throwIfError(info.Env(), cudaMemcpyAsync(dst, src.data, src.length, cudaMemcpyHostToDevice, streamOf(info[2])), "cudaMemcpyAsync (upload)");
  } else {
    // From pageable memory cudaMemcpy may return before the last DMA lands; df11's streams do not wait
    // for the legacy stream, so wait here: without a stream, the bytes are on the device on return.
    throwIfError(info.Env(), cudaMemcpy(dst, src.data, src.length, cudaMemcpyHostToDevice), "cudaMemcpy (upload)");
    throwIfError(info.Env(), cudaStreamSynchronize(0), "cudaStreamSynchronize (upload)");
  }
  return info.Env().Undefined();
}

// download(target, byteOffset = 0, stream?) — returns when the bytes are in `target`.
Napi::Value DeviceBuffer::Download(const Napi::CallbackInfo& info) {
  check(info.Env());
  Bytes dst = viewOf(info[0], "target");
  const size_t offset = info.Length() > 1 && info[1].IsNumber() ? static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue()) : 0;
  if (offset + dst.length > bytes_) throw Napi::RangeError::New(info.Env(), "download runs past the end of the device buffer");
  const uint8_t* src = static_cast<uint8_t*>(ptr_) + offset;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    cudaStream_t s = streamOf(info[2]);
    throwIfError(info.Env(), cudaMemcpyAsync(dst.data, src, dst.length, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (download)");
    throwIfError(info.Env(), cudaStreamSynchronize(s), "cudaStreamSynchronize (download)");
  } else {
    throwIfError(info.Env(), cudaMemcpy(dst.data, src, dst.length, cudaMemcpyDeviceToHost), "cudaMemcpy (download)");
  }
  return info.Env().Undefined();
}

// fill(value, stream?) — with a stream, ordered on it; without, done before it returns (cudaMemset alone
// is asynchronous, and df11's streams do not wait for the legacy default stream).
Napi::Value DeviceBuffer::Fill(const Napi::CallbackInfo& info) {
  check(info.Env());
  const int value = info[0].As<Napi::Number>().Int32Value();
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    throwIfError(info.Env(), cudaMemsetAsync(ptr_, value, bytes_, streamOf(info[1])), "cudaMemsetAsync");
  } else {
    throwIfError(info.Env(), cudaMemset(ptr_, value, bytes_), "cudaMemset");
    throwIfError(info.Env(), cudaStreamSynchronize(0), "cudaStreamSynchronize (fill)");
  }
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }
Napi::Value DeviceBuffer::Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ptr_ == nullptr && bytes_ > 0); }
Napi::Value DeviceBuffer::Address(const Napi::CallbackInfo& info) {
  check(info.Env());
  return Napi::Number::New(info.Env(), addressOf(ptr_));
}

DeviceBuffer* unwrapBuffer(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(DeviceBuffer::ctor.Value())) throw Napi::TypeError::New(v.Env(), "expected a DeviceBuffer");
  DeviceBuffer* b = DeviceBuffer::Unwrap(v.As<Napi::Object>());
  b->check(v.Env());
  return b;
}

}  // namespace df11addon
