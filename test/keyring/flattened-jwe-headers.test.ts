/**
 * Issue 14 (1): flattened JSON JWE may carry unprotected headers (RFC 7516 §7.2.2): the shared
 * `unprotected` and the per-recipient `header`, where an independent library puts the ECDH-ES
 * `epk`. sm-kms and jose-ja decrypt such JWE for ECDH-ES and ECDH-ES+A256KW on P-256, P-384 and
 * X25519; a parameter named in two headers is refused (400), and a real schema miss names the
 * member that is wrong.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { exportJWK, FlattenedEncrypt, generateKeyPair, importJWK, type JWK } from "jose";
import { startKms, type Kms } from "../sm-kms/harness.ts";
import { startJose, type Jose } from "../jose-ja/harness.ts";

let kms: Kms;
let jose: Jose;
beforeAll(async () => {
  kms = await startKms((c) => (c.log.access = false));
  jose = await startJose((c) => (c.log.access = false));
});
afterAll(async () => {
  await kms?.stop();
  await jose?.stop();
});

const utf8 = new TextEncoder();
const plain = (b64: string) => Buffer.from(b64, "base64url").toString("utf8");

const b64u = (b: Uint8Array | string) => Buffer.from(typeof b === "string" ? utf8.encode(b) : b).toString("base64url");
const u32 = (n: number) => new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** RFC 7518 §4.6.2 Concat KDF for one SHA-256 round (256-bit keys), no apu/apv. */
async function concatKdf(z: Uint8Array, algorithmId: string): Promise<Uint8Array> {
  const id = utf8.encode(algorithmId);
  const otherInfo = cat(u32(id.length), id, u32(0), u32(0), u32(256));
  return new Uint8Array(await crypto.subtle.digest("SHA-256", cat(u32(1), z, otherInfo)));
}

/**
 * A flattened JWE whose ECDH-ES `epk` sits in the per-recipient `header`, made the way an
 * independent library does: the protected header (the AAD) holds alg, enc and kid only, and the
 * content is encrypted under it. jose fixes the ephemeral key (and for +A256KW wraps a CEK we
 * chose); the direct CEK is derived here from the same ephemeral key.
 */
async function withEpkInHeader(pub: JWK, plaintext: string, aad?: string) {
  const alg = pub.alg!;
  const crv = pub.crv!;
  const recipient = (await importJWK(pub, alg)) as CryptoKey;
  const eph = await generateKeyPair("ECDH-ES", { crv, extractable: true });
  let cek: Uint8Array;
  let encryptedKey: string | undefined;
  if (alg === "ECDH-ES+A256KW") {
    cek = crypto.getRandomValues(new Uint8Array(32));
    const f = await new FlattenedEncrypt(new Uint8Array(0))
      .setProtectedHeader({ alg, enc: "A256GCM" })
      .setContentEncryptionKey(cek)
      .setKeyManagementParameters({ epk: eph.privateKey })
      .encrypt(recipient);
    encryptedKey = f.encrypted_key;
  } else {
    const bits = crv === "P-384" ? 384 : 256;
    const z = new Uint8Array(await crypto.subtle.deriveBits({ name: crv === "X25519" ? "X25519" : "ECDH", public: recipient } as EcdhKeyDeriveParams, eph.privateKey as CryptoKey, bits));
    cek = await concatKdf(z, "A256GCM");
  }
  const { kty, x, y } = await exportJWK(eph.publicKey);
  const epk = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
  const protectedB64 = b64u(JSON.stringify({ alg, enc: "A256GCM", kid: pub.kid }));
  const aadB64 = aad === undefined ? undefined : b64u(aad);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await crypto.subtle.importKey("raw", cek as Uint8Array<ArrayBuffer>, "AES-GCM", false, ["encrypt"]);
  const additionalData = utf8.encode(aadB64 === undefined ? protectedB64 : `${protectedB64}.${aadB64}`);
  const out = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData, tagLength: 128 }, key, utf8.encode(plaintext)));
  const flat: Record<string, unknown> = { protected: protectedB64, header: { epk }, iv: b64u(iv), ciphertext: b64u(out.subarray(0, -16)), tag: b64u(out.subarray(-16)) };
  if (encryptedKey !== undefined) flat.encrypted_key = encryptedKey;
  if (aadB64 !== undefined) flat.aad = aadB64;
  return flat;
}

