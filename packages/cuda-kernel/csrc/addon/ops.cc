#include "ops.h"

#include "../kernels/checksum.h"
#include "../kernels/decode.h"
#include "../kernels/inference.h"
#include "../kernels/launch.h"
#include "device-buffer.h"
#include "linear-args.h"
#include "module.h"
#include "stream.h"

namespace df11addon {
namespace {

// ---- devices, memory, copies ----------------------------------------------------------------------
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
  const int d = intArg(info, 0, "device");
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
  throwIfError(info.Env(), cudaSetDevice(intArg(info, 0, "device")), "cudaSetDevice");
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

// allocationStats(device) → { allocated, peak }: bytes of DeviceBuffers on the device now and at most.
Napi::Value AllocationStatsOf(const Napi::CallbackInfo& info) {
  const AllocationStats s = allocationStats(intArg(info, 0, "device"));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("allocated", s.allocated);
  o.Set("peak", s.peak);
  return o;
}

Napi::Value ResetPeakAllocation(const Napi::CallbackInfo& info) {
  resetPeakAllocation(intArg(info, 0, "device"));
  return info.Env().Undefined();
}

// getDevice() → the current device index.
Napi::Value GetDevice(const Napi::CallbackInfo& info) {
  int d = 0;
  throwIfError(info.Env(), cudaGetDevice(&d), "cudaGetDevice");
  return Napi::Number::New(info.Env(), d);
}

// programmaticLaunch(device): whether the kernels use programmatic dependent launches on that device.
Napi::Value ProgrammaticLaunch(const Napi::CallbackInfo& info) {
  int current = 0;
  throwIfError(info.Env(), cudaGetDevice(&current), "cudaGetDevice");
  const int device = intArg(info, 0, "device");
  throwIfError(info.Env(), cudaSetDevice(device), "cudaSetDevice");
  const bool enabled = df11::pdlEnabled();
  throwIfError(info.Env(), cudaSetDevice(current), "cudaSetDevice");
  return Napi::Boolean::New(info.Env(), enabled);
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return info.Env().Undefined();
}

// decode(module, out, offsetElements?, stream?) — a whole module into a DeviceBuffer.
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

// copy(dst, src, bytes, stream?) — device to device, whole buffers.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  DeviceBuffer* dst = unwrapBuffer(info[0]);
  DeviceBuffer* src = unwrapBuffer(info[1]);
  const size_t bytes = static_cast<size_t>(numberArg(info, 2, "bytes"));
  if (bytes > dst->bytes() || bytes > src->bytes()) throw Napi::RangeError::New(info.Env(), "copy runs past a buffer's end");
  throwIfError(info.Env(), cudaMemcpyAsync(dst->ptr(), src->ptr(), bytes, cudaMemcpyDeviceToDevice, streamOf(info.Length() > 3 ? info[3] : info.Env().Undefined())),
               "cudaMemcpyAsync");
  return info.Env().Undefined();
}

// copyAddress(dstAddress, srcAddress, bytes, stream?) — device to device by address.
Napi::Value CopyAddress(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               cudaMemcpyAsync(pointerArg<void>(info, 0, "dst"), pointerArg<const void>(info, 1, "src"), static_cast<size_t>(numberArg(info, 2, "bytes")),
                               cudaMemcpyDeviceToDevice, streamOf(info[3])),
               "cudaMemcpyAsync");
  return info.Env().Undefined();
}

// fillAddress(dstAddress, byteValue, bytes, stream?) — cudaMemsetAsync by address, ordered on the stream.
Napi::Value FillAddress(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaMemsetAsync(pointerArg<void>(info, 0, "dst"), intArg(info, 1, "value"), static_cast<size_t>(numberArg(info, 2, "bytes")), streamOf(info[3])),
               "cudaMemsetAsync");
  return info.Env().Undefined();
}

