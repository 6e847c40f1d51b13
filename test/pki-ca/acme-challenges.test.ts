/**
 * pki-ca's ACME validation beyond http-01, each against a real server on loopback: dns-01 and
 * CAA through a DNS server the CA is configured to ask (test/support/dns-server.ts), wildcard
 * orders (dns-01 only), tls-alpn-01 (RFC 8737) against a node:tls responder negotiating
 * `acme-tls/1` with a certificate built here, validation retries, and the refusals: a wrong TXT
 * digest, a missing record, a wrong acmeIdentifier, a certificate naming another name or none,
 * CAA sets that do not name this CA (issue, issuewild, accounturi, validationmethods, an unknown
 * critical tag, a SERVFAIL), and names that resolve to loopback when private addresses are not
 * allowed. Nothing is issued for a refused authorization.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { createServer, createSecureContext, type SecureContext, type Server } from "node:tls";
import * as x509 from "../../src/pki/x509.ts";
import { toPem } from "../../src/pki/keys.ts";
import { TestDns } from "../support/dns-server.ts";
import { startCa, type CaFixture } from "./helpers.ts";
import { ACME_PROFILE, startAcmeCa, startHttp01, TestAcme } from "./acme-helpers.ts";

let f: CaFixture;
let dns: TestDns;
let http01: ReturnType<typeof startHttp01>;
let alpn: Awaited<ReturnType<typeof startTlsAlpn>>;
let dirUrl: string;

/** A tls-alpn-01 responder: for each SNI name, the certificate `certs` holds (ALPN acme-tls/1 unless `noAlpn`). */
async function startTlsAlpn(opts: { noAlpn?: boolean } = {}) {
  const certs = new Map<string, SecureContext>();
  const server: Server = createServer(
    { ...(opts.noAlpn ? {} : { ALPNProtocols: ["acme-tls/1"] }), SNICallback: (name: string, cb: (e: Error | null, c?: SecureContext) => void) => cb(null, certs.get(name)) },
    (s) => s.end(),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { certs, port: (server.address() as { port: number }).port, stop: () => server.close() };
}

/** A self-signed tls-alpn-01 certificate for `name` (RFC 8737 §3), optionally bent for the negative cases. */
async function alpnCert(name: string, keyAuthorization: string, bend: { digestOf?: string; sanName?: string; critical?: boolean } = {}): Promise<SecureContext> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const digest = createHash("sha256").update(bend.digestOf ?? keyAuthorization).digest();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "CN=acme-tls-alpn-01",
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: bend.sanName ?? name }]),
      new x509.Extension("1.3.6.1.5.5.7.1.31", bend.critical ?? true, new Uint8Array([0x04, 0x20, ...digest]).buffer),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return createSecureContext({ key: toPem("PRIVATE KEY", pkcs8), cert: cert.toString("pem") });
}

const txtDigest = (keyAuthorization: string) => createHash("sha256").update(keyAuthorization).digest("base64url");

beforeAll(async () => {
  dns = await TestDns.start();
  http01 = startHttp01();
  alpn = await startTlsAlpn();
  f = await startAcmeCa(http01.port, {
    dns_resolvers: [dns.address],
    tls_alpn01_port: alpn.port,
    validation_retries: 2,
    validation_retry_delay_ms: 50,
  });
  dirUrl = `${f.svc.publicUrl}/acme/acme/directory`;
});
afterAll(async () => {
  await f?.stop();
  http01?.stop();
  alpn?.stop();
  dns?.stop();
});

async function client() {
  const c = await TestAcme.create(dirUrl, f.svc.ca);
  expect((await c.register()).status).toBe(201);
  return c;
}

const issuedCount = async () => {
  const tok = await f.token("acme", "pki:read");
  return ((await (await f.api("/certificates?limit=100", tok)).json()) as { items: unknown[] }).items.length;
};

/** Solves with dns-01 by putting `value(keyAuthorization)` at _acme-challenge.<name>. */
const viaDns =
  (value: (ka: string) => string = txtDigest) =>
  async (a: any, tp: string) => {
    const ch = a.challenges.find((c: any) => c.type === "dns-01");
    dns.addTxt(`_acme-challenge.${a.identifier.value}`, value(`${ch.token}.${tp}`));
    return ch.url as string;
  };

/** Solves with tls-alpn-01: the responder shows a certificate for the name (bent if asked). */
const viaAlpn =
  (bend: Parameters<typeof alpnCert>[2] = {}) =>
  async (a: any, tp: string) => {
    const ch = a.challenges.find((c: any) => c.type === "tls-alpn-01");
    alpn.certs.set(a.identifier.value, await alpnCert(a.identifier.value, `${ch.token}.${tp}`, bend));
    return ch.url as string;
  };

