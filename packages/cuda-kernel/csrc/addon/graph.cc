#include "graph.h"

#include "stream.h"

namespace df11addon {

Napi::FunctionReference Graph::ctor;

void Graph::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Graph", {InstanceMethod("launch", &Graph::Launch), InstanceMethod("destroy", &Graph::Destroy)});
  ctor = Napi::Persistent(f);
  exports.Set("Graph", f);
}

Napi::Object Graph::Wrap(Napi::Env env, cudaGraphExec_t exec) {
  Napi::Object o = ctor.New({Napi::External<CUgraphExec_st>::New(env, exec)});
  return o;
}

// Constructed only by Stream.endCapture (the argument is the instantiated graph).
Graph::Graph(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Graph>(info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "graphs come from Stream.endCapture()");
  exec_ = info[0].As<Napi::External<CUgraphExec_st>>().Data();
}

Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(exec_);
}

Napi::Value Graph::Launch(const Napi::CallbackInfo& info) {
  if (!exec_) throw Napi::Error::New(info.Env(), "Graph used after destroy()");
  throwIfError(info.Env(), cudaGraphLaunch(exec_, streamOf(info[0])), "cudaGraphLaunch");
  return info.Env().Undefined();
}

Napi::Value Graph::Destroy(const Napi::CallbackInfo& info) {
  if (exec_) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
  return info.Env().Undefined();
}

}  // namespace df11addon
