/**
 * sm-kms as a child process (so it can be killed and restarted on the same ports) with an mTLS
 * port, a test identity-authz for bearer tokens, client certificates from its suite CA, and a
 * config file for the PKCS#11 module (providers/pkcs11) that points at it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { DirectoryStore, issueLeaf, loadOrCreateSuiteCa, suiteCaSealerFromFiles, toPem } from "../../src/pki/index.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { tempDir } from "../support/service.ts";
import { exited, freePort } from "../support/server-process.ts";
import { REPO as PROJECT_ROOT } from "../support/project.ts";

export const MODULE = join(PROJECT_ROOT, "providers", "pkcs11", "build", "libcryptoutil-pkcs11.so");
export const API = "/service/api/v1";
const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const ALL_SCOPES = ["kms:admin", "kms:encrypt", "kms:decrypt", "kms:sign", "kms:verify", "kms:mac"];

/** Whether a tool runs; missing tools fail the test file under CI=true and skip it elsewhere, loudly. */
export function requireTools(tools: Array<[string, string[]]>, files: string[] = []): boolean {
  const missing = tools.filter(([t, args]) => spawnSync(t, args, { stdio: "ignore" }).error !== undefined).map(([t]) => t);
  missing.push(...files.filter((f) => !existsSync(f)));
  if (missing.length === 0) return true;
  const msg = `missing: ${missing.join(", ")} (build the module with npm install; tools: apt-get install opensc libengine-pkcs11-openssl openssh-client openssh-server)`;
  if (process.env.CI === "true") throw new Error(msg);
  console.warn(`SKIPPED: ${msg}`);
  return false;
}

export interface SlotSpec {
  label: string;
  /** The tenant the client certificate maps to. */
  tenant: string;
  /** A passphrase to encrypt the client key with (the slot's PIN). */
  pin?: string;
  tag?: string;
  /** Instead of a client certificate: a bearer token in a file, on the public port. */
  tokenFile?: boolean;
}

