#include "device-heap.h"

#include <cudaTypedefs.h>

#include <cmath>
#include <mutex>

#include "device-buffer.h"

namespace df11addon {

namespace {

// The driver functions, found once through the runtime as gemm-sm90.cu's encodeTiled() finds cuTensorMapEncodeTiled
// (the runtime is linked statically and libcuda is not linked at all). `missing` names the first one not found.
struct Driver {
  PFN_cuGetErrorName_v6000 getErrorName = nullptr;
  PFN_cuDeviceGet_v2000 deviceGet = nullptr;
  PFN_cuDeviceGetAttribute_v2000 deviceGetAttribute = nullptr;
  PFN_cuMemGetAllocationGranularity_v10020 getAllocationGranularity = nullptr;
  PFN_cuMemAddressReserve_v10020 addressReserve = nullptr;
  PFN_cuMemAddressFree_v10020 addressFree = nullptr;
  PFN_cuMemCreate_v10020 create = nullptr;
  PFN_cuMemRelease_v10020 release = nullptr;
  PFN_cuMemMap_v10020 map = nullptr;
  PFN_cuMemUnmap_v10020 unmap = nullptr;
  PFN_cuMemSetAccess_v10020 setAccess = nullptr;
  const char* missing = nullptr;
  cudaError_t missingStatus = cudaSuccess;  // what cudaGetDriverEntryPointByVersion said for it
};

template <typename F>
void entryPoint(Driver& d, F& fn, const char* name) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  const cudaError_t status = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q);
  if (status == cudaSuccess && q == cudaDriverEntryPointSuccess && p) {
    fn = reinterpret_cast<F>(p);
  } else {
    cudaGetLastError();  // no driver: not an error of the next runtime call
    if (!d.missing) {
      d.missing = name;
      d.missingStatus = status;
    }
  }
}

const Driver& driver() {
  static Driver d;
  static std::once_flag once;
  std::call_once(once, [] {
    entryPoint(d, d.getErrorName, "cuGetErrorName");
    entryPoint(d, d.deviceGet, "cuDeviceGet");
    entryPoint(d, d.deviceGetAttribute, "cuDeviceGetAttribute");
    entryPoint(d, d.getAllocationGranularity, "cuMemGetAllocationGranularity");
    entryPoint(d, d.addressReserve, "cuMemAddressReserve");
    entryPoint(d, d.addressFree, "cuMemAddressFree");
    entryPoint(d, d.create, "cuMemCreate");
    entryPoint(d, d.release, "cuMemRelease");
    entryPoint(d, d.map, "cuMemMap");
    entryPoint(d, d.unmap, "cuMemUnmap");
    entryPoint(d, d.setAccess, "cuMemSetAccess");
  });
  return d;
}

// A JS Error "<what>: CUDA_ERROR_… (n)" with code "CUDA_ERROR", and the CUresult as `cuResult`. With `neededBytes`
// (cuMemCreate), out of memory has code "CUDA_OUT_OF_MEMORY" and says the bytes as `neededBytes`.
[[noreturn]] void throwDriverError(Napi::Env env, CUresult r, const std::string& what, double neededBytes = -1) {
  const char* name = nullptr;
  if (driver().getErrorName && driver().getErrorName(r, &name) != CUDA_SUCCESS) name = nullptr;
  Napi::Error err = Napi::Error::New(env, what + ": " + (name ? name : "CUresult") + " (" + std::to_string(static_cast<int>(r)) + ")");
  const bool outOfMemory = r == CUDA_ERROR_OUT_OF_MEMORY && neededBytes >= 0;
  err.Set("code", Napi::String::New(env, outOfMemory ? "CUDA_OUT_OF_MEMORY" : "CUDA_ERROR"));
  err.Set("cuResult", Napi::Number::New(env, static_cast<double>(r)));
  if (outOfMemory) err.Set("neededBytes", Napi::Number::New(env, neededBytes));
  throw err;
}

void checkDriver(Napi::Env env, CUresult r, const std::string& what) {
  if (r != CUDA_SUCCESS) throwDriverError(env, r, what);
}

// Pinned (non-migratable) memory on `device`, not exportable: what cudaMalloc gives.
CUmemAllocationProp allocationProp(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

bool supportsVirtualMemory(int device) {
  const Driver& d = driver();
  if (d.missing) return false;
  CUdevice dev = 0;
  int supported = 0;
  return d.deviceGet(&dev, device) == CUDA_SUCCESS && d.deviceGetAttribute(&supported, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) == CUDA_SUCCESS && supported != 0;
}

// virtualMemorySupported() — whether the current device takes the virtual memory management calls (false without a
// device or driver; never throws).
Napi::Value VirtualMemorySupported(const Napi::CallbackInfo& info) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), supportsVirtualMemory(device));
}

