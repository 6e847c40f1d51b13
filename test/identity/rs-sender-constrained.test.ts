/**
 * Issue 18 (1, 4, 8): sender-constrained access tokens at the resource servers.
 *
 * A real identity-authz (public and mTLS listeners) issues tokens to oauth4webapi clients:
 * DPoP-bound ones (RFC 9449) for sm-kms, jose-ja, pki-ca and identity-rs, and certificate-bound
 * ones (RFC 8705, `tls_client_auth` and `self_signed_tls_client_auth` on the mTLS token
 * endpoint) for identity-rs and sm-kms, which accept them on their own mTLS listeners only,
 * with the same certificate. Everything runs over HTTPS, TLS 1.3.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from "jose";
import { join } from "node:path";
import { smKms } from "../../apps/sm-kms/service.ts";
import { joseJa } from "../../apps/jose-ja/service.ts";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { identityRs } from "../../apps/identity-rs/service.ts";
import { accessTokenHash } from "../../src/auth/dpop.ts";
import { tlsFetch } from "../../src/federation/index.ts";
import { DirectoryStore, issueLeaf, loadOrCreateSuiteCa, suiteCaSealerFromFiles, toPem, type SuiteCa } from "../../src/pki/index.ts";
import * as x509 from "../../src/pki/x509.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { quiet, startTestService, trustIdentity, type TestService } from "../support/service.ts";
import { startAuthz, type TestAuthz } from "./support/authz.ts";

const TENANT = "acme";
let authz: TestAuthz;
let kms: TestService;
let jose: TestService;
let ca: TestService;
let rs: TestService;
let as: oauth.AuthorizationServer;
let suiteCa: SuiteCa;
let dpopClient: { client_id: string; client_secret: string };
let plainClient: { client_id: string; client_secret: string };
let dpopKeys: CryptoKeyPair;

interface Tls {
  cert: string;
  key: string;
}
let batchTls: Tls; // tls_client_auth: SAN URI spiffe://acme/batch, from the suite CA
let otherTls: Tls; // another suite-CA certificate
let selfSignedTls: Tls; // self_signed_tls_client_auth
let selfSignedKeys: CryptoKeyPair;

/** A client certificate from the suite CA, as PEM. */
async function clientCert(name: string, uris: string[]): Promise<Tls> {
  const leaf = await issueLeaf(suiteCa, { serviceName: name, dnsNames: [], ipAddresses: [], uris, usage: "client", validityDays: 2 });
  const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
  const cert = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(suiteCa.intermediate.cert.rawData));
  return { cert, key };
}

/** A self-signed client certificate and its key pair. */
async function selfSigned(): Promise<Tls & { keys: CryptoKeyPair }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=self-signed job",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
  });
  const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
  return { cert: c.toString("pem"), key, keys };
}

/** fetch trusting the suite, presenting `tls` when given. */
const fetchWith = (tls?: Tls) => (url: string, init: RequestInit = {}) => tlsFetch({ ca: authz.ca, clientTls: tls && (() => tls) })(url, init);
const cf = (tls?: Tls) => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetchWith(tls)(url, init) });

const services = () => [
  { name: "sm-kms", svc: kms, method: "POST", path: "/service/api/v1/random", body: JSON.stringify({ bytes: 16 }) },
  { name: "jose-ja", svc: jose, method: "GET", path: "/service/api/v1/keys", body: undefined },
  { name: "pki-ca", svc: ca, method: "GET", path: "/service/api/v1/certificates", body: undefined },
  { name: "identity-rs", svc: rs, method: "GET", path: "/service/api/v1/profile", body: undefined },
];

