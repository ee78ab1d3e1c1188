// A DF11 module resident on the GPU, decoded by the DFloat11 decode kernel.
import { validateModule, validateModuleHeader, type DF11Module, type DF11ModuleHeader } from "@df11/codec";
import { DisposedError } from "../errors.js";
import { DeviceChecksum, DeviceChecksumBatch } from "../integrity/device-checksum.js";
import { call, native, type Address, type NativeModule } from "../native.js";
import type { DeviceBuffer } from "./device-buffer.js";
import { requireDevice } from "./device.js";
import type { CudaStream } from "./stream.js";

export interface DecodeOptions {
  /** Element offset into `out` (a multiple of 8), to decode several modules into one buffer. */
  readonly offset?: number;
  readonly stream?: CudaStream;
}

/**
 * A DF11 module resident on the GPU: its tensors uploaded once (validated first), plus the kernel's
 * first-level decode table. Decoding it writes BF16 into a device buffer.
 */
export class DeviceModule implements Disposable {
  private handle: NativeModule | undefined;
  /** Elements (BF16 weights) the module decodes to. */
  readonly elements: number;
  /** Bytes of device memory the module holds. */
  readonly deviceBytes: number;
  readonly splitPositions: readonly number[];

  private constructor(handle: NativeModule, splitPositions: readonly number[]) {
    this.handle = handle;
    this.elements = handle.elements;
    this.deviceBytes = handle.deviceBytes;
    this.splitPositions = splitPositions;
  }

  /** Validate a module (throws InvalidModuleError from @df11/codec) and upload it. */
  static upload(module: DF11Module): DeviceModule {
    validateModule(module);
    const addon = requireDevice();
    return new DeviceModule(call(() => new addon.Module(module)), module.splitPositions);
  }

  /**
   * Validate a module known without its bulk tensors (throws InvalidModuleError from @df11/codec) and
   * allocate it: LUTs, decode tables, output positions and gaps are copied now; `encoded_exponent` and
   * `sign_mantissa` are left for the caller to copy to {@link bulk} (streamed from the file through small
   * pinned buffers) before the first decode, ordered before it on the decoding stream.
   */
  static allocate(header: DF11ModuleHeader): DeviceModule {
    validateModuleHeader(header);
    const addon = requireDevice();
    const { encodedExponentBytes, signMantissaBytes, ...rest } = header;
    return new DeviceModule(call(() => new addon.Module({ ...rest, encodedExponent: encodedExponentBytes, signMantissa: signMantissaBytes })), header.splitPositions);
  }

  /** Device addresses of the two bulk tensors as stored (what {@link allocate} leaves to fill). */
  get bulk(): { readonly encoded_exponent: Address; readonly sign_mantissa: Address } {
    const where = call(() => this.native.stored());
    return { encoded_exponent: where.encoded_exponent.address, sign_mantissa: where.sign_mantissa.address };
  }

  /** @internal */
  get native(): NativeModule {
    if (!this.handle) throw new DisposedError("DeviceModule");
    return this.handle;
  }

  /** Decode into `out` (asynchronous on the given stream; `synchronize` or an event to wait). */
  decode(out: DeviceBuffer, options: DecodeOptions = {}): void {
    decode(this, out, options);
  }

  /**
   * Decode only elements [lo, hi) into device memory at `out` (elements lo… land at out[0…]): only the
   * blocks holding them run. `lo` must be a multiple of 8 and `out` 16-byte aligned.
   */
  decodeRange(out: Address, lo: number, hi: number, stream?: CudaStream): void {
    call(() => this.native.decodeRange(out, lo, hi, stream?.native));
  }

  /**
   * Decode rows of the module seen as a [*, rowElements] matrix, the row indices read on the device from
   * `ids` (Int32, `rows` of them): out[r] = row ids[r]. Works inside CUDA graphs (embedding lookup).
   */
  decodeRows(ids: Address, rows: number, rowElements: number, out: Address, stream?: CudaStream): void {
    call(() => this.native.decodeRows(ids, rows, rowElements, out, stream?.native));
  }

  /**
   * df11-sum64 checksums of the tensors kept on the device exactly as stored (luts, encoded_exponent,
   * sign_mantissa, gaps), computed where they lie: what the loader compares with the recorded ones.
   * `sum` may be one the caller already holds; a {@link DeviceChecksumBatch} of ≥ 4 slots sums all four
   * on its stream (ordered after the copies queued there) with one wait.
   */
  storedChecksums(sum?: DeviceChecksum | DeviceChecksumBatch): Record<"luts" | "encoded_exponent" | "sign_mantissa" | "gaps", string> {
    const where = call(() => this.native.stored());
    const names = Object.keys(where) as Array<keyof typeof where>;
    const out = {} as Record<keyof typeof where, string>;
    if (sum instanceof DeviceChecksumBatch) {
      if (sum.slots < names.length) throw new RangeError(`storedChecksums needs a batch of ${names.length} slots, got ${sum.slots}`);
      sum.reset();
      names.forEach((name, i) => sum.add(i, where[name].address, where[name].bytes));
      const hex = sum.hex();
      names.forEach((name, i) => (out[name] = hex[i]));
      return out;
    }
    using own = sum ? undefined : new DeviceChecksum();
    const summer = (sum ?? own)!;
    for (const name of names) out[name] = summer.hexOf(where[name].address, where[name].bytes);
    return out;
  }

  dispose(): void {
    this.handle?.free();
    this.handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Decode a resident module into a device buffer as BF16 bit patterns (2 bytes per element). */
export function decode(module: DeviceModule, out: DeviceBuffer, options: DecodeOptions = {}): void {
  call(() => native().decode(module.native, out.native, options.offset ?? 0, options.stream?.native));
}

