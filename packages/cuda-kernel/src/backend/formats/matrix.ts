import type { Address } from "../../native.js";
import type { CudaStream } from "../../runtime/stream.js";

/**
 * How a weight matrix is held on the GPU:
 * - `bf16`: plain BF16, row-major — the GEMV and GEMM read it directly;
 * - `huffman`: a slice of a DF11 module as stored (Huffman-coded exponents), decoded window by window
 *   into scratch before each product (least memory, slowest);
 * - `fused`: the DF11 fused layout (@df11/codec `fused-layout`), 11 bits + escapes per weight, decoded
 *   in registers by the fused GEMV; windows unpacked to scratch for the tensor-core GEMM.
 */
export type WeightFormat = "bf16" | "huffman" | "fused";

/** A matrix-vector product straight from a compressed format (≤ 64 rows of x). Addresses are device addresses. */
export interface GemvCall {
  /** Rows [rowBegin, rowEnd) of the matrix are multiplied (a slice of a fused q|k|v, say). */
  readonly rowBegin: number;
  readonly rowEnd: number;
  /** x: [rows, ldx] float32. */
  readonly x: Address;
  readonly ldx: number;
  readonly rows: number;
  /**
   * x rounded to BF16, [rows, ldx] (ldx = K), or 0. With more than 8 rows the kernel reads it instead of x
   * (the same operands at half the bytes); the results are the same bits either way.
   */
  readonly xBf16?: Address;
  /** [rowEnd − rowBegin] float32 or 0. */
  readonly bias: Address;
  /** out: [rows, ldo] float32; the products land in columns 0 … rowEnd − rowBegin. */
  readonly out: Address;
  readonly ldo: number;
  readonly accumulate: boolean;
  readonly stream: CudaStream;
}

/** A matrix product of many rows (prefill, large batches) on the tensor cores. Addresses are device addresses. */
export interface GemmCall {
  /** Rows [rowBegin, rowEnd) of the matrix are multiplied. */
  readonly rowBegin: number;
  readonly rowEnd: number;
  /** x converted to BF16: [rows, cols of the matrix], 16-byte aligned. */
  readonly xBf16: Address;
  readonly rows: number;
  /** [rowEnd − rowBegin] float32 or 0. */
  readonly bias: Address;
  /** out: [rows, ldo] float32; the products land in columns 0 … rowEnd − rowBegin. */
  readonly out: Address;
  readonly ldo: number;
  readonly accumulate: boolean;
  /** Split-K partial sums (float32), as the BF16 GEMM takes them. */
  readonly workspace: Address;
  readonly workspaceBytes: number;
  readonly stream: CudaStream;
}

/** A contiguous piece of device memory a matrix reads. */
export interface MatrixPart {
  readonly address: Address;
  readonly bytes: number;
}

/**
 * A weight matrix W[rows, cols] of BF16 values on the GPU, in one of the {@link WeightFormat}s. The
 * CUDA backend multiplies by it through the first path the matrix offers: `address` (BF16 GEMV/GEMM),
 * `gemv` (few rows, decoded in registers), or `decodeRows` into scratch windows and the BF16 kernels.
 */
export interface DeviceMatrix extends Disposable {
  readonly format: WeightFormat;
  readonly rows: number;
  readonly cols: number;
  /** Device memory the matrix holds (shared storage, such as a DF11 module, counted by its owner). */
  readonly deviceBytes: number;
  /** Device address of W when it is resident as BF16, row-major. */
  readonly address?: Address;
  /** The product from this format, when it has a kernel of its own for few rows. */
  gemv?(call: GemvCall): void;
  /** Whether `gemv` takes rows starting at rowBegin (default: any). */
  canGemv?(rowBegin: number): boolean;
  /**
   * The product of many rows straight from this format, bit-identical to the BF16 GEMM of the same weights,
   * when the device has a kernel for it. Returns false, launching nothing, otherwise (the caller then
   * decodes windows with `decodeRows`).
   */
  gemm?(call: GemmCall): boolean;
  /**
   * Rows [rowBegin, rowEnd) as BF16 into the scratch at `dst` (16-byte aligned, room for the rows and
   * 16 bytes more), asynchronously on `stream`. Returns where row rowBegin starts (dst, or a few
   * elements after it when the format decodes from an aligned element only).
   */
  decodeRows?(rowBegin: number, rowEnd: number, dst: Address, stream: CudaStream): Address;
  /**
   * The device memory the matrix reads, part by part (16-byte-aligned addresses), when it can be moved
   * (CPU offload: copied to pinned host memory, and back into a slot before each use).
   */
  readonly parts?: readonly MatrixPart[];
  /**
   * The same matrix reading copies of its {@link parts} at `addresses` (one per part; 256-byte aligned),
   * owning nothing there. Its kernels read those addresses, which never change (CUDA graphs stay valid).
   */
  relocate?(addresses: readonly Address[]): DeviceMatrix;
  /** Rows ids[0 … count) (device Int32 array) as BF16 into dst, [count, cols]: embedding lookups inside CUDA graphs. */
  gatherRows?(ids: Address, count: number, dst: Address, stream: CudaStream): void;
  /** Frees what the matrix owns. */
  dispose(): void;
}