beforeAll(async () => {
  authz = await startAuthz({
    overrides: (c) => {
      c.server.mtls_port = 0;
      c.mtls.self_signed = true;
    },
  });
  const root = authz.root;
  suiteCa = (await loadOrCreateSuiteCa({ store: new DirectoryStore(join(root, "suite-ca")), sealer: await suiteCaSealerFromFiles([join(root, "dev-unseal.secret")]) })).ca;
  batchTls = await clientCert("batch", ["spiffe://acme/batch"]);
  otherTls = await clientCert("other", ["spiffe://acme/other"]);
  const own = await selfSigned();
  selfSignedTls = { cert: own.cert, key: own.key };
  selfSignedKeys = own.keys;

  await authz.createTenant(TENANT);
  dpopKeys = await generateKeyPair("ES256", { extractable: false });
  const scopes = ["kms:encrypt", "jose:admin", "pki:read", "notes:read", "notes:write"];
  const audiences = ["sm-kms", "jose-ja", "pki-ca", "identity-rs"];
  dpopClient = (await authz.createClient(TENANT, { client_id: "dpop-app", client_name: "dpop", scopes, audiences, dpop_bound_access_tokens: true })) as never;
  plainClient = (await authz.createClient(TENANT, { client_id: "plain-app", client_name: "plain", scopes, audiences })) as never;
  await authz.createClient(TENANT, {
    client_id: "batch",
    client_name: "batch job",
    scopes,
    audiences: ["identity-rs", "sm-kms"],
    token_endpoint_auth_method: "tls_client_auth",
    tls_client_auth_san_uri: "spiffe://acme/batch",
    tls_client_certificate_bound_access_tokens: true,
  });
  await authz.createClient(TENANT, {
    client_id: "self-signed",
    client_name: "self-signed job",
    scopes,
    audiences: ["identity-rs"],
    token_endpoint_auth_method: "self_signed_tls_client_auth",
    jwks: { keys: [await exportJWK(selfSignedKeys.publicKey)] },
  });

  const caFile = join(authz.dataDir, "trust-bundle.pem");
  const trust = (audience: string, mtls = false) => (c: ServiceConfig) => {
    quiet(c);
    trustIdentity(c, authz.publicUrl, caFile, audience);
    if (mtls) {
      c.server.mtls_port = 0;
      c.mtls.self_signed = audience === "identity-rs";
    }
  };
  [kms, jose, ca, rs] = await Promise.all([
    startTestService(smKms, { root, overrides: trust("sm-kms", true) }),
    startTestService(joseJa, { root, overrides: trust("jose-ja") }),
    startTestService(pkiCa, { root, overrides: trust("pki-ca") }),
    startTestService(identityRs, { root, overrides: trust("identity-rs", true) }),
  ]);
  const iss = new URL(`${authz.publicUrl}/t/${TENANT}`);
  as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
});

afterAll(async () => {
  await Promise.all([kms?.stop(), jose?.stop(), ca?.stop(), rs?.stop()]);
  await authz?.stop();
});

/** A DPoP-bound client-credentials token for `resource`, through oauth4webapi. */
async function dpopToken(resource: string): Promise<string> {
  const client: oauth.Client = { client_id: dpopClient.client_id };
  const DPoP = oauth.DPoP(client, dpopKeys);
  const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(dpopClient.client_secret), { resource }, { DPoP, ...cf() });
  const body = await oauth.processClientCredentialsResponse(as, client, res);
  expect(body.token_type).toBe("dpop");
  return body.access_token;
}

/** An unbound client-credentials token for `resource`. */
async function plainToken(resource: string): Promise<string> {
  const client: oauth.Client = { client_id: plainClient.client_id };
  const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(plainClient.client_secret), { resource }, cf());
  return (await oauth.processClientCredentialsResponse(as, client, res)).access_token;
}

/** A proof made by hand (to leave out or change what oauth4webapi always gets right). */
async function proof(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(dpopKeys.publicKey) })
    .sign(dpopKeys.privateKey);
}

const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

describe("identity-authz metadata", () => {
  test("advertises the mTLS endpoint aliases, certificate-bound tokens and the RFC 8705 auth methods", () => {
    expect(as.tls_client_certificate_bound_access_tokens).toBe(true);
    expect(as.mtls_endpoint_aliases?.token_endpoint).toBe(`${authz.mtlsUrl}/t/${TENANT}/token`);
    expect(as.mtls_endpoint_aliases?.introspection_endpoint).toBe(`${authz.mtlsUrl}/t/${TENANT}/introspect`);
    expect(as.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(["tls_client_auth", "self_signed_tls_client_auth"]));
  });
});

