import { CudaError } from "../errors.js";

/**
 * NCCL cannot be used: no library was found or it failed to load, or it is too old. The message lists
 * every place looked in with the reason each failed, and how to fix it.
 */
export class NcclUnavailableError extends CudaError {
  override name = "NcclUnavailableError";
  constructor(
    message: string,
    /** The libraries tried, in order, each with why it did not load. */
    readonly attempts: readonly { readonly path: string; readonly reason: string }[] = [],
  ) {
    super(message, "NCCL_UNAVAILABLE");
  }
}

/** An NCCL call failed; `ncclResult` is its ncclResult_t. */
export class NcclError extends CudaError {
  override name = "NcclError";
  constructor(
    message: string,
    readonly ncclResult?: number,
  ) {
    super(message, "NCCL_ERROR");
  }
}
