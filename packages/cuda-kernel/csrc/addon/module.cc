#include "module.h"

#include "device-buffer.h"

#include <algorithm>
#include <cstring>

#include "stream.h"

namespace df11addon {

Napi::FunctionReference Module::ctor;

void Module::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Module",
                                 {InstanceMethod("free", &Module::Free), InstanceMethod("decodeRange", &Module::DecodeRange),
                                  InstanceMethod("decodeRows", &Module::DecodeRows),
                                  InstanceMethod("stored", &Module::Stored), InstanceAccessor("elements", &Module::Elements, nullptr),
                                  InstanceAccessor("deviceBytes", &Module::DeviceBytes, nullptr)});
  ctor = Napi::Persistent(f);
  exports.Set("Module", f);
}

// new Module({ luts, encodedExponent, signMantissa, outputPositions (Uint32Array), gaps })
// The caller (TypeScript) has validated the module's structure. encodedExponent and signMantissa may be
// byte lengths instead of arrays: their device memory is then left for the caller to fill (stored()
// gives where), streamed from the file through small pinned buffers rather than staged whole.
Module::Module(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Module>(info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  // A length stands for bytes the caller uploads later (data null: nothing copied here).
  const auto bulk = [&](const char* name) -> Bytes {
    Napi::Value v = o.Get(name);
    if (!v.IsNumber()) return viewOf(v, name);
    const double n = v.As<Napi::Number>().DoubleValue();
    if (!(n >= 0) || n != static_cast<double>(static_cast<size_t>(n))) throw Napi::RangeError::New(env, std::string(name) + " byte length must be a whole number ≥ 0");
    return {nullptr, static_cast<size_t>(n)};
  };
  Bytes luts = viewOf(o.Get("luts"), "luts");
  Bytes stream = bulk("encodedExponent");
  Bytes sm = bulk("signMantissa");
  Bytes op = viewOf(o.Get("outputPositions"), "outputPositions");
  Bytes gaps = viewOf(o.Get("gaps"), "gaps");
  const int nLuts = static_cast<int>(luts.length / 256);
  const uint32_t blocks = static_cast<uint32_t>((stream.length + df11::kThreadsPerBlock * df11::kBytesPerThread - 1) /
                                                (df11::kThreadsPerBlock * df11::kBytesPerThread));
  positions_.assign(blocks + 1, static_cast<uint32_t>(sm.length));
  std::memcpy(positions_.data(), op.data, std::min(op.length, positions_.size() * 4));  // official files may lack the last entry
  uint32_t maxSpan = 0;
  for (uint32_t k = 0; k < blocks; ++k) maxSpan = std::max(maxSpan, positions_[k + 1] - positions_[k]);
  std::vector<uint32_t> table(df11::kTableSize);
  std::vector<uint8_t> countTable(df11::kTableSize);
  df11::buildFirstLevelTable(luts.data, nLuts, table.data(), countTable.data());

  const size_t streamBytes = static_cast<size_t>(blocks) * df11::kThreadsPerBlock * df11::kBytesPerThread + 16;
  const size_t gapBytes = gaps.length + 2;
  const size_t smBytes = (sm.length + 16 + 255) & ~size_t{255};
  // One allocation, 256-byte aligned pieces.
  auto align = [](size_t x) { return (x + 255) & ~size_t{255}; };
  const size_t oLuts = 0, oTable = align(oLuts + luts.length), oCount = align(oTable + table.size() * 4), oStream = align(oCount + countTable.size()),
               oSm = align(oStream + streamBytes), oOp = align(oSm + smBytes), oGaps = align(oOp + positions_.size() * 4), total = align(oGaps + gapBytes);
  throwIfError(env, cudaMalloc(&base_, total), "cudaMalloc (module)");
  bytes_ = total;
  cudaGetDevice(&device_);
  countAllocation(device_, static_cast<long long>(total));
  uint8_t* b = static_cast<uint8_t*>(base_);
  try {
    throwIfError(env, cudaMemset(base_, 0, total), "cudaMemset (module)");
    throwIfError(env, cudaMemcpy(b + oLuts, luts.data, luts.length, cudaMemcpyHostToDevice), "cudaMemcpy (luts)");
    throwIfError(env, cudaMemcpy(b + oTable, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy (table)");
    throwIfError(env, cudaMemcpy(b + oCount, countTable.data(), countTable.size(), cudaMemcpyHostToDevice), "cudaMemcpy (count table)");
    if (stream.data) throwIfError(env, cudaMemcpy(b + oStream, stream.data, stream.length, cudaMemcpyHostToDevice), "cudaMemcpy (encoded_exponent)");
    if (sm.data) throwIfError(env, cudaMemcpy(b + oSm, sm.data, sm.length, cudaMemcpyHostToDevice), "cudaMemcpy (sign_mantissa)");
    throwIfError(env, cudaMemcpy(b + oOp, positions_.data(), positions_.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy (output_positions)");
    throwIfError(env, cudaMemcpy(b + oGaps, gaps.data, gaps.length, cudaMemcpyHostToDevice), "cudaMemcpy (gaps)");
    // The copies ran on the legacy stream, which the decode streams (non-blocking) do not wait for.
    throwIfError(env, cudaStreamSynchronize(0), "cudaStreamSynchronize (module)");
  } catch (...) {
    release();
    throw;
  }
  streamBytes_ = stream.length;
  gapsBytes_ = gaps.length;
  view_ = {b + oLuts, reinterpret_cast<const uint32_t*>(b + oTable), b + oCount, b + oStream, b + oSm, reinterpret_cast<const uint32_t*>(b + oOp), b + oGaps,
           nLuts, static_cast<uint32_t>(sm.length), blocks, maxSpan};
}

Module::~Module() { release(); }

void Module::release() {
  if (!base_) return;
  cudaFree(base_);
  base_ = nullptr;
  countAllocation(device_, -static_cast<long long>(bytes_));
}

const df11::ModuleView& Module::view(Napi::Env env) const {
  if (!base_) throw Napi::Error::New(env, "Module used after free()");
  return view_;
}

Napi::Value Module::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value Module::Elements(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), view_.nElements); }
Napi::Value Module::DeviceBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }

uint32_t Module::blockOf(uint32_t element) const {
  // Last block whose first output element is ≤ element.
  return static_cast<uint32_t>(std::upper_bound(positions_.begin(), positions_.end() - 1, element) - positions_.begin()) - 1;
}

uint32_t Module::blocksPerRow(uint32_t rowElements) {
  auto it = rowSpans_.find(rowElements);
  if (it != rowSpans_.end()) return it->second;
  uint32_t most = 1;
  for (uint32_t lo = 0; lo + rowElements <= view_.nElements; lo += rowElements) most = std::max(most, blockOf(lo + rowElements - 1) - blockOf(lo) + 1);
  rowSpans_[rowElements] = most;
  return most;
}

// stored(): where the tensors uploaded as stored lie, for checking their checksums on the device:
// { luts, encoded_exponent, sign_mantissa, gaps } → { address, bytes }. (output_positions and
// split_positions are not kept as stored.)
Napi::Value Module::Stored(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const df11::ModuleView& m = view(env);
  Napi::Object o = Napi::Object::New(env);
  const auto put = [&](const char* name, const void* p, size_t bytes) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("address", addressOf(p));
    t.Set("bytes", static_cast<double>(bytes));
    o.Set(name, t);
  };
  put("luts", m.luts, static_cast<size_t>(m.nLuts) * 256);
  put("encoded_exponent", m.stream, streamBytes_);
  put("sign_mantissa", m.signMantissa, m.nElements);
  put("gaps", m.gaps, gapsBytes_);
  return o;
}

// decodeRange(outAddress, lo, hi, stream?): elements [lo, hi) → out[0 .. hi − lo). lo % 8 == 0.
Napi::Value Module::DecodeRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const df11::ModuleView& m = view(env);
  uint16_t* out = pointerArg<uint16_t>(info, 0, "out");
  const double lo = numberArg(info, 1, "lo"), hi = numberArg(info, 2, "hi");
  if (!(lo >= 0 && lo <= hi && hi <= m.nElements)) throw Napi::RangeError::New(env, "decode window outside the module");
  if (static_cast<uint32_t>(lo) % 8 != 0) throw Napi::RangeError::New(env, "decode window must start at a multiple of 8 elements");
  if (reinterpret_cast<uintptr_t>(out) % 16 != 0) throw Napi::RangeError::New(env, "decode output must be 16-byte aligned");
  if (hi == lo) return env.Undefined();
  const uint32_t first = blockOf(static_cast<uint32_t>(lo)), last = blockOf(static_cast<uint32_t>(hi) - 1);
  throwIfError(env, df11::launchDecodeRange(m, first, last - first + 1, static_cast<uint32_t>(lo), static_cast<uint32_t>(hi), out, streamOf(info[3])),
               "decode launch");
  return env.Undefined();
}

