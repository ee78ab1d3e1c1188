import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelsError } from "./errors.js";

/** One chat message. */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant" | string;
  readonly content: string;
}

const tokenText = (t: unknown): string | undefined =>
  typeof t === "string" ? t : t && typeof t === "object" && "content" in t ? String((t as { content: unknown }).content) : undefined;

/**
 * A model's tokenizer (`tokenizer.json` + `tokenizer_config.json`, through @huggingface/tokenizers) and
 * its chat template (rendered with @huggingface/jinja).
 */
export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Record<string, unknown>,
    private readonly chatTemplate: string | undefined,
  ) {}

  /** Load from a model directory; undefined when it has no tokenizer.json. */
  static async load(directory: string): Promise<TextTokenizer | undefined> {
    const path = join(directory, "tokenizer.json");
    if (!existsSync(path)) return undefined;
    const readJson = async (file: string) => {
      try {
        return JSON.parse(await readFile(file, "utf8"));
      } catch (e) {
        throw new ModelsError(`${file}: ${(e as Error).message}`);
      }
    };
    const json = await readJson(path);
    const configPath = join(directory, "tokenizer_config.json");
    const config = existsSync(configPath) ? await readJson(configPath) : {};
    let template: string | undefined;
    const jinjaPath = join(directory, "chat_template.jinja");
    if (existsSync(jinjaPath)) template = await readFile(jinjaPath, "utf8");
    else if (typeof config.chat_template === "string") template = config.chat_template;
    else if (Array.isArray(config.chat_template)) {
      template = (config.chat_template as Array<{ name: string; template: string }>).find((t) => t.name === "default")?.template;
    }
    return new TextTokenizer(new Tokenizer(json, config), config, template);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  /** The EOS token's id from tokenizer_config.json, if any. */
  get eosTokenId(): number | undefined {
    const t = tokenText(this.config.eos_token);
    return t === undefined ? undefined : this.tokenId(t);
  }

  /** Render the chat template for `messages` (ending with the assistant's turn opened). */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (!this.chatTemplate) throw new ModelsError("this model has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    const special: Record<string, string | undefined> = {};
    for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) special[k] = tokenText(this.config[k]);
    return new Template(this.chatTemplate).render({ messages, add_generation_prompt: addGenerationPrompt, ...special });
  }
}

/** End-of-sequence ids: the config's, plus the tokenizer's EOS token when it names another. */
export function endOfSequenceIds(configEosIds: readonly number[], tokenizer: TextTokenizer | undefined): number[] {
  const t = tokenizer?.eosTokenId;
  return [...new Set([...configEosIds, ...(t !== undefined ? [t] : [])])];
}
