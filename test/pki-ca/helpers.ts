/** Shared setup of the pki-ca tests: a real pki-ca over HTTPS, a token issuer, and openssl. */
import type { ServiceConfig } from "../../src/service/config.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import * as x509 from "../../src/pki/x509.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { EMBEDDED, type TestEngine } from "../support/engine.ts";
export { haveOpenssl, openssl } from "../pki/helpers.ts";

export const BASE_URL = "http://pki.example.test";

export const PROFILES = {
  server: {
    issuing_ca: "P-256",
    key_types: ["P-256", "P-384", "RSA-2048", "RSA-3072", "Ed25519"],
    max_validity_days: 90,
    default_validity_days: 30,
    key_usage: ["digitalSignature", "keyEncipherment"],
    extended_key_usage: ["serverAuth", "clientAuth"],
    dns: { allow: ["*.example.com", "example.com"], deny: ["*.bad.example.com"] },
    ip_ranges: ["10.0.0.0/8", "fd00::/8"],
    email_domains: ["example.com"],
  },
  "server-p384": {
    issuing_ca: "P-384",
    key_types: ["P-256", "P-384"],
    max_validity_days: 90,
    default_validity_days: 30,
    key_usage: ["digitalSignature"],
    extended_key_usage: ["serverAuth"],
    dns: { allow: ["*.example.com"] },
  },
  manual: {
    issuing_ca: "P-256",
    key_types: ["P-256"],
    max_validity_days: 30,
    default_validity_days: 7,
    key_usage: ["digitalSignature"],
    extended_key_usage: ["clientAuth"],
    dns: { allow: ["*.example.com"] },
    approval: "manual",
  },
};

export interface CaFixture {
  svc: TestService;
  issuer: TestIssuer;
  dir: string;
  token(tenant: string, scope: string): Promise<string>;
  api(path: string, token: string, init?: { method?: string; body?: unknown }): Promise<Response>;
  /** Stops the service and the issuer; removes the data directory unless `keep` (for a restart). */
  stop(opts?: { keep?: boolean }): Promise<void>;
}

/** The bearer-token /service/api/v1 caller of a fixture, over any `call(path, init)`. */
export function apiOver(call: (path: string, init?: RequestInit) => Promise<Response>): CaFixture["api"] {
  return (path, token, init = {}) =>
    call(`/service/api/v1${path}`, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { "content-type": "application/json" }) },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
}

/**
 * Starts pki-ca on a fresh data directory, or on `existingDir` (a restart, or with `issuer`
 * given, a second instance on the same database, whose stop leaves directory and issuer alone),
 * with its database on `engine`.
 */
export async function startCa(
  app: Record<string, unknown> = {},
  existingDir?: string,
  shared?: { issuer: TestIssuer },
  engine: TestEngine = EMBEDDED,
  /** Settings of the service beyond its app section (an mTLS port, say). */
  configure?: (c: ServiceConfig) => void,
): Promise<CaFixture> {
  const dir = existingDir ?? mkdtempSync(join(tmpdir(), "cryptoutil-pki-ca-"));
  const issuer = shared?.issuer ?? (await startTestIssuer({ audience: "pki-ca" }));
  const svc = await startTestService(pkiCa, {
    issuer,
    root: dir,
    engine,
    overrides: (c) => {
      c.log.access = false;
      c.log.level = "warn";
      c.security.rate_limit_rps = 100_000;
      c.security.rate_limit_burst = 100_000;
      c.app = { base_url: BASE_URL, issuing_cas: ["P-256", "P-384"], profiles: PROFILES, ...app };
      configure?.(c);
    },
  });
  return {
    svc,
    issuer,
    dir,
    token: (tenant, scope) => issuer.mint({ tenant, scope }),
    api: apiOver(svc.call),
    async stop(opts = {}) {
      await svc.stop();
      if (shared) return;
      await issuer.stop();
      if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Makes a key and CSR with openssl; returns the CSR PEM and the key file path. */
export function makeCsr(dir: string, name: string, opts: { subj: string; san?: string; key?: "ec256" | "ec384" | "rsa1024" | "rsa2048" | "ed25519" }): { csr: string; keyFile: string } {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const newkey = { ec256: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], ec384: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], rsa1024: ["-newkey", "rsa:1024"], rsa2048: ["-newkey", "rsa:2048"], ed25519: ["-newkey", "ed25519"] }[opts.key ?? "ec256"];
  const args = ["req", "-new", ...newkey, "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", opts.subj];
  if (opts.san) args.push("-addext", `subjectAltName=${opts.san}`);
  const p = Bun.spawnSync(["openssl", ...args], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`openssl req failed: ${p.stderr.toString()}`);
  return { csr: readFileSync(csrFile, "utf8"), keyFile };
}

export function write(dir: string, name: string, data: string | Uint8Array): string {
  const f = join(dir, name);
  writeFileSync(f, data);
  return f;
}

/** An Ed25519 key pair and a PEM CSR for `cn` (SAN dNSName `cn`), made in-process without openssl. */
export async function ed25519Csr(cn: string): Promise<{ keys: CryptoKeyPair; pem: string }> {
  const keys = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: { name: "Ed25519" },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: cn }])],
  });
  return { keys, pem: csr.toString("pem") };
}

/**
 * A second pki-ca instance in its own process (peer-instance.ts) on `a`'s data directory and
 * test issuer, with the app section `app`; resolves with its public URL once its hierarchy is loaded.
 */
export async function spawnPeer(a: CaFixture, app: Record<string, unknown>): Promise<{ url: string; proc: ReturnType<typeof Bun.spawn>; stop(): Promise<void> }> {
  const issuer = { issuer: a.issuer.issuer, jwksUrl: a.issuer.jwksUrl, caPem: a.issuer.caPem };
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "peer-instance.ts"), JSON.stringify({ dir: a.dir, app, issuer })], { stdout: "pipe", stderr: "inherit" });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the peer instance exited before it was ready");
    text += new TextDecoder().decode(value);
  }
  const { url } = JSON.parse(text.split("\n")[0]!) as { url: string };
  return {
    url,
    proc,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** True when a Debian tool is on PATH; missing, a printed skip locally and a failure under CI=true. */
export function haveTool(tool: string, pkg: string): boolean {
  const ok = Bun.which(tool) !== null;
  if (!ok && process.env.CI === "true") throw new Error(`${tool} is required in CI (apt-get install -y ${pkg})`);
  if (!ok) console.warn(`SKIPPED: ${tool} not installed (apt-get install -y ${pkg})`);
  return ok;
}

/** Runs a shell pipeline in `dir`, asynchronously (the CA under test answers in this process); stdout then stderr. */
export async function shIn(dir: string, script: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["sh", "-c", script], { cwd: dir, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

/**
 * The certificates of `tenant` as the REST API (and the console's dashboard) shows them: at least
 * one came through `origin`, and none through another front end than `origin` or the REST API.
 */
export async function expectOrigin(f: CaFixture, tenant: string, origin: string): Promise<void> {
  const r = await f.api("/certificates?limit=500", await f.token(tenant, "pki:read"));
  if (r.status !== 200) throw new Error(`certificate search: ${r.status}`);
  const origins = new Set(((await r.json()) as { items: Array<{ origin: string }> }).items.map((c) => c.origin));
  if (!origins.has(origin) || [...origins].some((o) => o !== origin && o !== "api")) throw new Error(`expected certificates from ${origin}, found ${[...origins].join(", ")}`);
}
