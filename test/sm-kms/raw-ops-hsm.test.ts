/**
 * sm-kms's raw operations (the routes the PKCS#11 module calls) on keys held in SoftHSM2:
 * ECDSA with the key's own hash, AES-GCM with a 96-bit IV and RSA-OAEP decryption run in the
 * token and agree with node's crypto; signing a caller's digest and raw RSA padding, which the
 * token path does not offer, are 422 raw_op_not_in_hsm, not a 5xx.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { constants, createPublicKey, publicEncrypt, verify } from "node:crypto";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";
import { startKms, type Kms } from "./harness.ts";

const softhsm: SoftHsm | undefined = await setupSoftHsm();
const u = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

describe.if(softhsm !== undefined)("raw operations on keys in the HSM", () => {
  let token: SoftHsmToken;
  let kms: Kms;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    token = softhsm!.createToken("kms-raw");
    kms = await startKms((c) => {
      c.hsm = { module: softhsm!.modulePath, token_label: token.label, pin_file: token.pinFile };
    });
    for (const [name, algorithm] of [["es", "ES256"], ["rs", "RS256"], ["oaep", "RSA-OAEP-256"], ["gcm", "A256GCM"]] as const) {
      const r = await kms.req("POST", "/keys", { name, algorithm });
      expect(r.status).toBe(201);
      keys[name] = r.body.id;
    }
  });
  afterAll(async () => {
    await kms?.stop();
    softhsm?.cleanup();
  });

  const publicKey = async (id: string) => {
    const { kid: _k, alg: _a, use: _u, ...jwk } = (await kms.req("GET", `/keys/${id}/public-key`)).body;
    return createPublicKey({ key: jwk, format: "jwk" });
  };

  test("ECDSA-SHA256 signs in the token; node verifies r||s; the service verifies it too", async () => {
    const data = Buffer.from("signed in the token");
    const s = await kms.req("POST", `/keys/${keys.es}/raw/sign`, { mechanism: "ECDSA-SHA256", data: u(data) });
    expect(s.status).toBe(200);
    expect(verify("sha256", data, { key: await publicKey(keys.es!), dsaEncoding: "ieee-p1363" }, Buffer.from(s.body.signature, "base64url"))).toBe(true);
    const v = await kms.req("POST", `/keys/${keys.es}/raw/verify`, { mechanism: "ECDSA-SHA256", data: u(data), signature: s.body.signature });
    expect(v.body).toEqual({ valid: true, kid: `${keys.es}.v1` });
  });

  test("a caller's digest, another hash, or PKCS#1 padding: 422 raw_op_not_in_hsm", async () => {
    for (const [id, mechanism, data] of [
      [keys.es, "ECDSA", u(new Uint8Array(32))],
      [keys.es, "ECDSA-SHA384", u("x")],
      [keys.rs, "SHA256-RSA-PKCS", u("x")],
    ] as const) {
      const r = await kms.req("POST", `/keys/${id}/raw/sign`, { mechanism, data });
      expect(r.status).toBe(422);
      expect(r.body.error.code).toBe("raw_op_not_in_hsm");
    }
  });

  test("AES-GCM with a 96-bit IV in the token: a round trip, a tampered tag, another IV length", async () => {
    const iv = u(new Uint8Array(12).fill(3));
    const e = await kms.req("POST", `/keys/${keys.gcm}/raw/encrypt`, { mechanism: "AES-GCM", plaintext: u("in the token"), iv, aad: u("hdr") });
    expect(e.status).toBe(200);
    const d = await kms.req("POST", `/keys/${keys.gcm}/raw/decrypt`, { mechanism: "AES-GCM", ciphertext: e.body.ciphertext, iv, aad: u("hdr") });
    expect(Buffer.from(d.body.plaintext, "base64url").toString()).toBe("in the token");
    const ct = Buffer.from(e.body.ciphertext, "base64url");
    ct[ct.length - 1]! ^= 1;
    const bad = await kms.req("POST", `/keys/${keys.gcm}/raw/decrypt`, { mechanism: "AES-GCM", ciphertext: u(ct), iv, aad: u("hdr") });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("decryption_failed");
    const long = await kms.req("POST", `/keys/${keys.gcm}/raw/encrypt`, { mechanism: "AES-GCM", plaintext: u("x"), iv: u(new Uint8Array(16)) });
    expect(long.status).toBe(422);
  });

  test("RSA-OAEP: node encrypts to the public key, the token decrypts; garbage is decryption_failed", async () => {
    const ct = publicEncrypt({ key: await publicKey(keys.oaep!), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, Buffer.from("oaep in the token"));
    const d = await kms.req("POST", `/keys/${keys.oaep}/raw/decrypt`, { mechanism: "RSA-OAEP", ciphertext: u(ct) });
    expect(d.status).toBe(200);
    expect(Buffer.from(d.body.plaintext, "base64url").toString()).toBe("oaep in the token");
    const junk = await kms.req("POST", `/keys/${keys.oaep}/raw/decrypt`, { mechanism: "RSA-OAEP", ciphertext: u(new Uint8Array(ct.length).fill(7)) });
    expect(junk.status).toBe(400);
    expect(junk.body.error.code).toBe("decryption_failed");
  });
});
