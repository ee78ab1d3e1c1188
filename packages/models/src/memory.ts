import { readFileSync } from "node:fs";

/**
 * Peak resident memory of this process in bytes. On Linux this is VmHWM from /proc/self/status, which
 * starts afresh at exec (getrusage's maxrss would include the parent's peak from before the fork).
 */
export function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
