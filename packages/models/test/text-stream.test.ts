// Text as users see it while tokens stream: whole characters only, in every script, for byte-level BPE
// (GPT-2 / Llama 3 / Qwen) and SentencePiece byte-fallback (Llama 2 / Gemma / Mistral) tokenizers, and
// stop strings matched on that same text.
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeneratedText, IncrementalDetokenizer, StopStringMatcher, TextTokenizer } from "../src/index.js";
import { wholeCharacters, writeScriptedModel, type ScriptedModel } from "../../../test-support/scripted-model.js";

const SAMPLES = [
  "afé 😀",
  "café crème brûlée",
  "中文字符和标点。",
  "日本語のテキスト",
  "Привет, мир",
  "한국어 문장",
  "Ελληνικά",
  "עברית",
  "हिन्दी",
  "👩‍💻 🇫🇷 👍🏽",
  "e\u0301 a\u0308", // combining marks
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚", // outside the BMP: surrogate pairs in JavaScript
  "ðŁĺĢ Ċ Ġ", // text that looks like byte-level BPE's own alphabet
];

/** Deterministic chunkings of a byte string: single bytes, and runs of 2–5 bytes that straddle characters. */
function chunkings(bytes: Uint8Array, seed: number): number[][][] {
  const single = [...bytes].map((b) => [b]);
  const runs: number[][] = [];
  let s = seed;
  for (let i = 0; i < bytes.length; ) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = 2 + (s % 4);
    runs.push([...bytes.subarray(i, i + n)]);
    i += n;
  }
  return [single, runs];
}

const wellFormed = (s: string) => wholeCharacters(s, false);

/** Where each token's text starts (code points) as `held()` says it, ahead of each push: completions' text_offset. */
function startsOf(d: IncrementalDetokenizer, ids: readonly number[]): number[] {
  let released = 0;
  return ids.map((id) => {
    const at = released + [...d.held(id)].length;
    released += [...d.push(id)].length;
    return at;
  });
}

