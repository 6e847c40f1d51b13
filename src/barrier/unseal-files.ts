/**
 * Reads unseal secrets from files (e.g. Docker/Kubernetes secrets).
 *
 * The bytes are used as they are (no trimming): a secret file that gains a trailing newline
 * is a different secret. Each file must hold 32 bytes to 64 KiB. Errors name the file by its
 * position and path, never by content.
 */
import { readFile, stat } from "node:fs/promises";
import { AppError } from "../service/errors.ts";

export const MIN_UNSEAL_SECRET_BYTES = 32;
export const MAX_UNSEAL_SECRET_BYTES = 64 * 1024;
export const MAX_UNSEAL_SECRETS = 16;

function unsealFailed(message: string, details?: unknown, cause?: unknown): AppError {
  return new AppError("unseal_failed", message, { details, cause });
}

/** Checks count and sizes of unseal secrets; throws `unseal_failed`. */
export function checkUnsealSecrets(secrets: readonly Uint8Array[]): void {
  if (!Array.isArray(secrets) || secrets.length === 0) throw unsealFailed("at least one unseal secret is required");
  if (secrets.length > MAX_UNSEAL_SECRETS) throw unsealFailed(`at most ${MAX_UNSEAL_SECRETS} unseal secrets are allowed`);
  secrets.forEach((s, index) => {
    if (!(s instanceof Uint8Array)) throw unsealFailed(`unseal secret ${index + 1} is not bytes`, { index });
    if (s.length < MIN_UNSEAL_SECRET_BYTES) {
      throw unsealFailed(`unseal secret ${index + 1} is shorter than ${MIN_UNSEAL_SECRET_BYTES} bytes`, { index });
    }
    if (s.length > MAX_UNSEAL_SECRET_BYTES) {
      throw unsealFailed(`unseal secret ${index + 1} is longer than ${MAX_UNSEAL_SECRET_BYTES} bytes`, { index });
    }
  });
}

/** Reads the secret files in order. The caller zeroes the returned arrays when done. */
export async function readUnsealSecretFiles(paths: readonly string[]): Promise<Uint8Array[]> {
  if (!Array.isArray(paths) || paths.length === 0) throw unsealFailed("at least one unseal secret file is required");
  if (paths.length > MAX_UNSEAL_SECRETS) throw unsealFailed(`at most ${MAX_UNSEAL_SECRETS} unseal secret files are allowed`);
  const out: Uint8Array[] = [];
  try {
    for (const [index, path] of paths.entries()) {
      let bytes: Uint8Array;
      try {
        const info = await stat(path);
        if (!info.isFile()) throw new Error("not a regular file");
        if (info.size > MAX_UNSEAL_SECRET_BYTES) {
          throw unsealFailed(`unseal secret file ${index + 1} (${path}) is longer than ${MAX_UNSEAL_SECRET_BYTES} bytes`, {
            index,
            path,
          });
        }
        const data = await readFile(path);
        bytes = new Uint8Array(data.length);
        bytes.set(data);
        data.fill(0);
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw unsealFailed(`unseal secret file ${index + 1} (${path}) cannot be read`, { index, path }, err);
      }
      out.push(bytes);
    }
    checkUnsealSecrets(out);
    return out;
  } catch (err) {
    for (const s of out) s.fill(0);
    throw err;
  }
}
