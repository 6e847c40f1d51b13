/**
 * Two instances each of sm-kms, pki-ca and identity-authz on one PostgreSQL database (Debian
 * package postgresql; one server for the file), started at the same moment, with requests
 * alternating between them: what one instance changes, the other sees on the next request or,
 * for what it caches in memory, on the change notice the first publishes (LISTEN/NOTIFY). The
 * caches' time bounds (revocation_check_ms, registry_cache_s, key_reload_s) are set to a
 * minute or an hour here, so only the notices can make the other instance notice in time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from "jose";
import * as oauth from "oauth4webapi";
import { smKms } from "../../apps/sm-kms/service.ts";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { startPostgresEngine } from "../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { tempDir, type TestService } from "../support/service.ts";
import { apiOver, BASE_URL, haveOpenssl, makeCsr, openssl, PROFILES, write } from "../pki-ca/helpers.ts";
import { basic, form, freePort, startTestIdp, type TestIdp } from "../identity/support/authz.ts";
import { eventually, startInstances } from "./instances.ts";

const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

describe("on PostgreSQL (Debian package postgresql)", () => {
  if (!engine) return;

  describe("sm-kms: two instances", () => {
    const root = tempDir("cryptoutil-scale-kms-");
    let issuer: TestIssuer;
    let kms: TestService[];
    let token: string;
    const req = async (i: number, path: string, body?: unknown) => {
      const r = await kms[i]!.call(`/service/api/v1${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body ?? {}),
      });
      return { status: r.status, body: (await r.json()) as any };
    };
    const b64u = (s: string) => Buffer.from(s).toString("base64url");

    beforeAll(async () => {
      issuer = await startTestIssuer({ audience: "sm-kms" });
      kms = await startInstances(smKms, 2, { engine, root, issuer });
      token = await issuer.mint({ tenant: "acme", scope: "kms:admin kms:encrypt kms:decrypt" });
    });
    afterAll(async () => {
      for (const s of kms ?? []) await s.stop();
      await issuer?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    test("a key made on one encrypts on the other; rotation and disabling apply on the other at once", async () => {
      const created = await req(0, "/keys", { name: "shared", algorithm: "A256GCM" });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const v1 = await req(1, `/keys/${id}/encrypt`, { plaintext: b64u("one") });
      expect([v1.status, v1.body.kid]).toEqual([200, `${id}.v1`]);
      expect((await req(0, `/keys/${id}/decrypt`, { jwe: v1.body.jwe })).body.plaintext).toBe(b64u("one"));

      // Rotated through one: the next encryption through the other uses the new version.
      expect((await req(1, `/keys/${id}/rotate`)).body.current_version).toBe(2);
      const v2 = await req(0, `/keys/${id}/encrypt`, { plaintext: b64u("two") });
      expect([v2.body.kid, decodeProtectedHeader(v2.body.jwe).kid]).toEqual([`${id}.v2`, `${id}.v2`]);
      expect((await req(0, `/keys/${id}/rotate`)).body.current_version).toBe(3);
      expect((await req(1, `/keys/${id}/encrypt`, { plaintext: b64u("three") })).body.kid).toBe(`${id}.v3`);
      // Old ciphertexts still decrypt on both.
      for (const i of [0, 1]) {
        expect((await req(i, `/keys/${id}/decrypt`, { jwe: v1.body.jwe })).body.plaintext).toBe(b64u("one"));
        expect((await req(i, `/keys/${id}/decrypt`, { jwe: v2.body.jwe })).body.plaintext).toBe(b64u("two"));
      }

      // Disabled through one: refused by the other on the next request.
      expect((await req(0, `/keys/${id}/disable`)).body.status).toBe("disabled");
      const refused = await req(1, `/keys/${id}/encrypt`, { plaintext: b64u("four") });
      expect([refused.status, refused.body.error.code]).toEqual([409, "key_disabled"]);
      expect((await req(1, `/keys/${id}/decrypt`, { jwe: v1.body.jwe })).body.error.code).toBe("key_disabled");
      expect((await req(1, `/keys/${id}/enable`)).body.status).toBe("enabled");
      expect((await req(0, `/keys/${id}/encrypt`, { plaintext: b64u("five") })).status).toBe(200);
    });
  });

  describe.skipIf(!haveOpenssl())("pki-ca: two instances [needs Debian openssl]", () => {
    const root = tempDir("cryptoutil-scale-ca-");
    let issuer: TestIssuer;
    let ca: TestService[];

    beforeAll(async () => {
      issuer = await startTestIssuer({ audience: "pki-ca" });
      ca = await startInstances(pkiCa, 2, {
        engine,
        root,
        issuer,
        // A minute between polls: within this test only the change notice can bring the news.
        overrides: (c) => {
          c.app = { base_url: BASE_URL, issuing_cas: ["P-256", "P-384"], profiles: PROFILES, revocation_check_ms: 60_000 };
        },
      });
    });
    afterAll(async () => {
      for (const s of ca ?? []) await s.stop();
      await issuer?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    test("a certificate revoked through one is revoked in the other's cached OCSP answers and in its CRL", async () => {
      const tok = await issuer.mint({ tenant: "acme", scope: "pki:request pki:revoke pki:read" });
      const { csr } = makeCsr(root, "leaf", { subj: "/CN=leaf.example.com", san: "DNS:leaf.example.com" });
      const issued = await apiOver(ca[0]!.call)("/certificates", tok, { body: { csr, profile: "server" } });
      expect(issued.status).toBe(201);
      const cert = ((await issued.json()) as any).certificate;
      const leaf = write(root, "leaf.pem", cert.certificate_pem);
      const issuing = write(root, "issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      write(root, "root.pem", await (await ca[1]!.call("/pki/ca/root.pem")).text());
      const ocspReq = join(root, "leaf.req");
      expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", ocspReq]).code).toBe(0);
      const status = async (i: number) => {
        const r = await ca[i]!.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(ocspReq) });
        const resp = write(root, `r-${crypto.randomUUID()}.resp`, new Uint8Array(await r.arrayBuffer()));
        const out = openssl(["ocsp", "-issuer", issuing, "-reqin", ocspReq, "-respin", resp, "-CAfile", join(root, "root.pem"), "-resp_text"]).out;
        expect(out).toContain("Response verify OK");
        return /Cert Status: (\w+)/.exec(out)?.[1];
      };
      // Asked twice each: the second answer comes from each instance's cache.
      for (let k = 0; k < 2; k++) for (const i of [0, 1]) expect(await status(i)).toBe("good");

      expect((await apiOver(ca[0]!.call)(`/certificates/${cert.serial}/revoke`, tok, { body: { reason: "keyCompromise" } })).status).toBe(200);
      expect(await status(0)).toBe("revoked");
      expect(await eventually(() => status(1), "revoked")).toBe("revoked");

      const id = ((await (await apiOver(ca[1]!.call)(`/certificates/${cert.serial}`, tok)).json()) as any).issuing_ca as string;
      const crl = new Uint8Array(await (await ca[1]!.call(`/pki/crl/${id}.crl`)).arrayBuffer());
      const out = openssl(["crl", "-inform", "DER", "-in", write(root, "other.crl", crl), "-CAfile", issuing, "-verify", "-noout", "-text"]).out;
      expect(out).toContain("verify OK");
      expect(out.toUpperCase()).toContain(`SERIAL NUMBER: ${cert.serial.toUpperCase()}`);
    });
  });

  describe("identity-authz: two instances behind one public URL", () => {
    const root = tempDir("cryptoutil-scale-authz-");
    let idp: TestIdp;
    let authz: TestService[];
    let base: string;
    let ca: string;
    let admin: string;
    const CB = "https://client.example/cb";
    const at = (i: number, path: string, init?: RequestInit) => authz[i]!.call(path, init);
    const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;
    const adminApi = async (i: number, method: string, path: string, body?: unknown) =>
      at(i, `/service/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const grant = (i: number, clientId: string, secret: string) => at(i, "/t/acme/token", form({ grant_type: "client_credentials", scope: "pets:read" }, { authorization: basic(clientId, secret) }));

    beforeAll(async () => {
      const ports = [await freePort(), await freePort()];
      base = `https://127.0.0.1:${ports[0]}`;
      idp = await startTestIdp(root, () => base, () => ca);
      authz = await startInstances(identityAuthz, 2, {
        engine,
        root,
        overrides: (c, i) => {
          c.server.port = ports[i]!;
          // Both answer as one issuer, as behind a load balancer; the tests call each directly.
          c.server.public_url = base;
          c.auth.audience = "identity-authz";
          (c as { app?: unknown }).app = { idp_url: idp.url, ca_file: idp.caFile, registry_cache_s: 3600, key_reload_s: 3600 };
        },
      });
      ca = authz[0]!.ca + idp.caPem;
    });
    afterAll(async () => {
      for (const s of authz ?? []) await s.stop();
      await idp?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    test("started together on an empty database: exactly one creates the bootstrap admin and writes its secret; both serve", async () => {
      for (const i of [0, 1]) expect((await at(i, "/t/root/.well-known/openid-configuration")).status).toBe(200);
      const files = [0, 1].map((i) => join(root, `identity-authz-${i}`, "bootstrap-admin.secret")).filter((f) => existsSync(f));
      expect(files.length).toBe(1);
      const secret = readFileSync(files[0]!, "utf8").trim();
      for (const i of [1, 0]) {
        const r = await at(i, "/t/root/token", form({ grant_type: "client_credentials" }, { authorization: basic("bootstrap-admin", secret) }));
        expect(r.status).toBe(200);
        admin = ((await r.json()) as { access_token: string }).access_token;
      }
      for (const i of [0, 1]) expect((await authz[i]!.admin("/admin/v1/readyz")).status).toBe(200);
      expect((await adminApi(1, "POST", "/tenants", { id: "acme" })).status).toBe(201);
    });

    test("a client made on one authenticates on the other at once; secret rotation and deletion reach the other", async () => {
      const clientId = "svc-1";
      // The other instance is asked first, before the client exists: unknown clients are not cached.
      expect((await grant(1, clientId, "nothing")).status).toBe(401);
      const made = await adminApi(0, "POST", "/tenants/acme/clients", { client_id: clientId, client_name: "svc", grant_types: ["client_credentials"], scopes: ["pets:read"], audiences: ["learn-ps"] });
      expect(made.status).toBe(201);
      const first = ((await made.json()) as { client_secret: string }).client_secret;
      expect((await grant(1, clientId, first)).status).toBe(200);
      expect((await grant(0, clientId, first)).status).toBe(200);

      // Rotated on one: the new secret works on the other at once, the old one stops on the notice.
      const rotated = await adminApi(0, "POST", `/tenants/acme/clients/${clientId}/secret`);
      const second = ((await rotated.json()) as { client_secret: string }).client_secret;
      expect((await grant(1, clientId, second)).status).toBe(200);
      expect(await eventually(async () => (await grant(1, clientId, first)).status, 401)).toBe(401);
      expect((await grant(0, clientId, first)).status).toBe(401);

      expect((await adminApi(1, "DELETE", `/tenants/acme/clients/${clientId}`)).status).toBe(204);
      expect((await grant(1, clientId, second)).status).toBe(401);
      expect(await eventually(async () => (await grant(0, clientId, second)).status, 401)).toBe(401);
    });

    test("a signing key rotated on one is published and used by the other", async () => {
      const made = await adminApi(0, "POST", "/tenants/acme/clients", { client_name: "k", grant_types: ["client_credentials"], scopes: ["pets:read"], audiences: ["learn-ps"] });
      const c = (await made.json()) as { client_id: string; client_secret: string };
      const kidOf = async (i: number) => decodeProtectedHeader(((await (await grant(i, c.client_id, c.client_secret)).json()) as { access_token: string }).access_token).kid;
      const old = await kidOf(1); // loads the tenant's keys on the other instance
      expect(await kidOf(0)).toBe(old);
      const rotated = await adminApi(0, "POST", "/tenants/acme/keys/rotate", { alg: "ES256" });
      const items = ((await rotated.json()) as { items: Array<{ kid: string; alg: string; status: string }> }).items;
      const fresh = items.find((k) => k.status === "current" && k.alg === "ES256")!.kid;
      expect(fresh).not.toBe(old);
      const published = async () => ((await (await at(1, "/t/acme/jwks")).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      expect(await eventually(async () => (await published()).includes(fresh), true)).toBe(true);
      expect(await published()).toContain(old!); // still published for the tokens it signed
      expect(await kidOf(1)).toBe(fresh);
    });

    test("an authorization code, a refresh token and a DPoP proof used on one are refused on the other", async () => {
      const made = await adminApi(0, "POST", "/tenants/acme/clients", {
        client_name: "web",
        grant_types: ["authorization_code", "refresh_token", "client_credentials"],
        redirect_uris: [CB],
        scopes: ["openid", "pets:read"],
        audiences: ["learn-ps"],
      });
      const web = (await made.json()) as { client_id: string; client_secret: string };
      const auth = { authorization: basic(web.client_id, web.client_secret) };
      // The code flow through the public URL (instance 0) and the test idp.
      const verifier = oauth.generateRandomCodeVerifier();
      const start = new URL(`${base}/t/acme/authorize`);
      for (const [k, v] of Object.entries({ client_id: web.client_id, redirect_uri: CB, response_type: "code", scope: "openid pets:read", state: "s", nonce: "n", code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" })) {
        start.searchParams.set(k, v);
      }
      let url = start.toString();
      let code: string | null = null;
      for (let hop = 0; hop < 6 && !code; hop++) {
        const r = await fetch(url, { redirect: "manual", tls: { ca } } as RequestInit);
        await r.body?.cancel();
        const loc = r.headers.get("location");
        if (!loc) throw new Error(`no redirect from ${url}: ${r.status}`);
        if (loc.startsWith(CB)) code = new URL(loc).searchParams.get("code");
        else url = new URL(loc, url).toString();
      }
      expect(code).toBeTruthy();
      const redeem = { grant_type: "authorization_code", code: code!, redirect_uri: CB, code_verifier: verifier };
      const first = await at(0, "/t/acme/token", form(redeem, auth));
      expect(first.status).toBe(200);
      const tokens = (await first.json()) as { refresh_token: string };
      const refresh = { grant_type: "refresh_token", refresh_token: tokens.refresh_token };
      expect((await at(1, "/t/acme/token", form(refresh, auth))).status).toBe(200);
      expect(await errorOf(await at(0, "/t/acme/token", form(refresh, auth)))).toBe("invalid_grant");
      // (A replayed code also revokes its grant, so the code goes last.)
      expect(await errorOf(await at(1, "/t/acme/token", form(redeem, auth)))).toBe("invalid_grant");

      // One DPoP proof, presented to both.
      const keys = await generateKeyPair("ES256");
      const proof = await new SignJWT({ jti: crypto.randomUUID(), htm: "POST", htu: `${base}/t/acme/token`, iat: Math.floor(Date.now() / 1000) })
        .setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: await exportJWK(keys.publicKey) })
        .sign(keys.privateKey);
      const cc = { grant_type: "client_credentials", scope: "pets:read" };
      expect((await at(0, "/t/acme/token", form(cc, { ...auth, dpop: proof }))).status).toBe(200);
      const replay = await at(1, "/t/acme/token", form(cc, { ...auth, dpop: proof }));
      expect([replay.status, await errorOf(replay)]).toEqual([400, "invalid_dpop_proof"]);
    });
  });
});
