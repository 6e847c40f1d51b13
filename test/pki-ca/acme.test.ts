/**
 * pki-ca's ACME server (RFC 8555) driven by requests built here with jose: the directory and
 * nonces, accounts (every accepted alg, onlyReturnExisting, update, deactivation), External
 * Account Binding with keys from the admin API, orders with DNS and IP identifiers validated
 * over real http-01, finalize through the profile policy, download, revocation; and the
 * refusals as problem documents, with nothing issued.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FlattenedSign, generateKeyPair, exportJWK } from "jose";
import * as x509 from "../../src/pki/x509.ts";
import type { CaFixture } from "./helpers.ts";
import { b64u, csrFor, startAcmeCa, startHttp01, TestAcme, type Alg } from "./acme-helpers.ts";
import { acmeFastRoutes } from "../../apps/pki-ca/acme/routes.ts";

let f: CaFixture;
let http01: ReturnType<typeof startHttp01>;
let dirUrl: string;
let eabDirUrl: string;

beforeAll(async () => {
  http01 = startHttp01();
  // Validations on loopback finish long before this; the challenge tests rely on it.
  f = await startAcmeCa(http01.port, { challenge_wait_ms: 10_000 });
  dirUrl = `${f.svc.publicUrl}/acme/acme/directory`;
  eabDirUrl = `${f.svc.publicUrl}/acme/eab/directory`;
});
afterAll(async () => {
  await f?.stop();
  http01?.stop();
});

const problem = async (r: Response) => {
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  return (await r.json()) as { type: string; detail: string; status: number; subproblems?: unknown[] };
};
const issuedCount = async () => {
  const tok = await f.token("acme", "pki:read");
  return ((await (await f.api("/certificates?limit=100", tok)).json()) as { items: unknown[] }).items.length;
};

/** A registered client of tenant `acme` and a ready order for `name`. */
async function readyOrder(name: string, alg: Alg = "ES256") {
  const c = await TestAcme.create(dirUrl, f.svc.ca, alg);
  expect((await c.register()).status).toBe(201);
  const { url, order } = await c.orderReady([{ type: "dns", value: name }], http01);
  return { c, url, order };
}

describe("challenge answers (challenge_wait_ms)", () => {
  async function pendingChallenge(c: TestAcme, name: string) {
    const r = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: name }] });
    expect(r.status).toBe(201);
    const order = (await r.json()) as any;
    const authz = (await (await c.post(order.authorizations[0], "")).json()) as any;
    return { url: r.headers.get("location")!, ch: authz.challenges.find((x: any) => x.type === "http-01") };
  }

  test("the answer waits for the validation: valid, and the order's next read finds it ready", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const { url, ch } = await pendingChallenge(c, "waited.localhost");
    http01.tokens.set(ch.token, `${ch.token}.${await c.thumbprint()}`);
    const answer = await c.post(ch.url, {});
    expect(answer.status).toBe(200);
    expect(answer.headers.get("retry-after")).toBeNull();
    const body = (await answer.json()) as any;
    expect(body.status).toBe("valid");
    expect(body.validated).toBeString();
    expect(((await (await c.post(url, "")).json()) as any).status).toBe("ready");
  });

  test("a wrong key authorization: the answer is invalid with incorrectResponse, and so is the order", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const { url, ch } = await pendingChallenge(c, "waited-wrong.localhost");
    http01.tokens.set(ch.token, `${ch.token}.not-the-thumbprint`);
    const body = (await (await c.post(ch.url, {})).json()) as any;
    expect(body.status).toBe("invalid");
    expect(body.error.type).toBe("urn:ietf:params:acme:error:incorrectResponse");
    expect(((await (await c.post(url, "")).json()) as any).status).toBe("invalid");
  });

  test("a validation slower than challenge_wait_ms: processing with Retry-After, valid later", async () => {
    const slow = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const token = new URL(req.url).pathname.split("/").pop()!;
        await Bun.sleep(2000);
        return new Response(http01.tokens.get(token) ?? "", { status: http01.tokens.has(token) ? 200 : 404 });
      },
    });
    const quick = await startAcmeCa(slow.port!, { challenge_wait_ms: 200 });
    try {
      const c = await TestAcme.create(`${quick.svc.publicUrl}/acme/acme/directory`, quick.svc.ca);
      await c.register();
      const { url, ch } = await pendingChallenge(c, "slow.localhost");
      http01.tokens.set(ch.token, `${ch.token}.${await c.thumbprint()}`);
      const answer = await c.post(ch.url, {});
      expect(((await answer.json()) as any).status).toBe("processing");
      expect(answer.headers.get("retry-after")).toBe("1");
      expect((await c.poll(url, (o) => o.status !== "pending")).status).toBe("ready");
    } finally {
      await quick.stop();
      slow.stop(true);
    }
  }, 60_000);
});

