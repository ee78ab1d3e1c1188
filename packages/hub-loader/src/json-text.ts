import { HubLoaderError } from "./errors.js";

/** Where a top-level member of a JSON object text starts (its key's quote) and ends (after its value). */
interface MemberSpan {
  readonly key: string;
  readonly start: number;
  readonly end: number;
}

/**
 * The top-level members of a JSON object's text, found without parsing the values, so an edit can
 * leave every other byte as written (Python writes `30.0`; JSON.parse + stringify would give `30`, which
 * transformers' typed configs reject).
 */
function topLevelMembers(text: string, what: string): { members: MemberSpan[]; close: number } {
  let i = 0;
  const fail = (why: string): never => {
    throw new HubLoaderError(`${what}: ${why} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const string = (): string => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    return JSON.parse(text.slice(start, ++i)) as string;
  };
  const value = () => {
    if (text[i] === '"') return void string();
    if (text[i] === "{" || text[i] === "[") {
      let depth = 0;
      do {
        if (text[i] === '"') {
          string();
          continue;
        }
        if (text[i] === "{" || text[i] === "[") depth++;
        else if (text[i] === "}" || text[i] === "]") depth--;
        i++;
      } while (depth > 0 && i < text.length);
      if (depth > 0) fail("unbalanced brackets");
      return;
    }
    while (i < text.length && !/[\s,}\]]/.test(text[i])) i++;
  };
  ws();
  if (text[i] !== "{") fail("expected a JSON object");
  i++;
  const members: MemberSpan[] = [];
  for (;;) {
    ws();
    if (text[i] === "}") return { members, close: i };
    if (members.length > 0) {
      if (text[i] !== ",") fail("expected , or }");
      i++;
      ws();
    }
    if (text[i] !== '"') fail("expected a key");
    const start = i;
    const key = string();
    ws();
    if (text[i] !== ":") fail("expected :");
    i++;
    ws();
    value();
    members.push({ key, start, end: i });
  }
}

/** The object text with `key` set to `value` (appended, or replacing the member), other bytes untouched. */
export function setJsonMember(text: string, key: string, value: unknown, what = "JSON"): string {
  const { members, close } = topLevelMembers(text, what);
  const rendered = JSON.stringify(value, null, 2).replace(/\n/g, "\n  ");
  const existing = members.find((m) => m.key === key);
  if (existing) return `${text.slice(0, existing.start)}${JSON.stringify(key)}: ${rendered}${text.slice(existing.end)}`;
  const last = members[members.length - 1];
  const at = last ? last.end : close;
  return `${text.slice(0, at)}${last ? "," : ""}\n  ${JSON.stringify(key)}: ${rendered}${last ? "" : "\n"}${text.slice(at)}`;
}

/** The object text without the top-level member `key` (unchanged when absent), other bytes untouched. */
export function removeJsonMember(text: string, key: string, what = "JSON"): string {
  const { members } = topLevelMembers(text, what);
  const index = members.findIndex((m) => m.key === key);
  if (index < 0) return text;
  // Remove from the previous member's end (its comma) — or, for the first member, up to the next one.
  if (index > 0) return text.slice(0, members[index - 1].end) + text.slice(members[index].end);
  const next = members[1];
  return next ? text.slice(0, members[0].start) + text.slice(next.start) : text.slice(0, members[0].start).replace(/\s*$/, "") + text.slice(members[0].end).replace(/^\s*/, "");
}
