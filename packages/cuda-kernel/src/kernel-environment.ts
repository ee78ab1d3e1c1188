/** A kernel-selection variable: the values it takes, and what runs when it is unset or unknown. */
export interface KernelVariable {
  readonly values: readonly string[];
  readonly fallback: string;
}

/**
 * Environment variables that pick kernels (read by the addon and the backend, once, for comparisons and
 * workarounds) and the values each takes. A value outside them used to be taken silently as the default;
 * now loading the addon warns about it (see {@link kernelEnvironmentProblems}).
 */
export const KERNEL_ENVIRONMENT: Readonly<Record<string, KernelVariable>> = {
  /** The prefill GEMM: Hopper wgmma where the device has it (auto), always mma.sync, or a fixed Hopper column tile. */
  DF11_GEMM: { values: ["auto", "mma", "sm90", "sm90-128", "sm90-256"], fallback: "auto" },
  /** The DF11 fused GEMM (fused tiles decoded inside the Hopper kernel): up to 128 rows (auto), at every size, or never. */
  DF11_FUSED_GEMM: { values: ["auto", "always", "off", "0"], fallback: "auto" },
  /** Programmatic dependent launch on Hopper: 0 turns it off. */
  DF11_PDL: { values: ["0", "1"], fallback: "on" },
  /** Prompt-chunk attention: warp keeps the warp-per-row kernel instead of the tensor-core one. */
  DF11_PREFILL_ATTENTION: { values: ["auto", "warp"], fallback: "auto" },
};

/**
 * One message per kernel-selection variable set to a value it does not take, naming the variable, the
 * value, the values it takes and the default used instead. Empty when all is well.
 */
export function kernelEnvironmentProblems(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const problems: string[] = [];
  for (const [name, { values, fallback }] of Object.entries(KERNEL_ENVIRONMENT)) {
    const v = env[name];
    if (v === undefined || values.includes(v)) continue;
    problems.push(`${name}=${JSON.stringify(v)} is not one of ${values.join(", ")}; the default (${fallback}) is used`);
  }
  return problems;
}
