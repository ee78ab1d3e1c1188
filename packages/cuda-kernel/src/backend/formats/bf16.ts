import type { Address } from "../../native.js";
import type { DeviceMatrix, MatrixPart } from "./matrix.js";

/**
 * A BF16 matrix resident on the GPU: the GEMV and GEMM read it where it lies. The storage belongs to
 * the caller (the loader keeps a layer's matrices in one buffer), so dispose() frees nothing.
 */
export class Bf16DeviceMatrix implements DeviceMatrix {
  readonly format = "bf16";
  constructor(
    readonly address: Address,
    readonly rows: number,
    readonly cols: number,
  ) {}
  get deviceBytes(): number {
    return this.rows * this.cols * 2;
  }
  get parts(): readonly MatrixPart[] {
    return [{ address: this.address, bytes: this.deviceBytes }];
  }
  relocate(addresses: readonly Address[]): Bf16DeviceMatrix {
    return new Bf16DeviceMatrix(addresses[0], this.rows, this.cols);
  }
  dispose(): void {}
  [Symbol.dispose](): void {}
}
