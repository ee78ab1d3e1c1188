export * from "./df11-io.js";
