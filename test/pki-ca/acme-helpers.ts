/**
 * Shared setup of the ACME tests: a pki-ca with ACME tenants on a loopback-only profile, an
 * http-01 responder the CA validates against, and a small ACME client built on jose whose
 * requests can be bent (another nonce, url, key or alg) for the negative cases.
 */
import { calculateJwkThumbprint, exportJWK, FlattenedSign, generateKeyPair, type JWK } from "jose";
import * as x509 from "../../src/pki/x509.ts";
import { startCa, type CaFixture } from "./helpers.ts";

export const ACME_PROFILE = {
  issuing_ca: "P-256",
  key_types: ["P-256", "P-384", "RSA-2048", "RSA-3072"],
  max_validity_days: 90,
  default_validity_days: 30,
  key_usage: ["digitalSignature", "keyEncipherment"],
  extended_key_usage: ["serverAuth"],
  dns: { allow: ["localhost", "*.localhost"] },
  ip_ranges: ["127.0.0.0/8"],
};

export { freePort } from "../support/server-process.ts";

/** pki-ca's app section with ACME tenants `acme` (open) and `eab` (External Account Binding required). */
export function acmeApp(http01Port: number, acme: Record<string, unknown> = {}, profiles: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    profiles: { "acme-server": ACME_PROFILE, "acme-manual": { ...ACME_PROFILE, approval: "manual" }, ...profiles },
    acme: {
      tenants: { acme: { profiles: ["acme-server", "acme-manual"] }, eab: { profiles: ["acme-server"], external_account_required: true } },
      http01_port: http01Port,
      allow_private_addresses: true,
      terms_of_service: "https://ca.example.test/terms",
      website: "https://ca.example.test/",
      caa_identities: ["ca.example.test"],
      validation_timeout_ms: 5000,
      // Far above what a test file does, so only the rate-limit tests (with their own limits) meet them.
      rate_limits: { orders_per_account: { limit: 100_000, window_seconds: 60 }, orders_per_identifier: { limit: 100_000, window_seconds: 60 }, accounts_per_ip: { limit: 100_000, window_seconds: 60 } },
      ...acme,
    },
  };
}

/** Starts pki-ca with `acmeApp`'s ACME. */
export async function startAcmeCa(http01Port: number, acme: Record<string, unknown> = {}, profiles: Record<string, unknown> = {}): Promise<CaFixture> {
  return startCa(acmeApp(http01Port, acme, profiles));
}

/** An http-01 responder on 127.0.0.1: serves the key authorizations put into `tokens`. */
export function startHttp01(port = 0) {
  const tokens = new Map<string, string>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(req) {
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(new URL(req.url).pathname);
      const ka = m ? tokens.get(m[1]!) : undefined;
      return ka ? new Response(ka) : new Response("not found", { status: 404 });
    },
  });
  return { tokens, port: server.port!, stop: () => server.stop(true) };
}

export type Alg = "ES256" | "ES384" | "RS256" | "PS256" | "EdDSA";

export interface PostOptions {
  /** Sign with the jwk instead of the kid. */
  jwk?: boolean;
  nonce?: string;
  url?: string;
  kid?: string;
  alg?: string;
  keys?: CryptoKeyPair;
  /** Replace the JWS's signature (a bad one). */
  signature?: string;
  /** Use this protected header as is (base64url of its JSON), unsigned. */
  rawProtected?: Record<string, unknown>;
}

/** A minimal ACME client (RFC 8555) for tests; `post` signs with the account key unless told otherwise. */
export class TestAcme {
  dir!: Record<string, string> & { meta?: Record<string, unknown> };
  kid?: string;
  keys!: CryptoKeyPair;
  jwk!: JWK;

  constructor(
    readonly directoryUrl: string,
    readonly trust: string,
    readonly alg: Alg = "ES256",
  ) {}

  static async create(directoryUrl: string, trust: string, alg: Alg = "ES256"): Promise<TestAcme> {
    const c = new TestAcme(directoryUrl, trust, alg);
    const opts = alg === "EdDSA" ? { crv: "Ed25519", extractable: true } : alg.startsWith("ES") ? { extractable: true } : { modulusLength: 2048, extractable: true };
    c.keys = (await generateKeyPair(alg, opts)) as CryptoKeyPair;
    c.jwk = await exportJWK(c.keys.publicKey);
    c.dir = (await (await c.fetch(directoryUrl)).json()) as typeof c.dir;
    return c;
  }

  fetch(url: string, init: RequestInit = {}): Promise<Response> {
    return fetch(url, { ...init, tls: { ca: this.trust } } as RequestInit);
  }

  async nonce(): Promise<string> {
    const r = await this.fetch(this.dir.newNonce!, { method: "HEAD" });
    return r.headers.get("replay-nonce")!;
  }

  async body(url: string, payload: unknown, o: PostOptions = {}): Promise<string> {
    const keys = o.keys ?? this.keys;
    const alg = o.alg ?? this.alg;
    const header: Record<string, unknown> = o.rawProtected ?? { alg, nonce: o.nonce ?? (await this.nonce()), url: o.url ?? url };
    if (!o.rawProtected) {
      if (o.jwk || !this.kid) header.jwk = o.keys ? await exportJWK(o.keys.publicKey) : this.jwk;
      else header.kid = o.kid ?? this.kid;
    }
    const bytes = new TextEncoder().encode(payload === "" ? "" : JSON.stringify(payload));
    let jws: { protected: string; payload: string; signature: string };
    if (o.rawProtected) {
      jws = { protected: Buffer.from(JSON.stringify(header)).toString("base64url"), payload: Buffer.from(bytes).toString("base64url"), signature: "" };
    } else {
      const signed = await new FlattenedSign(bytes).setProtectedHeader(header as never).sign(keys.privateKey);
      jws = { protected: signed.protected!, payload: signed.payload, signature: signed.signature };
    }
    if (o.signature !== undefined) jws.signature = o.signature;
    return JSON.stringify(jws);
  }

