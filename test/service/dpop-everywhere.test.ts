/**
 * Issue 18 (1): every service's `/service/api` takes a DPoP-bound access token (`cnf.jkt`) only
 * with a proof of its key. The same normal call of each service (sm-kms, jose-ja, pki-ca,
 * identity-authz's admin API, identity-idp, learn-ps, and sm-secrets) with a bound token: as
 * Bearer it is refused; with a valid proof it works; the same proof again is refused. The
 * tokens come from one test issuer that every service trusts (nothing is bypassed).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";
import { accessTokenHash } from "../../src/auth/dpop.ts";
import { startAllServices, type AllServices, type JsonTarget } from "../support/all-services.ts";
import { startSecrets, type Secrets } from "../sm-secrets/harness.ts";

let all: AllServices;
let secrets: Secrets;
let keys: CryptoKeyPair;
let jkt: string;

beforeAll(async () => {
  all = await startAllServices();
  secrets = await startSecrets();
  keys = await generateKeyPair("ES256");
  jkt = await calculateJwkThumbprint(await exportJWK(keys.publicKey));
}, 300_000);

afterAll(async () => {
  await all?.stop();
  await secrets?.stop();
});

const proof = async (method: string, htu: string, token: string) =>
  new SignJWT({ htm: method, htu, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ath: accessTokenHash(token) })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(keys.publicKey) })
    .sign(keys.privateKey);

type Call = { name: string; publicUrl: string; ca: string; method: string; path: string; body?: unknown; mint: () => Promise<string> };

function calls(): Call[] {
  const fromAll = (t: JsonTarget): Call => ({
    name: t.service,
    publicUrl: t.svc.publicUrl,
    ca: t.svc.ca,
    method: t.normal.method,
    path: t.normal.path,
    body: t.normal.body,
    mint: () => all.issuer.mint({ ...t.normal.claims, cnf: { jkt } }),
  });
  return [
    ...all.targets.map(fromAll),
    {
      name: "sm-secrets",
      publicUrl: secrets.svc.publicUrl,
      ca: secrets.svc.ca,
      method: "GET",
      path: "/service/api/v1/secrets/list?prefix=",
      mint: () => secrets.issuer.mint({ tenant: "tenant-a", scope: "secrets:read", cnf: { jkt } }, { expiresIn: "1h" }),
    },
  ];
}

describe("a DPoP-bound token at every service", () => {
  test("as Bearer: 401 invalid_token; with its proof: 2xx; the proof replayed: 401 invalid_dpop_proof", async () => {
    const names: string[] = [];
    for (const c of calls()) {
      const token = await c.mint();
      const send = (headers: Record<string, string>) =>
        fetch(c.publicUrl + c.path, {
          method: c.method,
          headers: { ...headers, ...(c.body === undefined ? {} : { "content-type": "application/json" }) },
          body: c.body === undefined ? undefined : JSON.stringify(c.body),
          tls: { ca: c.ca },
        } as RequestInit);
      const bearer = await send({ authorization: `Bearer ${token}` });
      expect({ name: c.name, status: bearer.status }).toEqual({ name: c.name, status: 401 });
      expect(((await bearer.json()) as { error: { code: string } }).error.code).toBe("invalid_token");
      const p = await proof(c.method, c.publicUrl + c.path.split("?")[0], token);
      const ok = await send({ authorization: `DPoP ${token}`, dpop: p });
      expect({ name: c.name, ok: ok.ok }).toEqual({ name: c.name, ok: true });
      const replay = await send({ authorization: `DPoP ${token}`, dpop: p });
      expect({ name: c.name, status: replay.status }).toEqual({ name: c.name, status: 401 });
      expect(((await replay.json()) as { error: { code: string } }).error.code).toBe("invalid_dpop_proof");
      names.push(c.name);
    }
    expect(names.sort()).toEqual(["identity-authz", "identity-idp", "jose-ja", "learn-ps", "pki-ca", "sm-kms", "sm-secrets"]);
  }, 120_000);
});
