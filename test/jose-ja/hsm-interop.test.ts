/**
 * jose-ja with its keyring in SoftHSM2 (Debian package softhsm2): the whole interop suite
 * (interop-suite.ts: JWKS-verified signatures, jose-made JWEs, imported keys, JWTs) passes
 * with every private and secret key in the token; JWTs issued for every HSM-capable signing
 * algorithm verify with `jose` against the public JWKS and validate in the service; material
 * rows hold no private members even unsealed; imported key bytes are nowhere in the database
 * files; a restart finds the same keys; ML-DSA is refused without the software fallback.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dirname } from "node:path";
import { SignJWT, compactDecrypt, createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";
import { b64u, startJose, text, type Jose } from "./harness.ts";
import { joseInteropSuite } from "./interop-suite.ts";
import { expectBytesAbsentFromDatabase, expectMaterialInToken, tokenRefOf } from "../keyring/hsm-checks.ts";
import { TokenKeyObjects } from "../../src/crypto/pkcs11/index.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const softhsm: SoftHsm | undefined = await setupSoftHsm();

if (softhsm) {
  let token: SoftHsmToken;
  let j: Jose;
  const withHsm = (c: ServiceConfig) => {
    c.hsm = { module: softhsm.modulePath, token_label: token.label, pin_file: token.pinFile };
  };

  beforeAll(async () => {
    token = softhsm.createToken("jose-keys");
    j = await startJose(withHsm);
  });

  afterAll(async () => {
    await j?.stop();
    softhsm.cleanup();
  });

  joseInteropSuite(() => j);

  const generate = async (name: string, algorithm: string) => {
    const r = await j.req("POST", "/keys", { name, algorithm });
    expect(r.status).toBe(201);
    return r.body.id as string;
  };

  describe("key material in the HSM", () => {
    for (const alg of ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "HS256", "HS384", "HS512"]) {
      test(`${alg}: a JWT signed in the token verifies with jose and validates in the service`, async () => {
        const id = await generate(`hsm-jwt-${alg}`, alg);
        const issued = await j.req("POST", `/keys/${id}/jwt`, { ttl_s: 120, iss: "https://issuer.example", aud: "svc", sub: "u1", typ: "at+jwt", claims: { role: "r" } });
        expect(issued.status).toBe(200);
        if (!alg.startsWith("HS")) {
          const jwks = createLocalJWKSet((await j.pub(`/t/tenant-a/jwks/${id}`)).body);
          const r = await jwtVerify(issued.body.jwt, jwks, { issuer: "https://issuer.example", audience: "svc", typ: "at+jwt", algorithms: [alg] });
          expect(r.payload).toMatchObject({ sub: "u1", role: "r", exp: issued.body.exp });
          expect(r.protectedHeader).toEqual({ typ: "at+jwt", alg, kid: `${id}.v1` });
        }
        const ok = await j.req("POST", `/keys/${id}/jwt/validate`, { jwt: issued.body.jwt, iss: "https://issuer.example", aud: "svc", typ: "at+jwt", required_claims: ["role"] });
        expect(ok.body).toMatchObject({ valid: true, kid: `${id}.v1`, claims: { role: "r", sub: "u1" } });
        const wrongAud = await j.req("POST", `/keys/${id}/jwt/validate`, { jwt: issued.body.jwt, aud: "other" });
        expect([wrongAud.status, wrongAud.body.error.code]).toEqual([400, "jwt_claim_invalid"]);
        const [h, p, s] = (issued.body.jwt as string).split(".");
        const forged = await j.req("POST", `/keys/${id}/jwt/validate`, { jwt: `${h}.${b64u(JSON.stringify({ role: "admin", exp: issued.body.exp }))}.${s}` });
        expect([forged.status, forged.body.error.code]).toEqual([400, "signature_invalid"]);
        expect(p).toBeTruthy();
      });
    }

    test("imported private keys go into the token; their bytes appear nowhere in the database files", async () => {
      const secrets: Uint8Array[] = [];
      for (const alg of ["ES256", "RSA-OAEP-256"]) {
        const pair = await generateKeyPair(alg, { extractable: true });
        const jwk = await exportJWK(pair.privateKey);
        for (const m of ["d", "p", "q"] as const) if (jwk[m]) secrets.push(Buffer.from(jwk[m]!, "base64url"));
        const imp = await j.req("POST", "/keys/import", { name: `hsm-imp-${alg}`, algorithm: alg, jwk });
        expect(imp.status).toBe(201);
        expect(imp.body.versions[0].origin).toBe("imported");
        if (alg === "RSA-OAEP-256") {
          const enc = await j.req("POST", `/keys/${imp.body.id}/encrypt`, { plaintext: b64u("to the caller") });
          expect(text(b64u((await compactDecrypt(enc.body.jwe, pair.privateKey)).plaintext))).toBe("to the caller");
        }
      }
      const hs = crypto.getRandomValues(new Uint8Array(48));
      secrets.push(hs);
      expect((await j.req("POST", "/keys/import", { name: "hsm-imp-hs384", algorithm: "HS384", jwk: { kty: "oct", k: b64u(hs) } })).status).toBe(201);
      expectBytesAbsentFromDatabase(j.svc.dataDir, secrets);
    });

    test("every material row is a token reference locked in the token; only public-only imports are software", async () => {
      const counts = await expectMaterialInToken(j.svc);
      expect(counts.token).toBeGreaterThanOrEqual(30);
      expect(counts.software).toBe(1); // the interop suite's public-only ES256 import
    });

    test("ML-DSA is refused with algorithm_not_in_hsm", async () => {
      const r = await j.req("POST", "/keys", { name: "hsm-mldsa", algorithm: "ML-DSA-44" });
      expect([r.status, r.body.error.code]).toEqual([422, "algorithm_not_in_hsm"]);
    });

    test("a restart finds the same token keys; rotation adds a token object and both versions keep working", async () => {
      const es = await generate("hsm-restart-es", "ES512");
      const gcm = await generate("hsm-restart-gcm", "A256GCM");
      const jwt = (await j.req("POST", `/keys/${es}/jwt`, { ttl_s: 300 })).body.jwt;
      const jwe = (await j.req("POST", `/keys/${gcm}/encrypt`, { plaintext: b64u("before restart") })).body.jwe;

      await j.stop();
      j = await startJose(withHsm, { root: dirname(j.svc.dataDir) });

      expect((await j.req("POST", `/keys/${es}/jwt/validate`, { jwt })).body.valid).toBe(true);
      expect(text((await j.req("POST", `/keys/${gcm}/decrypt`, { jwe })).body.plaintext)).toBe("before restart");
      expect((await j.req("POST", `/keys/${es}/rotate`)).status).toBe(200);
      const objects = new TokenKeyObjects(j.svc.ctx.hsm!);
      for (const v of [1, 2]) await objects.find(await tokenRefOf(j.svc, "tenant-a", es, v), { type: "ec", curve: "P-521", use: "sign" });
      const jwt2 = (await j.req("POST", `/keys/${es}/jwt`, { ttl_s: 300 })).body.jwt;
      const jwks = createLocalJWKSet((await j.pub(`/t/tenant-a/jwks/${es}`)).body);
      for (const t of [jwt, jwt2]) await jwtVerify(t, jwks, { algorithms: ["ES512"] });
      // jose's own tokens validate against the token key's published half, too.
      const pair = await generateKeyPair("ES512");
      const foreign = await new SignJWT({}).setProtectedHeader({ alg: "ES512", kid: `${es}.v2` }).setExpirationTime("1m").sign(pair.privateKey);
      expect((await j.req("POST", `/keys/${es}/jwt/validate`, { jwt: foreign })).body.error.code).toBe("signature_invalid");
    });
  });
}
