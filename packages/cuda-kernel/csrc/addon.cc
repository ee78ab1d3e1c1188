// Node-API bindings of the DFloat11 CUDA addon: devices, device buffers, streams, events, resident
// DF11 modules and the decode launch. Every CUDA failure becomes a JS Error with code "CUDA_ERROR".
#include <napi.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "decode.h"

namespace {

void throwIfError(Napi::Env env, cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear sticky-free errors so later calls are not blamed
  Napi::Error err = Napi::Error::New(env, std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  err.Set("code", Napi::String::New(env, "CUDA_ERROR"));
  err.Set("cudaError", Napi::Number::New(env, static_cast<double>(status)));
  throw err;
}

Napi::Object bytesOf(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a typed array");
  return v.As<Napi::Object>();
}

struct Bytes {
  uint8_t* data;
  size_t length;
};

Bytes viewOf(const Napi::Value& v, const char* name) {
  Napi::TypedArray a = bytesOf(v, name).As<Napi::TypedArray>();
  Napi::ArrayBuffer buf = a.ArrayBuffer();
  return {static_cast<uint8_t*>(buf.Data()) + a.ByteOffset(), a.ByteLength()};
}

// ---- DeviceBuffer ---------------------------------------------------------------------------------
class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "DeviceBuffer",
                                   {InstanceMethod("upload", &DeviceBuffer::Upload), InstanceMethod("download", &DeviceBuffer::Download),
                                    InstanceMethod("fill", &DeviceBuffer::Fill), InstanceMethod("free", &DeviceBuffer::Free),
                                    InstanceAccessor("byteLength", &DeviceBuffer::ByteLength, nullptr),
                                    InstanceAccessor("freed", &DeviceBuffer::Freed, nullptr)});
    ctor = Napi::Persistent(f);
    exports.Set("DeviceBuffer", f);
  }
  explicit DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 0)) throw Napi::RangeError::New(info.Env(), "byte length must be ≥ 0");
    bytes_ = static_cast<size_t>(bytes);
    if (bytes_ > 0) throwIfError(info.Env(), cudaMalloc(&ptr_, bytes_), "cudaMalloc");
  }
  ~DeviceBuffer() override { release(); }  // the safety net when JS forgets dispose()

  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void check(Napi::Env env) const {
    if (!ptr_ && bytes_ > 0) throw Napi::Error::New(env, "DeviceBuffer used after free()");
  }

 private:
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
  }
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    check(info.Env());
    Bytes src = viewOf(info[0], "source");
    const size_t offset = info.Length() > 1 ? static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue()) : 0;
    if (offset + src.length > bytes_) throw Napi::RangeError::New(info.Env(), "upload runs past the end of the device buffer");
    throwIfError(info.Env(), cudaMemcpy(static_cast<uint8_t*>(ptr_) + offset, src.data, src.length, cudaMemcpyHostToDevice), "cudaMemcpy (upload)");
    return info.Env().Undefined();
  }
  Napi::Value Download(const Napi::CallbackInfo& info) {
    check(info.Env());
    Bytes dst = viewOf(info[0], "target");
    const size_t offset = info.Length() > 1 ? static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue()) : 0;
    if (offset + dst.length > bytes_) throw Napi::RangeError::New(info.Env(), "download runs past the end of the device buffer");
    throwIfError(info.Env(), cudaMemcpy(dst.data, static_cast<uint8_t*>(ptr_) + offset, dst.length, cudaMemcpyDeviceToHost), "cudaMemcpy (download)");
    return info.Env().Undefined();
  }
  Napi::Value Fill(const Napi::CallbackInfo& info) {
    check(info.Env());
    throwIfError(info.Env(), cudaMemset(ptr_, info[0].As<Napi::Number>().Int32Value(), bytes_), "cudaMemset");
    return info.Env().Undefined();
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    release();
    return info.Env().Undefined();
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ptr_ == nullptr && bytes_ > 0); }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
Napi::FunctionReference DeviceBuffer::ctor;

DeviceBuffer* unwrapBuffer(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(DeviceBuffer::ctor.Value())) {
    throw Napi::TypeError::New(v.Env(), "expected a DeviceBuffer");
  }
  DeviceBuffer* b = DeviceBuffer::Unwrap(v.As<Napi::Object>());
  b->check(v.Env());
  return b;
}

// ---- Stream and Event -----------------------------------------------------------------------------
class Stream : public Napi::ObjectWrap<Stream> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "Stream", {InstanceMethod("synchronize", &Stream::Synchronize), InstanceMethod("destroy", &Stream::Destroy)});
    ctor = Napi::Persistent(f);
    exports.Set("Stream", f);
  }
  explicit Stream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stream>(info) {
    throwIfError(info.Env(), cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~Stream() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t get() const { return stream_; }

 private:
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    throwIfError(info.Env(), cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return info.Env().Undefined();
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    return info.Env().Undefined();
  }
  cudaStream_t stream_ = nullptr;
};
Napi::FunctionReference Stream::ctor;

cudaStream_t streamOf(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Stream::ctor.Value())) throw Napi::TypeError::New(v.Env(), "expected a Stream");
  return Stream::Unwrap(v.As<Napi::Object>())->get();
}