  async post(url: string, payload: unknown, o: PostOptions = {}): Promise<Response> {
    return this.fetch(url, { method: "POST", headers: { "content-type": "application/jose+json" }, body: await this.body(url, payload, o) });
  }

  async register(extra: Record<string, unknown> = {}): Promise<Response> {
    const r = await this.post(this.dir.newAccount!, { termsOfServiceAgreed: true, contact: ["mailto:ops@example.test"], ...extra }, { jwk: true });
    if (r.status === 201 || r.status === 200) this.kid = r.headers.get("location")!;
    return r;
  }

  async thumbprint(): Promise<string> {
    return calculateJwkThumbprint(this.jwk, "sha256");
  }

  /** newOrder, then serves each http-01 key authorization and answers each challenge; resolves with the order URL once ready. */
  async orderReady(names: Array<{ type: "dns" | "ip"; value: string }>, http01: { tokens: Map<string, string> }, extra: Record<string, unknown> = {}): Promise<{ url: string; order: any }> {
    return this.orderWith(names, async (a, tp) => {
      const ch = a.challenges.find((c: any) => c.type === "http-01");
      http01.tokens.set(ch.token, `${ch.token}.${tp}`);
      return ch.url;
    }, extra);
  }

  /**
   * newOrder, then for each authorization `solve` puts the answer in place (given the
   * authorization and the account key's thumbprint) and names the challenge URL to answer;
   * resolves once the order has left pending.
   */
  async orderWith(names: Array<{ type: "dns" | "ip"; value: string }>, solve: (authz: any, thumbprint: string) => Promise<string>, extra: Record<string, unknown> = {}): Promise<{ url: string; order: any }> {
    const r = await this.post(this.dir.newOrder!, { identifiers: names, ...extra });
    if (r.status !== 201) throw new Error(`newOrder ${r.status}: ${await r.text()}`);
    const url = r.headers.get("location")!;
    let order = (await r.json()) as any;
    const tp = await this.thumbprint();
    for (const az of order.authorizations as string[]) {
      const a = (await (await this.post(az, "")).json()) as any;
      const chUrl = await solve(a, tp);
      const cr = await this.post(chUrl, {});
      if (cr.status !== 200) throw new Error(`challenge ${cr.status}: ${await cr.text()}`);
    }
    order = await this.poll(url, (o) => o.status !== "pending");
    return { url, order };
  }

  /** Finalizes a ready order with a fresh key's CSR and downloads the chain once valid. */
  async issue(url: string, order: any, dns: string[], ips: string[] = []): Promise<{ pem: string; certUrl: string; keys: CryptoKeyPair; leaf: x509.X509Certificate }> {
    const { der, keys } = await csrFor(dns, ips);
    const fr = await this.post(order.finalize, { csr: b64u(der) });
    if (fr.status !== 200) throw new Error(`finalize ${fr.status}: ${await fr.text()}`);
    const done = await this.poll(url, (o) => o.status === "valid" || o.status === "invalid");
    if (done.status !== "valid") throw new Error(`order ${done.status}: ${JSON.stringify(done.error)}`);
    const pem = await (await this.post(done.certificate, "")).text();
    return { pem, certUrl: done.certificate, keys, leaf: new x509.X509Certificate(pem.split(/(?<=-----END CERTIFICATE-----)/)[0]!) };
  }

  /** POST-as-GET until `done` (no timing assertion: the test's own timeout bounds it). */
  async poll(url: string, done: (o: any) => boolean): Promise<any> {
    for (;;) {
      const o = (await (await this.post(url, "")).json()) as any;
      if (done(o)) return o;
      await Bun.sleep(100);
    }
  }
}

/** A P-256 key and a DER CSR naming `dns`, `ips` and UPNs `upns`. */
export async function csrFor(dns: string[], ips: string[] = [], upns: string[] = []): Promise<{ der: Uint8Array; keys: CryptoKeyPair }> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const names = [...dns.map((value) => ({ type: "dns" as const, value })), ...ips.map((value) => ({ type: "ip" as const, value })), ...upns.map((value) => ({ type: "upn" as const, value }))];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${dns[0] ?? "ip-order"}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.SubjectAlternativeNameExtension(names)],
  });
  return { der: new Uint8Array(csr.rawData), keys };
}

export const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/** The ARI certID of a certificate (RFC 9773 §4.1): base64url(AKI keyIdentifier) "." base64url(serial's DER content). */
export function certIdOf(cert: x509.X509Certificate): string {
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId!;
  let serial = cert.serialNumber.toLowerCase();
  if (serial.length % 2) serial = `0${serial}`;
  serial = serial.replace(/^(00)+(?=[0-7])/, "").replace(/^(00)+(?=00)/, "");
  if (/^[89a-f]/.test(serial)) serial = `00${serial}`;
  return `${Buffer.from(aki, "hex").toString("base64url")}.${Buffer.from(serial, "hex").toString("base64url")}`;
}
