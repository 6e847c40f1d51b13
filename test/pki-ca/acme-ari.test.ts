/**
 * The parts of pki-ca's ACME that no Debian client speaks yet, with requests built as the
 * documents show them: ARI (RFC 9773: renewalInfo windows, a renewal with `replaces`, and its
 * refusals), profiles (the ACME profiles draft: named in the directory, chosen in newOrder,
 * mapped to pki-ca profiles), key rollover (RFC 8555 §7.3.5), authorization deactivation; and,
 * with a second pki-ca process on the same database, what several instances share: a nonce
 * issued by one is accepted by the other exactly once, and rate limits (per account, per
 * identifier, per client IP) count the requests of both.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPair, exportJWK, FlattenedSign } from "jose";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { spawnPeer, startCa, type CaFixture } from "./helpers.ts";
import { ACME_PROFILE, acmeApp, certIdOf, startAcmeCa, startHttp01, TestAcme } from "./acme-helpers.ts";

let f: CaFixture;
let http01: ReturnType<typeof startHttp01>;
let dirUrl: string;
let ariBase: string;

beforeAll(async () => {
  http01 = startHttp01();
  f = await startAcmeCa(http01.port, { tenants: { acme: { profiles: ["acme-server", "acme-short", "acme-manual"] } } }, { "acme-short": { ...ACME_PROFILE, default_validity_days: 7, max_validity_days: 7 } });
  dirUrl = `${f.svc.publicUrl}/acme/acme/directory`;
  ariBase = `${f.svc.publicUrl}/acme/acme/renewal-info`;
});
afterAll(async () => {
  await f?.stop();
  http01?.stop();
});

async function client(url = dirUrl, ca = f.svc.ca) {
  const c = await TestAcme.create(url, ca);
  expect((await c.register()).status).toBe(201);
  return c;
}

async function issued(c: TestAcme, name: string, extra: Record<string, unknown> = {}) {
  const { url, order } = await c.orderReady([{ type: "dns", value: name }], http01, extra);
  return { order, ...(await c.issue(url, order, [name])) };
}

const problemType = async (r: Response) => ((await r.json()) as { type: string }).type.replace("urn:ietf:params:acme:error:", "");

describe("ARI (RFC 9773)", () => {
  test("the directory names renewalInfo; a certificate's window lies in its last third", async () => {
    const c = await client();
    expect(c.dir.renewalInfo).toBe(ariBase);
    const { leaf } = await issued(c, "ari.localhost");
    const r = await fetch(`${ariBase}/${certIdOf(leaf)}`, { tls: { ca: f.svc.ca } } as RequestInit);
    expect(r.status).toBe(200);
    expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
    const { suggestedWindow: w } = (await r.json()) as { suggestedWindow: { start: string; end: string } };
    const nb = leaf.notBefore.getTime();
    const na = leaf.notAfter.getTime();
    const start = Date.parse(w.start);
    const end = Date.parse(w.end);
    expect(start).toBeLessThan(end);
    expect(start).toBeGreaterThanOrEqual(nb + ((na - nb) * 2) / 3 - 1000);
    expect(end).toBeLessThan(na);
  });

  test("a revoked certificate's window is already past (renew now)", async () => {
    const c = await client();
    const { leaf, pem } = await issued(c, "ari-revoked.localhost");
    const der = Buffer.from(pem.split("-----")[2]!.replace(/\s+/g, ""), "base64").toString("base64url");
    expect((await c.post(c.dir.revokeCert!, { certificate: der, reason: 1 })).status).toBe(200);
    const w = ((await (await fetch(`${ariBase}/${certIdOf(leaf)}`, { tls: { ca: f.svc.ca } } as RequestInit)).json()) as any).suggestedWindow;
    expect(Date.parse(w.end)).toBeLessThan(Date.now());
    expect(Date.parse(w.start)).toBeLessThan(Date.parse(w.end));
  });

  test("unknown, malformed and non-canonical certIDs are problems", async () => {
    const get = (id: string) => fetch(`${ariBase}/${id}`, { tls: { ca: f.svc.ca } } as RequestInit);
    const unknown = await get("AAAA.AQ");
    expect(unknown.status).toBe(404);
    expect(await problemType(unknown)).toBe("malformed");
    for (const bad of ["nodot", "a.b.c", "%2e%2e", "AAAA.AAE"]) {
      const r = await get(bad);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
  });

  test("a renewal with replaces: issued once; a second replacement alreadyReplaced (409); another account's or a disjoint order refused", async () => {
    const c = await client();
    const first = await issued(c, "renew.localhost");
    const certId = certIdOf(first.leaf);
    const renewed = await issued(c, "renew.localhost", { replaces: certId });
    expect(renewed.order.replaces).toBe(certId);
    expect(renewed.leaf.serialNumber).not.toBe(first.leaf.serialNumber);
    const again = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "renew.localhost" }], replaces: certId });
    expect(again.status).toBe(409);
    expect(await problemType(again)).toBe("alreadyReplaced");
    const stranger = await client();
    const s = await stranger.post(stranger.dir.newOrder!, { identifiers: [{ type: "dns", value: "renew.localhost" }], replaces: certIdOf(renewed.leaf) });
    expect(s.status).toBe(403);
    expect(await problemType(s)).toBe("unauthorized");
    const disjoint = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "other.localhost" }], replaces: certIdOf(renewed.leaf) });
    expect(await problemType(disjoint)).toBe("malformed");
    const garbage = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "renew.localhost" }], replaces: 42 });
    expect(await problemType(garbage)).toBe("malformed");
  });
});

describe("profiles (ACME profiles draft)", () => {
  test("the directory lists the tenant's profiles; newOrder's profile picks the pki-ca profile, the first is the default", async () => {
    const c = await client();
    expect(Object.keys((c.dir.meta as any).profiles)).toEqual(["acme-server", "acme-short", "acme-manual"]);
    const dflt = await issued(c, "profile-default.localhost");
    expect(dflt.order.profile).toBe("acme-server");
    const short = await issued(c, "profile-short.localhost", { profile: "acme-short" });
    expect(short.order.profile).toBe("acme-short");
    const days = (x: typeof short.leaf) => Math.round((x.notAfter.getTime() - x.notBefore.getTime()) / 86_400_000);
    expect(days(short.leaf)).toBe(7);
    expect(days(dflt.leaf)).toBe(30);
    const bad = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "p.localhost" }], profile: "tls-server" });
    expect(await problemType(bad)).toBe("malformed");
  });
});

/** An inner keyChange JWS (RFC 8555 §7.3.5) by `newKeys`, bent if asked. */
async function innerJws(c: TestAcme, newKeys: CryptoKeyPair, bend: { url?: string; account?: string; oldKey?: unknown; nonce?: string } = {}) {
  const header: Record<string, unknown> = { alg: "ES256", jwk: await exportJWK(newKeys.publicKey), url: bend.url ?? c.dir.keyChange };
  if (bend.nonce) header.nonce = bend.nonce;
  const payload = { account: bend.account ?? c.kid, oldKey: bend.oldKey ?? c.jwk };
  const s = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as never).sign(newKeys.privateKey);
  return { protected: s.protected, payload: s.payload, signature: s.signature };
}

