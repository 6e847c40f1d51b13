/**
 * The CLI's own state under `$CRYPTOUTIL_HOME` (default `~/.cryptoutil`): `config.json`
 * with the named contexts and the current one, and `tokens/<context>/` with cached tokens.
 * Directories are created 0700 and files 0600, written to a temporary name and renamed, so
 * a reader never sees half a file.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { fileProblem, UsageError } from "./errors.ts";

export function cliHome(): string {
  return process.env.CRYPTOUTIL_HOME || join(homedir(), ".cryptoutil");
}

const url = v.pipe(v.string(), v.url());

export const ServiceEntry = v.object({
  public: url,
  admin: v.optional(url),
  audience: v.string(),
  admin_token_file: v.optional(v.string()),
});
export type ServiceEntry = v.InferOutput<typeof ServiceEntry>;

/** How a context gets tokens: a confidential client's secret, or a browser login's refresh token. */
const ContextAuth = v.variant("kind", [
  v.object({ kind: v.literal("client_credentials"), client_id: v.string(), client_secret_file: v.string() }),
  v.object({ kind: v.literal("browser"), client_id: v.string() }),
]);

export const Context = v.object({
  tenant: v.string(),
  issuer: url,
  /** The CA bundle every service of the context is verified with (absolute path). */
  ca_file: v.string(),
  auth: ContextAuth,
  /** The public client for `login --browser`, when the suite registered one. */
  browser_client_id: v.optional(v.string()),
  services: v.record(v.string(), ServiceEntry),
});
export type Context = v.InferOutput<typeof Context>;

const ConfigFile = v.object({ current: v.nullable(v.string()), contexts: v.record(v.string(), Context) });
export type CliConfig = v.InferOutput<typeof ConfigFile>;

export const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Creates `dir` (and parents) 0700. */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** Writes `data` to `path` with mode 0600 through a temporary file and a rename. */
export function writePrivate(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function loadConfig(): CliConfig {
  const path = join(cliHome(), "config.json");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return { current: null, contexts: {} };
    throw fileProblem(e, path);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`${path} is not valid JSON: fix or delete it and run cryptoutil login again`);
  }
  const r = v.safeParse(ConfigFile, parsed);
  if (!r.success) throw new UsageError(`${path} is not a cryptoutil config (${v.flatten(r.issues).root?.[0] ?? Object.keys(v.flatten(r.issues).nested ?? {})[0]}): run cryptoutil login again`);
  return r.output;
}

export function saveConfig(c: CliConfig): void {
  privateDir(cliHome());
  writePrivate(join(cliHome(), "config.json"), JSON.stringify(c, null, 2) + "\n");
}

/** The context named by `--context`, else the current one. */
export function currentContext(name?: string): { name: string; context: Context } {
  const c = loadConfig();
  const n = name ?? c.current;
  if (!n) throw new UsageError("no context: run cryptoutil login first");
  const context = c.contexts[n];
  if (!context) throw new UsageError(`no context named '${n}' (cryptoutil context list shows them)`);
  return { name: n, context };
}

/** `tokens/<context>`, created 0700. */
export function tokenDir(context: string): string {
  const d = join(cliHome(), "tokens", context);
  privateDir(d);
  return d;
}

export function forgetTokens(context: string): void {
  rmSync(join(cliHome(), "tokens", context), { recursive: true, force: true });
}