/** Solves with http-01. */
const viaHttp = async (a: any, tp: string) => {
  const ch = a.challenges.find((c: any) => c.type === "http-01");
  http01.tokens.set(ch.token, `${ch.token}.${tp}`);
  return ch.url as string;
};

/** The one authorization's challenge error of a failed order. */
async function failure(c: TestAcme, order: any): Promise<{ type: string; detail: string }> {
  expect(order.status).toBe("invalid");
  const a = (await (await c.post(order.authorizations[0], "")).json()) as any;
  expect(a.status).toBe("invalid");
  const ch = a.challenges.find((x: any) => x.status === "invalid");
  return ch.error;
}

describe("dns-01", () => {
  test("offered with http-01 and tls-alpn-01; a TXT record through the configured resolver validates, and the certificate is issued", async () => {
    const c = await client();
    let offered: string[] = [];
    const { url, order } = await c.orderWith([{ type: "dns", value: "dns1.localhost" }], async (a, tp) => {
      offered = a.challenges.map((x: any) => x.type);
      return viaDns()(a, tp);
    });
    expect(offered).toEqual(["http-01", "dns-01", "tls-alpn-01"]);
    expect(order.status).toBe("ready");
    const { pem } = await c.issue(url, order, ["dns1.localhost"]);
    expect(new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!).getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.value).toBe("dns1.localhost");
    expect(dns.queries).toContainEqual({ name: "_acme-challenge.dns1.localhost", type: 16 });
    // CAA climbs from the name to its parent (both empty here: permitted).
    expect(dns.queries).toContainEqual({ name: "dns1.localhost", type: 257 });
    expect(dns.queries).toContainEqual({ name: "localhost", type: 257 });
  });

  test("a wildcard order: only dns-01 is offered, the authorization is for the base name, the certificate names the wildcard", async () => {
    const c = await client();
    let authz: any;
    const { url, order } = await c.orderWith([{ type: "dns", value: "*.wild.localhost" }], async (a, tp) => {
      authz = a;
      return viaDns()(a, tp);
    });
    expect(authz.wildcard).toBe(true);
    expect(authz.identifier).toEqual({ type: "dns", value: "wild.localhost" });
    expect(authz.challenges.map((x: any) => x.type)).toEqual(["dns-01"]);
    const { pem } = await c.issue(url, order, ["*.wild.localhost"]);
    const names = new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!).getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) => n.value);
    expect(names).toEqual(["*.wild.localhost"]);
    // http-01 cannot be answered for a wildcard.
    const r = await c.post(authz.challenges[0].url.replace("/dns-01", "/http-01"), {});
    expect(r.status).toBe(404);
  });

  test("a wrong digest is incorrectResponse, no record is unauthorized; nothing issued", async () => {
    const before = await issuedCount();
    const c = await client();
    const wrong = await c.orderWith([{ type: "dns", value: "dns-wrong.localhost" }], viaDns(() => txtDigest("something else")));
    expect((await failure(c, wrong.order)).type).toBe("urn:ietf:params:acme:error:incorrectResponse");
    const none = await c.orderWith([{ type: "dns", value: "dns-none.localhost" }], async (a) => a.challenges.find((x: any) => x.type === "dns-01").url);
    expect((await failure(c, none.order)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    expect(await issuedCount()).toBe(before);
  });

  test("a failing resolver answer (SERVFAIL) is retried, then a dns problem", async () => {
    dns.failing("_acme-challenge.dns-fail.localhost");
    const c = await client();
    const { order } = await c.orderWith([{ type: "dns", value: "dns-fail.localhost" }], async (a) => a.challenges.find((x: any) => x.type === "dns-01").url);
    expect((await failure(c, order)).type).toBe("urn:ietf:params:acme:error:dns");
    // One attempt and two retries (validation_retries: 2), each with the resolver's own tries.
    expect(dns.queries.filter((q) => q.name === "_acme-challenge.dns-fail.localhost").length).toBeGreaterThanOrEqual(3);
  });
});

