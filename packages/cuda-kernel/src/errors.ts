/** Base class of the errors of @df11/cuda-kernel; `code` is `CUDA_ERROR` for failed CUDA calls. */
export class CudaError extends Error {
  override name = "CudaError";
  constructor(
    message: string,
    readonly code = "CUDA_ERROR",
    /** The cudaError_t value, when a CUDA call failed. */
    readonly cudaError?: number,
  ) {
    super(message);
  }
}

/** The addon binary is missing or cannot load, or the machine has no CUDA device. */
export class CudaUnavailableError extends CudaError {
  override name = "CudaUnavailableError";
  constructor(message: string) {
    super(message, "CUDA_UNAVAILABLE");
  }
}

/** A resource (buffer, stream, event, module) used after dispose(). */
export class DisposedError extends CudaError {
  override name = "DisposedError";
  constructor(what: string) {
    super(`${what} was used after dispose()`, "DISPOSED");
  }
}

/** The GPU has too little free memory: says how much was needed (and free) where known. */
export class OutOfDeviceMemoryError extends CudaError {
  override name = "OutOfDeviceMemoryError";
  constructor(
    message: string,
    /** Bytes the operation needed, when known. */
    readonly neededBytes?: number,
    /** Bytes free on the device, when known. */
    readonly freeBytes?: number,
  ) {
    super(message, "CUDA_OUT_OF_MEMORY", 2);
  }
}
