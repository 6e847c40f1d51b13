/**
 * jose-ja with ML-KEM-768 key rings (FIPS 203, draft-ietf-jose-pqc-kem JWEs; opt-in): the
 * JWKS publishes the AKP public key, a JWE made outside to it opens in the service, a caller's
 * imported key decrypts what the service encrypts, and bad keys and JWEs are 4xx.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { decodeProtectedHeader } from "jose";
import { decryptMlKem, encryptMlKem, generateMlKemJwk, publicMlKemJwk, type MlKemPublicJwk } from "../../src/keyring/pq-kem.ts";
import { b64u, startJose, type Jose } from "./harness.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose();
});
afterAll(async () => {
  await j?.stop();
});
const text = (s: string) => Buffer.from(s, "base64url").toString();

test("generated ML-KEM-768+A192KW ring: published in the JWKS, JWEs to it open in the service, rotation keeps old ones", async () => {
  const key = (await j.req("POST", "/keys", { name: "kem-a192kw", algorithm: "ML-KEM-768+A192KW" })).body;
  const jwks = await j.pub(`/t/tenant-a/jwks/${key.id}`);
  expect(jwks.status).toBe(200);
  const [pub] = (jwks.body as { keys: MlKemPublicJwk[] }).keys;
  expect(pub).toMatchObject({ kty: "AKP", alg: "ML-KEM-768+A192KW", use: "enc", kid: `${key.id}.v1` });
  expect((pub as unknown as Record<string, unknown>).priv).toBeUndefined();
  const jwe = await encryptMlKem(pub!, new TextEncoder().encode("to the ring"), { alg: "ML-KEM-768+A192KW", kid: pub!.kid });
  expect(text((await j.req("POST", `/keys/${key.id}/decrypt`, { jwe })).body.plaintext)).toBe("to the ring");
  await j.req("POST", `/keys/${key.id}/rotate`);
  expect(text((await j.req("POST", `/keys/${key.id}/decrypt`, { jwe })).body.plaintext)).toBe("to the ring");
  const enc = await j.req("POST", `/keys/${key.id}/encrypt`, { plaintext: b64u("v2") });
  expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg: "ML-KEM-768+A192KW", kid: `${key.id}.v2` });
});

test("imported ML-KEM-768 key: the service encrypts, the caller's copy decrypts; mismatched or wrong-size keys are refused", async () => {
  const priv = generateMlKemJwk("ML-KEM-768");
  const imp = await j.req("POST", "/keys/import", { name: "kem-imported", algorithm: "ML-KEM-768", jwk: priv });
  expect(imp.status).toBe(201);
  const enc = await j.req("POST", `/keys/${imp.body.id}/encrypt`, { plaintext: b64u("for the caller") });
  expect(enc.status).toBe(200);
  expect(new TextDecoder().decode(await decryptMlKem(priv, enc.body.jwe))).toBe("for the caller");
  // A public-only import encrypts but cannot decrypt.
  const pubOnly = await j.req("POST", "/keys/import", { name: "kem-public", algorithm: "ML-KEM-768", jwk: publicMlKemJwk(priv) });
  expect(pubOnly.status).toBe(201);
  const enc2 = await j.req("POST", `/keys/${pubOnly.body.id}/encrypt`, { plaintext: b64u("x") });
  expect((await j.req("POST", `/keys/${pubOnly.body.id}/decrypt`, { jwe: enc2.body.jwe })).status).toBe(409);
  // pub that is not the one priv derives, truncated pub, wrong kty: 400 with a stable code.
  const other = generateMlKemJwk("ML-KEM-768");
  for (const jwk of [{ ...priv, pub: other.pub }, { ...priv, pub: priv.pub.slice(0, 100) }, { ...priv, kty: "OKP" }]) {
    const r = await j.req("POST", "/keys/import", { name: "kem-bad", algorithm: "ML-KEM-768", jwk });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("malformed_key");
  }
});