let work: string;
let model: ScriptedModel;
let tokenizer: TextTokenizer;
const cases: Array<{ text: string; tokens: number[][] }> = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "df11-text-"));
  const encoder = new TextEncoder();
  SAMPLES.forEach((text, i) => chunkings(encoder.encode(text), i + 1).forEach((tokens) => cases.push({ text, tokens })));
  // Every multi-byte chunk becomes a vocabulary entry.
  const extra = cases.flatMap((c) => c.tokens.filter((t) => t.length > 1).map((bytes) => ({ bytes })));
  model = await writeScriptedModel(join(work, "bpe"), { script: ["x"], extraTokens: extra, special: ["<|end|>"] });
  tokenizer = (await TextTokenizer.load(model.dir))!;
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("IncrementalDetokenizer: whole characters only", () => {
  it("byte-level BPE: every script, split into single bytes and into runs across characters, streams the exact text with no U+FFFD and no lone surrogate", () => {
    expect(cases.length).toBe(SAMPLES.length * 2);
    for (const { text, tokens } of cases) {
      const ids = tokens.map((bytes) => model.idOf({ bytes }));
      expect(tokenizer.decode(ids)).toBe(text); // the ids spell the text
      const d = new IncrementalDetokenizer(tokenizer);
      const pieces = ids.map((id) => d.push(id));
      pieces.push(d.flush());
      expect(pieces.join("")).toBe(text);
      for (const p of pieces) {
        expect(p.includes("\uFFFD"), `${JSON.stringify(text)}: piece ${JSON.stringify(p)}`).toBe(false);
        expect(wellFormed(p), `${JSON.stringify(text)}: lone surrogate in ${JSON.stringify(p)}`).toBe(true);
      }
      // Single-byte tokens release nothing until a character completes.
      if (tokens.every((t) => t.length === 1)) expect(pieces.filter((p) => p.length > 0).length).toBe([...text].length);
      // held(): a token starts at the character its first byte belongs to (runs straddle characters: the text a token
      // completes is held back while it also starts the next one, and still counts).
      const decoder = new TextDecoder();
      let chars = 0;
      const expected = tokens.map((bytes) => {
        const at = chars;
        chars += [...decoder.decode(Uint8Array.from(bytes), { stream: true })].length;
        return at;
      });
      expect(startsOf(new IncrementalDetokenizer(tokenizer), ids), JSON.stringify(text)).toEqual(expected);
    }
  });

  it("special tokens are left out; a character cut at the end comes out as U+FFFD, as decode gives it", () => {
    const d = new IncrementalDetokenizer(tokenizer);
    const ids = [model.idOf("a"), model.idOf("<|end|>"), model.idOf({ bytes: [0xf0] }), model.idOf({ bytes: [0x9f] })];
    const pieces = ids.map((id) => d.push(id));
    expect(pieces).toEqual(["a", "", "", ""]);
    expect(startsOf(new IncrementalDetokenizer(tokenizer), [...ids, model.idOf({ bytes: [0x80] })])).toEqual([0, 1, 1, 1, 1]);
    // An invalid byte is a character of the text (U+FFFD): the next token starts after it.
    expect(startsOf(new IncrementalDetokenizer(tokenizer), [model.idOf({ bytes: [0x80] }), model.idOf("a"), model.idOf("a")])).toEqual([0, 1, 2]);
    expect(d.flush()).toBe("\uFFFD");
    expect(tokenizer.decode(ids)).toBe("a\uFFFD");
  });

  it("held(next): a token whose first byte cannot continue the unfinished character starts after it (its U+FFFD), not at it", () => {
    const ids = (...toks: Array<string | number[]>) => toks.map((t) => model.idOf(typeof t === "string" ? t : { bytes: t }));
    // C3 then "a": "\uFFFDa", a at 1; C3 C3 A9: "\uFFFDé", the second C3 starts é at 1; E4 B8 then "a": one U+FFFD, a at 1.
    for (const [toks, text, starts] of [
      [["a", [0xc3], "a", "b"], "a\uFFFDab", [0, 1, 2, 3]],
      [[[0xc3], [0xc3], [0xa9]], "\uFFFDé", [0, 1, 1]],
      [[[0xe4], [0xb8], "a"], "\uFFFDa", [0, 0, 1]],
      [[[0xc3], "<|end|>", [0xa9], "a"], "éa", [0, 0, 0, 1]], // a special token has no byte to say: the character may go on
    ] as Array<[Array<string | number[]>, string, number[]]>) {
      expect(tokenizer.decode(ids(...toks))).toBe(text);
      expect(startsOf(new IncrementalDetokenizer(tokenizer), ids(...toks)), text).toEqual(starts);
    }
    // Without the next token, held() keeps the unfinished character out (it may still complete).
    const d = new IncrementalDetokenizer(tokenizer);
    d.push(model.idOf({ bytes: [0xc3] }));
    expect(d.held()).toBe("");
    expect(d.held(model.idOf("a"))).toBe("\uFFFD");
    expect(d.held(model.idOf({ bytes: [0xa9] }))).toBe("");
  });

  it("SentencePiece with byte fallback (Llama 2, Gemma, Mistral): leading-space stripping and <0xNN> pieces stream as decode gives them", async () => {
    const dir = join(work, "sp");
    await mkdir(dir, { recursive: true });
    const pieces = ["<unk>", "<s>", "</s>", "▁caf", "▁", "a", "f", "▁cr", "me", "▁😀"];
    const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    const vocab = [...pieces, ...bytes];
    await writeFile(
      join(dir, "tokenizer.json"),
      JSON.stringify({
        version: "1.0",
        added_tokens: [0, 1, 2].map((id) => ({ id, content: vocab[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
        normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
        pre_tokenizer: null,
        post_processor: null,
        decoder: {
          type: "Sequence",
          decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
        },
        model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab: Object.fromEntries(vocab.map((t, i) => [t, i])), merges: [] },
      }),
    );
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ clean_up_tokenization_spaces: false }));
    const sp = (await TextTokenizer.load(dir))!;
    const id = (t: string) => vocab.indexOf(t);
    const byte = (b: number) => vocab.indexOf(bytes[b]);
    // "café crème 😀" with é and è as byte-fallback pieces, the emoji as a piece of its own.
    const ids = [id("▁caf"), byte(0xc3), byte(0xa9), id("▁cr"), byte(0xc3), byte(0xa8), id("me"), id("▁😀"), id("</s>")];
    expect(sp.decode(ids)).toBe("café crème 😀");
    const d = new IncrementalDetokenizer(sp);
    const out = ids.map((i) => d.push(i));
    out.push(d.flush());
    expect(out.join("")).toBe("café crème 😀");
    expect(out.every((p) => !p.includes("\uFFFD"))).toBe(true);
    // Where each piece starts in that text: the stripped leading space shifts nothing; é and è's bytes start at them.
    expect(startsOf(new IncrementalDetokenizer(sp), ids)).toEqual([0, 3, 3, 4, 7, 7, 8, 10, 12]);
    // tokenBytes: what each piece adds in the middle of a text.
    expect([...sp.tokenBytes(byte(0xc3))]).toEqual([0xc3]);
    expect(new TextDecoder().decode(sp.tokenBytes(id("▁cr")))).toBe(" cr");
    expect(sp.tokenBytes(id("</s>")).length).toBe(0);
  });
});

describe("stop strings on the streamed text", () => {
  it("a stop string split across tokens and characters ends the text before it; text that may start one waits", () => {
    for (const [stop, expected] of [
      ["é 😀", "af"],
      ["😀", "afé "],
      [" ", "afé"],
      ["f", "a"],
      ["zz", "afé 😀"],
    ] as const) {
      const { text, tokens } = cases[0]; // "afé 😀" in single bytes
      expect(text).toBe("afé 😀");
      const g = new GeneratedText(tokenizer, [stop]);
      const pieces: string[] = [];
      let stopped = false;
      for (const bytes of tokens) {
        const r = g.push(model.idOf({ bytes }));
        pieces.push(r.text);
        if ((stopped = r.stopped)) break;
      }
      if (!stopped) pieces.push(g.finish());
      expect(pieces.join(""), `stop ${JSON.stringify(stop)}`).toBe(expected);
      expect(g.text).toBe(expected);
      expect(stopped).toBe(stop !== "zz");
    }
  });

  it("StopStringMatcher holds back exactly the possible start of a stop string and never splits a surrogate pair", () => {
    const m = new StopStringMatcher(["STOP", "😀!"]);
    expect(m.push("abcS")).toEqual({ text: "abc", stopped: false });
    expect(m.push("T")).toEqual({ text: "", stopped: false });
    expect(m.push("x")).toEqual({ text: "STx", stopped: false });
    expect(m.push("😀")).toEqual({ text: "", stopped: false });
    expect(m.push("?")).toEqual({ text: "😀?", stopped: false });
    expect(m.push("a😀!b")).toEqual({ text: "a", stopped: true });
    const n = new StopStringMatcher(["\uDE00x"]); // a stop string that starts inside a pair must not cut the pair
    expect(n.push("😀")).toEqual({ text: "", stopped: false });
    expect(n.flush()).toBe("😀");
  });
});
