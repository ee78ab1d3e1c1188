// --device / --devices: which device runs a model (kept apart from load-model.ts, which loads the GPU addon).
import { CliError } from "./errors.js";

/** Where generation runs: a CUDA GPU, the CPU, or (auto) the GPU when one is present. */
export type DeviceChoice = "auto" | "cpu" | "cuda";

/** The device to ask for: --devices names GPUs, so it means cuda (and is refused with --device cpu). */
export function deviceFor(device: DeviceChoice | undefined, devices: readonly number[] | undefined): DeviceChoice {
  if (!devices) return device ?? "auto";
  if (device === "cpu") throw new CliError(`--devices ${devices.join(",")} names GPUs; it does not apply to --device cpu`);
  return "cuda";
}

/** `--devices 0,1`: distinct GPU indices. */
export function parseDevices(v: string): number[] {
  const parts = v.split(",").map((p) => p.trim());
  const ids = parts.map(Number);
  if (parts.some((p) => !/^\d+$/.test(p))) throw new Error(`expected GPU indices separated by commas (e.g. 0,1), got ${JSON.stringify(v)}`);
  const huge = ids.find((d) => d > 1023);
  if (huge !== undefined) throw new Error(`${parts[ids.indexOf(huge)]} is not a GPU index`);
  if (new Set(ids).size !== ids.length) throw new Error(`${v} lists a GPU twice`);
  return ids;
}

