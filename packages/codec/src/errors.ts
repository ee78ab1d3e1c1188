/** Base class of every error thrown by @df11/codec. */
export class CodecError extends Error {
  override name = "CodecError";
}

/**
 * A BF16 value whose 8-bit exponent is ≥ 240 (|x| ≥ 2^113, ±inf or NaN): the DF11 LUT format reserves
 * those byte values as continuation pointers, so such a tensor cannot be coded and must stay BF16.
 */
export class UncodableExponentError extends CodecError {
  override name = "UncodableExponentError";
  constructor(
    /** Name of the offending tensor (or `part N` when no names were given). */
    readonly tensor: string,
    /** Element index inside that tensor. */
    readonly index: number,
    /** The exponent byte found there. */
    readonly exponent: number,
  ) {
    super(
      `tensor ${tensor}: element ${index} has exponent ${exponent} (≥ 240: inf, NaN or |x| ≥ 2^113), ` +
        `which DFloat11 cannot code`,
    );
  }
}

/** No prefix code within the format's limits (≤ 32-bit codes, ≤ 16 continuation LUT rows) was found. */
export class CodeConstructionError extends CodecError {
  override name = "CodeConstructionError";
}

/** A DF11 module whose tensors are inconsistent with each other or with the format. */
export class InvalidModuleError extends CodecError {
  override name = "InvalidModuleError";
  constructor(
    /** The field (tensor suffix) found to be wrong, e.g. `gaps`. */
    readonly field: string,
    /** What is wrong with it. */
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
  }
}
