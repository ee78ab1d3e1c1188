#include "stream.h"

#include "event.h"
#include "graph.h"

namespace df11addon {

Napi::FunctionReference Stream::ctor;

void Stream::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Stream",
                                 {InstanceMethod("synchronize", &Stream::Synchronize), InstanceMethod("destroy", &Stream::Destroy),
                                  InstanceMethod("beginCapture", &Stream::BeginCapture), InstanceMethod("endCapture", &Stream::EndCapture), InstanceMethod("waitEvent", &Stream::WaitEvent)});
  ctor = Napi::Persistent(f);
  exports.Set("Stream", f);
}

Stream::Stream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stream>(info) {
  throwIfError(info.Env(), cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
}

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

Napi::Value Stream::Synchronize(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return info.Env().Undefined();
}

Napi::Value Stream::Destroy(const Napi::CallbackInfo& info) {
  if (stream_) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  return info.Env().Undefined();
}

// Work queued on this stream from now on is recorded, not run (thread-local mode: other threads'
// unrelated CUDA calls stay legal).
Napi::Value Stream::BeginCapture(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  return info.Env().Undefined();
}

// Ends recording and returns the instantiated Graph.
Napi::Value Stream::EndCapture(const Napi::CallbackInfo& info) {
  cudaGraph_t graph = nullptr;
  throwIfError(info.Env(), cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  throwIfError(info.Env(), e, "cudaGraphInstantiate");
  return Graph::Wrap(info.Env(), exec);
}

// Later work on this stream waits until the event's last recorded work is done (a cross-stream edge when
// recording a graph).
Napi::Value Stream::WaitEvent(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaStreamWaitEvent(stream_, eventOf(info[0]), 0), "cudaStreamWaitEvent");
  return info.Env().Undefined();
}

cudaStream_t streamOf(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Stream::ctor.Value())) throw Napi::TypeError::New(v.Env(), "expected a Stream");
  return Stream::Unwrap(v.As<Napi::Object>())->get();
}

}  // namespace df11addon
