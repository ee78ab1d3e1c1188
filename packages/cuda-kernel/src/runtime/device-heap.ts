// Device memory for many mid-sized allocations that live and die together, without cudaMalloc's rounding.
import { DisposedError, OutOfDeviceMemoryError } from "../errors.js";
import { call, native, type Address, type NativeDeviceHeap } from "../native.js";
import { requireDevice } from "./device.js";

/**
 * Device memory handed out by a bump allocator over a reserved range of virtual addresses, whose physical memory is mapped
 * in on demand, in steps of the allocation granularity (2 MiB on an H200; {@link DeviceHeap.granularity}).
 *
 * Why: cudaMalloc rounds mid-sized allocations up to 2 MiB pages — on an H200, 100 × (3 MiB + 4 KiB) take 419 MB of device
 * memory for 315 MB asked (+33 %), and the fused weight layout's ~450 allocations of a few MB waste 331 MB that way. Here
 * consecutive allocations share pages: a growth maps exactly the granules missing (one cuMemCreate each), so all the heap
 * wastes is less than one granule per reserved range. Built on the CUDA driver API's "Virtual Memory Management"
 * (cuMemAddressReserve, cuMemCreate, cuMemMap, cuMemSetAccess; the whole heap is unmapped and released by
 * {@link DeviceHeap.dispose}). Allocations are not freed one by one.
 *
 * The memory is ordinary device memory of the device current at {@link DeviceHeap.create}: kernels, cudaMemcpyAsync
 * (host ↔ device, device ↔ device) and cudaMemset take its addresses as they take a {@link DeviceBuffer}'s. Mapped bytes
 * count in {@link allocationStats} as DeviceBuffers do. Free it with dispose() (or `using`); garbage collection frees it
 * as a last resort. Like cudaFree, dispose() waits for the device's work first.
 */
export class DeviceHeap implements Disposable {
  private handle: NativeDeviceHeap | undefined;

  private constructor(handle: NativeDeviceHeap) {
    this.handle = handle;
  }

  /**
   * Whether the current device supports CUDA virtual memory management (the driver's
   * CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED; every GPU df11 runs on, under Linux). False without a GPU, a
   * driver or the addon; never throws.
   */
  static supported(): boolean {
    try {
      const addon = native();
      return addon.deviceCount() > 0 && typeof addon.virtualMemorySupported === "function" && addon.virtualMemorySupported();
    } catch {
      return false;
    }
  }

  /**
   * A heap on the current device reserving `reserveBytes` bytes of virtual addresses (rounded up to the granularity) for
   * its first range; no device memory is taken until {@link alloc}. Reserving addresses is cheap: reserve what the heap is
   * expected to hold. Throws RangeError unless `reserveBytes` is an integer ≥ 1, {@link CudaUnavailableError} without a GPU,
   * {@link CudaError} where the device does not support virtual memory management ({@link DeviceHeap.supported}) or a
   * driver call fails (the message names the call and its CUresult).
   */
  static create(reserveBytes: number): DeviceHeap {
    const addon = requireDevice();
    return new DeviceHeap(call(() => new addon.DeviceHeap(reserveBytes)));
  }

  /**
   * The device address of `bytes` bytes (uninitialised), aligned to `alignment` bytes (a power of two; 256 by default, as
   * cudaMalloc). Valid until dispose(). 0 bytes give address 0, as `DeviceBuffer.alloc(0)`. When the allocation ends past
   * the mapped memory, the granules missing are mapped; when it does not fit in the current range's addresses, a new range
   * of max(reserveBytes, bytes rounded up to the granularity) is reserved and the heap continues there (an allocation
   * never spans ranges; the old range's rest stays unused). Throws {@link OutOfDeviceMemoryError} (with `neededBytes`, the
   * bytes it tried to map) when the device has too little free memory — the heap stays usable —, {@link CudaError} when
   * another driver call fails, RangeError for a size that is not an integer ≥ 0 or an alignment that is not a power of
   * two ≤ 2^32, {@link DisposedError} after dispose().
   */
  alloc(bytes: number, alignment?: number): Address {
    const heap = this.native;
    try {
      return heap.alloc(bytes, alignment);
    } catch (e) {
      const err = e as Error & { code?: string; neededBytes?: number };
      if (err.code !== "CUDA_OUT_OF_MEMORY") return call(() => raise(e)); // CudaError for a failed driver call; RangeError, TypeError as they are
      let freeBytes: number | undefined;
      try {
        freeBytes = native().memInfo().free;
      } catch {
        freeBytes = undefined;
      }
      const free = freeBytes === undefined ? "" : `, ${freeBytes} bytes free`;
      throw new OutOfDeviceMemoryError(
        `out of device memory: DeviceHeap.alloc(${bytes}) needed ${err.neededBytes ?? bytes} more bytes of device memory (the heap has ${heap.mappedBytes} mapped${free}): ${err.message}`,
        err.neededBytes ?? bytes,
        freeBytes,
      );
    }
  }

  /** Bytes of physical device memory mapped (what the heap takes from the device): a multiple of {@link granularity}. */
  get mappedBytes(): number {
    return this.native.mappedBytes;
  }

  /** Bytes handed out by {@link alloc}, alignment padding included (≤ mappedBytes; less than a granule below it per range). */
  get usedBytes(): number {
    return this.native.usedBytes;
  }

  /** Bytes of virtual addresses reserved, all ranges together (no device memory by itself). */
  get reservedBytes(): number {
    return this.native.reservedBytes;
  }

  /** Bytes of the driver's minimum allocation granularity on the heap's device: the step in which memory is mapped. */
  get granularity(): number {
    return this.native.granularity;
  }

  /** @internal */
  get native(): NativeDeviceHeap {
    if (!this.handle) throw new DisposedError("DeviceHeap");
    return this.handle;
  }

  get disposed(): boolean {
    return !this.handle;
  }

  /** Unmap and release all of the heap's memory and addresses (after waiting for the device's work); idempotent. */
  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Rethrows `e` (for call(), which turns the addon's CUDA errors into {@link CudaError}). */
function raise(e: unknown): never {
  throw e;
}
