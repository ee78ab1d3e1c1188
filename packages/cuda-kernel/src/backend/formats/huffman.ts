import { WeightLayoutError } from "@df11/models";
import type { Address } from "../../native.js";
import type { DeviceModule } from "../../runtime/device-module.js";
import type { CudaStream } from "../../runtime/stream.js";
import type { DeviceMatrix } from "./matrix.js";

/**
 * Rows of a DF11 module kept as stored (Huffman-coded exponents, the DFloat11 format itself): elements
 * [start, start + rows·cols) of the module's decoded stream. Decoded window by window into scratch
 * right before each product. The module belongs to the loader, which may slice it into several matrices.
 */
export class HuffmanDeviceMatrix implements DeviceMatrix {
  readonly format = "huffman";
  constructor(
    readonly module: DeviceModule,
    /** Element offset of row 0 in the module. */
    readonly start: number,
    readonly rows: number,
    readonly cols: number,
    /** For errors: the module's tensor prefix and the weight's name. */
    readonly name: string,
  ) {}

  /** The module's bytes are counted once by the loader. */
  get deviceBytes(): number {
    return 0;
  }

  decodeRows(rowBegin: number, rowEnd: number, dst: Address, stream: CudaStream): Address {
    const lo = this.start + rowBegin * this.cols;
    const alignedLo = lo - (lo % 8); // the kernel writes from a multiple of 8 elements
    this.module.decodeRange(dst, alignedLo, this.start + rowEnd * this.cols, stream);
    return dst + (lo - alignedLo) * 2;
  }

  gatherRows(ids: Address, count: number, dst: Address, stream: CudaStream): void {
    // The row-mode decode finds rows by their element offset in the module: the matrix must start it.
    if (this.start !== 0) throw new WeightLayoutError(this.name, "shares its DF11 module with other weights; the GPU embedding lookup needs it alone");
    this.module.decodeRows(ids, count, this.cols, dst, stream);
  }

  dispose(): void {}
  [Symbol.dispose](): void {}
}
