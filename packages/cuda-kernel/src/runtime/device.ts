// CUDA devices: presence, properties, the current device, memory.
import { CudaUnavailableError } from "../errors.js";
import { call, native } from "../native.js";

/** A CUDA device. */
export interface DeviceInfo {
  readonly index: number;
  readonly name: string;
  readonly computeCapability: string;
  readonly totalMemory: number;
  readonly multiprocessors: number;
  readonly l2CacheBytes: number;
  readonly sharedMemoryPerBlockOptin: number;
}

/** Number of CUDA devices; 0 without a GPU or driver. Throws {@link CudaUnavailableError} without a binary. */
export function deviceCount(): number {
  return call(() => native().deviceCount());
}

/** Whether the addon loads and a CUDA device is present. Never throws. */
export function isCudaAvailable(): boolean {
  try {
    return deviceCount() > 0;
  } catch {
    return false;
  }
}

/** Why CUDA is not usable here, or undefined when it is. */
export function cudaUnavailableReason(): string | undefined {
  try {
    return deviceCount() > 0 ? undefined : "no CUDA device (no GPU, or no NVIDIA driver)";
  } catch (e) {
    return (e as Error).message;
  }
}

export function requireDevice(): ReturnType<typeof native> {
  const addon = native();
  if (call(() => addon.deviceCount()) === 0) throw new CudaUnavailableError("no CUDA device found (no GPU, or no NVIDIA driver)");
  return addon;
}

/** All CUDA devices. */
export function devices(): DeviceInfo[] {
  const n = deviceCount();
  return Array.from({ length: n }, (_, i) => call(() => native().deviceInfo(i)) as unknown as DeviceInfo);
}

/** Select the device later calls use. */
export function setDevice(index: number): void {
  call(() => requireDevice().setDevice(index));
}

/** Free and total memory of the current device, in bytes. */
export function memoryInfo(): { free: number; total: number } {
  return call(() => requireDevice().memInfo());
}

/** Wait for all work on the current device. */
export function synchronize(): void {
  call(() => requireDevice().synchronize());
}

/** CUDA runtime version the addon was built with (e.g. 13000). */
export function cudaRuntimeVersion(): number {
  return native().cudaRuntimeVersion;
}


/** Bytes of df11's device buffers on `device` now, and the most at once since {@link resetPeakAllocation} (the CUDA context is not counted). */
export function allocationStats(device = currentDevice()): { allocated: number; peak: number } {
  return call(() => requireDevice().allocationStats(device));
}

/** Start measuring the peak of {@link allocationStats} from what is allocated now. */
export function resetPeakAllocation(device = currentDevice()): void {
  call(() => requireDevice().resetPeakAllocation(device));
}

/** Whether df11's kernels launch as programmatic dependent launches on `device` (Hopper and newer, unless DF11_PDL=0), as the addon decides it. */
export function programmaticLaunch(device = currentDevice()): boolean {
  return call(() => requireDevice().programmaticLaunch(device));
}

/** The device later calls use. */
export function currentDevice(): number {
  return call(() => requireDevice().getDevice());
}

/**
 * The addon's raw entry points (kernel launchers taking device addresses). For tests and tools that
 * exercise single kernels; nothing checks the addresses — prefer the CUDA backend.
 * @internal
 */
export function nativeAddon(): ReturnType<typeof native> {
  return requireDevice();
}
