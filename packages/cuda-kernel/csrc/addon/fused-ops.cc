#include "fused-ops.h"

#include "../kernels/fused.h"
#include "../kernels/inference.h"
#include "linear-args.h"
#include "stream.h"

namespace df11addon {
namespace {

// A fused matrix as JS passes it: { data, tables, escapeOffsets, escapePositions, escapeExponents
// (device addresses), rows, cols, groups, tiles }.
df11::FusedView viewArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), "expected a fused matrix view");
  const Napi::Object o = info[i].As<Napi::Object>();
  const auto num = [&](const char* k) {
    const Napi::Value v = o.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("fused view: ") + k + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  const auto ptr = [&](const char* k) { return reinterpret_cast<const void*>(static_cast<uintptr_t>(num(k))); };
  df11::FusedView v{};
  v.data = static_cast<const uint8_t*>(ptr("data"));
  v.tables = static_cast<const uint8_t*>(ptr("tables"));
  v.escapeOffsets = static_cast<const uint32_t*>(ptr("escapeOffsets"));
  v.escapePositions = static_cast<const uint16_t*>(ptr("escapePositions"));
  v.escapeExponents = static_cast<const uint8_t*>(ptr("escapeExponents"));
  v.rows = static_cast<int>(num("rows"));
  v.cols = static_cast<int>(num("cols"));
  v.groups = static_cast<int>(num("groups"));
  v.tiles = static_cast<int>(num("tiles"));
  if (v.rows < 1 || v.cols < 8 || v.cols % 8 != 0 || v.tiles != (v.cols + df11::kFusedTileK - 1) / df11::kFusedTileK || v.groups != (v.rows + 7) / 8)
    throw Napi::RangeError::New(info.Env(), "fused view: inconsistent rows/cols/groups/tiles");
  return v;
}

// The LinearArgs of a product with the fused matrix v as W (no BF16 weight pointer); the caller reads the rest.
df11::LinearArgs linearArgsOf(const df11::FusedView& v) {
  df11::LinearArgs a{};
  a.weight = nullptr;
  a.N = v.rows;
  a.K = v.cols;
  return a;
}

// fusedTables(src, rowBegin, rows, cols, tables, stream)
Napi::Value FusedTables(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(),
               df11::launchFusedTables(pointerArg<const uint16_t>(info, 0, "src"), intArg(info, 1, "rowBegin"), intArg(info, 2, "rows"), intArg(info, 3, "cols"),
                                       pointerArg<uint8_t>(info, 4, "tables"), streamOf(info[5])),
               "fused tables");
  return info.Env().Undefined();
}

// fusedCounts(src, rowBegin, rows, view, counts, stream)
Napi::Value FusedCounts(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 3);
  throwIfError(info.Env(),
               df11::launchFusedCounts(pointerArg<const uint16_t>(info, 0, "src"), intArg(info, 1, "rowBegin"), intArg(info, 2, "rows"), v, pointerArg<uint32_t>(info, 4, "counts"),
                                       streamOf(info[5])),
               "fused counts");
  return info.Env().Undefined();
}

// exclusiveScanBytes(n) → scratch bytes exclusiveScan needs for n entries.
Napi::Value ExclusiveScanBytes(const Napi::CallbackInfo& info) {
  size_t bytes = 0;
  throwIfError(info.Env(), df11::launchExclusiveScan(nullptr, nullptr, intArg(info, 0, "n"), nullptr, bytes, nullptr), "scan size");
  return Napi::Number::New(info.Env(), static_cast<double>(bytes));
}

// exclusiveScan(counts, offsets, n, temp, tempBytes, stream)
Napi::Value ExclusiveScan(const Napi::CallbackInfo& info) {
  size_t bytes = static_cast<size_t>(numberArg(info, 4, "tempBytes"));
  throwIfError(info.Env(),
               df11::launchExclusiveScan(pointerArg<const uint32_t>(info, 0, "counts"), pointerArg<uint32_t>(info, 1, "offsets"), intArg(info, 2, "n"),
                                         pointerArg<void>(info, 3, "temp"), bytes, streamOf(info[5])),
               "exclusive scan");
  return info.Env().Undefined();
}

// fusedWrite(src, rowBegin, rows, view, stream)
Napi::Value FusedWrite(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 3);
  throwIfError(info.Env(), df11::launchFusedWrite(pointerArg<const uint16_t>(info, 0, "src"), intArg(info, 1, "rowBegin"), intArg(info, 2, "rows"), v, streamOf(info[4])),
               "fused write");
  return info.Env().Undefined();
}

