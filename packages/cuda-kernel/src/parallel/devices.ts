import { call } from "../native.js";
import { currentDevice, requireDevice } from "../runtime/device.js";
import { parallelAddon } from "./nccl-addon.js";

/**
 * Multi-GPU helpers. The addon's allocations, streams, events and launches use the calling thread's
 * *current* device (CUDA runtime semantics): a buffer or stream belongs to the device that was current
 * when it was made, and work goes to a stream's own device. {@link withDevice} makes one device current
 * for a block of code and restores the previous one, so single-GPU code keeps its device untouched.
 */

/**
 * Run `fn` with `device` current, then make the previous device current again (also when `fn` throws).
 * Synchronous only: an `await` inside would let other code run on the wrong device, so a promise
 * returned by `fn` is refused with a TypeError (after restoring the device).
 *
 * @example
 * ```ts
 * const buffers = devices.map((d) => withDevice(d, () => DeviceBuffer.alloc(bytes)));
 * ```
 */
export function withDevice<T>(device: number, fn: () => T): T {
  const addon = requireDevice();
  const previous = currentDevice();
  call(() => addon.setDevice(device));
  let result: T;
  try {
    result = fn();
  } finally {
    call(() => addon.setDevice(previous));
  }
  if (result instanceof Promise) throw new TypeError("withDevice: fn returned a promise; CUDA's current device is per thread, so keep the work inside synchronous");
  return result;
}

/** Whether `device` can read and write `peer`'s memory directly (NVLink or PCIe peer-to-peer). */
export function canAccessPeer(device: number, peer: number): boolean {
  return call(() => parallelAddon().canAccessPeer(device, peer));
}

/**
 * Let kernels and copies on `device` address `peer`'s memory (one direction; call both ways for two
 * way access). Returns false when it was already enabled. NCCL does not need this: it sets up its own
 * peer paths.
 */
export function enablePeerAccess(device: number, peer: number): boolean {
  return withDevice(device, () => call(() => parallelAddon().enablePeerAccess(peer)));
}
