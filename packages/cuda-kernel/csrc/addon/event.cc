#include "event.h"

#include "stream.h"

namespace df11addon {

Napi::FunctionReference Event::ctor;

void Event::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Event",
                                 {InstanceMethod("record", &Event::Record), InstanceMethod("synchronize", &Event::Synchronize),
                                  InstanceMethod("elapsedMs", &Event::ElapsedMs), InstanceMethod("destroy", &Event::Destroy)});
  ctor = Napi::Persistent(f);
  exports.Set("Event", f);
}

// new Event(timing = true): without timing, events only order work (cheaper to record and wait on).
Event::Event(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Event>(info) {
  const bool timing = info.Length() < 1 || info[0].IsUndefined() || info[0].ToBoolean().Value();
  throwIfError(info.Env(), cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming), "cudaEventCreate");
}

Event::~Event() {
  if (event_) cudaEventDestroy(event_);
}

Napi::Value Event::Record(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaEventRecord(event_, streamOf(info[0])), "cudaEventRecord");
  return info.Env().Undefined();
}

Napi::Value Event::Synchronize(const Napi::CallbackInfo& info) {
  throwIfError(info.Env(), cudaEventSynchronize(event_), "cudaEventSynchronize");
  return info.Env().Undefined();
}

Napi::Value Event::ElapsedMs(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(ctor.Value())) throw Napi::TypeError::New(info.Env(), "expected an Event");
  Event* start = Event::Unwrap(info[0].As<Napi::Object>());
  float ms = 0;
  throwIfError(info.Env(), cudaEventElapsedTime(&ms, start->event_, event_), "cudaEventElapsedTime");
  return Napi::Number::New(info.Env(), ms);
}

Napi::Value Event::Destroy(const Napi::CallbackInfo& info) {
  if (event_) cudaEventDestroy(event_);
  event_ = nullptr;
  return info.Env().Undefined();
}

cudaEvent_t eventOf(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Event::ctor.Value())) throw Napi::TypeError::New(v.Env(), "expected an Event");
  return Event::Unwrap(v.As<Napi::Object>())->get();
}

}  // namespace df11addon
