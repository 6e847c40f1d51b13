/**
 * Issue 14 (2): a sender-constrained access token (RFC 9449 DPoP `cnf.jkt`, or RFC 8705
 * `cnf.x5t#S256`) presented as a plain Bearer token is refused at a resource route (RFC 9449
 * §7.1), every time: the verifier's cache of verified tokens must not let a repeat through.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from "jose";
import { startKms, type Kms } from "../sm-kms/harness.ts";

let k: Kms;
beforeAll(async () => {
  k = await startKms((c) => (c.log.access = false));
});
afterAll(async () => {
  await k?.stop();
});

const random = (token: string) =>
  k.svc.call("/service/api/v1/random", { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ bytes: 16 }) });

test("a DPoP-bound token sent as Bearer gets 401 invalid_token, also on a repeat", async () => {
  const { publicKey } = await generateKeyPair("ES256");
  const jkt = await calculateJwkThumbprint(await exportJWK(publicKey));
  const bound = await k.issuer.mint({ tenant: "tenant-a", scope: "kms:encrypt", cnf: { jkt } });
  for (let i = 0; i < 3; i++) {
    const res = await random(bound);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_token");
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
  }
});

test("a certificate-bound token is refused too; an unbound token of the same tenant works (and stays cached)", async () => {
  const mtls = await k.issuer.mint({ tenant: "tenant-a", scope: "kms:encrypt", cnf: { "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" } });
  expect((await random(mtls)).status).toBe(401);
  const plain = await k.issuer.mint({ tenant: "tenant-a", scope: "kms:encrypt" });
  expect((await random(plain)).status).toBe(200);
  expect((await random(plain)).status).toBe(200);
});
