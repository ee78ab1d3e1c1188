import { CudaUnavailableError } from "../errors.js";
import { native, type Address, type NativeAddon, type NativeStream } from "../native.js";
import { NcclError, NcclUnavailableError } from "./errors.js";

/** What csrc/addon/nccl-clique.cc and multi-device.cc add to the addon. */
export interface NativeNcclClique {
  allReduce(sends: Address[], recvs: Address[], count: number, dtype: string, op: string, streams: Array<NativeStream | undefined>): void;
  allGather(sends: Address[], recvs: Address[], sendCount: number, dtype: string, streams: Array<NativeStream | undefined>): void;
  broadcast(sends: Address[], recvs: Address[], count: number, dtype: string, root: number, streams: Array<NativeStream | undefined>): void;
  destroy(): void;
  readonly size: number;
}

export interface NativeParallel {
  NcclClique: { new (devices: number[]): NativeNcclClique; load(path: string): { path: string; version: number } };
  canAccessPeer(device: number, peer: number): boolean;
  enablePeerAccess(peer: number): boolean;
}

/** The addon with its multi-GPU entry points; a binary built before they existed says to rebuild. */
export function parallelAddon(): NativeAddon & NativeParallel {
  const addon = native() as NativeAddon & Partial<NativeParallel>;
  if (typeof addon.NcclClique !== "function" || typeof addon.canAccessPeer !== "function") {
    throw new CudaUnavailableError(
      "this @df11/cuda-kernel binary predates multi-GPU support (no NcclClique): rebuild it with `npm explore @df11/cuda-kernel -- npm run build:native`",
    );
  }
  return addon as NativeAddon & NativeParallel;
}

/** Run a native NCCL call, turning its failures into {@link NcclError} / {@link NcclUnavailableError}. */
export function ncclCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as Error & { code?: string; ncclResult?: number };
    if (err.code === "NCCL_ERROR") throw new NcclError(err.message, err.ncclResult);
    if (err.code === "NCCL_UNAVAILABLE") throw new NcclUnavailableError(err.message);
    throw e;
  }
}