size_t roundUp(size_t n, size_t step) { return (n + step - 1) / step * step; }

constexpr double kMaxBytes = 9007199254740992.0;  // 2^53: sizes and addresses are exact JS numbers below it

}  // namespace

Napi::FunctionReference DeviceHeap::ctor;

void DeviceHeap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "DeviceHeap",
                                 {InstanceMethod("alloc", &DeviceHeap::Alloc), InstanceMethod("free", &DeviceHeap::Free),
                                  InstanceAccessor("mappedBytes", &DeviceHeap::MappedBytes, nullptr), InstanceAccessor("usedBytes", &DeviceHeap::UsedBytes, nullptr),
                                  InstanceAccessor("reservedBytes", &DeviceHeap::ReservedBytes, nullptr), InstanceAccessor("granularity", &DeviceHeap::Granularity, nullptr),
                                  InstanceAccessor("freed", &DeviceHeap::Freed, nullptr)});
  ctor = Napi::Persistent(f);
  exports.Set("DeviceHeap", f);
  exports.Set("virtualMemorySupported", Napi::Function::New(env, VirtualMemorySupported, "virtualMemorySupported"));
}

// new DeviceHeap(reserveBytes) — on the current device; reserves reserveBytes of addresses (rounded up to the
// granularity), maps nothing.
DeviceHeap::DeviceHeap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceHeap>(info) {
  Napi::Env env = info.Env();
  const double bytes = numberArg(info, 0, "reserve bytes");
  if (!(bytes >= 1 && bytes < kMaxBytes && std::floor(bytes) == bytes)) throw Napi::RangeError::New(env, "reserve bytes must be an integer ≥ 1 (below 2^53)");
  const Driver& d = driver();
  if (d.missing) {
    Napi::Error err = Napi::Error::New(env, std::string("DeviceHeap: cudaGetDriverEntryPointByVersion found no ") + d.missing + " in the CUDA driver (" +
                                                (d.missingStatus == cudaSuccess ? "symbol not found" : cudaGetErrorName(d.missingStatus)) + ")");
    err.Set("code", Napi::String::New(env, "CUDA_ERROR"));
    throw err;
  }
  throwIfError(env, cudaGetDevice(&device_), "cudaGetDevice");
  // The runtime initialises the driver and the device's primary context on first use; the driver calls below come after.
  throwIfError(env, cudaFree(nullptr), "cudaFree (initialising the device)");
  if (!supportsVirtualMemory(device_)) {
    Napi::Error err = Napi::Error::New(env, "DeviceHeap: device " + std::to_string(device_) + " does not support CUDA virtual memory management (CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)");
    err.Set("code", Napi::String::New(env, "CUDA_ERROR"));
    throw err;
  }
  const CUmemAllocationProp prop = allocationProp(device_);
  checkDriver(env, d.getAllocationGranularity(&granularity_, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "cuMemGetAllocationGranularity");
  if (granularity_ == 0 || (granularity_ & (granularity_ - 1)) != 0) throw Napi::Error::New(env, "DeviceHeap: cuMemGetAllocationGranularity gave " + std::to_string(granularity_));
  reserveBytes_ = roundUp(static_cast<size_t>(bytes), granularity_);
  reserve(env, reserveBytes_);
}

DeviceHeap::~DeviceHeap() { release(); }

void DeviceHeap::check(Napi::Env env) const {
  if (freed_) throw Napi::Error::New(env, "DeviceHeap used after free()");
}

// A new range of `bytes` (a multiple of the granularity), where the bump pointer continues.
void DeviceHeap::reserve(Napi::Env env, size_t bytes) {
  CUdeviceptr base = 0;
  checkDriver(env, driver().addressReserve(&base, bytes, granularity_, 0, 0), "cuMemAddressReserve of " + std::to_string(bytes) + " bytes");
  if (base % granularity_ != 0) {
    driver().addressFree(base, bytes);
    throw Napi::Error::New(env, "DeviceHeap: cuMemAddressReserve gave an address not aligned to the granularity");
  }
  ranges_.push_back(Range{base, bytes, 0, 0, {}});
  reserved_ += bytes;
}

// Maps physical memory behind r up to offset `end` (≤ r.bytes): one cuMemCreate of the granules missing. `request`: the
// allocation's bytes, for the message.
void DeviceHeap::map(Napi::Env env, Range& r, size_t end, size_t request) {
  const Driver& d = driver();
  const size_t bytes = roundUp(end - r.mapped, granularity_);
  const CUdeviceptr at = r.base + r.mapped;
  const CUmemAllocationProp prop = allocationProp(device_);
  CUmemGenericAllocationHandle handle = 0;
  CUresult e = d.create(&handle, bytes, &prop, 0);
  if (e != CUDA_SUCCESS) {
    throwDriverError(env, e,
                     "DeviceHeap: cuMemCreate of " + std::to_string(bytes) + " bytes on device " + std::to_string(device_) + " (for an allocation of " + std::to_string(request) +
                         " bytes; the heap has " + std::to_string(mapped_) + " bytes mapped)",
                     static_cast<double>(bytes));
  }
  e = d.map(at, bytes, 0, handle, 0);
  if (e != CUDA_SUCCESS) {
    d.release(handle);
    throwDriverError(env, e, "DeviceHeap: cuMemMap of " + std::to_string(bytes) + " bytes");
  }
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  e = d.setAccess(at, bytes, &access, 1);
  if (e != CUDA_SUCCESS) {
    d.unmap(at, bytes);
    d.release(handle);
    throwDriverError(env, e, "DeviceHeap: cuMemSetAccess of " + std::to_string(bytes) + " bytes");
  }
  r.mappings.push_back(Mapping{handle, at, bytes});
  r.mapped += bytes;
  mapped_ += bytes;
  countAllocation(device_, static_cast<long long>(bytes));
}

// Unmaps and releases everything (idempotent).
void DeviceHeap::release() {
  if (freed_) return;
  freed_ = true;
  const Driver& d = driver();
  if (mapped_ > 0) {
    // Unlike cudaFree, cuMemUnmap / cuMemRelease do not wait for work still using the memory: wait here, as cudaFree does.
    int current = device_;
    cudaGetDevice(&current);
    if (current != device_) cudaSetDevice(device_);
    cudaDeviceSynchronize();
    if (current != device_) cudaSetDevice(current);
    cudaGetLastError();
  }
  for (Range& r : ranges_) {
    for (const Mapping& m : r.mappings) {
      d.unmap(m.at, m.bytes);
      d.release(m.handle);
      countAllocation(device_, -static_cast<long long>(m.bytes));
    }
    d.addressFree(r.base, r.bytes);
  }
  ranges_.clear();
  mapped_ = used_ = reserved_ = 0;
}

// alloc(bytes, alignment = 256) — the device address of `bytes` bytes (0 for 0 bytes), aligned to `alignment` (a power of
// two). Maps more memory when the bump pointer passes the mapped end; reserves a new range when it passes the reserved end
// (allocations never span ranges).
Napi::Value DeviceHeap::Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  const double bytesArg = numberArg(info, 0, "byte length");
  if (!(bytesArg >= 0 && bytesArg < kMaxBytes && std::floor(bytesArg) == bytesArg)) throw Napi::RangeError::New(env, "byte length must be an integer ≥ 0 (below 2^53)");
  const double alignmentArg = info.Length() > 1 && !info[1].IsUndefined() ? numberArg(info, 1, "alignment") : 256;
  const size_t alignment = alignmentArg >= 1 && alignmentArg <= 4294967296.0 ? static_cast<size_t>(alignmentArg) : 0;
  if (alignment == 0 || static_cast<double>(alignment) != alignmentArg || (alignment & (alignment - 1)) != 0)
    throw Napi::RangeError::New(env, "alignment must be a power of two from 1 to 2^32");
  const size_t bytes = static_cast<size_t>(bytesArg);
  if (bytes == 0) return Napi::Number::New(env, 0);  // as cudaMalloc(0) (DeviceBuffer.alloc(0).address is 0)

  Range* r = &ranges_.back();
  const auto startIn = [alignment](const Range& range) { return static_cast<size_t>(((range.base + range.used + alignment - 1) & ~static_cast<CUdeviceptr>(alignment - 1)) - range.base); };
  size_t start = startIn(*r);
  if (start + bytes > r->bytes) {
    // A range is granularity-aligned: an alignment above the granularity may need up to `alignment` more.
    const size_t need = roundUp(bytes + (alignment > granularity_ ? alignment : 0), granularity_);
    reserve(env, need > reserveBytes_ ? need : reserveBytes_);
    r = &ranges_.back();
    start = startIn(*r);
  }
  const size_t end = start + bytes;
  if (end > r->mapped) map(env, *r, end, bytes);
  used_ += end - r->used;
  r->used = end;
  return Napi::Number::New(env, static_cast<double>(r->base + start));
}

Napi::Value DeviceHeap::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value DeviceHeap::MappedBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(mapped_)); }
Napi::Value DeviceHeap::UsedBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(used_)); }
Napi::Value DeviceHeap::ReservedBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(reserved_)); }
Napi::Value DeviceHeap::Granularity(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(granularity_)); }
Napi::Value DeviceHeap::Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), freed_); }

}  // namespace df11addon
