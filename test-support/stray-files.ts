/**
 * A macOS AppleDouble companion, as Finder and `cp`/`tar` on macOS leave beside a file copied to a
 * non-HFS volume (`._model.safetensors` beside `model.safetensors`): magic 0x00051607, version 2,
 * "Mac OS X", 4 KB — not a safetensors file (read as one, its header length is absurd).
 */
export function appleDouble(): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt32BE(0x00051607, 0);
  b.writeUInt32BE(0x00020000, 4);
  b.write("Mac OS X        ", 8, "latin1");
  return b;
}
