import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Settings read from the same environment variables Python's huggingface_hub uses. */
export interface HubEnvironment {
  /** The hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  readonly cacheDir: string;
  /** `HF_ENDPOINT` (mirrors), default https://huggingface.co. */
  readonly endpoint: string;
  /** `HF_TOKEN`, else the token file Python's `hf auth login` writes. */
  readonly token?: string;
  /** `HF_HUB_OFFLINE=1`: no network at all. */
  readonly offline: boolean;
}

const truthy = (v: string | undefined) => !!v && ["1", "true", "yes", "on"].includes(v.toLowerCase());

/** Read the environment (or `env`, for tests). */
export function hubEnvironment(env: NodeJS.ProcessEnv = process.env): HubEnvironment {
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  const cacheDir = env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? join(home, "hub");
  let token = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  if (!token) {
    const tokenPath = env.HF_TOKEN_PATH ?? join(home, "token");
    if (existsSync(tokenPath)) token = readFileSync(tokenPath, "utf8").trim() || undefined;
  }
  return {
    cacheDir,
    endpoint: (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
    token,
    offline: truthy(env.HF_HUB_OFFLINE) || truthy(env.TRANSFORMERS_OFFLINE),
  };
}
