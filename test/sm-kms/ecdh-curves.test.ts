/** ECDH-ES and ECDH-ES+A256KW on P-384 and X25519: jose encrypts to the exported key, sm-kms decrypts, and back. */
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

for (const [algorithm, crv] of [
  ["ECDH-ES/P-384", "P-384"],
  ["ECDH-ES+A256KW/P-384", "P-384"],
  ["ECDH-ES/X25519", "X25519"],
  ["ECDH-ES+A256KW/X25519", "X25519"],
] as const) {
  test(algorithm, async () => {
    const jose = algorithm.split("/")[0]!;
    const created = await kms.req("POST", "/keys", { name: `curve-${algorithm.replace(/[^a-z0-9]/gi, "-")}`, algorithm });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const pub = await kms.req("GET", `/keys/${id}/public-key?version=1`);
    expect(pub.body).toMatchObject({ kid: `${id}.v1`, alg: jose, crv, use: "enc" });
    expect(pub.body.d).toBeUndefined();
    const jwe = await new CompactEncrypt(new TextEncoder().encode(`to ${algorithm}`))
      .setProtectedHeader({ alg: jose, enc: "A256GCM", kid: pub.body.kid })
      .encrypt(await importJWK(pub.body, jose));
    const dec = await kms.req("POST", `/keys/${id}/decrypt`, { jwe });
    expect(dec.status).toBe(200);
    expect(text(dec.body.plaintext)).toBe(`to ${algorithm}`);
    const enc = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("round trip") });
    expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg: jose, enc: "A256GCM", kid: `${id}.v1` });
    expect(decodeProtectedHeader(enc.body.jwe).epk).toMatchObject({ crv });
    expect(text((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: enc.body.jwe })).body.plaintext)).toBe("round trip");
    // A JWE made for a P-256 key of the same alg does not decrypt here.
    const other = (await kms.req("POST", "/keys", { name: `other-${id}`, algorithm: jose })).body.id as string;
    const foreign = await kms.req("POST", `/keys/${other}/encrypt`, { plaintext: b64u("x") });
    expect((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: foreign.body.jwe })).status).toBe(400);
  });
}
