/**
 * The suite file `npm start` writes (`<dataRoot>/suite.json`, version 1): every service's
 * URLs and audience, the trust bundle, and the contexts (`demo`, `admin`) the CLI imports
 * at `cryptoutil login`. Paths in it are relative to the folder that holds it.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import * as v from "valibot";
import { fileProblem, UsageError } from "./errors.ts";
import type { Context } from "./config.ts";

const url = v.pipe(v.string(), v.url());

export const SuiteFile = v.object({
  version: v.literal(1),
  development: v.optional(v.boolean()),
  trust_bundle: v.string(),
  services: v.record(
    v.string(),
    v.object({ public: url, admin: v.optional(url), docs: v.optional(url), audience: v.optional(v.string()), admin_token_file: v.optional(v.string()) }),
  ),
  contexts: v.record(
    v.string(),
    v.object({
      tenant: v.string(),
      issuer: url,
      client_id: v.string(),
      client_secret_file: v.string(),
      browser_client_id: v.optional(v.string()),
    }),
  ),
  demo_user: v.optional(v.object({ tenant: v.string(), username: v.string(), password_file: v.string() })),
});
export type SuiteFile = v.InferOutput<typeof SuiteFile>;

/** `--suite`, else `$CRYPTOUTIL_SUITE`, else `./data/suite.json`. */
export function suitePath(flag?: string): string {
  return resolve(flag ?? process.env.CRYPTOUTIL_SUITE ?? "data/suite.json");
}

export function readSuite(path: string): SuiteFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const p = fileProblem(e, path);
    if ((e as { code?: string }).code === "ENOENT") p.message += " (start the suite with npm start, or pass --suite PATH)";
    throw p;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`${path} is not valid JSON`);
  }
  const r = v.safeParse(SuiteFile, json);
  if (!r.success) {
    const i = r.issues[0];
    throw new UsageError(`${path} is not a suite file of version 1: ${i.path?.map((p) => p.key).join(".") ?? ""} ${i.message}`.trim());
  }
  return r.output;
}

/** The suite's contexts, with every path made absolute. */
export function contextsOf(suite: SuiteFile, path: string): Record<string, Context> {
  const base = dirname(path);
  const abs = (p: string) => resolve(base, p);
  const services: Context["services"] = {};
  for (const [name, s] of Object.entries(suite.services)) {
    services[name] = { public: s.public, admin: s.admin, audience: s.audience ?? name, admin_token_file: s.admin_token_file ? abs(s.admin_token_file) : undefined };
  }
  const out: Record<string, Context> = {};
  for (const [name, c] of Object.entries(suite.contexts)) {
    out[name] = {
      tenant: c.tenant,
      issuer: c.issuer,
      ca_file: abs(suite.trust_bundle),
      auth: { kind: "client_credentials", client_id: c.client_id, client_secret_file: abs(c.client_secret_file) },
      browser_client_id: c.browser_client_id,
      services,
    };
  }
  return out;
}