describe("routing", () => {
  test("every ACME endpoint is in the API document, and the pipeline serves the same ones before the router", async () => {
    const doc = (await (await fetch(`${f.svc.publicUrl}/docs/openapi.json`, { tls: { ca: f.svc.ca } } as RequestInit)).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths)
      .filter(([path]) => path.startsWith("/acme/{tenant}/"))
      .flatMap(([path, ops]) => Object.keys(ops).filter((m) => m === "get" || m === "post").map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    const fast = acmeFastRoutes(async () => {
      throw new Error("not called");
    })
      .map((r) => `${r.method} ${r.route.replace(/:([a-z]+)/g, "{$1}")}`)
      .sort();
    expect(fast).toEqual(documented);
    expect(fast.length).toBeGreaterThanOrEqual(14);
    // Percent-encoded path parameters reach the handlers decoded, as through the router.
    const encoded = await fetch(`${f.svc.publicUrl}/acme/%61cme/directory`, { tls: { ca: f.svc.ca } } as RequestInit);
    expect(encoded.status).toBe(200);
    expect(((await encoded.json()) as any).newOrder).toBe(`${f.svc.publicUrl}/acme/acme/new-order`);
  });
});

describe("directory and nonces", () => {
  test("the directory names every resource and the meta", async () => {
    const r = await fetch(dirUrl, { tls: { ca: f.svc.ca } } as RequestInit);
    expect(r.status).toBe(200);
    const d = (await r.json()) as any;
    for (const k of ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"]) expect(d[k]).toStartWith(`${f.svc.publicUrl}/acme/acme/`);
    expect(d.meta).toEqual({
      termsOfService: "https://ca.example.test/terms",
      website: "https://ca.example.test/",
      caaIdentities: ["ca.example.test"],
      externalAccountRequired: false,
      profiles: { "acme-server": expect.any(String), "acme-manual": expect.any(String) },
    });
    const e = (await (await fetch(eabDirUrl, { tls: { ca: f.svc.ca } } as RequestInit)).json()) as any;
    expect(e.meta.externalAccountRequired).toBe(true);
  });

  test("a tenant without ACME is a 404 problem", async () => {
    const r = await fetch(`${f.svc.publicUrl}/acme/other/directory`, { tls: { ca: f.svc.ca } } as RequestInit);
    expect(r.status).toBe(404);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:malformed");
  });

  test("newNonce: HEAD 200 and GET 204, each with a fresh Replay-Nonce", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const h = await c.fetch(c.dir.newNonce!, { method: "HEAD" });
    const g = await c.fetch(c.dir.newNonce!);
    expect(h.status).toBe(200);
    expect(g.status).toBe(204);
    expect(h.headers.get("cache-control")).toBe("no-store");
    expect(h.headers.get("replay-nonce")).toMatch(/^[A-Za-z0-9_-]{54}$/);
    expect(g.headers.get("replay-nonce")).not.toBe(h.headers.get("replay-nonce"));
  });
});

describe("accounts", () => {
  for (const alg of ["ES256", "ES384", "RS256", "PS256", "EdDSA"] as Alg[]) {
    test(`newAccount with ${alg}, then the same key finds it (200) and the kid reads it`, async () => {
      const c = await TestAcme.create(dirUrl, f.svc.ca, alg);
      const r = await c.register();
      expect(r.status).toBe(201);
      expect(c.kid).toStartWith(`${f.svc.publicUrl}/acme/acme/acct/`);
      const a = (await r.json()) as any;
      expect(a).toMatchObject({ status: "valid", contact: ["mailto:ops@example.test"], orders: `${c.kid}/orders` });
      const again = await c.post(c.dir.newAccount!, { onlyReturnExisting: true }, { jwk: true });
      expect(again.status).toBe(200);
      expect(again.headers.get("location")).toBe(c.kid!);
      const read = await c.post(c.kid!, "");
      expect(read.status).toBe(200);
    });
  }

  test("onlyReturnExisting for an unknown key: accountDoesNotExist", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const r = await c.post(c.dir.newAccount!, { onlyReturnExisting: true }, { jwk: true });
    expect(r.status).toBe(400);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:accountDoesNotExist");
  });

  test("terms must be agreed when the CA has terms", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const r = await c.post(c.dir.newAccount!, {}, { jwk: true });
    expect(r.status).toBe(403);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:unauthorized");
  });

  test("contact update, then deactivation: the kid is refused afterwards", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const u = await c.post(c.kid!, { contact: ["mailto:new@example.test"] });
    expect(((await u.json()) as any).contact).toEqual(["mailto:new@example.test"]);
    // Read back: the account as stored now, not as it was when first read.
    expect(((await (await c.post(c.kid!, "")).json()) as any).contact).toEqual(["mailto:new@example.test"]);
    const bad = await c.post(c.kid!, { contact: ["tel:+1555"] });
    expect((await problem(bad)).type).toBe("urn:ietf:params:acme:error:unsupportedContact");
    const d = await c.post(c.kid!, { status: "deactivated" });
    expect(d.status).toBe(200);
    expect(((await d.json()) as any).status).toBe("deactivated");
    const after = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "x.localhost" }] });
    expect(after.status).toBe(403);
    expect((await problem(after)).type).toBe("urn:ietf:params:acme:error:unauthorized");
  });
});

