/**
 * The suite's services send their security events to audit, as under `npm start`: a real
 * identity-authz issues every token, sm-kms, pki-ca and identity-authz reach audit's mTLS port
 * with the client certificates the suite CA gave them, and events appear in the log with
 * inclusion proofs that verify against signed checkpoints. Then audit stops: the services keep
 * working and spool, and after audit returns everything arrives, nothing lost or doubled.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { smKms } from "../../apps/sm-kms/service.ts";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { createAuditService } from "../../apps/audit/service.ts";
import { openCheckpoint, parseVerifierKey } from "../../src/audit/note.ts";
import { verifyInclusion } from "../../src/audit/proofs.ts";
import { serviceSpiffeId } from "../../src/auth/client-cert.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { freePort } from "../support/server-process.ts";
import { quiet, startTestService, tempDir, trustIdentity, type TestService } from "../support/service.ts";
import { startAuthz, type TestAuthz } from "../identity/support/authz.ts";
import { ed25519Csr, PROFILES } from "../pki-ca/helpers.ts";

const MISSING_KEY = "00000000-0000-4000-8000-000000000000";
const SENDERS = ["identity-authz", "sm-kms", "pki-ca"];
let root: string;
let auditPort: number;
let authz: TestAuthz;
let audit: TestService;
let kms: TestService;
let ca: TestService;
let client: { client_id: string; client_secret: string };
let auditor: { client_id: string; client_secret: string };

/** Sends this service's events to audit's mTLS port, trusting the suite CA through its own bundle; fast retries for the test. */
const sendsToAudit = (service: string) => (c: ServiceConfig) => {
  c.federation.audit.url = `https://127.0.0.1:${auditPort}`;
  c.federation.audit.ca_file = join(root, service, "trust-bundle.pem");
  c.federation.audit.poll_ms = 100;
  c.federation.audit.backoff_base_ms = 50;
  c.federation.audit.backoff_max_ms = 500;
  c.federation.audit.breaker_cooldown_ms = 300;
  c.federation.audit.health_interval_ms = 0;
};

async function startAuditService(): Promise<TestService> {
  return startTestService(createAuditService(), {
    root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, authz.publicUrl, join(root, "identity-authz", "trust-bundle.pem"), "audit");
      c.server.mtls_port = auditPort;
      c.mtls.principals = SENDERS.map((s) => ({ uri: serviceSpiffeId(s), tenant: "root", subject: s, scopes: ["audit:ingest"] }));
      c.app = { checkpoint_interval_ms: 0 };
    },
  });
}