// fusedUnpack(view, rowBegin, rowEnd, out, ldo, stream)
Napi::Value FusedUnpack(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 0);
  throwIfError(info.Env(),
               df11::launchFusedUnpack(v, intArg(info, 1, "rowBegin"), intArg(info, 2, "rowEnd"), pointerArg<uint16_t>(info, 3, "out"), intArg(info, 4, "ldo"), streamOf(info[5])),
               "fused unpack");
  return info.Env().Undefined();
}

// fusedUnpackRows(view, ids, count, out, stream)
Napi::Value FusedUnpackRows(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 0);
  throwIfError(info.Env(),
               df11::launchFusedUnpackRows(v, pointerArg<const int32_t>(info, 1, "ids"), intArg(info, 2, "count"), pointerArg<uint16_t>(info, 3, "out"), streamOf(info[4])),
               "fused unpack rows");
  return info.Env().Undefined();
}

// fusedLinear(view, x, ldx, rows, bias, out, ldo, accumulate, stream, xBf16?): the fused GEMV (rows ≤
// kGemvMaxRows); xBf16, x rounded to BF16 [rows, K], is read instead of x for more than 8 rows when given.
Napi::Value FusedLinear(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 0);
  df11::LinearArgs a = linearArgsOf(v);
  readLinearArgs(info, 1, true, a);  // info[1..7]
  const uint16_t* xb = info.Length() > 9 && info[9].IsNumber() ? pointerArg<const uint16_t>(info, 9, "xBf16") : nullptr;
  a.xb = a.rows > 8 && a.ldx == a.K ? xb : nullptr;
  throwIfError(info.Env(), df11::launchFusedGemv(a, v, streamOf(info[8])), "fused gemv");
  return info.Env().Undefined();
}

// fusedGemm(view, rows, bias, out, ldo, accumulate, xBf16, stream, workspace, workspaceBytes) → whether it
// ran: the Hopper GEMM on x converted to BF16 ([rows, K]) with the fused tiles decoded inside it; false
// where that kernel does not run (the caller decodes windows of W for launchGemm instead).
Napi::Value FusedGemm(const Napi::CallbackInfo& info) {
  const df11::FusedView v = viewArg(info, 0);
  df11::LinearArgs a = linearArgsOf(v);
  a.x = nullptr;
  a.ldx = v.cols;
  readLinearArgs(info, 1, false, a);  // info[1..5]
  const uint16_t* xBf16 = pointerArg<const uint16_t>(info, 6, "xBf16");
  cudaStream_t stream = streamOf(info[7]);
  float* workspace = pointerArg<float>(info, 8, "workspace");
  const size_t workspaceFloats = static_cast<size_t>(numberArg(info, 9, "workspaceBytes")) / 4;
  const cudaError_t e = df11::launchFusedGemm(a, v, xBf16, workspace, workspaceFloats, stream);
  if (e == cudaErrorNotSupported) return Napi::Boolean::New(info.Env(), false);
  throwIfError(info.Env(), e, "fused gemm");
  return Napi::Boolean::New(info.Env(), true);
}

// setFusedGemm("auto" | "always" | "off") — tests and benchmarks.
Napi::Value SetFusedGemm(const Napi::CallbackInfo& info) {
  const std::string v = info[0].ToString().Utf8Value();
  if (v != "auto" && v != "always" && v != "off") throw Napi::TypeError::New(info.Env(), "setFusedGemm: auto, always or off");
  df11::setFusedGemm(v == "off" ? df11::FusedGemmMode::Off : v == "always" ? df11::FusedGemmMode::Always : df11::FusedGemmMode::Auto);
  return info.Env().Undefined();
}

}  // namespace

void InitFusedOps(Napi::Env env, Napi::Object exports) {
  const auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) { exports.Set(name, Napi::Function::New(env, f, name)); };
  fn("fusedTables", FusedTables);
  fn("fusedCounts", FusedCounts);
  fn("exclusiveScanBytes", ExclusiveScanBytes);
  fn("exclusiveScan", ExclusiveScan);
  fn("fusedWrite", FusedWrite);
  fn("fusedUnpack", FusedUnpack);
  fn("fusedUnpackRows", FusedUnpackRows);
  fn("fusedLinear", FusedLinear);
  fn("fusedGemm", FusedGemm);
  fn("setFusedGemm", SetFusedGemm);
}

}  // namespace df11addon