// downloadAddress(target typed array, srcAddress, bytes, stream?) — device to host after the work queued
// on the stream; the bytes are in `target` on return (waits for the stream).
Napi::Value DownloadAddress(const Napi::CallbackInfo& info) {
  Bytes dst = viewOf(info[0], "target");
  const size_t bytes = static_cast<size_t>(numberArg(info, 2, "bytes"));
  if (bytes > dst.length) throw Napi::RangeError::New(info.Env(), "downloadAddress: the target is smaller than the bytes asked for");
  cudaStream_t s = streamOf(info[3]);
  throwIfError(info.Env(), cudaMemcpyAsync(dst.data, pointerArg<const void>(info, 1, "src"), bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (download)");
  throwIfError(info.Env(), cudaStreamSynchronize(s), "cudaStreamSynchronize (download)");
  return info.Env().Undefined();
}

// copy2D(dst, dstPitch, src, srcPitch, widthBytes, height, stream?) — a strided block, device to device
// (a column slice of a row-major matrix: tensor-parallel shards).
Napi::Value Copy2D(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               cudaMemcpy2DAsync(pointerArg<void>(info, 0, "dst"), static_cast<size_t>(numberArg(info, 1, "dstPitch")), pointerArg<const void>(info, 2, "src"),
                                 static_cast<size_t>(numberArg(info, 3, "srcPitch")), static_cast<size_t>(numberArg(info, 4, "widthBytes")),
                                 static_cast<size_t>(numberArg(info, 5, "height")), cudaMemcpyDeviceToDevice, streamOf(info[6])),
               "cudaMemcpy2DAsync");
  return info.Env().Undefined();
}

// ---- kernel launchers ------------------------------------------------------------------------------
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchEmbedding(pointerArg<const uint16_t>(info, 0, "table"), pointerArg<const int32_t>(info, 1, "ids"), intArg(info, 2, "rows"), intArg(info, 3, "dim"),
                                     static_cast<float>(numberArg(info, 4, "scale")), pointerArg<float>(info, 5, "out"), streamOf(info[6])),
               "embedding");
  return info.Env().Undefined();
}

Napi::Value GatedActivation(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchGatedActivation(pointerArg<const float>(info, 0, "gu"), intArg(info, 1, "rows"), intArg(info, 2, "inner"), intArg(info, 3, "activation"),
                                           pointerArg<float>(info, 4, "out"), streamOf(info[5])),
               "gated activation");
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchAdd(pointerArg<float>(info, 0, "a"), pointerArg<const float>(info, 1, "b"), static_cast<size_t>(numberArg(info, 2, "n")), streamOf(info[3])),
               "add");
  return info.Env().Undefined();
}

Napi::Value Softcap(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchSoftcap(pointerArg<float>(info, 0, "x"), static_cast<size_t>(numberArg(info, 1, "n")), static_cast<float>(numberArg(info, 2, "cap")),
                                   streamOf(info[3])),
               "softcap");
  return info.Env().Undefined();
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchArgmax(pointerArg<const float>(info, 0, "x"), intArg(info, 1, "rows"), intArg(info, 2, "n"), pointerArg<int32_t>(info, 3, "out"),
                                  info.Length() > 5 && !info[5].IsUndefined() ? pointerArg<float>(info, 5, "values") : nullptr, streamOf(info[4])),
               "argmax");
  return info.Env().Undefined();
}

Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchGatherRows(pointerArg<const float>(info, 0, "x"), pointerArg<const int32_t>(info, 1, "rows"), intArg(info, 2, "count"), intArg(info, 3, "dim"),
                                      pointerArg<float>(info, 4, "out"), streamOf(info[5])),
               "gather rows");
  return info.Env().Undefined();
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchRmsNorm(pointerArg<const float>(info, 0, "x"), intArg(info, 1, "rows"), intArg(info, 2, "dim"), pointerArg<const float>(info, 3, "weight"),
                                   static_cast<float>(numberArg(info, 4, "eps")), info[5].ToBoolean().Value(), pointerArg<float>(info, 6, "out"),
                                   pointerArg<float>(info, 7, "residual"), streamOf(info[8])),
               "rmsNorm");
  return info.Env().Undefined();
}

