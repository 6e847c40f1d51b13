/** sm-kms JWS in flattened JSON serialization (RFC 7515 §7.2.2): made by the service, checked by jose; jose's checked by the service. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { CompactEncrypt, FlattenedSign, exportJWK, flattenedVerify, generateKeyPair, importJWK } from "jose";
import { b64u, startKms, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

test("format json: jose verifies it with the exported key; detached, tampered and unprotected-header forms", async () => {
  const key = (await kms.req("POST", "/keys", { name: "jws-json-es256", algorithm: "ES256" })).body;
  const signed = await kms.req("POST", `/keys/${key.id}/sign`, { payload: b64u("flattened"), format: "json" });
  expect(signed.status).toBe(200);
  const jws = signed.body.jws as { protected: string; payload: string; signature: string };
  expect(Object.keys(jws).sort()).toEqual(["payload", "protected", "signature"]);
  const pub = await importJWK((await kms.req("GET", `/keys/${key.id}/public-key`)).body, "ES256");
  const r = await flattenedVerify(jws, pub);
  expect(new TextDecoder().decode(r.payload)).toBe("flattened");
  expect(r.protectedHeader).toMatchObject({ alg: "ES256", kid: `${key.id}.v1` });
  expect((await kms.req("POST", `/keys/${key.id}/verify`, { jws })).body).toMatchObject({ valid: true, kid: `${key.id}.v1` });

  const detached = (await kms.req("POST", `/keys/${key.id}/sign`, { payload: b64u("apart"), format: "json", detached: true })).body.jws;
  expect(detached.payload).toBeUndefined();
  expect((await kms.req("POST", `/keys/${key.id}/verify`, { jws: detached, payload: b64u("apart") })).status).toBe(200);
  expect((await kms.req("POST", `/keys/${key.id}/verify`, { jws: detached, payload: b64u("other") })).body.error.code).toBe("signature_invalid");

  const tampered = { ...jws, payload: b64u("changed") };
  expect((await kms.req("POST", `/keys/${key.id}/verify`, { jws: tampered })).body.error.code).toBe("signature_invalid");
  // Unprotected headers are not accepted (nothing unauthenticated may steer verification).
  const withHeader = await kms.req("POST", `/keys/${key.id}/verify`, { jws: { ...jws, header: { kid: "x" } } });
  expect([withHeader.status, withHeader.body.error.code]).toEqual([400, "validation_failed"]);
  const dotted = await kms.req("POST", `/keys/${key.id}/verify`, { jws: { ...jws, payload: "a.b" } });
  expect(dotted.status).toBe(400);
});

test("a flattened JWS made by jose with a BYOK-imported key verifies in the service", async () => {
  const created = await kms.req("POST", "/keys", { name: "jws-json-byok", algorithm: "ES384", import_allowed: true });
  const id = created.body.id as string;
  const { privateKey } = await generateKeyPair("ES384", { extractable: true });
  const params = await kms.req("POST", `/keys/${id}/import-params`);
  const wrapped = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(await exportJWK(privateKey))))
    .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" })
    .encrypt(await importJWK(params.body.public_jwk, "RSA-OAEP-256"));
  expect((await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: wrapped })).status).toBe(200);
  const jws = await new FlattenedSign(new TextEncoder().encode("from jose")).setProtectedHeader({ alg: "ES384", kid: `${id}.v2` }).sign(privateKey);
  expect((await kms.req("POST", `/keys/${id}/verify`, { jws })).body).toMatchObject({ valid: true, kid: `${id}.v2` });
});
