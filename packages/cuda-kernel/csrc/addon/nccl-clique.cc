#include "nccl-clique.h"

#include <dlfcn.h>

#include "stream.h"

namespace df11addon {
namespace {

// The part of nccl.h this file uses (values as in NVIDIA/nccl src/nccl.h.in; NCCL keeps them stable).
using ncclComm_t = ncclComm*;
enum ncclResult_t : int { ncclSuccess = 0 };
enum ncclDataType_t : int { ncclInt32 = 2, ncclFloat32 = 7, ncclBfloat16 = 9 };
enum ncclRedOp_t : int { ncclSum = 0, ncclMax = 2 };

struct NcclApi {
  void* handle = nullptr;
  std::string path;
  int version = 0;
  ncclResult_t (*getVersion)(int*) = nullptr;
  const char* (*getErrorString)(ncclResult_t) = nullptr;
  const char* (*getLastError)(ncclComm_t) = nullptr;  // NCCL >= 2.13; optional
  ncclResult_t (*commInitAll)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*commDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*allReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*allGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*groupStart)() = nullptr;
  ncclResult_t (*groupEnd)() = nullptr;
};

NcclApi api;  // loaded once per process; never unloaded (communicators may outlive any one caller)

Napi::Error unavailable(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, "NCCL_UNAVAILABLE"));
  return err;
}

// A failed NCCL call as a JS Error with code "NCCL_ERROR", NCCL's own words and its last detailed message.
[[noreturn]] void throwNccl(Napi::Env env, ncclResult_t r, const std::string& what, ncclComm_t comm) {
  std::string message = what + ": " + (api.getErrorString ? api.getErrorString(r) : "NCCL error") + " (ncclResult_t " + std::to_string(r) + ")";
  if (api.getLastError) {
    const char* last = api.getLastError(comm);
    if (last && *last) message += ": " + std::string(last);
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, "NCCL_ERROR"));
  err.Set("ncclResult", Napi::Number::New(env, r));
  throw err;
}

template <typename F>
void resolve(void* handle, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(handle, name));
}

ncclDataType_t dataTypeArg(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "float32") return ncclFloat32;
  if (s == "bfloat16") return ncclBfloat16;
  if (s == "int32") return ncclInt32;
  throw Napi::TypeError::New(v.Env(), "dtype must be \"float32\", \"bfloat16\" or \"int32\"");
}

ncclRedOp_t redOpArg(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "sum") return ncclSum;
  if (s == "max") return ncclMax;
  throw Napi::TypeError::New(v.Env(), "op must be \"sum\" or \"max\"");
}

size_t countArg(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<size_t>(d))) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a non-negative integer");
  return static_cast<size_t>(d);
}

// One device address per rank, from a JS array of numbers.
std::vector<void*> addressesArg(const Napi::Value& v, size_t ranks, const char* name) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != ranks) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an array with one device address per rank");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<void*> out(ranks);
  for (uint32_t i = 0; i < ranks; i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must hold device addresses (numbers)");
    out[i] = reinterpret_cast<void*>(static_cast<uintptr_t>(e.As<Napi::Number>().DoubleValue()));
  }
  return out;
}

// One stream per rank (a Stream, or undefined/null for that device's default stream).
std::vector<cudaStream_t> streamsArg(const Napi::Value& v, size_t ranks) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != ranks) throw Napi::TypeError::New(v.Env(), "streams must be an array with one entry (a Stream or undefined) per rank");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<cudaStream_t> out(ranks);
  for (uint32_t i = 0; i < ranks; i++) out[i] = streamOf(a.Get(i));
  return out;
}

// The arguments every collective starts with: (sends, recvs, count, dtype, …).
struct CollectiveArgs {
  std::vector<void*> send, recv;
  size_t count;
  ncclDataType_t dtype;
};

CollectiveArgs collectiveArgs(const Napi::CallbackInfo& info, size_t ranks, const char* countName) {
  return {addressesArg(info[0], ranks, "sends"), addressesArg(info[1], ranks, "recvs"), countArg(info[2], countName), dataTypeArg(info[3])};
}

// Keeps the calling thread's current device across NCCL calls, which set devices of their own (init,
// launches, destroy) and do not always put the caller's back.
class DeviceGuard {
 public:
  DeviceGuard() { cudaGetDevice(&device_); }
  ~DeviceGuard() { cudaSetDevice(device_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_ = 0;
};

// Issue one call per rank inside a group (what a single thread driving several GPUs must do), always
// closing the group; reports the first failure.
template <typename Issue>
void grouped(Napi::Env env, const std::vector<ncclComm_t>& comms, const char* what, Issue issue) {
  DeviceGuard keep;
  ncclResult_t r = api.groupStart();
  if (r != ncclSuccess) throwNccl(env, r, "ncclGroupStart", nullptr);
  ncclResult_t first = ncclSuccess;
  size_t failed = 0;
  for (size_t i = 0; i < comms.size(); i++) {
    r = issue(i, comms[i]);
    if (r != ncclSuccess && first == ncclSuccess) first = r, failed = i;
  }
  r = api.groupEnd();
  if (first != ncclSuccess) throwNccl(env, first, std::string(what) + " (rank " + std::to_string(failed) + ")", comms[failed]);
  if (r != ncclSuccess) throwNccl(env, r, std::string(what) + " (ncclGroupEnd)", nullptr);
}

}  // namespace

void NcclClique::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NcclClique",
                                 {StaticMethod("load", &NcclClique::Load), InstanceMethod("allReduce", &NcclClique::AllReduce),
                                  InstanceMethod("allGather", &NcclClique::AllGather), InstanceMethod("broadcast", &NcclClique::Broadcast),
                                  InstanceMethod("destroy", &NcclClique::Destroy), InstanceAccessor("size", &NcclClique::Size, nullptr)});
  exports.Set("NcclClique", f);
}