// decodeRows(idsAddress, rows, rowElements, outAddress, stream?): rows ids[0..rows) of the module seen
// as [*, rowElements] → out[rows, rowElements]. The ids live on the device (inside CUDA graphs too).
Napi::Value Module::DecodeRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const df11::ModuleView& m = view(env);
  const int32_t* ids = pointerArg<const int32_t>(info, 0, "ids");
  const int rows = intArg(info, 1, "rows");
  const int rowElements = intArg(info, 2, "rowElements");
  uint16_t* out = pointerArg<uint16_t>(info, 3, "out");
  if (rowElements <= 0 || rowElements % 8 != 0 || m.nElements % rowElements != 0) throw Napi::RangeError::New(env, "row length must be a positive multiple of 8 dividing the module");
  if (reinterpret_cast<uintptr_t>(out) % 16 != 0) throw Napi::RangeError::New(env, "decode output must be 16-byte aligned");
  if (rows <= 0) return env.Undefined();
  const uint32_t span = blocksPerRow(static_cast<uint32_t>(rowElements));
  throwIfError(env, df11::launchDecodeRows(m, ids, static_cast<uint32_t>(rows), static_cast<uint32_t>(rowElements), span, out, streamOf(info[4])), "decode launch");
  return env.Undefined();
}

}  // namespace df11addon
