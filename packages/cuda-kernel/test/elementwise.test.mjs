// GPU tests of the float32 → BF16 conversion (x's copy for the GEMM and the many-row GEMV): every value
// rounded to nearest even as the host computes it, ties, ±0, ±Inf, NaN kept NaN, denormals, on the
// 8-per-thread path (aligned, n % 8 == 0) and the one-per-thread path. Skipped, with the reason, without a GPU.
import assert from "node:assert/strict";
import { mulberry32 } from "../../codec/dist/index.js";
import { gpuTest, toBf16 } from "./gpu-helpers.mjs";
import { DeviceBuffer, nativeAddon, synchronize } from "../dist/index.js";


function values(n, seed) {
  const rand = mulberry32(seed);
  const bits = new Uint32Array(n);
  const special = [0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0x00000001, 0x807fffff, 0x3f808000, 0x3f818000, 0x7f7fffff, 0x3f7fffff];
  for (let i = 0; i < n; i++) bits[i] = i < special.length ? special[i] : (rand() * 2 ** 32) >>> 0;
  return new Float32Array(bits.buffer);
}

gpuTest("toBf16: round to nearest even on the vector and scalar paths (ties, ±0, ±Inf, NaN, denormals)", () => {
  const addon = nativeAddon();
  for (const [n, offset] of [[4096 * 3, 0], [1001, 0], [4096, 4]]) {
    const x = values(n, n + offset);
    const dx = DeviceBuffer.alloc((n + offset) * 4);
    const dout = DeviceBuffer.alloc((n + offset) * 2 + 16);
    try {
      dx.upload(x, offset * 4);
      // An element offset of 4 floats keeps x 16-byte aligned but moves the output off 16 bytes: the scalar path.
      addon.toBf16(dx.address + offset * 4, n, dout.address + offset * 2, undefined);
      synchronize();
      const got = dout.download(new Uint16Array(n + offset)).subarray(offset);
      for (let i = 0; i < n; i++) {
        const v = x[i];
        if (Number.isNaN(v)) assert.ok((got[i] & 0x7f80) === 0x7f80 && (got[i] & 0x7f) !== 0, `n=${n} #${i}: NaN became ${got[i].toString(16)}`);
        else assert.equal(got[i], toBf16(v), `n=${n} offset ${offset} #${i}: ${v} → ${got[i].toString(16)}, expected ${toBf16(v).toString(16)}`);
      }
    } finally {
      dx.dispose();
      dout.dispose();
    }
  }
});
