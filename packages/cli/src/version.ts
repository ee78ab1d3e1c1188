import { createRequire } from "node:module";

/** This package's version (from package.json, beside src/ and dist/). */
export const VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

/** What df11 records as the writer of the files it makes (`df11.writer`). */
export const WRITER = `df11 ${VERSION}`;
