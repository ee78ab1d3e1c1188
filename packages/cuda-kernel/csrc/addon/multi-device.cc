#include "multi-device.h"

namespace df11addon {
namespace {

// canAccessPeer(device, peer) → whether `device` can address `peer`'s memory directly.
Napi::Value CanAccessPeer(const Napi::CallbackInfo& info) {
  int can = 0;
  throwIfError(info.Env(), cudaDeviceCanAccessPeer(&can, intArg(info, 0, "device"), intArg(info, 1, "peer")), "cudaDeviceCanAccessPeer");
  return Napi::Boolean::New(info.Env(), can != 0);
}

// enablePeerAccess(peer): the current device may address `peer`'s memory from now on (already enabled is
// not an error).
Napi::Value EnablePeerAccess(const Napi::CallbackInfo& info) {
  const cudaError_t e = cudaDeviceEnablePeerAccess(intArg(info, 0, "peer"), 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return Napi::Boolean::New(info.Env(), false);
  }
  throwIfError(info.Env(), e, "cudaDeviceEnablePeerAccess");
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

void InitMultiDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("canAccessPeer", Napi::Function::New(env, CanAccessPeer, "canAccessPeer"));
  exports.Set("enablePeerAccess", Napi::Function::New(env, EnablePeerAccess, "enablePeerAccess"));
}

}  // namespace df11addon