const CASES = [
  ["ECDH-ES", "P-256"],
  ["ECDH-ES+A256KW", "P-256"],
  ["ECDH-ES/P-384", "P-384"],
  ["ECDH-ES+A256KW/P-384", "P-384"],
  ["ECDH-ES/X25519", "X25519"],
  ["ECDH-ES+A256KW/X25519", "X25519"],
] as const;

describe("sm-kms", () => {
  for (const [algorithm, crv] of CASES) {
    test(`${algorithm}: epk in header, then in unprotected; with and without a context`, async () => {
      const created = await kms.req("POST", "/keys", { name: `hdr-${algorithm.replace(/[^a-z0-9]/gi, "-")}`, algorithm });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const pub = (await kms.req("GET", `/keys/${id}/public-key?version=1`)).body as JWK;
      expect(pub.crv).toBe(crv);

      const jwe = await withEpkInHeader(pub, `to ${algorithm}`);
      const dec = await kms.req("POST", `/keys/${id}/decrypt`, { jwe });
      expect(dec.status).toBe(200);
      expect(plain(dec.body.plaintext)).toBe(`to ${algorithm}`);

      // The shared unprotected header is not integrity protected either: the same JWE opens.
      const { header, ...rest } = jwe;
      const shared = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: { ...rest, unprotected: header } });
      expect(shared.status).toBe(200);

      // A context is bound as the JSON aad (its canonical JSON).
      const context = { purpose: "headers" };
      const bound = await withEpkInHeader(pub, "bound", JSON.stringify(context));
      const ok = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: bound, context });
      expect(ok.status).toBe(200);
      expect(plain(ok.body.plaintext)).toBe("bound");
      expect((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: bound, context: { purpose: "other" } })).status).toBe(400);
    });
  }

  test("a parameter in two headers is refused; a wrong member is named", async () => {
    const id = (await kms.req("POST", "/keys", { name: "hdr-dup", algorithm: "ECDH-ES" })).body.id as string;
    const pub = (await kms.req("GET", `/keys/${id}/public-key?version=1`)).body as JWK;
    const jwe = await withEpkInHeader(pub, "x");
    for (const dup of [{ header: { ...(jwe.header as object), kid: pub.kid } }, { unprotected: { epk: (jwe.header as { epk: unknown }).epk } }]) {
      const res = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: { ...jwe, ...dup } });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("malformed_jose");
      expect(res.body.error.message).toContain("more than one");
    }
    const wrong = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: { ...jwe, recipients: [] } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe("validation_failed");
    expect(wrong.body.error.details[0].path).toBe("jwe.recipients");
    const badHeader = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: { ...jwe, header: "epk" } });
    expect(badHeader.status).toBe(400);
    expect(badHeader.body.error.details[0].path).toBe("jwe.header");
  });
});

describe("jose-ja", () => {
  for (const [algorithm] of CASES) {
    test(`${algorithm}: epk in the per-recipient header`, async () => {
      const created = await jose.req("POST", "/keys", { name: `hdr-${algorithm.replace(/[^a-z0-9]/gi, "-")}`, algorithm });
      expect(created.status).toBe(201);
      const id = created.body.id as string;
      const jwks = (await jose.req("GET", `/jwks/${id}`)).body as { keys: JWK[] };
      const jwe = await withEpkInHeader(jwks.keys[0]!, `to ${algorithm}`);
      const dec = await jose.req("POST", `/keys/${id}/decrypt`, { jwe });
      expect(dec.status).toBe(200);
      expect(plain(dec.body.plaintext)).toBe(`to ${algorithm}`);
      const { header, ...rest } = jwe;
      expect((await jose.req("POST", `/keys/${id}/decrypt`, { jwe: { ...rest, unprotected: header } })).status).toBe(200);
      const dup = await jose.req("POST", `/keys/${id}/decrypt`, { jwe: { ...jwe, unprotected: { kid: "x" } } });
      expect(dup.status).toBe(400);
      expect(dup.body.error.code).toBe("malformed_jose");
    });
  }
});