describe("key rollover (RFC 8555 §7.3.5)", () => {
  test("the account moves to the new key: the old key no longer signs, the new one finds the same account", async () => {
    const c = await client();
    const kid = c.kid!;
    const newKeys = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    const r = await c.post(c.dir.keyChange!, await innerJws(c, newKeys));
    expect(r.status).toBe(200);
    expect(r.headers.get("location")).toBe(kid);
    // The old key's signature no longer verifies for this kid.
    const old = await c.post(kid, "");
    expect(old.status).toBe(400);
    expect(await problemType(old)).toBe("malformed");
    const oldNew = await c.post(c.dir.newAccount!, { onlyReturnExisting: true }, { jwk: true });
    expect(await problemType(oldNew)).toBe("accountDoesNotExist");
    c.keys = newKeys;
    c.jwk = await exportJWK(newKeys.publicKey);
    expect((await c.post(kid, "")).status).toBe(200);
    const found = await c.post(c.dir.newAccount!, { onlyReturnExisting: true }, { jwk: true });
    expect(found.status).toBe(200);
    expect(found.headers.get("location")).toBe(kid);
    // And orders work with it.
    expect((await issued(c, "rolled.localhost")).pem).toContain("BEGIN CERTIFICATE");
  });

  test("refused: a key another account holds (409 with its Location), a wrong oldKey, url, account, a nonce in the inner JWS", async () => {
    const c = await client();
    const other = await client();
    const toOther = await c.post(c.dir.keyChange!, await innerJws(c, other.keys));
    expect(toOther.status).toBe(409);
    expect(toOther.headers.get("location")).toBe(other.kid!);
    const newKeys = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    expect(await problemType(await c.post(c.dir.keyChange!, await innerJws(c, newKeys, { oldKey: other.jwk })))).toBe("unauthorized");
    expect(await problemType(await c.post(c.dir.keyChange!, await innerJws(c, newKeys, { url: c.dir.newOrder })))).toBe("malformed");
    expect(await problemType(await c.post(c.dir.keyChange!, await innerJws(c, newKeys, { account: other.kid })))).toBe("malformed");
    expect(await problemType(await c.post(c.dir.keyChange!, await innerJws(c, newKeys, { nonce: await c.nonce() })))).toBe("malformed");
    // Still on the old key.
    expect((await c.post(c.kid!, "")).status).toBe(200);
  });
});