describe("External Account Binding", () => {
  async function eabKey() {
    const tok = await f.token("eab", "pki:admin");
    const r = await f.api("/acme/eab-keys", tok, { method: "POST", body: {} });
    expect(r.status).toBe(201);
    return (await r.json()) as { kid: string; hmac_key: string };
  }
  async function binding(c: TestAcme, kid: string, hmacKey: string, url = c.dir.newAccount!) {
    const s = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(c.jwk))).setProtectedHeader({ alg: "HS256", kid, url }).sign(Buffer.from(hmacKey, "base64url"));
    return { protected: s.protected, payload: s.payload, signature: s.signature };
  }

  test("keys come from the admin API with pki:admin only", async () => {
    const tok = await f.token("eab", "pki:request");
    expect((await f.api("/acme/eab-keys", tok, { method: "POST", body: {} })).status).toBe(403);
    const k = await eabKey();
    expect(k.kid).toStartWith("eab_");
    const list = (await (await f.api("/acme/eab-keys", await f.token("eab", "pki:admin"))).json()) as any;
    expect(list.items.find((i: any) => i.kid === k.kid)).toMatchObject({ account_id: null });
    expect(JSON.stringify(list)).not.toContain(k.hmac_key);
  });

  test("required: without a binding externalAccountRequired; with one, created and the key bound once", async () => {
    const c = await TestAcme.create(eabDirUrl, f.svc.ca);
    const none = await c.register();
    expect((await problem(none)).type).toBe("urn:ietf:params:acme:error:externalAccountRequired");
    const k = await eabKey();
    const wrong = await c.register({ externalAccountBinding: await binding(c, k.kid, Buffer.alloc(32, 7).toString("base64url")) });
    expect((await problem(wrong)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    const ok = await c.register({ externalAccountBinding: await binding(c, k.kid, k.hmac_key) });
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as any).externalAccountBinding).toEqual({ kid: k.kid });
    const other = await TestAcme.create(eabDirUrl, f.svc.ca);
    const reuse = await other.register({ externalAccountBinding: await binding(other, k.kid, k.hmac_key) });
    expect(reuse.status).toBe(403);
    expect((await problem(reuse)).detail).toContain("already bound");
  });

  test("a binding over another key or for another URL is refused", async () => {
    const k = await eabKey();
    const c = await TestAcme.create(eabDirUrl, f.svc.ca);
    const d = await TestAcme.create(eabDirUrl, f.svc.ca);
    expect((await c.register({ externalAccountBinding: await binding(d, k.kid, k.hmac_key) })).status).toBe(403);
    expect((await c.register({ externalAccountBinding: await binding(c, k.kid, k.hmac_key, c.dir.newOrder!) })).status).toBe(403);
  });
});

