// Importing the package makes `device: "cuda"` available to @df11/models' loadModel / loadCausalLM.
import { registerBackend } from "@df11/models";
import { CudaBackend } from "./backend/cuda-backend.js";
import { cudaUnavailableReason } from "./runtime/device.js";

registerBackend("cuda", { unavailableReason: () => cudaUnavailableReason(), load: (dir, options) => CudaBackend.load(dir, options) });
