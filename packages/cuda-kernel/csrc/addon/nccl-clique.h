// NcclClique: one NCCL communicator per GPU of this process (ncclCommInitAll), and the collectives
// issued for all of them inside one ncclGroupStart/End. NCCL itself is loaded at run time (dlopen of the
// path the TypeScript layer found; `NcclClique.load(path)`): no NCCL header or library is needed to build
// the addon, and machines without NCCL lose nothing but this class.
#pragma once
#include "common.h"

#include <vector>

namespace df11addon {

struct ncclComm;

class NcclClique : public Napi::ObjectWrap<NcclClique> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit NcclClique(const Napi::CallbackInfo& info);
  // Garbage collection does not destroy the communicators: ncclCommDestroy waits until every CUDA graph
  // that recorded their collectives is destroyed, and GC may reach those graphs later. Only destroy() does.
  ~NcclClique() override = default;

 private:
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value AllReduce(const Napi::CallbackInfo& info);
  Napi::Value AllGather(const Napi::CallbackInfo& info);
  Napi::Value Broadcast(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  void release();
  void checkOpen(Napi::Env env) const;

  std::vector<ncclComm*> comms_;
  std::vector<int> devices_;
};

}  // namespace df11addon