// NcclClique.load(path) → { path, version }: dlopen NCCL (once per process; later calls return the library
// already loaded). Throws code "NCCL_UNAVAILABLE" with dlopen's reason or the missing symbol.
Napi::Value NcclClique::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!api.handle) {
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = dlerror();
      throw unavailable(env, why ? why : (path + ": dlopen failed"));
    }
    NcclApi loaded;
    loaded.handle = handle;
    loaded.path = path;
    resolve(handle, "ncclGetVersion", loaded.getVersion);
    resolve(handle, "ncclGetErrorString", loaded.getErrorString);
    resolve(handle, "ncclGetLastError", loaded.getLastError);
    resolve(handle, "ncclCommInitAll", loaded.commInitAll);
    resolve(handle, "ncclCommDestroy", loaded.commDestroy);
    resolve(handle, "ncclAllReduce", loaded.allReduce);
    resolve(handle, "ncclAllGather", loaded.allGather);
    resolve(handle, "ncclBroadcast", loaded.broadcast);
    resolve(handle, "ncclGroupStart", loaded.groupStart);
    resolve(handle, "ncclGroupEnd", loaded.groupEnd);
    const std::pair<const char*, bool> required[] = {
        {"ncclGetVersion", loaded.getVersion != nullptr}, {"ncclGetErrorString", loaded.getErrorString != nullptr},
        {"ncclCommInitAll", loaded.commInitAll != nullptr}, {"ncclCommDestroy", loaded.commDestroy != nullptr},
        {"ncclAllReduce", loaded.allReduce != nullptr},     {"ncclAllGather", loaded.allGather != nullptr},
        {"ncclBroadcast", loaded.broadcast != nullptr},     {"ncclGroupStart", loaded.groupStart != nullptr},
        {"ncclGroupEnd", loaded.groupEnd != nullptr},
    };
    for (const auto& [name, found] : required) {
      if (!found) {
        dlclose(handle);
        throw unavailable(env, path + " has no symbol " + name + " (not an NCCL library?)");
      }
    }
    const ncclResult_t r = loaded.getVersion(&loaded.version);
    if (r != ncclSuccess) {
      dlclose(handle);
      throw unavailable(env, path + ": ncclGetVersion failed (ncclResult_t " + std::to_string(r) + ")");
    }
    api = loaded;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", api.path);
  o.Set("version", api.version);
  return o;
}

// new NcclClique(devices): one communicator per listed device, rank i on devices[i]. The current device is
// left as it was.
NcclClique::NcclClique(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NcclClique>(info) {
  Napi::Env env = info.Env();
  if (!api.handle) throw unavailable(env, "NCCL is not loaded (NcclClique.load(path) first)");
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) throw Napi::TypeError::New(env, "devices must be a non-empty array of device indices");
  Napi::Array a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!a.Get(i).IsNumber()) throw Napi::TypeError::New(env, "devices must hold device indices (numbers)");
    devices_.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  comms_.assign(devices_.size(), nullptr);
  ncclResult_t r;
  {
    DeviceGuard keep;
    r = api.commInitAll(comms_.data(), static_cast<int>(devices_.size()), devices_.data());
  }
  if (r != ncclSuccess) {
    comms_.clear();
    throwNccl(env, r, "ncclCommInitAll", nullptr);
  }
}

void NcclClique::release() {
  DeviceGuard keep;
  for (ncclComm_t c : comms_)
    if (c) api.commDestroy(c);
  comms_.clear();
}

void NcclClique::checkOpen(Napi::Env env) const {
  if (comms_.empty()) throw Napi::Error::New(env, "NcclClique was used after destroy()");
}

// allReduce(sends, recvs, count, dtype, op, streams): per rank, recv = op over ranks of send (count
// elements; send == recv is in place).
Napi::Value NcclClique::AllReduce(const Napi::CallbackInfo& info) {
  checkOpen(info.Env());
  const auto a = collectiveArgs(info, comms_.size(), "count");
  const ncclRedOp_t op = redOpArg(info[4]);
  const auto streams = streamsArg(info[5], comms_.size());
  grouped(info.Env(), comms_, "ncclAllReduce", [&](size_t i, ncclComm_t c) { return api.allReduce(a.send[i], a.recv[i], a.count, a.dtype, op, c, streams[i]); });
  return info.Env().Undefined();
}

// allGather(sends, recvs, sendCount, dtype, streams): per rank, recv[r * sendCount …] = send of rank r.
Napi::Value NcclClique::AllGather(const Napi::CallbackInfo& info) {
  checkOpen(info.Env());
  const auto a = collectiveArgs(info, comms_.size(), "sendCount");
  const auto streams = streamsArg(info[4], comms_.size());
  grouped(info.Env(), comms_, "ncclAllGather", [&](size_t i, ncclComm_t c) { return api.allGather(a.send[i], a.recv[i], a.count, a.dtype, c, streams[i]); });
  return info.Env().Undefined();
}

// broadcast(sends, recvs, count, dtype, root, streams): per rank, recv = send of rank `root`.
Napi::Value NcclClique::Broadcast(const Napi::CallbackInfo& info) {
  checkOpen(info.Env());
  const auto a = collectiveArgs(info, comms_.size(), "count");
  const int root = intArg(info, 4, "root");
  const auto streams = streamsArg(info[5], comms_.size());
  grouped(info.Env(), comms_, "ncclBroadcast", [&](size_t i, ncclComm_t c) { return api.broadcast(a.send[i], a.recv[i], a.count, a.dtype, root, c, streams[i]); });
  return info.Env().Undefined();
}

Napi::Value NcclClique::Destroy(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value NcclClique::Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(devices_.size())); }

}  // namespace df11addon