class Event : public Napi::ObjectWrap<Event> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "Event",
                                   {InstanceMethod("record", &Event::Record), InstanceMethod("synchronize", &Event::Synchronize),
                                    InstanceMethod("elapsedMs", &Event::ElapsedMs), InstanceMethod("destroy", &Event::Destroy)});
    ctor = Napi::Persistent(f);
    exports.Set("Event", f);
  }
  explicit Event(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Event>(info) {
    throwIfError(info.Env(), cudaEventCreate(&event_), "cudaEventCreate");
  }
  ~Event() override {
    if (event_) cudaEventDestroy(event_);
  }
  cudaEvent_t get() const { return event_; }

 private:
  Napi::Value Record(const Napi::CallbackInfo& info) {
    throwIfError(info.Env(), cudaEventRecord(event_, streamOf(info[0])), "cudaEventRecord");
    return info.Env().Undefined();
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    throwIfError(info.Env(), cudaEventSynchronize(event_), "cudaEventSynchronize");
    return info.Env().Undefined();
  }
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info) {
    Event* start = Event::Unwrap(info[0].As<Napi::Object>());
    float ms = 0;
    throwIfError(info.Env(), cudaEventElapsedTime(&ms, start->event_, event_), "cudaEventElapsedTime");
    return Napi::Number::New(info.Env(), ms);
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (event_) cudaEventDestroy(event_);
    event_ = nullptr;
    return info.Env().Undefined();
  }
  cudaEvent_t event_ = nullptr;
};
Napi::FunctionReference Event::ctor;

// ---- A resident DF11 module -----------------------------------------------------------------------
class Module : public Napi::ObjectWrap<Module> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "Module",
                                   {InstanceMethod("free", &Module::Free), InstanceAccessor("elements", &Module::Elements, nullptr),
                                    InstanceAccessor("deviceBytes", &Module::DeviceBytes, nullptr)});
    ctor = Napi::Persistent(f);
    exports.Set("Module", f);
  }

  // new Module({ luts, encodedExponent, signMantissa, outputPositions (Uint32Array), gaps })
  // The caller (TypeScript) has validated the module's structure.
  explicit Module(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Module>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    Bytes luts = viewOf(o.Get("luts"), "luts");
    Bytes stream = viewOf(o.Get("encodedExponent"), "encodedExponent");
    Bytes sm = viewOf(o.Get("signMantissa"), "signMantissa");
    Bytes op = viewOf(o.Get("outputPositions"), "outputPositions");
    Bytes gaps = viewOf(o.Get("gaps"), "gaps");
    const int nLuts = static_cast<int>(luts.length / 256);
    const uint32_t blocks = static_cast<uint32_t>((stream.length + df11::kThreadsPerBlock * df11::kBytesPerThread - 1) /
                                                  (df11::kThreadsPerBlock * df11::kBytesPerThread));
    std::vector<uint32_t> positions(blocks + 1, static_cast<uint32_t>(sm.length));
    std::memcpy(positions.data(), op.data, std::min(op.length, positions.size() * 4));  // official files may lack the last entry
    uint32_t maxSpan = 0;
    for (uint32_t k = 0; k < blocks; ++k) maxSpan = std::max(maxSpan, positions[k + 1] - positions[k]);
    std::vector<uint32_t> table(df11::kTableSize);
    std::vector<uint8_t> countTable(df11::kTableSize);
    df11::buildFirstLevelTable(luts.data, nLuts, table.data(), countTable.data());

    const size_t streamBytes = static_cast<size_t>(blocks) * df11::kThreadsPerBlock * df11::kBytesPerThread + 16;
    const size_t gapBytes = gaps.length + 2;
    const size_t smBytes = (sm.length + 16 + 255) & ~size_t{255};
    // One allocation, 256-byte aligned pieces.
    auto align = [](size_t x) { return (x + 255) & ~size_t{255}; };
    const size_t oLuts = 0, oTable = align(oLuts + luts.length), oCount = align(oTable + table.size() * 4), oStream = align(oCount + countTable.size()), oSm = align(oStream + streamBytes),
                 oOp = align(oSm + smBytes), oGaps = align(oOp + positions.size() * 4), total = align(oGaps + gapBytes);
    throwIfError(env, cudaMalloc(&base_, total), "cudaMalloc (module)");
    bytes_ = total;
    uint8_t* b = static_cast<uint8_t*>(base_);
    try {
      throwIfError(env, cudaMemset(base_, 0, total), "cudaMemset (module)");
      throwIfError(env, cudaMemcpy(b + oLuts, luts.data, luts.length, cudaMemcpyHostToDevice), "cudaMemcpy (luts)");
      throwIfError(env, cudaMemcpy(b + oTable, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy (table)");
      throwIfError(env, cudaMemcpy(b + oCount, countTable.data(), countTable.size(), cudaMemcpyHostToDevice), "cudaMemcpy (count table)");
      throwIfError(env, cudaMemcpy(b + oStream, stream.data, stream.length, cudaMemcpyHostToDevice), "cudaMemcpy (encoded_exponent)");
      throwIfError(env, cudaMemcpy(b + oSm, sm.data, sm.length, cudaMemcpyHostToDevice), "cudaMemcpy (sign_mantissa)");
      throwIfError(env, cudaMemcpy(b + oOp, positions.data(), positions.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy (output_positions)");
      throwIfError(env, cudaMemcpy(b + oGaps, gaps.data, gaps.length, cudaMemcpyHostToDevice), "cudaMemcpy (gaps)");
    } catch (...) {
      cudaFree(base_);
      base_ = nullptr;
      throw;
    }
    view_ = {b + oLuts, reinterpret_cast<const uint32_t*>(b + oTable), b + oCount, b + oStream, b + oSm, reinterpret_cast<const uint32_t*>(b + oOp), b + oGaps,
             nLuts, static_cast<uint32_t>(sm.length), blocks, maxSpan};
  }
  ~Module() override {
    if (base_) cudaFree(base_);
  }
  const df11::ModuleView& view(Napi::Env env) const {
    if (!base_) throw Napi::Error::New(env, "Module used after free()");
    return view_;
  }

 private:
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (base_) cudaFree(base_);
    base_ = nullptr;
    return info.Env().Undefined();
  }
  Napi::Value Elements(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), view_.nElements); }
  Napi::Value DeviceBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }
  void* base_ = nullptr;
  size_t bytes_ = 0;
  df11::ModuleView view_{};
};
Napi::FunctionReference Module::ctor;

