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

/** Talking to the Hub failed; subclasses say why. */
export class HubError extends HubLoaderError {
  override name = "HubError";
}

/** 401/403: a gated or private repository, or a bad token. */
export class HubAuthError extends HubError {
  override name = "HubAuthError";
  constructor(
    readonly repo: string,
    readonly status: number,
  ) {
    super(
      `${repo}: access denied (HTTP ${status}). The repository is gated or private: accept its terms on the Hub, ` +
        `then set HF_TOKEN to a token with read access (or log in with \`hf auth login\`).`,
    );
  }
}

/** 404: no such repository, revision or file. */
export class HubNotFoundError extends HubError {
  override name = "HubNotFoundError";
  constructor(
    readonly repo: string,
    detail: string,
  ) {
    super(`${repo}: ${detail}`);
  }
}

/** The Hub (or mirror) could not be reached. */
export class HubNetworkError extends HubError {
  override name = "HubNetworkError";
}

/** Offline mode (HF_HUB_OFFLINE=1) and the cache lacks what is needed. */
export class OfflineCacheMissError extends HubError {
  override name = "OfflineCacheMissError";
  constructor(
    readonly repo: string,
    readonly missing: readonly string[],
    cacheDir: string,
  ) {
    super(
      `${repo}: offline mode (HF_HUB_OFFLINE=1) and the cache at ${cacheDir} lacks ${missing.join(", ")}. ` +
        `Download it first (df11 download ${repo}) or unset HF_HUB_OFFLINE.`,
    );
  }
}

/** A downloaded file whose size or hash does not match what the Hub announced; it was deleted. */
export class CorruptDownloadError extends HubError {
  override name = "CorruptDownloadError";
  constructor(
    readonly repo: string,
    readonly file: string,
    detail: string,
  ) {
    super(`${repo}: ${file}: ${detail}; the download was discarded`);
  }
}