describe("tls-alpn-01", () => {
  test("a certificate with the acmeIdentifier extension over acme-tls/1 validates; the certificate is issued", async () => {
    const c = await client();
    const { url, order } = await c.orderWith([{ type: "dns", value: "alpn.localhost" }], viaAlpn());
    expect(order.status).toBe("ready");
    const { pem } = await c.issue(url, order, ["alpn.localhost"]);
    expect(pem).toContain("BEGIN CERTIFICATE");
  });

  test("a wrong digest, another name, a non-critical extension, no certificate for the name: refused, nothing issued", async () => {
    const before = await issuedCount();
    const c = await client();
    const digest = await c.orderWith([{ type: "dns", value: "alpn-digest.localhost" }], viaAlpn({ digestOf: "other" }));
    expect((await failure(c, digest.order)).type).toBe("urn:ietf:params:acme:error:incorrectResponse");
    const other = await c.orderWith([{ type: "dns", value: "alpn-name.localhost" }], viaAlpn({ sanName: "someone-else.localhost" }));
    expect((await failure(c, other.order)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    const soft = await c.orderWith([{ type: "dns", value: "alpn-soft.localhost" }], viaAlpn({ critical: false }));
    expect((await failure(c, soft.order)).type).toBe("urn:ietf:params:acme:error:unauthorized");
    // No certificate for the SNI name: the handshake fails, retried, then a connection problem.
    const missing = await c.orderWith([{ type: "dns", value: "alpn-missing.localhost" }], async (a) => a.challenges.find((x: any) => x.type === "tls-alpn-01").url);
    expect((await failure(c, missing.order)).type).toMatch(/:(connection|tls)$/);
    expect(await issuedCount()).toBe(before);
  });
});

describe("CAA (RFC 8659)", () => {
  test("a set naming this CA permits; one naming another CA forbids (caa), found by climbing to the parent", async () => {
    const before = await issuedCount();
    dns.setCaa("caa-ok.localhost", [{ tag: "issue", value: "ca.example.test" }, { tag: "iodef", value: "mailto:sec@example.test" }]);
    dns.setCaa("deny.localhost", [{ tag: "issue", value: "other-ca.test" }]);
    const c = await client();
    const ok = await c.orderWith([{ type: "dns", value: "caa-ok.localhost" }], viaHttp);
    expect(ok.order.status).toBe("ready");
    const denied = await c.orderWith([{ type: "dns", value: "www.deny.localhost" }], viaHttp);
    const p = await failure(c, denied.order);
    expect(p.type).toBe("urn:ietf:params:acme:error:caa");
    expect(p.detail).toContain("deny.localhost");
    expect(await issuedCount()).toBe(before);
  });

  test("issuewild governs wildcards; issue ';' forbids every CA", async () => {
    dns.setCaa("w1.localhost", [{ tag: "issue", value: "ca.example.test" }, { tag: "issuewild", value: ";" }]);
    dns.setCaa("w2.localhost", [{ tag: "issue", value: ";" }, { tag: "issuewild", value: "ca.example.test" }]);
    const c = await client();
    const wild1 = await c.orderWith([{ type: "dns", value: "*.w1.localhost" }], viaDns());
    expect((await failure(c, wild1.order)).type).toBe("urn:ietf:params:acme:error:caa");
    const plain1 = await c.orderWith([{ type: "dns", value: "w1.localhost" }], viaHttp);
    expect(plain1.order.status).toBe("ready");
    const wild2 = await c.orderWith([{ type: "dns", value: "*.w2.localhost" }], viaDns());
    expect(wild2.order.status).toBe("ready");
    const plain2 = await c.orderWith([{ type: "dns", value: "w2.localhost" }], viaHttp);
    expect((await failure(c, plain2.order)).type).toBe("urn:ietf:params:acme:error:caa");
  });

  test("accounturi and validationmethods (RFC 8657) must match the account and the challenge", async () => {
    const c = await client();
    dns.setCaa("acct.localhost", [{ tag: "issue", value: `ca.example.test; accounturi=${c.kid}` }]);
    dns.setCaa("other-acct.localhost", [{ tag: "issue", value: `ca.example.test; accounturi=${c.kid}x` }]);
    dns.setCaa("methods.localhost", [{ tag: "issue", value: "ca.example.test; validationmethods=dns-01" }]);
    expect((await c.orderWith([{ type: "dns", value: "acct.localhost" }], viaHttp)).order.status).toBe("ready");
    const other = await c.orderWith([{ type: "dns", value: "other-acct.localhost" }], viaHttp);
    expect((await failure(c, other.order)).type).toBe("urn:ietf:params:acme:error:caa");
    const byHttp = await c.orderWith([{ type: "dns", value: "methods.localhost" }], viaHttp);
    expect((await failure(c, byHttp.order)).type).toBe("urn:ietf:params:acme:error:caa");
    expect((await c.orderWith([{ type: "dns", value: "methods.localhost" }], viaDns())).order.status).toBe("ready");
  });

  test("an unknown critical property or a failing CAA lookup refuses", async () => {
    dns.setCaa("crit.localhost", [{ flags: 128, tag: "tbs", value: "x" }, { tag: "issue", value: "ca.example.test" }]);
    dns.failing("servfail.localhost");
    const c = await client();
    const crit = await c.orderWith([{ type: "dns", value: "crit.localhost" }], viaHttp);
    expect((await failure(c, crit.order)).type).toBe("urn:ietf:params:acme:error:caa");
    const fail = await c.orderWith([{ type: "dns", value: "servfail.localhost" }], viaHttp);
    expect((await failure(c, fail.order)).type).toBe("urn:ietf:params:acme:error:caa");
  });
});

describe("private addresses", () => {
  let strict: CaFixture;
  beforeAll(async () => {
    strict = await startCa({
      profiles: { "acme-any": { ...ACME_PROFILE, dns: { allow: ["*.example.test"] }, ip_ranges: ["0.0.0.0/0"] } },
      acme: { tenants: { acme: { profiles: ["acme-any"] } }, http01_port: http01.port, tls_alpn01_port: alpn.port, dns_resolvers: [dns.address], validation_retries: 0 },
    });
  });
  afterAll(async () => {
    await strict?.stop();
  });

  test("without allow_private_addresses a name resolving to loopback is not connected to, and an IP order for it is refused", async () => {
    dns.addA("loop.example.test", "127.0.0.1");
    const c = await TestAcme.create(`${strict.svc.publicUrl}/acme/acme/directory`, strict.svc.ca);
    expect((await c.register()).status).toBe(201);
    const byHttp = await c.orderWith([{ type: "dns", value: "loop.example.test" }], viaHttp);
    const p = await failure(c, byHttp.order);
    expect(p.type).toBe("urn:ietf:params:acme:error:connection");
    expect(p.detail).toContain("private");
    const byAlpn = await c.orderWith([{ type: "dns", value: "loop.example.test" }], viaAlpn());
    expect((await failure(c, byAlpn.order)).type).toBe("urn:ietf:params:acme:error:connection");
    const ip = await c.post(c.dir.newOrder!, { identifiers: [{ type: "ip", value: "127.0.0.1" }] });
    expect(ip.status).toBe(400);
    expect(((await ip.json()) as any).type).toBe("urn:ietf:params:acme:error:rejectedIdentifier");
  });
});

describe("address lookups through the resolver", () => {
  let open: CaFixture;
  beforeAll(async () => {
    open = await startCa({
      profiles: { "acme-any": { ...ACME_PROFILE, dns: { allow: ["*.example.test"] } } },
      acme: { tenants: { acme: { profiles: ["acme-any"] } }, http01_port: http01.port, dns_resolvers: [dns.address], allow_private_addresses: true, validation_retries: 0 },
    });
  });
  afterAll(async () => {
    await open?.stop();
  });

  const asked = (name: string) => dns.queries.filter((q) => q.name === name).map((q) => q.type);

  test("an IPv4 address that answers: validated after the A lookup alone (no AAAA query)", async () => {
    dns.addA("v4.example.test", "127.0.0.1");
    const c = await TestAcme.create(`${open.svc.publicUrl}/acme/acme/directory`, open.svc.ca);
    expect((await c.register()).status).toBe(201);
    const { order } = await c.orderWith([{ type: "dns", value: "v4.example.test" }], viaHttp);
    expect(order.status).toBe("ready");
    expect(asked("v4.example.test")).toContain(1);
    expect(asked("v4.example.test")).not.toContain(28);
  });

  test("an IPv4 address that refuses the connection: the AAAA records are asked for next; none is a connection problem", async () => {
    // The responder listens on 127.0.0.1 only: 127.0.0.2 refuses.
    dns.addA("refused.example.test", "127.0.0.2");
    const c = await TestAcme.create(`${open.svc.publicUrl}/acme/acme/directory`, open.svc.ca);
    expect((await c.register()).status).toBe(201);
    const { order } = await c.orderWith([{ type: "dns", value: "refused.example.test" }], viaHttp);
    const p = await failure(c, order);
    expect(p.type).toBe("urn:ietf:params:acme:error:connection");
    const types = asked("refused.example.test");
    expect(types.indexOf(1)).toBeGreaterThanOrEqual(0);
    expect(types.indexOf(28)).toBeGreaterThan(types.indexOf(1));
  });

  test("a name with no address at all is a dns problem", async () => {
    const c = await TestAcme.create(`${open.svc.publicUrl}/acme/acme/directory`, open.svc.ca);
    expect((await c.register()).status).toBe(201);
    const { order } = await c.orderWith([{ type: "dns", value: "nowhere.example.test" }], viaHttp);
    expect((await failure(c, order)).type).toBe("urn:ietf:params:acme:error:dns");
    expect(asked("nowhere.example.test")).toEqual(expect.arrayContaining([1, 28]));
  });
});