// linear(weight, N, K, x, ldx, rows, bias, out, ldo, accumulate, xBf16, stream, workspace?, workspaceBytes?, gemm?, gemvReadsXb?)
// rows ≤ kGemvMaxRows and not `gemm`: the GEMV (tensor cores, x rounded to BF16 as read, or with
// gemvReadsXb and more than 8 rows read from xBf16, which then holds x converted). Otherwise the
// tensor-core GEMM on xBf16 (x converted with toBf16, [rows, K]; split over K when rows are few); a
// float32 fallback when the shape does not suit the tensor cores.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  df11::LinearArgs a{};
  a.weight = pointerArg<const uint16_t>(info, 0, "weight");
  a.N = intArg(info, 1, "N");
  a.K = intArg(info, 2, "K");
  readLinearArgs(info, 3, true, a);  // info[3..9]
  const uint16_t* xBf16 = pointerArg<const uint16_t>(info, 10, "xBf16");
  cudaStream_t stream = streamOf(info[11]);
  float* workspace = info.Length() > 12 && info[12].IsNumber() ? pointerArg<float>(info, 12, "workspace") : nullptr;
  const size_t workspaceFloats = workspace && info.Length() > 13 ? static_cast<size_t>(numberArg(info, 13, "workspaceBytes")) / 4 : 0;
  const bool gemm = (info.Length() > 14 && info[14].ToBoolean().Value()) || a.rows > df11::kGemvMaxRows;
  const uint16_t* xb = a.ldx == a.K ? xBf16 : nullptr;
  // gemvReadsXb: xBf16 holds x converted for this call, and the GEMV reads it above 8 rows (LinearArgs::xb).
  const bool gemvReadsXb = info.Length() > 15 && info[15].ToBoolean().Value();
  if (!gemm && gemvReadsXb && a.rows > 8) a.xb = xb;
  if (!gemm) throwIfError(info.Env(), df11::launchGemv(a, stream), "gemv");
  else throwIfError(info.Env(), df11::launchGemm(a, xb, workspace, workspaceFloats, stream), "gemm");
  return info.Env().Undefined();
}

// setGemmVariant("auto" | "mma" | "sm90" | "sm90-128" | "sm90-256") — tests and benchmarks; returns whether the
// current device would now run the Hopper kernel.
Napi::Value SetGemmVariant(const Napi::CallbackInfo& info) {
  const std::string v = info[0].ToString().Utf8Value();
  df11::GemmVariant g = df11::GemmVariant::Auto;
  if (v == "mma") g = df11::GemmVariant::Mma;
  else if (v == "sm90") g = df11::GemmVariant::Sm90;
  else if (v == "sm90-128") g = df11::GemmVariant::Sm90Tile128;
  else if (v == "sm90-256") g = df11::GemmVariant::Sm90Tile256;
  else if (v != "auto") throw Napi::TypeError::New(info.Env(), "setGemmVariant: auto, mma, sm90, sm90-128 or sm90-256");
  df11::setGemmVariant(g);
  return Napi::Boolean::New(info.Env(), df11::gemmUsesSm90(1024, 4096));
}

// toBf16(x, n, out, stream)
Napi::Value ToBf16(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchToBf16(pointerArg<const float>(info, 0, "x"), static_cast<size_t>(numberArg(info, 1, "n")), pointerArg<uint16_t>(info, 2, "out"), streamOf(info[3])),
               "bf16 conversion");
  return info.Env().Undefined();
}

df11::AttentionArgs attentionArgs(const Napi::Object& o) {
  const auto num = [&](const char* k) {
    Napi::Value v = o.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("attention.") + k + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  const auto ptr = [&](const char* k) { return reinterpret_cast<void*>(static_cast<uintptr_t>(num(k))); };
  df11::AttentionArgs a{};
  a.rows = static_cast<int>(num("rows"));
  a.positions = static_cast<const int32_t*>(ptr("positions"));
  a.slots = static_cast<const int32_t*>(ptr("slots"));
  a.numHeads = static_cast<int>(num("numHeads"));
  a.numKvHeads = static_cast<int>(num("numKvHeads"));
  a.headDim = static_cast<int>(num("headDim"));
  a.maxContext = static_cast<int>(num("maxContext"));
  a.keys = static_cast<uint16_t*>(ptr("keys"));
  a.values = static_cast<uint16_t*>(ptr("values"));
  a.scale = static_cast<float>(num("scale"));
  a.softcap = static_cast<float>(num("softcap"));
  a.window = static_cast<int>(num("window"));
  return a;
}

// qkvPrepare(attention, qkv, qNorm, kNorm, eps, unitOffset, invFreq, rotaryDim, qOut, stream)
Napi::Value QkvPrepare(const Napi::CallbackInfo& info) {
  const df11::AttentionArgs a = attentionArgs(info[0].As<Napi::Object>());
  throwIfError(info.Env(),
               df11::launchQkvPrepare(a, pointerArg<const float>(info, 1, "qkv"), pointerArg<const float>(info, 2, "qNorm"), pointerArg<const float>(info, 3, "kNorm"),
                                      static_cast<float>(numberArg(info, 4, "eps")), info[5].ToBoolean().Value(), pointerArg<const float>(info, 6, "invFreq"),
                                      intArg(info, 7, "rotaryDim"), pointerArg<float>(info, 8, "qOut"), streamOf(info[9])),
               "qkvPrepare");
  return info.Env().Undefined();
}

// attention(attention, q, out, splits, partial, stream)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  const df11::AttentionArgs a = attentionArgs(info[0].As<Napi::Object>());
  throwIfError(info.Env(),
               df11::launchAttention(a, pointerArg<const float>(info, 1, "q"), pointerArg<float>(info, 2, "out"), intArg(info, 3, "splits"),
                                     pointerArg<float>(info, 4, "partial"), streamOf(info[5])),
               "attention");
  return info.Env().Undefined();
}

