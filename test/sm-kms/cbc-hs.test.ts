/** A128CBC-HS256 content encryption with key-wrapping and key-agreement keys, both ways with jose. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { CompactEncrypt, decodeProtectedHeader, importJWK } from "jose";
import { b64u, startKms, text, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

for (const alg of ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A256KW"]) {
  test(`${alg} with A128CBC-HS256`, async () => {
    const id = (await kms.req("POST", "/keys", { name: `cbc-${alg.replace(/[^a-z0-9]/gi, "-")}`, algorithm: alg })).body.id as string;
    const pub = (await kms.req("GET", `/keys/${id}/public-key?version=1`)).body;
    const jwe = await new CompactEncrypt(new TextEncoder().encode("cbc from jose"))
      .setProtectedHeader({ alg, enc: "A128CBC-HS256", kid: pub.kid })
      .encrypt(await importJWK(pub, alg));
    const dec = await kms.req("POST", `/keys/${id}/decrypt`, { jwe });
    expect(dec.status).toBe(200);
    expect(text(dec.body.plaintext)).toBe("cbc from jose");
    const enc = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("cbc from kms"), enc: "A128CBC-HS256" });
    expect(enc.status).toBe(200);
    expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg, enc: "A128CBC-HS256" });
    expect(text((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: enc.body.jwe })).body.plaintext)).toBe("cbc from kms");
    // The HMAC half of A128CBC-HS256 catches a flipped ciphertext bit.
    const parts = enc.body.jwe.split(".");
    parts[3] = parts[3].slice(0, -2) + (parts[3].endsWith("AA") ? "BB" : "AA");
    expect((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: parts.join(".") })).status).toBe(400);
  });
}

test("wrap keys with A128CBC-HS256; dir keys refuse it", async () => {
  const wrap = (await kms.req("POST", "/keys", { name: "cbc-wrap", algorithm: "A256KW" })).body.id as string;
  const enc = await kms.req("POST", `/keys/${wrap}/encrypt`, { plaintext: b64u("wrapped"), enc: "A128CBC-HS256" });
  expect(enc.status).toBe(200);
  expect(text((await kms.req("POST", `/keys/${wrap}/decrypt`, { jwe: enc.body.jwe })).body.plaintext)).toBe("wrapped");
  const dir = (await kms.req("POST", "/keys", { name: "cbc-dir", algorithm: "A256GCM" })).body.id as string;
  const refused = await kms.req("POST", `/keys/${dir}/encrypt`, { plaintext: b64u("x"), enc: "A128CBC-HS256" });
  expect(refused.status).toBe(400);
  expect(refused.body.error.code).toBe("validation_failed");
  expect((await kms.req("POST", `/keys/${dir}/encrypt`, { plaintext: b64u("x"), enc: "A999" })).status).toBe(400);

});
