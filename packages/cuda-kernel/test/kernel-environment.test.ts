// The kernel-selection environment variables: a value none of them takes is reported (loading the addon
// warns with it) instead of silently running the default.
import { describe, expect, it } from "vitest";
import { KERNEL_ENVIRONMENT, kernelEnvironmentProblems } from "../src/kernel-environment.js";

describe("kernel-selection environment variables", () => {
  it("every value each variable takes passes, unset passes", () => {
    expect(kernelEnvironmentProblems({})).toEqual([]);
    for (const [name, { values }] of Object.entries(KERNEL_ENVIRONMENT)) for (const v of values) expect(kernelEnvironmentProblems({ [name]: v })).toEqual([]);
  });

  it("an unknown value is named with the values taken and the default used", () => {
    const problems = kernelEnvironmentProblems({ DF11_GEMM: "cublas", DF11_FUSED_GEMM: "yes", DF11_PDL: "off", HOME: "/root" });
    expect(problems).toHaveLength(3);
    expect(problems[0]).toBe('DF11_GEMM="cublas" is not one of auto, mma, sm90, sm90-128, sm90-256; the default (auto) is used');
    expect(problems[1]).toMatch(/^DF11_FUSED_GEMM="yes" is not one of auto, always, off, 0; the default \(auto\) is used$/);
    expect(problems[2]).toMatch(/^DF11_PDL="off" is not one of 0, 1; the default \(on\) is used$/);
  });
});