// sum64(address, bytes, firstWord, outAddress, stream?): add the df11-sum64 lanes of the bytes to the
// two uint32 at outAddress (asynchronous; sum window after window into the same two words).
Napi::Value Sum64(const Napi::CallbackInfo& info) {
  const double bytes = numberArg(info, 1, "bytes"), firstWord = numberArg(info, 2, "firstWord");
  if (!(bytes >= 0) || !(firstWord >= 0)) throw Napi::RangeError::New(info.Env(), "sum64: bytes and firstWord must be ≥ 0");
  const void* data = pointerArg<const void>(info, 0, "address");
  if (reinterpret_cast<uintptr_t>(data) % 16 != 0) throw Napi::RangeError::New(info.Env(), "sum64: the data must be 16-byte aligned");
  throwIfError(info.Env(),
               df11::launchSum64(data, static_cast<uint64_t>(bytes), static_cast<uint32_t>(static_cast<uint64_t>(firstWord) & 0xffffffffu),
                                 pointerArg<uint32_t>(info, 3, "out"), streamOf(info[4])),
               "sum64");
  return info.Env().Undefined();
}

// prefillAttention(attention, slot, firstPosition, q, out, stream) → whether it ran: the tensor-core
// attention of a step whose rows are all `slot`'s, at consecutive positions from firstPosition (see
// launchPrefillAttention). false (nothing launched) where the kernel does not take the shape or the
// device: the caller runs attention() instead.
Napi::Value PrefillAttention(const Napi::CallbackInfo& info) {
  const df11::AttentionArgs a = attentionArgs(info[0].As<Napi::Object>());
  const cudaError_t e = df11::launchPrefillAttention(a, intArg(info, 1, "slot"), intArg(info, 2, "firstPosition"), pointerArg<const float>(info, 3, "q"),
                                                     pointerArg<float>(info, 4, "out"), streamOf(info[5]));
  if (e == cudaErrorNotSupported) return Napi::Boolean::New(info.Env(), false);
  throwIfError(info.Env(), e, "prefill attention");
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) {
  const auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) { exports.Set(name, Napi::Function::New(env, f, name)); };
  fn("deviceCount", DeviceCount);
  fn("deviceInfo", DeviceInfo);
  fn("setDevice", SetDevice);
  fn("memInfo", MemInfo);
  fn("synchronize", Synchronize);
  fn("allocationStats", AllocationStatsOf);
  fn("resetPeakAllocation", ResetPeakAllocation);
  fn("getDevice", GetDevice);
  fn("programmaticLaunch", ProgrammaticLaunch);
  fn("decode", Decode);
  fn("copy", Copy);
  fn("copyAddress", CopyAddress);
  fn("fillAddress", FillAddress);
  fn("downloadAddress", DownloadAddress);
  fn("copy2D", Copy2D);
  fn("embedding", Embedding);
  fn("gatedActivation", GatedActivation);
  fn("add", Add);
  fn("softcap", Softcap);
  fn("argmax", Argmax);
  fn("gatherRows", GatherRows);
  fn("rmsNorm", RmsNorm);
  fn("linear", Linear);
  fn("toBf16", ToBf16);
  fn("setGemmVariant", SetGemmVariant);
  fn("qkvPrepare", QkvPrepare);
  fn("attention", Attention);
  fn("sum64", Sum64);
  fn("prefillAttention", PrefillAttention);
}

}  // namespace df11addon
