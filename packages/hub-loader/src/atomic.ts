import { randomBytes } from "node:crypto";
import { rmSync, statSync } from "node:fs";
import { access, mkdir, rename, rm } from "node:fs/promises";
import { HubLoaderError } from "./errors.js";
import { basename, dirname, join, resolve } from "node:path";

/** A sibling temporary path for `target` (same filesystem, so rename is atomic). */
export const temporarySibling = (target: string): string =>
  join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);

/** Temporaries being written right now (removed by {@link removePendingTemporaries} on a signal). */
const pending = new Set<string>();

/**
 * Remove every temporary an in-flight atomic write has made, synchronously: for a process about to
 * exit on a signal (the CLI calls it on SIGINT/SIGTERM), so an interrupted run leaves nothing behind.
 */
export function removePendingTemporaries(): void {
  for (const tmp of pending) rmSync(tmp, { recursive: true, force: true });
  pending.clear();
}

/**
 * Several files replaced together: each new version is written to a temporary sibling first, and only
 * when all are complete are they renamed over the originals (each rename is atomic; a failure before
 * them leaves every original untouched and removes the temporaries).
 */
export async function replaceFilesAtomically(targets: readonly string[], write: (target: string, tmp: string) => Promise<void>): Promise<void> {
  const temps = targets.map(temporarySibling);
  temps.forEach((t) => pending.add(t));
  try {
    for (let i = 0; i < targets.length; i++) await write(targets[i], temps[i]);
    for (let i = 0; i < targets.length; i++) await rename(temps[i], targets[i]);
  } catch (e) {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    throw e;
  } finally {
    temps.forEach((t) => pending.delete(t));
  }
}

/** The first path from the root down to `dir` that exists and is not a directory. */
function fileInTheWay(dir: string): string | undefined {
  const chain: string[] = [];
  for (let d = dir; !chain.includes(d); d = dirname(d)) chain.unshift(d);
  for (const d of chain) {
    try {
      if (!statSync(d).isDirectory()) return d;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Filesystems the Linux kernel provides, where no file can be created (and Node's recursive mkdir never returns under /proc). */
const VIRTUAL_ROOTS = ["/proc", "/sys"];

/** The virtual filesystem `path` lies in, on Linux, or undefined. */
function virtualRoot(path: string): string | undefined {
  if (process.platform !== "linux") return undefined;
  const abs = resolve(path);
  return VIRTUAL_ROOTS.find((r) => abs === r || abs.startsWith(`${r}/`));
}

/**
 * Create `target`'s parent directories. A path on the way that is a file (EEXIST, ENOTDIR) is a
 * HubLoaderError naming the output, not the bare errno message about one of its parents; so is a target
 * under /proc or /sys.
 */
async function makeParentDirectory(target: string): Promise<void> {
  const root = virtualRoot(target);
  if (root) throw new HubLoaderError(`${target}: ${root} is a virtual filesystem the kernel provides, where no file can be written; choose a directory on a disk`);
  try {
    await mkdir(dirname(target), { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === "EEXIST" || code === "ENOTDIR") {
      throw new HubLoaderError(`${target}: cannot create its directory ${dirname(target)}: ${fileInTheWay(dirname(target)) ?? "a part of it"} is a file, not a directory`);
    }
    throw e;
  }
}

/**
 * Run `write(tmp)` against a temporary sibling of `target`, then rename it into place. On failure the
 * temporary is removed and `target` is untouched, so no half-written file or directory is ever visible.
 */
export async function writeAtomically<T>(target: string, write: (tmp: string) => Promise<T>): Promise<T> {
  await makeParentDirectory(target);
  const tmp = temporarySibling(target);
  pending.add(tmp);
  try {
    const result = await write(tmp);
    await rename(tmp, target);
    return result;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    pending.delete(tmp);
  }
}

/**
 * Like {@link writeAtomically} for a directory: the directory is built under a temporary name and
 * swapped in at the end (an existing target is replaced only once the new one is complete).
 */
export async function writeDirectoryAtomically<T>(
  target: string,
  build: (tmpDir: string) => Promise<T>,
  options: { overwrite?: boolean } = {},
): Promise<T> {
  if (await exists(target)) {
    if (!options.overwrite) throw new HubLoaderError(`${target} already exists (pass overwrite / --force to replace it)`);
    // overwrite replaces a directory the tool wrote before, never a file (or /dev/null) in the way.
    if (!statSync(target).isDirectory()) throw new HubLoaderError(`${target} is not a directory: overwrite / --force replaces only a directory`);
  }
  return writeAtomically(target, async (tmp) => {
    await mkdir(tmp, { recursive: true });
    const result = await build(tmp);
    await rm(target, { recursive: true, force: true });
    return result;
  });
}

/** Whether a path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