describe("DPoP at the resource servers", () => {
  for (const name of ["sm-kms", "jose-ja", "pki-ca", "identity-rs"]) {
    describe(name, () => {
      let token: string;
      let target: ReturnType<typeof services>[number];
      let url: URL;
      beforeAll(async () => {
        target = services().find((s) => s.name === name)!;
        url = new URL(target.svc.publicUrl + target.path);
        token = await dpopToken(name);
        expect((decodeJwt(token).cnf as { jkt: string }).jkt).toBe(await calculateJwkThumbprint(await exportJWK(dpopKeys.publicKey)));
      });
      const send = (headers: Record<string, string>, method = target.method) =>
        target.svc.call(target.path, { method, headers: { ...headers, ...(target.body ? { "content-type": "application/json" } : {}) }, body: method === "POST" ? target.body : undefined });

      test("the token as Bearer is refused with invalid_token", async () => {
        const res = await send({ authorization: `Bearer ${token}` });
        expect(res.status).toBe(401);
        expect(await errorCode(res)).toBe("invalid_token");
      });

      test("with a valid proof from oauth4webapi it works; that proof replayed is refused", async () => {
        const sent: Headers[] = [];
        const DPoP = oauth.DPoP({}, dpopKeys);
        const headers = new Headers(target.body ? { "content-type": "application/json" } : {});
        const res = await oauth.protectedResourceRequest(token, target.method, url, headers, target.body, {
          DPoP,
          [oauth.customFetch]: (u, init) => {
            sent.push(new Headers(init.headers));
            return fetchWith()(u, init as RequestInit);
          },
        });
        expect(res.status).toBe(200);
        expect(sent[0]!.get("authorization")).toStartWith("DPoP ");
        const replay = await send({ authorization: sent[0]!.get("authorization")!, dpop: sent[0]!.get("dpop")! });
        expect(replay.status).toBe(401);
        expect(await errorCode(replay)).toBe("invalid_dpop_proof");
        expect(replay.headers.get("www-authenticate")).toContain('DPoP error="invalid_dpop_proof"');
      });

      test("a hand-made proof with every claim right works, so the refusals below are for their one wrong claim", async () => {
        const ok = await send({ authorization: `DPoP ${token}`, dpop: await proof({ htm: target.method, htu: url.href, ath: accessTokenHash(token) }) });
        expect(ok.status).toBe(200);
      });

      test("wrong htu, wrong htm, missing ath, a missing proof: refused", async () => {
        const htu = url.href;
        const ath = accessTokenHash(token);
        const wrongs = [
          { htm: target.method, htu: `${target.svc.publicUrl}/service/api/v1/other`, ath },
          { htm: target.method, htu: htu.replace("127.0.0.1", "localhost"), ath },
          { htm: target.method === "GET" ? "POST" : "GET", htu, ath },
          { htm: target.method, htu },
          { htm: target.method, htu, ath: accessTokenHash(`${token}x`) },
        ];
        for (const claims of wrongs) {
          const res = await send({ authorization: `DPoP ${token}`, dpop: await proof(claims) });
          expect(res.status).toBe(401);
          expect(await errorCode(res)).toBe("invalid_dpop_proof");
        }
        const none = await send({ authorization: `DPoP ${token}` });
        expect(none.status).toBe(401);
        expect(await errorCode(none)).toBe("invalid_dpop_proof");
      });

      test("an unbound token works as Bearer and is refused with the DPoP scheme, even with a valid proof", async () => {
        const plain = await plainToken(name);
        expect((await send({ authorization: `Bearer ${plain}` })).status).toBe(200);
        const res = await send({ authorization: `DPoP ${plain}`, dpop: await proof({ htm: target.method, htu: url.href, ath: accessTokenHash(plain) }) });
        expect(res.status).toBe(401);
        expect(await errorCode(res)).toBe("invalid_token");
      });
    });
  }
});

