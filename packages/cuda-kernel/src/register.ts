// Importing the package makes `device: "cuda"` available to @df11/models' loadModel / loadCausalLM.
import { registerBackend } from "@df11/models";
import { CudaBackend } from "./backend/cuda-backend.js";
import { cudaUnavailableReason } from "./runtime/device.js";
import { TensorParallelBackend } from "./backend/tensor-parallel-backend.js";

registerBackend("cuda", {
  unavailableReason: () => cudaUnavailableReason(),
  load: (dir, { devices, ...options }) =>
    devices && devices.length > 1 ? TensorParallelBackend.load(dir, { ...options, devices }) : CudaBackend.load(dir, { ...options, device: devices?.[0] }),
});
