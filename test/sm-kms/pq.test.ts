/** Post-quantum (ML-DSA, FIPS 204, JOSE AKP keys) and ES512 signatures from sm-kms, verified by jose. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { compactVerify, importJWK } from "jose";
import { b64u, startKms, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

for (const algorithm of ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "ES512"]) {
  test(`${algorithm}: signatures verify with jose against the exported public JWK; tampering fails`, async () => {
    const created = await kms.req("POST", "/keys", { name: `pq-${algorithm}`, algorithm });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const signed = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u(`signed with ${algorithm}`) });
    expect(signed.status).toBe(200);
    const pub = await kms.req("GET", `/keys/${id}/public-key`);
    expect(pub.status).toBe(200);
    const jwk = pub.body.keys?.[0] ?? pub.body;
    expect(jwk.priv).toBeUndefined();
    expect(jwk.d).toBeUndefined();
    if (algorithm.startsWith("ML-DSA")) expect(jwk).toMatchObject({ kty: "AKP", alg: algorithm });
    const key = await importJWK(jwk, algorithm);
    const { payload, protectedHeader } = await compactVerify(signed.body.jws, key);
    expect(new TextDecoder().decode(payload)).toBe(`signed with ${algorithm}`);
    expect(protectedHeader).toMatchObject({ alg: algorithm, kid: `${id}.v1` });
    const verified = await kms.req("POST", `/keys/${id}/verify`, { jws: signed.body.jws });
    expect(verified.status).toBe(200);
    const [h, , s] = signed.body.jws.split(".");
    const forged = `${h}.${b64u("other payload")}.${s}`;
    await expect(compactVerify(forged, key)).rejects.toThrow();
    expect((await kms.req("POST", `/keys/${id}/verify`, { jws: forged })).status).toBe(400);
  });
}
