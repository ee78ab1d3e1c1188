/**
 * @df11/cuda-kernel — DFloat11 on the GPU: a fast decode kernel for compressed BF16 weights, device
 * memory, streams and events, through a Node-API addon (CUDA runtime linked statically: only the
 * NVIDIA driver is needed).
 *
 * @example
 * ```ts
 * import { DeviceModule, DeviceBuffer } from "@df11/cuda-kernel";
 * using gpuModule = DeviceModule.upload(module);           // a DF11Module from @df11/codec, kept resident
 * using weights = DeviceBuffer.alloc(gpuModule.elements * 2);
 * gpuModule.decode(weights);                                // BF16, bit-identical to the original
 * ```
 */
export * from "./errors.js";
export { addonCandidates, type Address } from "./native.js";
export { KERNEL_ENVIRONMENT, kernelEnvironmentProblems, type KernelVariable } from "./kernel-environment.js";
export {
  allocationStats,
  cudaRuntimeVersion,
  cudaUnavailableReason,
  currentDevice,
  deviceCount,
  devices,
  isCudaAvailable,
  memoryInfo,
  nativeAddon,
  programmaticLaunch,
  resetPeakAllocation,
  setDevice,
  synchronize,
  type DeviceInfo,
} from "./runtime/device.js";
export { DeviceBuffer, copyDeviceToDevice } from "./runtime/device-buffer.js";
export { DeviceHeap } from "./runtime/device-heap.js";
export { PinnedBuffer } from "./runtime/pinned-buffer.js";
export { CudaEvent, CudaGraph, CudaStream } from "./runtime/stream.js";
export { DeviceModule, decode, type DecodeOptions } from "./runtime/device-module.js";
export { DeviceChecksum, DeviceChecksumBatch, deviceChecksumHex } from "./integrity/device-checksum.js";
export {
  CudaBackend,
  DEFAULT_DECODE_CHUNK,
  DEFAULT_GEMM_MIN_ROWS,
  DEFAULT_MAX_CONTEXT,
  DEFAULT_MAX_ROWS,
  type CudaBackendOptions,
  type CudaEngineConfig,
  type CudaMemoryPlan,
  type CudaTensor,
  type GpuWeightsLayout,
} from "./backend/cuda-backend.js";
export { TensorParallelBackend, type TensorParallelBackendOptions, type TensorParallelEngineConfig, type TensorParallelTensor } from "./backend/tensor-parallel-backend.js";
export { planOffload, offloadLast, type OffloadPlan, type OffloadPlanInput } from "./backend/offload-plan.js";
export { LayerOffload } from "./backend/offload.js";
export { DeviceWeights, type LoadProgress, type LoadChecks, type LoadCheckReport, type LoadPhaseTimes } from "./backend/device-weights.js";
export { FusedDeviceMatrix, fusedLayoutReport, type FusedLayoutReport } from "./backend/formats/fused.js";
export { fusedMatrixStats, type FusedMatrixCost, type FusedMatrixStats } from "./backend/formats/fused-stats.js";
export type { DeviceMatrix, WeightFormat } from "./backend/formats/matrix.js";
export { OpProfile, type OpTime } from "./backend/op-profile.js";
export * from "./parallel/index.js";
import "./register.js";