export interface KmsBackend {
  root: string;
  publicUrl: string;
  mtlsUrl: string;
  trustBundle: string;
  issuer: TestIssuer;
  /** The module's config file. */
  configFile: string;
  /** Env for a process that loads the module. */
  env: NodeJS.ProcessEnv;
  /** A JSON call on the public port as `tenant` with every kms scope. */
  api(tenant: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startKmsBackend(slots: SlotSpec[]): Promise<KmsBackend> {
  const root = tempDir("cryptoutil-pkcs11-");
  const dataDir = join(root, "sm-kms");
  mkdirSync(dataDir, { recursive: true });
  const issuer = await startTestIssuer({ audience: "sm-kms" });
  const issuerCa = join(root, "issuer-ca.pem");
  writeFileSync(issuerCa, issuer.caPem);
  const [port, mtlsPort] = [await freePort(), await freePort()];
  const config = {
    server: { bind: "127.0.0.1", port, mtls_port: mtlsPort },
    // The suite layout: the development unseal secret and suite CA beside the data dir.
    data: { dir: dataDir, suite_dir: root },
    auth: { issuer: issuer.issuer, jwks_url: issuer.jwksUrl, audience: "sm-kms", ca_file: issuerCa },
    mtls: { principals: slots.filter((s) => !s.tokenFile).map((s) => ({ dns: `${s.label}.pkcs11.test`, tenant: s.tenant, scopes: ALL_SCOPES })) },
    log: { level: "warn", access: false },
    security: { rate_limit_rps: 100_000, rate_limit_burst: 100_000 },
  };
  const configYaml = join(root, "sm-kms.yaml");
  writeFileSync(configYaml, stringify(config));

  let child: ChildProcess | undefined;
  let stderr = "";
  const start = async () => {
    stderr = "";
    // Only this config: no suite defaults or config file from the environment.
    const env = { ...process.env };
    delete env.CRYPTOUTIL_SUITE_DEFAULTS;
    delete env.CRYPTOUTIL_CONFIG;
    child = spawn(BUN, ["run", join(PROJECT_ROOT, "apps", "sm-kms", "main.ts"), "--config", configYaml], { stdio: ["ignore", "pipe", "pipe"], env });
    child.stderr!.on("data", (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      let out = "";
      const onExit = () => reject(new Error(`sm-kms exited: ${stderr}`));
      child!.once("exit", onExit);
      child!.stdout!.on("data", (d) => {
        out += d;
        if (out.includes("cryptoutil.ready")) {
          child!.off("exit", onExit);
          resolve();
        }
      });
    });
  };
  await start();

  const trustBundle = join(root, "trust-bundle.pem");
  const { trustBundlePem } = await import("../../src/pki/index.ts");
  const ca = (await loadOrCreateSuiteCa({ store: new DirectoryStore(join(root, "suite-ca")), sealer: await suiteCaSealerFromFiles([join(root, "dev-unseal.secret")]) })).ca;
  writeFileSync(trustBundle, trustBundlePem(ca));

  const publicUrl = `https://127.0.0.1:${port}`;
  const moduleSlots = [];
  for (const s of slots) {
    if (s.tokenFile) {
      const tokenFile = join(root, `${s.label}.token`);
      writeFileSync(tokenFile, (await issuer.mint({ tenant: s.tenant, scope: ALL_SCOPES.join(" ") })) + "\n", { mode: 0o600 });
      moduleSlots.push({ label: s.label, url: publicUrl, token_file: tokenFile, ...(s.tag ? { tag: s.tag } : {}) });
      continue;
    }
    const leaf = await issueLeaf(ca, { serviceName: s.label, dnsNames: [`${s.label}.pkcs11.test`], ipAddresses: [], usage: "client", validityDays: 2 });
    const certFile = join(root, `${s.label}.crt`);
    const keyFile = join(root, `${s.label}.key`);
    writeFileSync(certFile, toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData)));
    const pkcs8 = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
    if (s.pin) {
      // The PIN is the passphrase of the client key: openssl writes it as encrypted PKCS#8.
      const r = spawnSync("openssl", ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", `pass:${s.pin}`, "-out", keyFile], { input: pkcs8 });
      if (r.status !== 0) throw new Error(`openssl pkcs8: ${r.stderr}`);
    } else {
      writeFileSync(keyFile, pkcs8, { mode: 0o600 });
    }
    moduleSlots.push({ label: s.label, cert: certFile, key: keyFile, ...(s.tag ? { tag: s.tag } : {}) });
  }
  const configFile = join(root, "pkcs11.json");
  const mtlsUrl = `https://127.0.0.1:${mtlsPort}`;
  writeFileSync(configFile, JSON.stringify({ url: mtlsUrl, ca: trustBundle, timeout_s: 60, slots: moduleSlots }, null, 2));

  const caPem = trustBundlePem(ca);
  const tokens = new Map<string, string>();
  return {
    root,
    publicUrl,
    mtlsUrl,
    trustBundle,
    issuer,
    configFile,
    env: { ...process.env, CRYPTOUTIL_PKCS11_CONFIG: configFile },
    async api(tenant, method, path, body) {
      let token = tokens.get(tenant);
      if (!token) tokens.set(tenant, (token = await issuer.mint({ tenant, scope: ALL_SCOPES.join(" ") })));
      const res = await fetch(publicUrl + API + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        tls: { ca: caPem },
      } as RequestInit);
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async kill() {
      child?.kill("SIGKILL");
      if (child) await exited(child);
    },
    restart: start,
    async stop() {
      child?.kill("SIGTERM");
      if (child) await exited(child);
      await issuer.stop();
    },
  };
}

/** Runs a command without blocking the event loop; rejects after 120 s. */
export async function run(cmd: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Uint8Array<ArrayBuffer>; cwd?: string } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]), stdout: "pipe", stderr: "pipe", env: opts.env, cwd: opts.cwd });
  const timer = setTimeout(() => p.kill(), 120_000);
  const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { status, stdout, stderr };
}

/** Compiles the threaded driver (providers/pkcs11/tools/p11-driver.c) into `dir`; returns its path. */
export async function compileDriver(dir: string): Promise<string> {
  const out = join(dir, "p11-driver");
  const r = await run(["cc", "-O2", "-Wall", "-I/usr/include/p11-kit-1", "-o", out, join(PROJECT_ROOT, "providers", "pkcs11", "tools", "p11-driver.c"), "-ldl", "-lpthread", "-lcrypto"]);
  if (r.status !== 0) throw new Error(`cc: ${r.stderr}`);
  return out;
}

/** The key's public JWK, imported for WebCrypto ECDSA P-256 verification. */
export async function ecVerifier(b: KmsBackend, tenant: string, keyId: string): Promise<(data: Uint8Array, sig: Uint8Array) => Promise<boolean>> {
  const { body: jwk } = await b.api(tenant, "GET", `/keys/${keyId}/public-key`);
  const key = await crypto.subtle.importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, { name: "ECDSA", namedCurve: jwk.crv }, false, ["verify"]);
  return (data, sig) => crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, sig as Uint8Array<ArrayBuffer>, data as Uint8Array<ArrayBuffer>);
}