describe("authorization deactivation", () => {
  test("a pending authorization deactivated: the order becomes invalid; only status deactivated is accepted", async () => {
    const c = await client();
    const r = await c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "deact.localhost" }] });
    const order = (await r.json()) as any;
    const bad = await c.post(order.authorizations[0], { status: "valid" });
    expect(await problemType(bad)).toBe("malformed");
    const d = await c.post(order.authorizations[0], { status: "deactivated" });
    expect(d.status).toBe(200);
    expect(((await d.json()) as any).status).toBe("deactivated");
    expect((await c.poll(r.headers.get("location")!, () => true)).status).toBe("invalid");
  });
});

describe("two instances on one database", () => {
  const LIMITS = { orders_per_account: { limit: 3, window_seconds: 3600 }, orders_per_identifier: { limit: 2, window_seconds: 3600 }, accounts_per_ip: { limit: 5, window_seconds: 3600 } };
  let a: CaFixture;
  let peer: Awaited<ReturnType<typeof spawnPeer>> | undefined;
  let bUrl: string;
  beforeAll(async () => {
    // One embedded file for both: nonces are shared only when configured so (auto keeps them per process there).
    const app = acmeApp(http01.port, { rate_limits: LIMITS, nonce_scope: "shared", tenants: { acme: { profiles: ["acme-server"] }, iplimit: { profiles: ["acme-server"] } } });
    a = await startCa(app);
    await pkiCaOf(a.svc.ctx);
    peer = await spawnPeer(a, app);
    bUrl = peer.url;
  }, 60_000);
  afterAll(async () => {
    await peer?.stop();
    await a?.stop();
  });

  test("a nonce from one instance is accepted by the other, once; a replay on either is badNonce", async () => {
    const ca = await client(`${a.svc.publicUrl}/acme/acme/directory`, a.svc.ca);
    const cb = await TestAcme.create(`${bUrl}/acme/acme/directory`, a.svc.ca);
    cb.keys = ca.keys;
    cb.jwk = ca.jwk;
    cb.kid = ca.kid!.replace(a.svc.publicUrl, bUrl);
    const nonce = await ca.nonce();
    const onB = await cb.post(cb.kid, "", { nonce });
    expect(onB.status).toBe(200);
    const replayA = await ca.post(ca.kid!, "", { nonce });
    expect(await problemType(replayA)).toBe("badNonce");
    expect(replayA.headers.get("replay-nonce")).toBeTruthy();
    const replayB = await cb.post(cb.kid, "", { nonce });
    expect(await problemType(replayB)).toBe("badNonce");
    // A nonce made up with the right shape but not by this CA.
    const forged = Buffer.from(Buffer.from(nonce, "base64url").map((x, i) => (i === 30 ? x ^ 1 : x))).toString("base64url");
    expect(await problemType(await ca.post(ca.kid!, "", { nonce: forged }))).toBe("badNonce");
  });

  test("orders per account count across instances: the fourth is rateLimited with Retry-After", async () => {
    const ca = await client(`${a.svc.publicUrl}/acme/acme/directory`, a.svc.ca);
    const cb = await TestAcme.create(`${bUrl}/acme/acme/directory`, a.svc.ca);
    Object.assign(cb, { keys: ca.keys, jwk: ca.jwk, kid: ca.kid!.replace(a.svc.publicUrl, bUrl) });
    const order = (c: TestAcme, i: number) => c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: `acct-limit-${i}.localhost` }] });
    expect((await order(ca, 1)).status).toBe(201);
    expect((await order(cb, 2)).status).toBe(201);
    expect((await order(ca, 3)).status).toBe(201);
    const fourth = await order(cb, 4);
    expect(fourth.status).toBe(429);
    expect(await problemType(fourth)).toBe("rateLimited");
    expect(Number(fourth.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  test("orders per identifier count across accounts and instances", async () => {
    const c1 = await client(`${a.svc.publicUrl}/acme/acme/directory`, a.svc.ca);
    const c2 = await client(`${bUrl}/acme/acme/directory`, a.svc.ca);
    const order = (c: TestAcme) => c.post(c.dir.newOrder!, { identifiers: [{ type: "dns", value: "popular.localhost" }] });
    expect((await order(c1)).status).toBe(201);
    expect((await order(c2)).status).toBe(201);
    const third = await order(c1);
    expect(third.status).toBe(429);
    expect(await problemType(third)).toBe("rateLimited");
    // Another name is not limited by it.
    expect((await c1.post(c1.dir.newOrder!, { identifiers: [{ type: "dns", value: "quiet.localhost" }] })).status).toBe(201);
  });

  test("new accounts per client IP count across instances", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const base = i % 2 ? bUrl : a.svc.publicUrl;
      const c = await TestAcme.create(`${base}/acme/iplimit/directory`, a.svc.ca);
      const r = await c.register();
      statuses.push(r.status);
      if (r.status === 429) {
        expect(await problemType(r)).toBe("rateLimited");
        expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
      }
    }
    expect(statuses).toEqual([201, 201, 201, 201, 201, 429]);
  });
});