async function token(who: { client_id: string; client_secret: string }, tenant: string, resource: string): Promise<string> {
  const r = await authz.fetch(`${authz.publicUrl}/t/${tenant}/token`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${who.client_id}:${who.client_secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", resource }).toString(),
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { access_token: string }).access_token;
}

async function call(svc: TestService, resource: string, method: string, path: string, body?: unknown, who = client, tenant = "acme") {
  const res = await svc.call(`/service/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${await token(who, tenant, resource)}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const auditApi = (method: string, path: string) => call(audit, "audit", method, path, undefined, auditor, "root");

/** Every entry in the log, oldest first. */
async function allEntries(): Promise<any[]> {
  const out: any[] = [];
  for (;;) {
    const r = await auditApi("GET", `/events?order=asc&limit=1000${out.length ? `&after=${out[out.length - 1].seq}` : ""}`);
    expect(r.status).toBe(200);
    out.push(...r.body.items);
    if (r.body.items.length < 1000) return out;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

const spooled = async () => (await Promise.all([authz, kms, ca].map((s) => s.ctx.audit.pending()))).reduce((a, b) => a + b, 0);

beforeAll(async () => {
  auditPort = await freePort();
  root = tempDir("cryptoutil-audit-senders-");
  authz = await startAuthz({ root, overrides: (c) => sendsToAudit("identity-authz")(c) });
  // identity-authz starts before audit, as it may in any deployment: its first events spool.
  await authz.createTenant("acme");
  client = (await authz.createClient("acme", {
    client_name: "operator",
    grant_types: ["client_credentials"],
    audiences: ["sm-kms", "pki-ca", "audit"],
    scopes: ["kms:admin", "kms:encrypt", "pki:request", "pki:read", "pki:revoke", "audit:read"],
  })) as never;
  auditor = (await authz.createClient("root", { client_name: "auditor", grant_types: ["client_credentials"], audiences: ["audit"], scopes: ["audit:read", "audit:admin"] })) as never;
  expect(await authz.ctx.audit.pending()).toBeGreaterThan(0);
  audit = await startAuditService();
  const common = (service: string) => (c: ServiceConfig) => {
    quiet(c);
    trustIdentity(c, authz.publicUrl, join(root, "identity-authz", "trust-bundle.pem"), service);
    sendsToAudit(service)(c);
  };
  kms = await startTestService(smKms, { root, overrides: common("sm-kms") });
  ca = await startTestService(pkiCa, {
    root,
    overrides: (c) => {
      common("pki-ca")(c);
      c.app = { base_url: "http://pki.example.test", issuing_cas: ["P-256"], profiles: { server: PROFILES.server } };
    },
  });
}, 240_000);

afterAll(async () => {
  for (const s of [ca, kms, audit]) await s?.stop();
  await authz?.stop();
});

describe("security events reach audit", () => {
  let serial: string;
  let keyId: string;

  test("key operations, issuance and revocation, tokens and admin changes appear, each with a verifiable inclusion proof", async () => {
    const key = await call(kms, "sm-kms", "POST", "/keys", { name: "audited-key", algorithm: "A256GCM" });
    expect(key.status).toBe(201);
    keyId = key.body.id;
    expect((await call(kms, "sm-kms", "POST", `/keys/${keyId}/encrypt`, { plaintext: "aGVsbG8" })).status).toBe(200);
    // A refused operation is an event too.
    expect((await call(kms, "sm-kms", "POST", `/keys/${MISSING_KEY}/rotate`)).status).toBe(404);
    const { pem } = await ed25519Csr("www.example.com");
    const issued = await call(ca, "pki-ca", "POST", "/certificates", { csr: pem, profile: "server" });
    expect(issued.status).toBe(201);
    serial = issued.body.certificate.serial;
    expect((await call(ca, "pki-ca", "POST", `/certificates/${serial}/revoke`, { reason: "keyCompromise" })).status).toBe(200);

    await waitFor("the spools to drain", async () => (await spooled()) === 0);
    const entries = await allEntries();
    const find = (service: string, action: string, f: (e: any) => boolean = () => true) => entries.find((e) => e.service === service && e.action === action && f(e));
    const kmsCreate = find("sm-kms", "key.create", (e) => e.resource === "" || e.tenant === "acme");
    expect(kmsCreate?.tenant).toBe("acme");
    expect(kmsCreate?.actor).toBe(client.client_id);
    expect(kmsCreate?.result).toBe("ok");
    expect(kmsCreate?.request_id).toBeTruthy();
    expect(kmsCreate?.hmac.client_ip).toMatch(/^hmac-sha256:/);
    expect(find("sm-kms", "key.encrypt", (e) => e.resource === keyId)?.result).toBe("ok");
    expect(find("sm-kms", "key.rotate", (e) => e.resource === MISSING_KEY)?.result).toBe("not_found");
    expect(find("pki-ca", "certificate.issued", (e) => e.resource === serial)?.details.profile).toBe("server");
    expect(find("pki-ca", "certificate.revoked", (e) => e.resource === serial)?.details.reason).toBe("keyCompromise");
    expect(find("identity-authz", "tenant.create")?.result).toBe("ok");
    expect(find("identity-authz", "client.create", (e) => e.tenant === "acme")).toBeDefined();
    const tokens = entries.filter((e) => e.service === "identity-authz" && e.action === "token.issue" && e.actor === client.client_id);
    expect(tokens.length).toBeGreaterThanOrEqual(5);
    expect(tokens[0].details.grant_type).toBe("client_credentials");
    // No secret of any request is in the log.
    expect(JSON.stringify(entries)).not.toContain(client.client_secret);
    expect(JSON.stringify(entries)).not.toContain("aGVsbG8");

    const cp = await auditApi("POST", "/checkpoints");
    expect(cp.status).toBe(201);
    const verifier = parseVerifierKey((await auditApi("GET", "/log")).body.verifier_key);
    const signed = openCheckpoint(cp.body.note, verifier);
    for (const e of [kmsCreate, find("pki-ca", "certificate.issued"), find("pki-ca", "certificate.revoked"), find("identity-authz", "token.issue"), find("identity-authz", "tenant.create")]) {
      const p = await auditApi("GET", `/events/${e.seq}/proof`);
      expect(p.status).toBe(200);
      const b = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
      expect(verifyInclusion(e.seq, signed.size, b(p.body.leaf_hash), p.body.hashes.map(b), signed.root)).toBe(true);
    }
    // The acme client sees acme's entries only.
    const mine = await call(audit, "audit", "GET", "/events?limit=1000");
    expect(mine.status).toBe(200);
    expect(mine.body.items.length).toBeGreaterThan(0);
    expect(mine.body.items.every((e: any) => e.tenant === "acme")).toBe(true);
  }, 120_000);

  test("with audit stopped the services work and spool; after it returns everything arrives once", async () => {
    const before = (await allEntries()).length;
    await audit.stop();
    const N = 30;
    for (let i = 0; i < N; i++) expect((await call(kms, "sm-kms", "POST", `/keys/${keyId}/encrypt`, { plaintext: "b3V0YWdl" })).status).toBe(200);
    const { pem } = await ed25519Csr("outage.example.com");
    const issued = await call(ca, "pki-ca", "POST", "/certificates", { csr: pem, profile: "server" });
    expect(issued.status).toBe(201);
    // N encrypts and their N tokens, the issuance and its token, at least.
    expect(await spooled()).toBeGreaterThanOrEqual(2 * N + 2);
    const waiting = await spooled();

    audit = await startAuditService();
    await waitFor("the spools to drain after audit returned", async () => (await spooled()) === 0);
    const entries = await allEntries();
    expect(entries.length).toBeGreaterThanOrEqual(before + waiting);
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i));
    const ids = new Set(entries.map((e) => `${e.service}/${e.id}`));
    expect(ids.size).toBe(entries.length);
    expect(entries.filter((e) => e.service === "sm-kms" && e.action === "key.encrypt" && e.resource === keyId).length).toBe(N + 1);
    expect(entries.some((e) => e.service === "pki-ca" && e.action === "certificate.issued" && e.resource === issued.body.certificate.serial)).toBe(true);
  }, 180_000);

  test("the CLI online: audit query, tail, proof, checkpoint, key and export, then verify offline", async () => {
    // A CLI context for the acme operator, as `cryptoutil login` writes one.
    const home = join(root, "cli-home");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    writeFileSync(join(home, "operator.secret"), client.client_secret + "\n", { mode: 0o600 });
    const context = {
      tenant: "acme",
      issuer: `${authz.publicUrl}/t/acme`,
      ca_file: join(root, "audit", "trust-bundle.pem"),
      auth: { kind: "client_credentials", client_id: client.client_id, client_secret_file: join(home, "operator.secret") },
      services: { audit: { public: audit.publicUrl, audience: "audit" } },
    };
    writeFileSync(join(home, "config.json"), JSON.stringify({ current: "acme", contexts: { acme: context } }), { mode: 0o600 });
    const cli = async (...args: string[]) => {
      const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "..", "cli", "main.ts"), ...args], { cwd: home, env: { ...process.env, CRYPTOUTIL_HOME: home }, stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    const q = await cli("audit", "query", "--service", "sm-kms", "--action", "key.encrypt", "--limit", "5");
    expect(q.err).toBe("");
    expect(q.code).toBe(0);
    expect(q.out.split("\n")[0]).toMatch(/^seq\s+time\s+service/);
    expect(q.out).toContain("key.encrypt");
    expect(q.out).not.toContain("identity-authz");
    const tail = await cli("--json", "audit", "tail", "--since", "0", "--count", "3", "--interval", "100");
    expect(tail.code).toBe(0);
    const tailed = tail.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(tailed).toHaveLength(3);
    expect(tailed.every((e) => e.tenant === "acme")).toBe(true);
    const proof = await cli("audit", "proof", String(tailed[0].seq));
    expect(proof.err).toBe("");
    expect(proof.out).toMatch(/^verified: +yes$/m);
    // Export, checkpoint and key to files, then verify with no server involved.
    expect((await cli("audit", "checkpoint", "--now", "-o", "cp.txt")).code).toBe(1); // audit:admin is not the operator's
    expect((await cli("audit", "checkpoint", "-o", "cp.txt")).code).toBe(0);
    expect((await cli("audit", "export", "-o", "log.jsonl")).code).toBe(0);
    const key = await cli("audit", "key");
    writeFileSync(join(home, "audit.vkey"), key.out);
    const verified = await cli("audit", "verify", "log.jsonl", "--checkpoint", "cp.txt", "--key", "audit.vkey");
    expect(verified.err).toBe("");
    expect(verified.out).toMatch(/^ok: \d+ entries match the signed checkpoint/);
  }, 120_000);
});