describe("orders", () => {
  test("a DNS order: http-01 validated, finalized through the profile, downloaded, revoked by the account", async () => {
    const { c, url, order } = await readyOrder("one.localhost");
    expect(order.status).toBe("ready");
    expect(order.profile).toBe("acme-server");
    const { der } = await csrFor(["one.localhost"]);
    const fin = await c.post(order.finalize, { csr: b64u(der) });
    expect(fin.status).toBe(200);
    const done = await c.poll(url, (o) => o.status === "valid");
    const dl = await c.post(done.certificate, "");
    expect(dl.headers.get("content-type")).toBe("application/pem-certificate-chain");
    const pem = await dl.text();
    expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
    const leaf = new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    expect(leaf.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON()).toEqual([{ type: "dns", value: "one.localhost" }]);
    // The same certificate as the REST API sees it, under the tenant.
    const serial = done.certificate.split("/").pop();
    const tok = await f.token("acme", "pki:read");
    expect(((await (await f.api(`/certificates/${serial}`, tok)).json()) as any)).toMatchObject({ status: "valid", profile: "acme-server" });
    const rv = await c.post(c.dir.revokeCert!, { certificate: b64u(new Uint8Array(leaf.rawData)), reason: 4 });
    expect(rv.status).toBe(200);
    expect(((await (await f.api(`/certificates/${serial}`, tok)).json()) as any)).toMatchObject({ status: "revoked", revocation_reason: "superseded" });
    const again = await c.post(c.dir.revokeCert!, { certificate: b64u(new Uint8Array(leaf.rawData)) });
    expect((await problem(again)).type).toBe("urn:ietf:params:acme:error:alreadyRevoked");
  });

  test("an IP order and the order list", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const { url, order } = await c.orderReady([{ type: "ip", value: "127.0.0.1" }], http01);
    expect(order.status).toBe("ready");
    const { der } = await csrFor([], ["127.0.0.1"]);
    expect((await c.post(order.finalize, { csr: b64u(der) })).status).toBe(200);
    const done = await c.poll(url, (o) => o.status === "valid");
    expect(done.certificate).toBeString();
    const list = (await (await c.post(`${c.kid}/orders`, "")).json()) as any;
    expect(list.orders).toEqual([url]);
  });

  test("revocation by the certificate's own key (jwk), with a reason; a bad reason is refused", async () => {
    const { c, url, order } = await readyOrder("bykey.localhost");
    const { der, keys } = await csrFor(["bykey.localhost"]);
    await c.post(order.finalize, { csr: b64u(der) });
    const done = await c.poll(url, (o) => o.status === "valid");
    const leafPem = (await (await c.post(done.certificate, "")).text()).split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
    const cert = b64u(new Uint8Array(new x509.X509Certificate(leafPem).rawData));
    const stranger = await TestAcme.create(dirUrl, f.svc.ca);
    const bad = await stranger.post(c.dir.revokeCert!, { certificate: cert, reason: 7 }, { jwk: true, keys, alg: "ES256" });
    expect((await problem(bad)).type).toBe("urn:ietf:params:acme:error:badRevocationReason");
    const ok = await stranger.post(c.dir.revokeCert!, { certificate: cert, reason: 1 }, { jwk: true, keys, alg: "ES256" });
    expect(ok.status).toBe(200);
  });

  test("a manual-approval profile: processing until an approver issues", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const { url, order } = await c.orderReady([{ type: "dns", value: "manual.localhost" }], http01, { profile: "acme-manual" });
    const { der } = await csrFor(["manual.localhost"]);
    const fin = (await (await c.post(order.finalize, { csr: b64u(der) })).json()) as any;
    expect(fin.status).toBe("processing");
    const tok = await f.token("acme", "pki:approve");
    const pending = (await (await f.api("/requests", tok)).json()) as any;
    const req = pending.items.find((i: any) => i.sans.includes("dns:manual.localhost"));
    expect((await f.api(`/requests/${req.id}/approve`, tok, { method: "POST" })).status).toBe(201);
    const done = await c.poll(url, (o) => o.status !== "processing");
    expect(done.status).toBe("valid");
  });

  test("a failed http-01 makes the authorization and order invalid (incorrectResponse)", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const r = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "wrong.localhost" }] });
    const order = (await r.json()) as any;
    const a = (await (await c.post(order.authorizations[0], "")).json()) as any;
    http01.tokens.set(a.challenges[0].token, "not-the-key-authorization");
    await c.post(a.challenges[0].url, {});
    const az = await c.poll(order.authorizations[0], (x) => x.status !== "pending");
    expect(az.status).toBe("invalid");
    expect(az.challenges[0].error.type).toBe("urn:ietf:params:acme:error:incorrectResponse");
    const o = (await (await c.post(r.headers.get("location")!, "")).json()) as any;
    expect(o.status).toBe("invalid");
  });

  test("identifiers the profile refuses: rejectedIdentifier with subproblems; unknown types unsupportedIdentifier", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const r = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "example.com" }, { type: "ip", value: "10.1.1.1" }] });
    const p = await problem(r);
    expect(p.type).toBe("urn:ietf:params:acme:error:rejectedIdentifier");
    expect(p.subproblems).toHaveLength(2);
    const w = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "*.*.wild.localhost" }] });
    expect((await problem(w)).type).toBe("urn:ietf:params:acme:error:rejectedIdentifier");
    const e = await c.post(c.dir.newOrder!, { identifiers: [{ type: "email", value: "a@b.localhost" }] });
    expect((await problem(e)).type).toBe("urn:ietf:params:acme:error:unsupportedIdentifier");
  });
});

