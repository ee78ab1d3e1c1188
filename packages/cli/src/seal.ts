import { replaceFilesAtomically, copySafetensorsWithMetadata, SafetensorsCollection } from "@df11/hub-loader";
import { ChecksumLedger, CHECKSUMS_METADATA_KEY, WRITER_METADATA_KEY } from "@df11/models";
import type { Progress } from "./progress.js";
import { verifyModel, type VerifyReport } from "./verify.js";
import { WRITER } from "./version.js";

export interface SealOptions {
  readonly threads?: number;
  readonly onProgress?: (p: Progress) => void;
}

export interface SealReport {
  /** The full check that ran first (checksums already present were checked too). */
  readonly verified: VerifyReport;
  /** The files rewritten with checksums. */
  readonly files: readonly string[];
}

/**
 * Add df11-sum64 checksums to an existing DF11 model (an official one, or one written with
 * --no-checksums), after a full decode check. Each file keeps its tensors byte for byte and gains
 * `df11.checksums` and `df11.writer` in its `__metadata__`; all files are written beside the
 * originals and renamed over them only when every one is complete. Checksums already present are
 * checked first and replaced.
 */
export async function sealModel(dir: string, options: SealOptions = {}): Promise<SealReport> {
  const ledger = new ChecksumLedger(WRITER);
  const verified = await verifyModel(dir, { threads: options.threads, onProgress: options.onProgress, ledger });
  const weights = await SafetensorsCollection.openDirectory(dir);
  const plans = weights.files.map((f) => {
    const kept = Object.fromEntries(Object.entries(f.metadata).filter(([k]) => k !== CHECKSUMS_METADATA_KEY && k !== WRITER_METADATA_KEY));
    const layouts = [...f.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength }));
    return { path: f.path, metadata: { ...kept, ...ledger.metadataFor(layouts) } };
  });
  await weights.close();
  const metadataOf = new Map(plans.map((p) => [p.path, p.metadata]));
  await replaceFilesAtomically([...metadataOf.keys()], (target, tmp) => copySafetensorsWithMetadata(target, tmp, metadataOf.get(target)!));
  return { verified, files: plans.map((p) => p.path) };
}
