/** Shared helpers for the pki tests: temp dirs, a real AES-GCM sealer, and openssl. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AesGcmSealer } from "../../src/pki/sealer.ts";

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `cryptoutil-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A barrier stand-in made of a real AES-256-GCM WebCrypto key (raw bytes kept so a "restart" can re-import it). */
export async function barrierSealer(raw?: Uint8Array): Promise<{ sealer: AesGcmSealer; raw: Uint8Array }> {
  const bytes = raw ?? crypto.getRandomValues(new Uint8Array(32));
  const key = await crypto.subtle.importKey("raw", bytes.slice().buffer as ArrayBuffer, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { sealer: new AesGcmSealer(key), raw: bytes };
}

/** True when openssl is usable; in CI its absence is a failure, elsewhere the caller skips with a printed reason. */
export function haveOpenssl(): boolean {
  const ok = Bun.which("openssl") !== null;
  if (!ok && process.env.CI === "true") throw new Error("openssl is required in CI (apt-get install -y openssl)");
  if (!ok) console.warn("SKIPPED: openssl not installed (apt-get install -y openssl)");
  return ok;
}

export function openssl(args: string[], stdin?: string): { code: number; out: string } {
  const p = Bun.spawnSync(["openssl", ...args], { stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

export function includesBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * True when GnuTLS's command-line tools (`certtool`, `ocsptool`, Debian gnutls-bin) are usable;
 * in CI their absence is a failure, elsewhere the caller skips with a printed reason.
 */
export function haveGnutlsTools(): boolean {
  const ok = Bun.which("certtool") !== null && Bun.which("ocsptool") !== null;
  if (!ok && process.env.CI === "true") throw new Error("certtool and ocsptool are required in CI (apt-get install -y gnutls-bin)");
  if (!ok) console.warn("SKIPPED: certtool/ocsptool not installed (apt-get install -y gnutls-bin)");
  return ok;
}

/** Runs a GnuTLS tool (`certtool`, `ocsptool`); stdout and stderr together. */
export function gnutls(tool: "certtool" | "ocsptool", args: string[]): { code: number; out: string } {
  const p = Bun.spawnSync([tool, ...args], { stdin: "ignore", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}