const mtlsClient = (client_id: string): oauth.Client & { use_mtls_endpoint_aliases: true } => ({ client_id, use_mtls_endpoint_aliases: true });

describe("certificate-bound tokens (RFC 8705)", () => {
  async function boundToken(clientId: string, tls: Tls, resource: string): Promise<string> {
    const client = mtlsClient(clientId);
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.TlsClientAuth(), { resource }, cf(tls));
    return (await oauth.processClientCredentialsResponse(as, client, res)).access_token;
  }

  const viaMtls = (svc: TestService, path: string, token: string, tls: Tls, init: RequestInit = {}) =>
    fetchWith(tls)(svc.mtlsUrl + path, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` } });

  test("tls_client_auth: oauth4webapi with a client certificate gets a token bound to it", async () => {
    const token = await boundToken("batch", batchTls, "identity-rs");
    const x5t = (decodeJwt(token).cnf as Record<string, string>)["x5t#S256"];
    const der = Buffer.from(batchTls.cert.split("-----")[2]!.replace(/\s+/g, ""), "base64");
    expect(x5t).toBe(Buffer.from(await crypto.subtle.digest("SHA-256", der)).toString("base64url"));
  });

  test("tls_client_auth with another certificate, or on the public token endpoint, is refused", async () => {
    const client = mtlsClient("batch");
    const other = await oauth.clientCredentialsGrantRequest(as, client, oauth.TlsClientAuth(), { resource: "identity-rs" }, cf(otherTls));
    expect(other.status).toBe(401);
    expect(((await other.json()) as { error: string }).error).toBe("invalid_client");
    const pub = await authz.fetch(`${authz.publicUrl}/t/${TENANT}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials&client_id=batch&resource=identity-rs",
    });
    expect(pub.status).toBe(401);
  });

  for (const target of ["identity-rs", "sm-kms"] as const) {
    test(`${target}: the bound token works with its certificate on the mTLS port; with another certificate, without one, or on the public port it is refused`, async () => {
      const svc = target === "identity-rs" ? rs : kms;
      const path = target === "identity-rs" ? "/service/api/v1/profile" : "/service/api/v1/random";
      const init: RequestInit = target === "sm-kms" ? { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ bytes: 8 }) } : {};
      const token = await boundToken("batch", batchTls, target);
      const ok = await viaMtls(svc, path, token, batchTls, init);
      expect(ok.status).toBe(200);
      if (target === "identity-rs") expect(((await ok.json()) as { binding: string; subject: string }).binding).toBe("mtls");
      const other = await viaMtls(svc, path, token, otherTls, init);
      expect(other.status).toBe(401);
      expect(await errorCode(other)).toBe("invalid_token");
      const publicPort = await svc.call(path, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` } });
      expect(publicPort.status).toBe(401);
      expect(await errorCode(publicPort)).toBe("invalid_token");
      // The mTLS port without a certificate: sm-kms refuses the handshake; identity-rs (which
      // accepts self-signed certificates) completes it and refuses the request.
      if (target === "sm-kms") await expect(fetchWith()(svc.mtlsUrl + path, { ...init, headers: { authorization: `Bearer ${token}` } })).rejects.toThrow();
      else {
        const none = await fetchWith()(svc.mtlsUrl + path, { headers: { authorization: `Bearer ${token}` } });
        expect(none.status).toBe(401);
      }
    });
  }

  test("self_signed_tls_client_auth: the certificate's key in the client's JWKS gets a bound token that identity-rs accepts with that certificate only", async () => {
    const token = await boundToken("self-signed", selfSignedTls, "identity-rs");
    expect((decodeJwt(token).cnf as Record<string, string>)["x5t#S256"]).toBeString();
    expect((await viaMtls(rs, "/service/api/v1/profile", token, selfSignedTls)).status).toBe(200);
    expect((await viaMtls(rs, "/service/api/v1/profile", token, batchTls)).status).toBe(401);
    // A self-signed certificate never becomes a principal by itself.
    expect((await fetchWith(selfSignedTls)(rs.mtlsUrl + "/service/api/v1/profile")).status).toBe(403);
    // Another key than the registered one is refused at the token endpoint.
    const client = mtlsClient("self-signed");
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.TlsClientAuth(), { resource: "identity-rs" }, cf(otherTls));
    expect(res.status).toBe(401);
  });

  test("an unbound token is refused on the mTLS port, also once the public port has cached it", async () => {
    const token = await plainToken("identity-rs");
    expect((await viaMtls(rs, "/service/api/v1/profile", token, batchTls)).status).toBe(401);
    expect((await rs.call("/service/api/v1/profile", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await viaMtls(rs, "/service/api/v1/profile", token, batchTls)).status).toBe(401);
  });

  test("the mTLS introspection alias authenticates tls_client_auth and shows the binding", async () => {
    const token = await boundToken("batch", batchTls, "identity-rs");
    const client = mtlsClient("batch");
    const res = await oauth.introspectionRequest(as, client, oauth.TlsClientAuth(), token, cf(batchTls));
    const body = await oauth.processIntrospectionResponse(as, client, res);
    expect(body.active).toBe(true);
    expect((body.cnf as Record<string, string>)["x5t#S256"]).toBe((decodeJwt(token).cnf as Record<string, string>)["x5t#S256"]);
  });
});

describe("the client admin API and the RFC 8705 fields", () => {
  const create = (body: Record<string, unknown>) => authz.adminApi("POST", `/tenants/${TENANT}/clients`, { client_name: "x", ...body });

  test("tls_client_auth needs exactly one name, and a subject DN that parses", async () => {
    expect((await create({ token_endpoint_auth_method: "tls_client_auth" })).status).toBe(400);
    expect((await create({ token_endpoint_auth_method: "tls_client_auth", tls_client_auth_san_dns: "a.test", tls_client_auth_san_uri: "spiffe://a" })).status).toBe(400);
    expect((await create({ token_endpoint_auth_method: "tls_client_auth", tls_client_auth_subject_dn: "not a dn" })).status).toBe(400);
    expect((await create({ token_endpoint_auth_method: "tls_client_auth", tls_client_auth_san_ip: "999.1.1.1" })).status).toBe(400);
    const ok = await create({ client_id: "dn-client", token_endpoint_auth_method: "tls_client_auth", tls_client_auth_subject_dn: "CN=dn client, O=Acme" });
    expect(ok.status).toBe(201);
    const made = (await ok.json()) as Record<string, unknown>;
    expect(made).toMatchObject({ token_endpoint_auth_method: "tls_client_auth", tls_client_auth_subject_dn: "CN=dn client, O=Acme", tls_client_auth_san_dns: null, client_secret: null });
  });

  test("self_signed_tls_client_auth needs the key in jwks or jwks_uri; clients made before these fields read as not using them", async () => {
    expect((await create({ token_endpoint_auth_method: "self_signed_tls_client_auth" })).status).toBe(400);
    const got = (await (await authz.adminApi("GET", `/tenants/${TENANT}/clients/plain-app`)).json()) as Record<string, unknown>;
    expect(got).toMatchObject({ tls_client_certificate_bound_access_tokens: false, tls_client_auth_subject_dn: null });
  });

  test("a subject DN client authenticates with a certificate whose subject matches, in another spelling", async () => {
    const leaf = await issueLeaf(suiteCa, { serviceName: "dn-client", dnsNames: ["dn-client.test"], ipAddresses: [], usage: "client", validityDays: 2 });
    const cert = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(suiteCa.intermediate.cert.rawData));
    const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
    const subject = new x509.X509Certificate(leaf.cert.rawData).subject;
    await authz.adminApi("PATCH", `/tenants/${TENANT}/clients/dn-client`, { tls_client_auth_subject_dn: subject.replace(/, /g, ","), audiences: ["identity-rs"] });
    const client = mtlsClient("dn-client");
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.TlsClientAuth(), {}, cf({ cert, key }));
    expect(res.status).toBe(200);
    const wrong = await oauth.clientCredentialsGrantRequest(as, client, oauth.TlsClientAuth(), {}, cf(batchTls));
    expect(wrong.status).toBe(401);
  });
});