describe("refusals (nothing issued)", () => {
  let before: number;
  beforeAll(async () => {
    before = await issuedCount();
  });
  afterAll(async () => {
    expect(await issuedCount()).toBe(before);
  });

  test("a reused nonce: badNonce with a fresh Replay-Nonce", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const nonce = await c.nonce();
    expect((await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { jwk: true, nonce })).status).toBe(201);
    const r = await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { jwk: true, nonce });
    expect(r.status).toBe(400);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:badNonce");
    expect(r.headers.get("replay-nonce")).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(r.headers.get("replay-nonce")).not.toBe(nonce);
  });

  test("a bad signature, alg none, a MAC alg, a wrong url header", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const sig = await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { jwk: true, signature: b64u(new Uint8Array(64)) });
    expect((await problem(sig)).type).toBe("urn:ietf:params:acme:error:malformed");
    const none = await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { rawProtected: { alg: "none", nonce: await c.nonce(), url: c.dir.newAccount, jwk: c.jwk } });
    expect((await problem(none)).type).toBe("urn:ietf:params:acme:error:badSignatureAlgorithm");
    const mac = await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { rawProtected: { alg: "HS256", nonce: await c.nonce(), url: c.dir.newAccount, jwk: c.jwk } });
    expect((await problem(mac)).type).toBe("urn:ietf:params:acme:error:badSignatureAlgorithm");
    const url = await c.post(c.dir.newAccount!, { termsOfServiceAgreed: true }, { jwk: true, url: c.dir.newOrder });
    expect(url.status).toBe(403);
    expect((await problem(url)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    expect((await c.post(c.dir.newAccount!, { onlyReturnExisting: true }, { jwk: true })).status).toBe(400);
  });

  test("another account's kid", async () => {
    const a = await TestAcme.create(dirUrl, f.svc.ca);
    const b = await TestAcme.create(dirUrl, f.svc.ca);
    await a.register();
    await b.register();
    // b signs with its own key but names a's account: the signature does not verify under a's key.
    const r = await b.post(b.dir.newOrder!, { identifiers: [{ type: "dns", value: "x.localhost" }] }, { kid: a.kid });
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:malformed");
    // b reads a's account URL with its own kid: unauthorized.
    const read = await b.post(a.kid!, "");
    expect((await problem(read)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    const ghost = await b.post(b.dir.newOrder!, { identifiers: [{ type: "dns", value: "x.localhost" }] }, { kid: `${b.kid}x` });
    expect((await problem(ghost)).type).toBe("urn:ietf:params:acme:error:accountDoesNotExist");
  });

  test("finalize before ready: orderNotReady", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    await c.register();
    const order = (await (await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "early.localhost" }] })).json()) as any;
    const { der } = await csrFor(["early.localhost"]);
    const r = await c.post(order.finalize, { csr: b64u(der) });
    expect(r.status).toBe(403);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:orderNotReady");
  });

  test("a CSR whose names differ from the order: badCSR, and the order stays ready", async () => {
    const { c, url, order } = await readyOrder("csr.localhost");
    for (const [names, upns] of [[["other.localhost"], []], [["csr.localhost", "extra.localhost"], []], [["csr.localhost"], ["ops@example.com"]]]) {
      const { der } = await csrFor(names!, [], upns);
      const r = await c.post(order.finalize, { csr: b64u(der) });
      expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:badCSR");
    }
    const junk = await c.post(order.finalize, { csr: "AAAA" });
    expect((await problem(junk)).type).toBe("urn:ietf:params:acme:error:badCSR");
    expect(((await (await c.post(url, "")).json()) as any).status).toBe("ready");
  });

  test("revoke by a stranger account: unauthorized", async () => {
    // A certificate issued to the REST API (not through ACME) of the same tenant.
    const { der } = await csrFor(["rest.localhost"]);
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const tok = await f.token("acme", "pki:request");
    const issued = (await (await f.api("/certificates", tok, { body: { csr: pem, profile: "acme-server" } })).json()) as any;
    before += 1;
    const certDer = new Uint8Array(new x509.X509Certificate(issued.certificate.certificate_pem).rawData);
    const s = await TestAcme.create(dirUrl, f.svc.ca);
    await s.register();
    const r = await s.post(s.dir.revokeCert!, { certificate: b64u(certDer) });
    expect(r.status).toBe(403);
    expect((await problem(r)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    // And with a key that is not the certificate's.
    const other = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    const k = await s.post(s.dir.revokeCert!, { certificate: b64u(certDer) }, { jwk: true, keys: other });
    expect((await problem(k)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    expect(((await (await f.api(`/certificates/${issued.certificate.serial}`, await f.token("acme", "pki:read"))).json()) as any).status).toBe("valid");
    void exportJWK;
  });

  test("wrong content type and non-JSON bodies are 4xx problems", async () => {
    const c = await TestAcme.create(dirUrl, f.svc.ca);
    const ct = await c.fetch(c.dir.newAccount!, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(ct.status).toBe(415);
    expect((await problem(ct)).type).toBe("urn:ietf:params:acme:error:malformed");
    const bad = await c.fetch(c.dir.newAccount!, { method: "POST", headers: { "content-type": "application/jose+json" }, body: "nope" });
    expect(bad.status).toBe(400);
  });
});

describe("development defaults", () => {
  test("a development CA without an acme section serves tenant demo on tls-server, validating on port 5002", async () => {
    const { startTestService } = await import("../support/service.ts");
    const { pkiCa } = await import("../../apps/pki-ca/service.ts");
    const { parsePkiCaConfig } = await import("../../apps/pki-ca/config.ts");
    const svc = await startTestService(pkiCa, { overrides: (c) => void (c.app = { base_url: "http://pki.example.test" }) });
    try {
      const d = (await (await svc.call("/acme/demo/directory")).json()) as any;
      expect(d.meta).toMatchObject({ externalAccountRequired: false, profiles: { "tls-server": expect.any(String) } });
      expect((await svc.call("/acme/acme/directory")).status).toBe(404);
      expect(parsePkiCaConfig(svc.config).acme).toMatchObject({ http01_port: 5002, allow_private_addresses: true });
    } finally {
      await svc.stop();
    }
  });
});