describe("two instances on one embedded database, nonces per instance (nonce_scope auto)", () => {
  let a: CaFixture;
  let peer: Awaited<ReturnType<typeof spawnPeer>> | undefined;
  beforeAll(async () => {
    const app = acmeApp(http01.port);
    a = await startCa(app);
    await pkiCaOf(a.svc.ctx);
    peer = await spawnPeer(a, app);
  }, 60_000);
  afterAll(async () => {
    await peer?.stop();
    await a?.stop();
  });

  test("a nonce of one instance is badNonce on the other, whose problem carries a nonce it accepts; each accepts its own once", async () => {
    const ca = await client(`${a.svc.publicUrl}/acme/acme/directory`, a.svc.ca);
    const cb = await TestAcme.create(`${peer!.url}/acme/acme/directory`, a.svc.ca);
    Object.assign(cb, { keys: ca.keys, jwk: ca.jwk, kid: ca.kid!.replace(a.svc.publicUrl, peer!.url) });
    const fromA = await ca.nonce();
    const onB = await cb.post(cb.kid!, "", { nonce: fromA });
    expect(await problemType(onB)).toBe("badNonce");
    const fromB = onB.headers.get("replay-nonce")!;
    expect((await cb.post(cb.kid!, "", { nonce: fromB })).status).toBe(200);
    expect(await problemType(await cb.post(cb.kid!, "", { nonce: fromB }))).toBe("badNonce");
    // A's nonce was not spent by B's refusal: A still takes it, once.
    expect((await ca.post(ca.kid!, "", { nonce: fromA })).status).toBe(200);
    expect(await problemType(await ca.post(ca.kid!, "", { nonce: fromA }))).toBe("badNonce");
  });
});
