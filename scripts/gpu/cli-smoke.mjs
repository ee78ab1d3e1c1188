// On the GPU host: the `df11` command as a user runs it, on a reference model — compress, then
// generate --json with every --gpu-weights (same tokens, the layout asked for, DF11 smaller than BF16),
// then `df11 serve` (/health names the layout; a completion gives the same tokens). Prints one JSON
// summary and exits non-zero on any mismatch.
//   node scripts/gpu/cli-smoke.mjs [MODEL_BF16_DIR] [WORK_DIR]
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const bf16 = process.argv[2] ?? "test-support/reference-models/qwen2-tiny/bf16";
const work = process.argv[3] ?? "/tmp/df11-cli-smoke";
const bin = "packages/cli/dist/bin.js";
const DEVICE = process.env.DEVICE ?? "cuda"; // cpu: a dry run of the script itself
const df11 = (...args) => execFileSync(process.execPath, [bin, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const df11Dir = join(work, "df11");
df11("compress", bf16, "-o", df11Dir);

const ids = "1,17,42,99,7";
const runs = [];
for (const [dir, format] of [[bf16, "bf16"], [df11Dir, "df11"]]) {
  for (const layout of ["auto", "fused", "huffman", "bf16"]) {
    if (format === "bf16" && layout === "huffman") continue; // huffman needs a DF11 checkpoint
    const r = JSON.parse(df11("generate", dir, "--input-ids", ids, "-n", "16", "--json", "--device", DEVICE, ...(DEVICE === "cpu" ? [] : ["--gpu-weights", layout])));
    check(r.device === "cuda", `${format}/${layout}: ran on ${r.device}`);
    check(r.weightsInUse.format === format, `${format}/${layout}: format ${r.weightsInUse.format}`);
    if (layout !== "auto") check(r.weightsInUse.layout === layout, `${format}/${layout}: layout ${r.weightsInUse.layout}`);
    check(r.memory?.measure === "device-allocated" && r.memory.peakBytes > 0, `${format}/${layout}: memory ${JSON.stringify(r.memory)}`);
    runs.push({ format, asked: layout, layout: r.weightsInUse.layout, residentBytes: r.weightsInUse.residentBytes, peakBytes: r.memory?.peakBytes, tokenIds: r.tokenIds });
  }
}
const tokens = runs[0].tokenIds.join(",");
for (const r of runs) check(r.tokenIds.join(",") === tokens, `${r.format}/${r.asked}: tokens ${r.tokenIds} differ from ${tokens}`);
const bytes = (format, layout) => runs.find((r) => r.format === format && r.asked === layout).residentBytes;
// auto takes the smaller of fused and BF16 (tiny models: fused pads rows to 8 and columns to 256).
for (const format of ["bf16", "df11"]) {
  const auto = runs.find((r) => r.format === format && r.asked === "auto");
  const best = Math.min(bytes(format, "fused"), bytes(format, "bf16"));
  check(auto.residentBytes === best, `${format}/auto: ${auto.layout} holds ${auto.residentBytes} bytes; the smaller layout ${best}`);
}
// (Huffman modules carry ~25 KB of tables each: on a tiny model they are not smaller than BF16.)
// Working memory beyond BF16's: at most two decode windows, each at most the largest matrix (vocab × hidden here).
const config = JSON.parse(readFileSync(join(bf16, "config.json"), "utf8"));
const windows = 2 * 2 * config.vocab_size * config.hidden_size + (1 << 20);
const base = runs.find((r) => r.format === "bf16" && r.asked === "bf16");
for (const r of runs) {
  const extra = r.peakBytes - r.residentBytes - (base.peakBytes - base.residentBytes);
  check(extra <= windows, `${r.format}/${r.asked}: ${extra} bytes of working memory beyond BF16's; two windows are ${windows}`);
}

// df11 serve: /health reports the layout; a greedy completion gives the CLI's tokens.
/** `df11 serve DIR ...args` on a free port: the child and its base URL once it listens. */
async function startServe(dir, args) {
  const child = spawn(process.execPath, [bin, "serve", dir, "--port", "0", ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve ${args.join(" ")} did not start: ${err}`)), 60_000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = /at (http:\/\/\S+)\/v1/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`serve ${args.join(" ")} exited ${code}: ${err}`)));
  });
  return { child, url: base };
}
const { child: serve, url } = await startServe(df11Dir, ["--device", DEVICE, ...(DEVICE === "cpu" ? [] : ["--gpu-weights", "huffman"])]);
const health = await (await fetch(`${url}/health`)).json();
check(health.weights?.layout === "huffman" && health.weights?.format === "df11", `/health: ${JSON.stringify(health)}`);
const completion = await (
  await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: df11Dir, prompt: ids.split(",").map(Number), max_tokens: 16, temperature: 0, ignore_eos: true, logprobs: 1 }),
  })
).json();
serve.kill("SIGTERM");
const served = completion.choices?.[0]?.logprobs?.tokens;
check(completion.usage?.completion_tokens === 16, `serve: ${JSON.stringify(completion).slice(0, 300)}`);

// Tensor parallel over every GPU (two or more): generate --devices reports each GPU's memory; serve
// --devices names them in /health and completes.
let tensorParallel = null;
const gpus = DEVICE === "cpu" ? 0 : Number(execFileSync("nvidia-smi", ["-L"], { encoding: "utf8" }).trim().split("\n").length);
if (gpus >= 2) {
  const list = Array.from({ length: gpus }, (_, i) => i).join(",");
  const r = JSON.parse(df11("generate", df11Dir, "--input-ids", ids, "-n", "16", "--json", "--devices", list));
  check(r.device === "cuda" && r.memory?.devices?.length === gpus, `generate --devices ${list}: ${JSON.stringify(r.memory)}`);
  check(r.tokenIds.length === 16, `generate --devices ${list}: ${r.tokenIds.length} tokens`);
  const { child: tp, url: tpUrl } = await startServe(df11Dir, ["--devices", list]);
  const tpHealth = await (await fetch(`${tpUrl}/health`)).json();
  const tpCompletion = await (
    await fetch(`${tpUrl}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: df11Dir, prompt: ids.split(",").map(Number), max_tokens: 16, temperature: 0, ignore_eos: true }) })
  ).json();
  tp.kill("SIGTERM");
  check(JSON.stringify(tpHealth.devices) === JSON.stringify(Array.from({ length: gpus }, (_, i) => i)), `serve --devices /health: ${JSON.stringify(tpHealth)}`);
  check(tpCompletion.usage?.completion_tokens === 16, `serve --devices: ${JSON.stringify(tpCompletion).slice(0, 300)}`);
  tensorParallel = { devices: list, generateTokens: r.tokenIds, memory: r.memory, health: tpHealth };
}

const summary = { ok: failures.length === 0, failures, tokens, runs: runs.map(({ tokenIds, ...r }) => r), health, servedTokens: served?.length ?? null, tensorParallel };
console.log(JSON.stringify(summary, null, 2));
process.exit(failures.length ? 1 : 0);
