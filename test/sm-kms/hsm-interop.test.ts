/**
 * sm-kms with its keyring in SoftHSM2 (Debian package softhsm2): the whole interop suite
 * (interop-suite.ts, verified and decrypted by `jose`) passes with every key in the token; then
 * no material row holds private or secret members even unsealed, BYOK material goes into the
 * token and its bytes are nowhere in the database files, a restart finds the same token keys,
 * a rotation makes a new token object, the purge sweep destroys them, and algorithms the token
 * cannot hold are refused unless the app allows software keys.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dirname } from "node:path";
import { CompactEncrypt, compactVerify, exportJWK, generateKeyPair, generateSecret, importJWK, type JWK } from "jose";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";
import { b64u, startKms, text, type Kms } from "./harness.ts";
import { kmsInteropSuite } from "./interop-suite.ts";
import { expectBytesAbsentFromDatabase, expectMaterialInToken, tokenRefOf } from "../keyring/hsm-checks.ts";
import { Keyring } from "../../src/keyring/index.ts";
import { TokenKeyObjects } from "../../src/crypto/pkcs11/index.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const softhsm: SoftHsm | undefined = await setupSoftHsm();

if (softhsm) {
  let token: SoftHsmToken;
  let kms: Kms;
  const withHsm = (app?: Record<string, unknown>) => (c: ServiceConfig) => {
    c.hsm = { module: softhsm.modulePath, token_label: token.label, pin_file: token.pinFile };
    if (app) c.app = { ...(c.app as object), ...app };
  };

  beforeAll(async () => {
    token = softhsm.createToken("kms-keys");
    kms = await startKms(withHsm());
  });

  afterAll(async () => {
    await kms?.stop();
    softhsm.cleanup();
  });

  kmsInteropSuite(() => kms);

  const create = async (name: string, algorithm: string, extra: Record<string, unknown> = {}) => {
    const r = await kms.req("POST", "/keys", { name, algorithm, ...extra });
    expect(r.status).toBe(201);
    return r.body as { id: string };
  };

  describe("key material in the HSM", () => {
    test("BYOK material goes into the token; its bytes appear nowhere in the database files", async () => {
      const secrets: Uint8Array[] = [];
      const id = (await create("hsm-byok-es", "ES256", { import_allowed: true })).id;
      const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
      const jwk = await exportJWK(privateKey);
      secrets.push(Buffer.from(jwk.d!, "base64url"));
      const wrap = async (material: JWK) => {
        const params = await kms.req("POST", `/keys/${id}/import-params`);
        const wrapped = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(material)))
          .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" })
          .encrypt(await importJWK(params.body.public_jwk, "RSA-OAEP-256"));
        return { import_token: params.body.import_token, wrapped_key: wrapped };
      };
      // The one-off import key lives in the token too: its row seals only a reference.
      const wrapping = await wrap(jwk);
      const objects = new TokenKeyObjects(kms.svc.ctx.hsm!);
      const tokenRow = await kms.svc.ctx.db.selectFrom("kms_import_tokens").selectAll().where("id", "=", wrapping.import_token).executeTakeFirstOrThrow();
      const importDoc = JSON.parse(text(b64u(await kms.svc.ctx.protector.decrypt(tokenRow.private_jwk, `sm-kms/import_tokens/tenant-a/${id}/${wrapping.import_token}`))));
      expect(Object.keys(importDoc).sort()).toEqual(["hsm", "public_jwk"]);
      expect(importDoc.public_jwk.d).toBeUndefined();
      const importKey = await objects.find(importDoc.hsm, { type: "rsa", bits: 3072, use: "decrypt" });
      expect(await objects.protection(importKey)).toMatchObject({ sensitive: true, extractable: false });
      expect((await kms.req("POST", `/keys/${id}/import`, wrapping)).status).toBe(200);
      await expect(objects.find(importDoc.hsm, { type: "rsa", bits: 3072, use: "decrypt" })).rejects.toMatchObject({ code: "not_found" });
      // A JWE to another key does not open with an import key in the token, and that key is gone after the attempt.
      const other = await wrap(jwk);
      const otherPub = await generateKeyPair("RSA-OAEP-256", { modulusLength: 3072 });
      const wrong = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(jwk))).setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" }).encrypt(otherPub.publicKey);
      const refused = await kms.req("POST", `/keys/${id}/import`, { import_token: other.import_token, wrapped_key: wrong });
      expect([refused.status, refused.body.error.code]).toEqual([400, "decryption_failed"]);
      const left = await kms.svc.ctx.hsm!.withSession((s, p11, P) => {
        p11.C_FindObjectsInit(s, [{ type: P.CKA_LABEL, value: `cryptoutil-byok/${other.import_token}` }]);
        const found = p11.C_FindObjects(s, 10);
        p11.C_FindObjectsFinal(s);
        return found.length;
      });
      expect(left).toBe(0);
      const signed = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("byok in the token") });
      expect(signed.body.kid).toBe(`${id}.v2`);
      expect(text(b64u((await compactVerify(signed.body.jws, publicKey)).payload))).toBe("byok in the token");

      const aesId = (await create("hsm-byok-aes", "A256GCM", { import_allowed: true })).id;
      const secret = await exportJWK((await generateSecret("A256GCM", { extractable: true })) as CryptoKey);
      secrets.push(Buffer.from(secret.k!, "base64url"));
      const params = await kms.req("POST", `/keys/${aesId}/import-params`);
      const wrapped = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(secret)))
        .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" })
        .encrypt(await importJWK(params.body.public_jwk, "RSA-OAEP-256"));
      expect((await kms.req("POST", `/keys/${aesId}/import`, { import_token: params.body.import_token, wrapped_key: wrapped })).status).toBe(200);
      const ct = await kms.req("POST", `/keys/${aesId}/encrypt`, { plaintext: b64u("aes byok") });
      expect(text((await kms.req("POST", `/keys/${aesId}/decrypt`, { jwe: ct.body.jwe })).body.plaintext)).toBe("aes byok");

      const versions = (await kms.req("GET", `/keys/${aesId}`)).body.versions as Array<{ origin: string }>;
      expect(versions.map((v) => v.origin)).toEqual(["generated", "imported"]);
      expectBytesAbsentFromDatabase(kms.svc.dataDir, secrets);
    });

    test("every material row (all algorithms of the interop suite) is a token reference, locked in the token", async () => {
      const counts = await expectMaterialInToken(kms.svc);
      expect(counts.software).toBe(0);
      expect(counts.token).toBeGreaterThanOrEqual(20);
    });

    test("algorithms the token cannot hold are refused with algorithm_not_in_hsm", async () => {
      for (const algorithm of ["ML-DSA-65", "ECDH-ES/X25519"]) {
        const r = await kms.req("POST", "/keys", { name: `no-${algorithm.replace("/", "_")}`, algorithm });
        expect([r.status, r.body.error.code]).toEqual([422, "algorithm_not_in_hsm"]);
      }
    });

    test("a restart finds the same token keys; rotation makes a new object; the purge sweep destroys them", async () => {
      const gcm = (await create("hsm-restart-gcm", "A256GCM")).id;
      const es = (await create("hsm-restart-es", "ES384")).id;
      const hs = (await create("hsm-restart-hs", "HS512")).id;
      const jwe = (await kms.req("POST", `/keys/${gcm}/encrypt`, { plaintext: b64u("kept across restart"), context: { a: "1" } })).body.jwe;
      const jws = (await kms.req("POST", `/keys/${es}/sign`, { payload: b64u("signed before") })).body.jws;
      const mac = (await kms.req("POST", `/keys/${hs}/mac`, { data: b64u("mac before") })).body;

      const root = dirname(kms.svc.dataDir);
      await kms.stop();
      kms = await startKms(withHsm(), { root });

      expect(text((await kms.req("POST", `/keys/${gcm}/decrypt`, { jwe, context: { a: "1" } })).body.plaintext)).toBe("kept across restart");
      expect((await kms.req("POST", `/keys/${es}/verify`, { jws })).body).toEqual({ valid: true, kid: `${es}.v1` });
      expect((await kms.req("POST", `/keys/${hs}/mac/verify`, { data: b64u("mac before"), mac: mac.mac, kid: mac.kid })).body.valid).toBe(true);

      expect((await kms.req("POST", `/keys/${gcm}/rotate`)).status).toBe(200);
      const objects = new TokenKeyObjects(kms.svc.ctx.hsm!);
      const refs = [await tokenRefOf(kms.svc, "tenant-a", gcm, 1), await tokenRefOf(kms.svc, "tenant-a", gcm, 2)];
      expect(refs[0]!.label).not.toBe(refs[1]!.label);
      for (const ref of refs) await objects.find(ref, { type: "aes" });
      const re = await kms.req("POST", `/keys/${gcm}/rewrap`, { jwe, context: { a: "1" } });
      expect(JSON.parse(text(re.body.jwe.split(".")[0])).kid).toBe(`${gcm}.v2`);

      expect((await kms.req("POST", `/keys/${gcm}/schedule-deletion`, { waiting_period_days: 7 })).status).toBe(200);
      // The app's sweep, run now with a clock past the deletion date, over the same database and token.
      const ring = new Keyring(kms.svc.ctx.db, kms.svc.ctx.protector, { hsm: kms.svc.ctx.hsm });
      const swept = await ring.sweep(new Date(Date.now() + 8 * 86_400_000));
      expect(swept.purged).toBe(1);
      for (const ref of refs) await expect(objects.find(ref, { type: "aes" })).rejects.toMatchObject({ code: "not_found" });
      expect((await kms.req("GET", `/keys/${gcm}`)).status).toBe(404);
    });

    test("with app.keyring_software_fallback, ML-DSA keys are barrier-sealed software keys; others stay in the token", async () => {
      const other = await startKms(withHsm({ keyring_software_fallback: true }));
      try {
        const r = await other.req("POST", "/keys", { name: "pq-fallback", algorithm: "ML-DSA-44" });
        expect(r.status).toBe(201);
        const signed = await other.req("POST", `/keys/${r.body.id}/sign`, { payload: b64u("pq") });
        const pub = (await other.req("GET", `/keys/${r.body.id}/public-key`)).body;
        await compactVerify(signed.body.jws, await importJWK(pub, "ML-DSA-44"));
        expect((await other.req("POST", "/keys", { name: "es-still-hsm", algorithm: "ES256" })).status).toBe(201);
        const counts = await expectMaterialInToken(other.svc, (alg) => alg === "ML-DSA-44");
        expect(counts).toEqual({ token: 1, software: 1 });
      } finally {
        await other.stop();
      }
    });
  });
}
