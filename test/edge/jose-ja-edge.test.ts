/**
 * jose-ja's public JWKS and JWT validation served by the edge module in workerd (HTTPS, TLS
 * 1.3 only), with jose-ja on Bun as the origin over HTTPS verified against the suite CA. The
 * `jose` library verifies a JWT jose-ja signed with the key set it fetched from the edge.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createLocalJWKSet, jwtVerify } from "jose";
import { startJose, type Jose } from "../jose-ja/harness.ts";
import { freePort } from "../support/server-process.ts";
import { throwawayTls, type ThrowawayTls } from "../support/tls.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";
import { startEdge, type RunningEdge } from "../../edge/workerd.ts";

let j: Jose;
let edge: RunningEdge;
let tls: ThrowawayTls;
let keyId: string;
let jwt: string;
const at = (path: string, init: RequestInit = {}) => fetch(edge.url + path, { ...init, tls: { ca: tls.caPem } } as RequestInit);

beforeAll(async () => {
  j = await startJose();
  const key = await j.req("POST", "/keys", { name: "edge-signer", algorithm: "ES256" });
  expect(key.status).toBe(201);
  keyId = key.body.id;
  const signed = await j.req("POST", `/keys/${keyId}/jwt`, { claims: { scope: "read" }, ttl_s: 600, iss: "https://issuer.example", aud: "rp-1", sub: "alice" });
  expect(signed.status).toBe(200);
  jwt = signed.body.jwt;
  tls = await throwawayTls("edge");
  const origin = new URL(j.svc.publicUrl);
  edge = await startEdge({
    module: "jose-ja",
    port: await freePort(),
    tls: { cert: tls.certPem, key: tls.keyPem },
    origin: { address: origin.host, https: { ca: j.svc.ca, host: origin.hostname } },
    vars: { REFRESH_S: "30" },
  });
}, 120_000);
afterAll(async () => {
  await edge?.stop();
  await j?.stop();
});

test("jose verifies a jose-ja JWT with the JWKS the edge serves", async () => {
  const r = await at(`/t/tenant-a/jwks/${keyId}`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("application/jwk-set+json");
  const jwks = (await r.json()) as { keys: Array<Record<string, string>> };
  for (const k of jwks.keys) expect(k.d).toBeUndefined();
  const v = await jwtVerify(jwt, createLocalJWKSet(jwks as never), { issuer: "https://issuer.example", audience: "rp-1", algorithms: ["ES256"] });
  expect(v.payload.sub).toBe("alice");
  expect(v.protectedHeader.kid).toBe(`${keyId}.v1`);
  // The tenant-wide set too; another tenant's set does not hold the key.
  expect(JSON.stringify(await (await at("/t/tenant-a/jwks")).json())).toContain(`${keyId}.v1`);
  expect(JSON.stringify(await (await at("/t/tenant-b/jwks")).json())).not.toContain(keyId);
});

test("the edge validates the JWT itself; a tampered or foreign one is not valid", async () => {
  const path = `/t/tenant-a/jwks/${keyId}/validate`;
  const post = (body: unknown) => at(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const ok = await post({ jwt, issuer: "https://issuer.example", audience: "rp-1" });
  expect(ok.status).toBe(200);
  expect(await ok.json()).toMatchObject({ valid: true, payload: { sub: "alice", scope: "read" }, protected_header: { alg: "ES256" } });
  const [h, p, s] = jwt.split(".");
  const tampered = `${h}.${Buffer.from(JSON.stringify({ sub: "mallory" })).toString("base64url")}.${s}`;
  expect(await (await post({ jwt: tampered })).json()).toMatchObject({ valid: false, error: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" });
  expect(await (await post({ jwt, audience: "rp-2" })).json()).toMatchObject({ valid: false, error: "ERR_JWT_CLAIM_VALIDATION_FAILED" });
  expect(p).toBeDefined();
  const foreign = await at(`/t/tenant-b/jwks/${keyId}/validate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jwt }) });
  expect([404, 200]).toContain(foreign.status);
  if (foreign.status === 200) expect(((await foreign.json()) as { valid: boolean }).valid).toBe(false);
});

test("bad input gets a 4xx with the error model, never a 5xx", async () => {
  const path = `/t/tenant-a/jwks/${keyId}/validate`;
  expect((await at(path, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })).status).toBe(415);
  const notJson = await at(path, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
  expect(notJson.status).toBe(400);
  expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe("malformed_input");
  expect((await at(path, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(400);
  expect((await at(path)).status).toBe(405);
  expect((await at("/service/api/v1/keys")).status).toBe(404);
  expect((await at("/t/../jwks")).status).toBe(404);
  const r = rng(7);
  const cases = Array.from({ length: 200 }, () => mutateJson({ jwt, issuer: "https://issuer.example", audience: "rp-1" }, r));
  await fuzz(cases, (body) => at(path, { method: "POST", headers: { "content-type": "application/json" }, body }), { describe: (b) => b, maxMs: 20_000, concurrency: 8 });
}, 60_000);