// ---- Functions ------------------------------------------------------------------------------------
Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return Napi::Number::New(info.Env(), 0);
  }
  throwIfError(info.Env(), e, "cudaGetDeviceCount");
  return Napi::Number::New(info.Env(), n);
}

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  const int d = info[0].As<Napi::Number>().Int32Value();
  cudaDeviceProp p{};
  throwIfError(info.Env(), cudaGetDeviceProperties(&p, d), "cudaGetDeviceProperties");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("index", d);
  o.Set("name", p.name);
  o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
  o.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
  o.Set("multiprocessors", p.multiProcessorCount);
  o.Set("l2CacheBytes", p.l2CacheSize);
  o.Set("sharedMemoryPerBlockOptin", static_cast<double>(p.sharedMemPerBlockOptin));
  return o;
}

Napi::Value SetDevice(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaSetDevice(info[0].As<Napi::Number>().Int32Value()), "cudaSetDevice");
  return info.Env().Undefined();
}

Napi::Value MemInfo(const Napi::CallbackInfo& info) {
  size_t free = 0, total = 0;
  throwIfError(info.Env(), cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("free", static_cast<double>(free));
  o.Set("total", static_cast<double>(total));
  return o;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return info.Env().Undefined();
}

// decode(module, out, offsetElements?, stream?)
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Module::ctor.Value())) throw Napi::TypeError::New(env, "expected a Module");
  const df11::ModuleView& m = Module::Unwrap(info[0].As<Napi::Object>())->view(env);
  DeviceBuffer* out = unwrapBuffer(info[1]);
  const size_t offset = info.Length() > 2 && info[2].IsNumber() ? static_cast<size_t>(info[2].As<Napi::Number>().DoubleValue()) : 0;
  if ((offset + m.nElements) * 2 > out->bytes()) throw Napi::RangeError::New(env, "output buffer is too small for the module");
  if (offset % 8 != 0) throw Napi::RangeError::New(env, "output offset must be a multiple of 8 elements (16-byte stores)");
  throwIfError(env, df11::launchDecode(m, static_cast<uint16_t*>(out->ptr()) + offset, streamOf(info.Length() > 3 ? info[3] : env.Undefined())), "decode launch");
  return env.Undefined();
}

// copy(dst, src, bytes, stream?) — device to device
Napi::Value Copy(const Napi::CallbackInfo& info) {
  DeviceBuffer* dst = unwrapBuffer(info[0]);
  DeviceBuffer* src = unwrapBuffer(info[1]);
  const size_t bytes = static_cast<size_t>(info[2].As<Napi::Number>().DoubleValue());
  if (bytes > dst->bytes() || bytes > src->bytes()) throw Napi::RangeError::New(info.Env(), "copy runs past a buffer's end");
  throwIfError(info.Env(), cudaMemcpyAsync(dst->ptr(), src->ptr(), bytes, cudaMemcpyDeviceToDevice, streamOf(info.Length() > 3 ? info[3] : info.Env().Undefined())),
               "cudaMemcpyAsync");
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  DeviceBuffer::Init(env, exports);
  Stream::Init(env, exports);
  Event::Init(env, exports);
  Module::Init(env, exports);
  exports.Set("deviceCount", Napi::Function::New(env, DeviceCount));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo));
  exports.Set("setDevice", Napi::Function::New(env, SetDevice));
  exports.Set("memInfo", Napi::Function::New(env, MemInfo));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("decode", Napi::Function::New(env, Decode));
  exports.Set("copy", Napi::Function::New(env, Copy));
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  exports.Set("cudaRuntimeVersion", runtime);
  return exports;
}

}  // namespace

NODE_API_MODULE(df11_cuda, Init)
