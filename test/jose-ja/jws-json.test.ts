/** jose-ja JWS in flattened JSON serialization (RFC 7515 §7.2.2): made by the service and verified by jose, and the reverse. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { FlattenedSign, createLocalJWKSet, exportJWK, flattenedVerify, generateKeyPair } from "jose";
import { b64u, startJose, type Jose } from "./harness.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose();
});
afterAll(async () => {
  await j?.stop();
});

test("format json: jose verifies with the ring's JWKS; the service verifies its own and jose's; detached and tampered refused", async () => {
  const key = (await j.req("POST", "/keys", { name: "jws-json-eddsa", algorithm: "EdDSA" })).body;
  const signed = await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("flattened"), format: "json", typ: "example+jws" });
  expect(signed.status).toBe(200);
  const jws = signed.body.jws as { protected: string; payload: string; signature: string };
  const jwks = createLocalJWKSet((await j.pub(`/t/tenant-a/jwks/${key.id}`)).body);
  const r = await flattenedVerify(jws, jwks);
  expect(new TextDecoder().decode(r.payload)).toBe("flattened");
  expect(r.protectedHeader).toMatchObject({ alg: "EdDSA", kid: `${key.id}.v1`, typ: "example+jws" });
  for (const path of [`/keys/${key.id}/verify`, "/jws/verify"]) {
    const v = await j.req("POST", path, { jws });
    expect([v.status, v.body.kid]).toEqual([200, `${key.id}.v1`]);
  }
  const tampered = await j.req("POST", "/jws/verify", { jws: { ...jws, payload: b64u("changed") } });
  expect(tampered.body.error.code).toBe("signature_invalid");
  const detached = await j.req("POST", `/keys/${key.id}/verify`, { jws: { protected: jws.protected, signature: jws.signature } });
  expect([detached.status, detached.body.error.code]).toEqual([400, "malformed_jose"]);
  const unprotected = await j.req("POST", "/jws/verify", { jws: { ...jws, header: { kid: "x" } } });
  expect(unprotected.status).toBe(400);

  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const imp = await j.req("POST", "/keys/import", { name: "jws-json-imported", algorithm: "ES256", jwk: await exportJWK(privateKey) });
  const fromJose = await new FlattenedSign(new TextEncoder().encode("from jose")).setProtectedHeader({ alg: "ES256", kid: `${imp.body.id}.v1` }).sign(privateKey);
  const ok = await j.req("POST", "/jws/verify", { jws: fromJose });
  expect([ok.status, Buffer.from(ok.body.payload, "base64url").toString()]).toEqual([200, "from jose"]);
});
