/**
 * Environment variables that pick kernels (read by the addon and the backend, once, for comparisons and
 * workarounds) and the values each takes. A value outside them used to be taken silently as the default;
 * now loading the addon warns about it (see {@link kernelEnvironmentProblems}).
 */
export const KERNEL_ENVIRONMENT: Readonly<Record<string, readonly string[]>> = {
  /** The prefill GEMM: Hopper wgmma where the device has it (auto), always mma.sync, or a fixed Hopper column tile. */
  DF11_GEMM: ["auto", "mma", "sm90", "sm90-128", "sm90-256"],
  /** The DF11 fused GEMM (fused tiles decoded inside the Hopper kernel): up to 128 rows (auto), at every size, or never. */
  DF11_FUSED_GEMM: ["auto", "always", "off", "0"],
  /** Programmatic dependent launch on Hopper: 0 turns it off. */
  DF11_PDL: ["0", "1"],
  /** Prompt-chunk attention: warp keeps the warp-per-row kernel instead of the tensor-core one. */
  DF11_PREFILL_ATTENTION: ["auto", "warp"],
};

/**
 * One message per kernel-selection variable set to a value it does not take, naming the variable, the
 * value, the values it takes and the default used instead. Empty when all is well.
 */
export function kernelEnvironmentProblems(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const problems: string[] = [];
  for (const [name, values] of Object.entries(KERNEL_ENVIRONMENT)) {
    const v = env[name];
    if (v === undefined || values.includes(v)) continue;
    problems.push(`${name}=${JSON.stringify(v)} is not one of ${values.join(", ")}; the default (${name === "DF11_PDL" ? "on" : "auto"}) is used`);
  }
  return problems;
}
