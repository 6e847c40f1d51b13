/**
 * Mutation fuzz of pki-ca's ACME endpoints: per endpoint, FUZZ_N (default 10,000) requests whose
 * JWS is mutated in one of three places: the flattened JWS object itself; the protected header
 * (a fresh nonce, then mutated, then signed correctly so the checks after the signature run);
 * or the payload (correctly signed). Every answer must be a 2xx/4xx (the shared runner in
 * test/support/fuzz.ts fails on any 5xx), and the server must still issue afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { MAX_BODY } from "../../apps/pki-ca/acme/routes.ts";
import type { CaFixture } from "./helpers.ts";
import * as x509 from "../../src/pki/x509.ts";
import { b64u, certIdOf, csrFor, startAcmeCa, startHttp01, TestAcme } from "./acme-helpers.ts";

const N = Number(process.env.FUZZ_N ?? 10_000);
/**
 * Mutations grow to about ACME's own body bound: whole-JWS cases land on both sides of it, and a
 * grown header or payload (base64url, a third longer) past it. Past the bound every case gets
 * the same 413 before any parsing, so 1 MiB cases (the services' limit) would only cost time.
 */
const MUTATE = { maxText: MAX_BODY };
let f: CaFixture;
let http01: ReturnType<typeof startHttp01>;
let c: TestAcme;
let order: any;
let certDer: string;
let authzUrl: string;
let challengeUrl: string;
let certId: string;

beforeAll(async () => {
  http01 = startHttp01();
  f = await startAcmeCa(http01.port);
  c = await TestAcme.create(`${f.svc.publicUrl}/acme/acme/directory`, f.svc.ca);
  await c.register();
  // A valid certificate for revokeCert, and a ready order for finalize.
  const first = await c.orderReady([{ type: "dns", value: "fuzz.localhost" }], http01);
  await c.post(first.order.finalize, { csr: b64u((await csrFor(["fuzz.localhost"])).der) });
  const done = await c.poll(first.url, (o) => o.status === "valid");
  const pem = await (await c.post(done.certificate, "")).text();
  certDer = b64u(new Uint8Array(Buffer.from(pem.split("-----")[2]!.replace(/\s+/g, ""), "base64")));
  order = (await c.orderReady([{ type: "dns", value: "fuzz2.localhost" }], http01)).order;
  certId = certIdOf(new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!));
  // A pending authorization whose dns-01 challenge the fuzz answers (its validation fails: no TXT).
  const pending = (await (await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "fuzz3.localhost" }] })).json()) as any;
  authzUrl = pending.authorizations[0];
  challengeUrl = ((await (await c.post(authzUrl, "")).json()) as any).challenges.find((x: any) => x.type === "dns-01").url;
});
afterAll(async () => {
  await f?.stop();
  http01?.stop();
});

/** ES256 over `protected.payload` as JWS wants it (r || s), whatever the header says. */
async function sign(protectedB64: string, payloadB64: string): Promise<string> {
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, c.keys.privateKey, new TextEncoder().encode(`${protectedB64}.${payloadB64}`));
  return b64u(new Uint8Array(sig));
}

/** One fuzz case: built by the worker that sends it (`text` kept for the failure report). */
type Case = { seed: number; kind?: number; text?: string };

/**
 * Fresh nonces for the cases: every ACME answer carries a new Replay-Nonce, so each answer feeds
 * the next case and newNonce is asked only when none is at hand (nonces are stateless HMACs:
 * keeping a few unused costs the server nothing).
 */
const nonces: string[] = [];
const takeNonce = async () => nonces.pop() ?? (await c.nonce());
function keepNonce(res: Response): void {
  const n = res.headers.get("replay-nonce");
  if (n) nonces.push(n);
}

async function makeCase(k: Case, url: string, payload: unknown, useJwk: boolean): Promise<string> {
  const r = rng(k.seed);
  const kind = (k.kind = r(3));
  const header: Record<string, unknown> = { alg: "ES256", nonce: await takeNonce(), url, ...(useJwk ? { jwk: c.jwk } : { kid: c.kid }) };
  const payloadText = payload === "" ? "" : JSON.stringify(payload);
  if (kind === 0) return mutateJson(JSON.parse(await c.body(url, payload, { jwk: useJwk, nonce: header.nonce as string })), r, MUTATE);
  const h = kind === 1 ? Buffer.from(mutateJson(header, r, MUTATE)).toString("base64url") : Buffer.from(JSON.stringify(header)).toString("base64url");
  const p = Buffer.from(kind === 2 ? mutateJson(payload === "" ? {} : payload, r, MUTATE) : payloadText).toString("base64url");
  return JSON.stringify({ protected: h, payload: p, signature: await sign(h, p) });
}

