/**
 * Multi-GPU building blocks: choosing the current device ({@link withDevice}), peer access, and NCCL
 * collectives over the GPUs of one process ({@link NcclClique}), loaded at run time.
 */
export * from "./errors.js";
export { canAccessPeer, enablePeerAccess, withDevice } from "./devices.js";
export { loadNccl, ncclCandidates, ncclVersionString, python3SitePackages, wellKnownSitePackages, MIN_NCCL_VERSION, NCCL_SONAME, type NcclLibrary, type NcclSearchOptions } from "./nccl-loader.js";
export { NcclClique, NCCL_DTYPE_BYTES, type NcclDataType, type NcclReduceOp, type RankBuffer } from "./nccl-clique.js";
