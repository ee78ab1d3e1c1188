/** Base class of every error thrown by @df11/hub-loader. */
export class HubLoaderError extends Error {
  override name = "HubLoaderError";
}

/** A safetensors file (or index) that is malformed or inconsistent. Names the file and, where known, the tensor. */
export class SafetensorsError extends HubLoaderError {
  override name = "SafetensorsError";
  constructor(
    readonly file: string,
    readonly detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor ? `: tensor ${tensor}` : ""}: ${detail}`);
  }
}

/** A model directory that lacks what a model needs (config.json, weights, …). */
export class ModelDirectoryError extends HubLoaderError {
  override name = "ModelDirectoryError";
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}