/** A distinct, replayable seed per case (xorshift seeds must not be 0). */
const seedOf = (base: number, i: number) => (Math.imul(base ^ (i + 1), 0x9e3779b1) >>> 0) || 1;

describe(`ACME mutation fuzz (${N} per endpoint)`, () => {
  const endpoints: Array<[string, () => string, () => unknown, boolean]> = [
    ["newAccount", () => c.dir.newAccount!, () => ({ termsOfServiceAgreed: true, contact: ["mailto:a@example.test"], onlyReturnExisting: false }), true],
    ["newOrder", () => c.dir.newOrder!, () => ({ identifiers: [{ type: "dns", value: "a.localhost" }, { type: "ip", value: "127.0.0.2" }], profile: "acme-server", notBefore: new Date(Date.now() + 3_600_000).toISOString(), notAfter: new Date(Date.now() + 86_400_000).toISOString() }), false],
    ["finalize", () => order.finalize, () => ({ csr: "MIIBAA" }), false],
    ["revokeCert", () => c.dir.revokeCert!, () => ({ certificate: certDer, reason: 4 }), false],
    ["account", () => c.kid!, () => ({ contact: ["mailto:b@example.test"] }), false],
    ["keyChange", () => c.dir.keyChange!, () => ({ protected: "eyJhbGciOiJFUzI1NiJ9", payload: "e30", signature: "AAAA" }), false],
    ["newOrder with replaces", () => c.dir.newOrder!, () => ({ identifiers: [{ type: "dns", value: "fuzz.localhost" }], replaces: certId, profile: "acme-server" }), false],
    ["challenge", () => challengeUrl, () => ({}), false],
    ["authorization", () => authzUrl, () => ({ status: "deactivated" }), false],
  ];
  for (const [name, url, payload, useJwk] of endpoints) {
    test(`${name}: no 5xx`, async () => {
      const base = 0xac3e0 + name.length;
      const cases: Case[] = Array.from({ length: N }, (_, i) => ({ seed: seedOf(base, i) }));
      const { statuses } = await fuzz(
        cases,
        async (k) => {
          const res = await c.fetch(url(), { method: "POST", headers: { "content-type": "application/jose+json" }, body: (k.text = await makeCase(k, url(), payload(), useJwk)) });
          keepNonce(res);
          return res;
        },
        {
          describe: (k) => `seed ${k.seed}, kind ${k.kind}: ${k.text}`,
          // No timing assertion: the machine may be loaded; only the status matters.
          maxMs: 120_000,
          concurrency: 8,
        },
      );
      expect([...statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
    }, 300_000);
  }

  test("renewalInfo: mutated certIDs in the path, no 5xx", async () => {
    const r = rng(0xa71);
    const cases: string[] = [];
    for (let i = 0; i < N; i++) {
      // At most 1 KiB: a longer request line is the HTTP server's to refuse, before any route.
      // Grown to a little past that only: the cases are built up front, and a slice of a 1 MiB
      // string keeps the whole string alive (10,000 of them filled the memory).
      const m = mutateJson(certId, r, { maxText: 2048 });
      cases.push(encodeURIComponent(m.replace(/^"|"$/g, "")).slice(0, 1024));
    }
    const { statuses } = await fuzz(cases, (id) => c.fetch(`${c.dir.renewalInfo}/${id}`), { describe: (id) => id, maxMs: 120_000, concurrency: 8 });
    expect([...statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
  }, 300_000);

  test("the server still orders and issues afterwards", async () => {
    const { url, order: o } = await c.orderReady([{ type: "dns", value: "after.localhost" }], http01);
    await c.post(o.finalize, { csr: b64u((await csrFor(["after.localhost"])).der) });
    expect((await c.poll(url, (x) => x.status !== "processing" && x.status !== "ready")).status).toBe("valid");
  }, 60_000);
});
