/**
 * Persistent keyring keys inside a PKCS#11 token: AES-256, HMAC secrets, EC (P-256, P-384,
 * P-521), RSA and Ed25519, generated in the token or imported into it, found again by label
 * and id after a restart, used there (sign, HMAC, AES-GCM, AES key wrap, ECDH, raw RSA) and
 * destroyed when their elastic key is purged.
 *
 * Guarantees:
 * - Every private or secret object made here is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE and
 *   not CKA_EXTRACTABLE, with only the usage its algorithm needs (sign, or decrypt, or derive,
 *   or wrap/unwrap): its value can never be read or wrapped out of the token.
 * - What does leave the token is per message, never a stored key: an ECDH shared secret Z
 *   (the caller runs the JOSE Concat KDF on it), a CEK unwrapped with AES key wrap, the raw
 *   RSA result (the caller removes OAEP padding in constant time). Each of these is made as a
 *   short-lived, non-sensitive session object, read once and destroyed at once.
 * - A found object must have the class and key type its algorithm expects, so a label that
 *   names another kind of key is refused, not used.
 * - Inputs are checked here (lengths, points are the token's to validate: SoftHSM2 refuses
 *   off-curve points at ECDH); failures are `AppError`s with stable codes (`toAppError`), a
 *   failed AES-GCM tag or key unwrap is `decryption_failed`.
 */
import type { Handle, Mechanism, PKCS11, Template } from "pkcs11js";
import { Buffer } from "node:buffer";
import { AppError } from "../../service/errors.ts";
import { decryptionFailed, malformed } from "../provider.ts";
import { ckrName, toAppError } from "./errors.ts";
import type { Pkcs11Lib } from "./module.ts";
import type { Pkcs11Provider } from "./provider.ts";

/** Mechanisms and key types pkcs11js does not name (PKCS#11 3.0 values). */
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;

export type TokenCurve = "P-256" | "P-384" | "P-521";

/** What kind of key object, and what it may do. */
export type TokenKeySpec =
  | { type: "aes" }
  | { type: "hmac"; bytes: number }
  | { type: "ec"; curve: TokenCurve; use: "sign" | "derive" }
  | { type: "rsa"; bits: number; use: "sign" | "decrypt" }
  | { type: "ed25519" };

/** Where a key object is: the token's label, and the object's CKA_LABEL and CKA_ID (hex). */
export interface TokenObjectRef {
  token: string;
  label: string;
  id: string;
}

/** A key object found or made in the token. Handles are valid until the provider closes. */
export interface TokenObject {
  readonly ref: TokenObjectRef;
  readonly spec: TokenKeySpec;
  readonly handle: Handle;
  /** The public JWK members (kty, crv, x, y / n, e) of an asymmetric key. */
  readonly publicJwk?: Record<string, string>;
}

export type TokenSignAlg = "ES256" | "ES384" | "ES512" | "RS256" | "PS256" | "EdDSA";

/** DER of the named-curve OIDs (CKA_EC_PARAMS). */
const EC_PARAMS: Record<TokenCurve | "Ed25519", string> = {
  "P-256": "06082a8648ce3d030107",
  "P-384": "06052b81040022",
  "P-521": "06052b81040023",
  Ed25519: "06032b6570",
};
const FIELD_BYTES: Record<TokenCurve, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
function fromB64u(s: unknown, what: string): Buffer {
  if (typeof s !== "string" || !/^[A-Za-z0-9_-]+$/.test(s)) throw malformed(`JWK member ${what} must be base64url`);
  return Buffer.from(s, "base64url");
}

/** A DER OCTET STRING (CKA_EC_POINT's encoding), short or long length form. */
function derOctets(value: Uint8Array): Buffer {
  const n = value.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([0x04, ...len]), value]);
}

/** The point inside CKA_EC_POINT: DER OCTET STRING, or (leniently) the bare point. */
function unwrapPoint(value: Buffer, size: number): Buffer {
  if (value.length === size) return value;
  if (value[0] === 0x04) {
    const l = value[1]!;
    const [len, off] = l < 0x80 ? [l, 2] : l === 0x81 ? [value[2]!, 3] : l === 0x82 ? [(value[2]! << 8) | value[3]!, 4] : [-1, 0];
    if (len === size && value.length === off + len) return value.subarray(off);
  }
  throw malformed("the token returned a public point in an unknown encoding");
}

/** A big-endian integer padded to `size` bytes (JWK EC members are fixed-length). */
function pad(b: Buffer, size: number): Buffer {
  if (b.length > size) throw malformed("JWK member is too long for its curve");
  return b.length === size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

const HMAC_MECH = (P: Pkcs11Lib) => ({ "SHA-256": P.CKM_SHA256_HMAC, "SHA-384": P.CKM_SHA384_HMAC, "SHA-512": P.CKM_SHA512_HMAC }) as const;
type Hash = "SHA-256" | "SHA-384" | "SHA-512";

/** The keyring's key objects in one token, over an open `Pkcs11Provider`. */
export class TokenKeyObjects {
  constructor(readonly provider: Pkcs11Provider) {}

  /** The token's label (the `token` of every ref made here). */
  get token(): string {
    return this.provider.token;
  }

  /** Whether the token can generate and use keys of `spec` (its mechanisms are listed). */
  supports(spec: TokenKeySpec): boolean {
    const P = this.provider.lib;
    {
      const has = (...m: number[]) => m.every((x) => this.provider.hasMechanism(x));
      switch (spec.type) {
        case "aes":
          return has(P.CKM_AES_KEY_GEN, P.CKM_AES_GCM, P.CKM_AES_KEY_WRAP);
        case "hmac":
          return has(P.CKM_GENERIC_SECRET_KEY_GEN, P.CKM_SHA256_HMAC, P.CKM_SHA384_HMAC, P.CKM_SHA512_HMAC);
        case "ec":
          return has(P.CKM_EC_KEY_PAIR_GEN, spec.use === "sign" ? P.CKM_ECDSA : P.CKM_ECDH1_DERIVE);
        case "rsa":
          return has(P.CKM_RSA_PKCS_KEY_PAIR_GEN, ...(spec.use === "sign" ? [P.CKM_SHA256_RSA_PKCS, P.CKM_SHA256_RSA_PKCS_PSS] : [P.CKM_RSA_X_509]));
        case "ed25519":
          return has(CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA);
      }
    }
  }

  // ---- templates ----

  private checkRef(ref: { label: string; id: string }): Buffer {
    if (typeof ref?.label !== "string" || ref.label.length < 1 || ref.label.length > 128) throw malformed("key label must be 1..128 characters");
    if (typeof ref.id !== "string" || !/^(?:[0-9a-f]{2}){1,64}$/.test(ref.id)) throw malformed("key id must be 1..64 bytes of lowercase hex");
    return Buffer.from(ref.id, "hex");
  }

  private protectedTemplate(P: Pkcs11Lib, label: string, id: Buffer): Template {
    return [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_ID, value: id },
    ];
  }

  private publicTemplate(P: Pkcs11Lib, label: string, id: Buffer, keyType: number): Template {
    return [
      { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
      { type: P.CKA_KEY_TYPE, value: keyType },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: false },
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_ID, value: id },
    ];
  }

  /** Class, key type and usage attributes of the private/secret object of `spec`. */
  private usage(P: Pkcs11Lib, spec: TokenKeySpec): Template {
    switch (spec.type) {
      case "aes":
        return [
          { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
          { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
          { type: P.CKA_ENCRYPT, value: true },
          { type: P.CKA_DECRYPT, value: true },
          { type: P.CKA_WRAP, value: true },
          { type: P.CKA_UNWRAP, value: true },
        ];
      case "hmac":
        return [
          { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
          { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
          { type: P.CKA_SIGN, value: true },
          { type: P.CKA_VERIFY, value: true },
        ];
      case "ec":
        return [
          { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
          { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
          { type: spec.use === "sign" ? P.CKA_SIGN : P.CKA_DERIVE, value: true },
        ];
      case "rsa":
        return [
          { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
          { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
          { type: spec.use === "sign" ? P.CKA_SIGN : P.CKA_DECRYPT, value: true },
        ];
      case "ed25519":
        return [
          { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
          { type: P.CKA_KEY_TYPE, value: CKK_EC_EDWARDS },
          { type: P.CKA_SIGN, value: true },
        ];
    }
  }

  private findAll(p11: PKCS11, s: Handle, template: Template): Handle[] {
    p11.C_FindObjectsInit(s, template);
    try {
      const found: Handle[] = [];
      for (;;) {
        const batch = p11.C_FindObjects(s, 32);
        found.push(...batch);
        if (batch.length < 32) return found;
      }
    } finally {
      p11.C_FindObjectsFinal(s);
    }
  }

  /** The public JWK members of a generated pair, read from its public object. */
  private readPublic(p11: PKCS11, P: Pkcs11Lib, s: Handle, pub: Handle, spec: TokenKeySpec): Record<string, string> | undefined {
    if (spec.type === "ec") {
      const [pt] = p11.C_GetAttributeValue(s, pub, [{ type: P.CKA_EC_POINT }]);
      const n = FIELD_BYTES[spec.curve];
      const point = unwrapPoint(pt!.value as Buffer, 2 * n + 1);
      if (point[0] !== 0x04) throw malformed("the token returned a compressed EC point");
      return { kty: "EC", crv: spec.curve, x: b64u(point.subarray(1, 1 + n)), y: b64u(point.subarray(1 + n)) };
    }
    if (spec.type === "ed25519") {
      const [pt] = p11.C_GetAttributeValue(s, pub, [{ type: P.CKA_EC_POINT }]);
      return { kty: "OKP", crv: "Ed25519", x: b64u(unwrapPoint(pt!.value as Buffer, 32)) };
    }
    if (spec.type === "rsa") {
      const [n, e] = p11.C_GetAttributeValue(s, pub, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }]);
      return { kty: "RSA", n: b64u(n!.value as Buffer), e: b64u(e!.value as Buffer) };
    }
    return undefined;
  }

  private async refuseDuplicate(label: string, id: Buffer): Promise<void> {
    const existing = await this.provider.withSession((s, p11, P) => this.findAll(p11, s, [{ type: P.CKA_LABEL, value: label }, { type: P.CKA_ID, value: id }]));
    if (existing.length > 0) throw new AppError("conflict", `a key labelled '${label}' with this id already exists in the token`);
  }

  // ---- lifecycle ----

  /**
   * Generates a persistent key of `spec` in the token under `label` and `id` (hex).
   * Refuses (`conflict`) when that label and id are taken.
   */
  async generate(spec: TokenKeySpec, at: { label: string; id: string }): Promise<TokenObject> {
    const id = this.checkRef(at);
    if (spec.type === "hmac" && (!Number.isInteger(spec.bytes) || spec.bytes < 32 || spec.bytes > 512)) throw malformed("HMAC keys are 32..512 bytes");
    if (spec.type === "rsa" && ![2048, 3072, 4096].includes(spec.bits)) throw malformed("RSA keys are 2048, 3072 or 4096 bits");
    await this.refuseDuplicate(at.label, id);
    const ref = { token: this.token, label: at.label, id: at.id };
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const priv = [...this.usage(P, spec), ...this.protectedTemplate(P, at.label, id)];
        switch (spec.type) {
          case "aes":
          case "hmac": {
            const mech = spec.type === "aes" ? P.CKM_AES_KEY_GEN : P.CKM_GENERIC_SECRET_KEY_GEN;
            const handle = await p11.C_GenerateKeyAsync(s, { mechanism: mech }, [...priv, { type: P.CKA_VALUE_LEN, value: spec.type === "aes" ? 32 : spec.bytes }]);
            return { ref, spec, handle };
          }
          case "ec":
          case "ed25519": {
            const ed = spec.type === "ed25519";
            const params = Buffer.from(EC_PARAMS[ed ? "Ed25519" : spec.curve], "hex");
            const pubT = [...this.publicTemplate(P, at.label, id, ed ? CKK_EC_EDWARDS : P.CKK_EC), { type: P.CKA_EC_PARAMS, value: params }];
            if (ed || spec.use === "sign") pubT.push({ type: P.CKA_VERIFY, value: true });
            const pair = await p11.C_GenerateKeyPairAsync(s, { mechanism: ed ? CKM_EC_EDWARDS_KEY_PAIR_GEN : P.CKM_EC_KEY_PAIR_GEN }, pubT, priv);
            return { ref, spec, handle: pair.privateKey, publicJwk: this.readPublic(p11, P, s, pair.publicKey, spec) };
          }
          case "rsa": {
            const pubT = [
              ...this.publicTemplate(P, at.label, id, P.CKK_RSA),
              { type: P.CKA_MODULUS_BITS, value: spec.bits },
              { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
              { type: spec.use === "sign" ? P.CKA_VERIFY : P.CKA_ENCRYPT, value: true },
            ];
            const pair = await p11.C_GenerateKeyPairAsync(s, { mechanism: P.CKM_RSA_PKCS_KEY_PAIR_GEN }, pubT, priv);
            return { ref, spec, handle: pair.privateKey, publicJwk: this.readPublic(p11, P, s, pair.publicKey, spec) };
          }
        }
      });
    } catch (e) {
      throw toAppError(e, "generate keyring key");
    }
  }

  /**
   * Imports a private or secret JWK (already checked by the caller against its algorithm) into
   * the token as a persistent, sensitive, non-extractable object. The JWK's values pass
   * through here once, into the token; nothing is kept.
   */
  async import(spec: TokenKeySpec, jwk: Record<string, unknown>, at: { label: string; id: string }): Promise<TokenObject> {
    const id = this.checkRef(at);
    await this.refuseDuplicate(at.label, id);
    const ref = { token: this.token, label: at.label, id: at.id };
    const secrets: Buffer[] = [];
    const secret = (m: string) => {
      const b = fromB64u(jwk[m], m);
      secrets.push(b);
      return b;
    };
    try {
      return await this.provider.withSession((s, p11, P): TokenObject => {
        const priv = [...this.usage(P, spec), ...this.protectedTemplate(P, at.label, id)];
        switch (spec.type) {
          case "aes":
          case "hmac": {
            const k = secret("k");
            if (spec.type === "aes" && k.length !== 32) throw malformed("AES keys here are 256 bits");
            return { ref, spec, handle: p11.C_CreateObject(s, [...priv, { type: P.CKA_VALUE, value: k }]) };
          }
          case "ec": {
            const n = FIELD_BYTES[spec.curve];
            const params = Buffer.from(EC_PARAMS[spec.curve], "hex");
            const x = pad(fromB64u(jwk.x, "x"), n);
            const y = pad(fromB64u(jwk.y, "y"), n);
            const handle = p11.C_CreateObject(s, [...priv, { type: P.CKA_EC_PARAMS, value: params }, { type: P.CKA_VALUE, value: pad(secret("d"), n) }]);
            const pubT = [...this.publicTemplate(P, at.label, id, P.CKK_EC), { type: P.CKA_EC_PARAMS, value: params }];
            p11.C_CreateObject(s, [...pubT, { type: P.CKA_EC_POINT, value: derOctets(Buffer.concat([Buffer.from([4]), x, y])) }]);
            return { ref, spec, handle, publicJwk: { kty: "EC", crv: spec.curve, x: b64u(x), y: b64u(y) } };
          }
          case "ed25519": {
            const params = Buffer.from(EC_PARAMS.Ed25519, "hex");
            const x = fromB64u(jwk.x, "x");
            const d = secret("d");
            if (x.length !== 32 || d.length !== 32) throw malformed("Ed25519 keys are 32 bytes");
            const handle = p11.C_CreateObject(s, [...priv, { type: P.CKA_EC_PARAMS, value: params }, { type: P.CKA_VALUE, value: d }]);
            p11.C_CreateObject(s, [...this.publicTemplate(P, at.label, id, CKK_EC_EDWARDS), { type: P.CKA_EC_PARAMS, value: params }, { type: P.CKA_EC_POINT, value: derOctets(x) }]);
            return { ref, spec, handle, publicJwk: { kty: "OKP", crv: "Ed25519", x: b64u(x) } };
          }
          case "rsa": {
            const n = fromB64u(jwk.n, "n");
            const e = fromB64u(jwk.e, "e");
            const handle = p11.C_CreateObject(s, [
              ...priv,
              { type: P.CKA_MODULUS, value: n },
              { type: P.CKA_PUBLIC_EXPONENT, value: e },
              { type: P.CKA_PRIVATE_EXPONENT, value: secret("d") },
              { type: P.CKA_PRIME_1, value: secret("p") },
              { type: P.CKA_PRIME_2, value: secret("q") },
              { type: P.CKA_EXPONENT_1, value: secret("dp") },
              { type: P.CKA_EXPONENT_2, value: secret("dq") },
              { type: P.CKA_COEFFICIENT, value: secret("qi") },
            ]);
            p11.C_CreateObject(s, [
              ...this.publicTemplate(P, at.label, id, P.CKK_RSA),
              { type: P.CKA_MODULUS, value: n },
              { type: P.CKA_PUBLIC_EXPONENT, value: e },
              { type: spec.use === "sign" ? P.CKA_VERIFY : P.CKA_ENCRYPT, value: true },
            ]);
            return { ref, spec, handle, publicJwk: { kty: "RSA", n: b64u(n), e: b64u(e) } };
          }
        }
      });
    } catch (e) {
      // An object half-made (private without public) is removed so the label can be reused.
      await this.destroy(ref).catch(() => undefined);
      throw toAppError(e, "import keyring key");
    } finally {
      for (const b of secrets) b.fill(0);
    }
  }

  /**
   * Finds the private/secret object at `ref` again (after a restart handles change; label and
   * id do not). `not_found` when absent; `stored_material_corrupt` when it is another kind of key.
   */
  async find(ref: TokenObjectRef, spec: TokenKeySpec): Promise<TokenObject> {
    const id = this.checkRef(ref);
    if (ref.token !== this.token) throw new AppError("not_found", `the key lives in token '${ref.token}', not in '${this.token}'`);
    try {
      return await this.provider.withSession((s, p11, P) => {
        const want = this.usage(P, spec);
        const cls = want[0]!.value as number;
        const found = this.findAll(p11, s, [{ type: P.CKA_CLASS, value: cls }, { type: P.CKA_LABEL, value: ref.label }, { type: P.CKA_ID, value: id }]);
        if (found.length === 0) throw new AppError("not_found", `no key labelled '${ref.label}' in the token`);
        if (found.length > 1) throw new AppError("stored_material_corrupt", `${found.length} keys are labelled '${ref.label}' in the token`);
        const handle = found[0]!;
        const [kt] = p11.C_GetAttributeValue(s, handle, [{ type: P.CKA_KEY_TYPE }]);
        if ((kt!.value as Buffer).readUInt32LE(0) !== (want[1]!.value as number)) {
          throw new AppError("stored_material_corrupt", `the key labelled '${ref.label}' is not of the expected type`);
        }
        return { ref: { ...ref }, spec, handle };
      });
    } catch (e) {
      throw toAppError(e, "find keyring key");
    }
  }

  /**
   * Destroys every object (private, public, secret) at `ref`, or with its label whatever the id
   * when `ref.id` is omitted; returns how many.
   */
  async destroy(ref: { label: string; id?: string }): Promise<number> {
    const id = ref.id === undefined ? undefined : this.checkRef(ref as { label: string; id: string });
    if (typeof ref?.label !== "string" || ref.label.length < 1 || ref.label.length > 128) throw malformed("key label must be 1..128 characters");
    try {
      return await this.provider.withSession((s, p11, P) => {
        const found = this.findAll(p11, s, [{ type: P.CKA_LABEL, value: ref.label }, ...(id ? [{ type: P.CKA_ID, value: id }] : [])]);
        for (const h of found) p11.C_DestroyObject(s, h);
        return found.length;
      });
    } catch (e) {
      throw toAppError(e, "destroy keyring key");
    }
  }

  /** The protection attributes of an object, as the token reports them. */
  async protection(obj: TokenObject): Promise<{ sensitive: boolean; extractable: boolean; neverExtractable: boolean; persistent: boolean }> {
    try {
      return await this.provider.withSession((s, p11, P) => {
        const [sens, ext, never, tok] = p11
          .C_GetAttributeValue(s, obj.handle, [{ type: P.CKA_SENSITIVE }, { type: P.CKA_EXTRACTABLE }, { type: P.CKA_NEVER_EXTRACTABLE }, { type: P.CKA_TOKEN }])
          .map((a) => (a.value as Buffer)[0] === 1);
        return { sensitive: !!sens, extractable: !!ext, neverExtractable: !!never, persistent: !!tok };
      });
    } catch (e) {
      throw toAppError(e, "read key attributes");
    }
  }

  /**
   * Asks the token for the object's secret value (CKA_VALUE, or CKA_PRIVATE_EXPONENT for RSA).
   * The token refuses (`forbidden`) for every object made here: this exists for audits and tests.
   */
  async readValue(obj: TokenObject): Promise<Uint8Array> {
    try {
      return await this.provider.withSession((s, p11, P) => {
        const [v] = p11.C_GetAttributeValue(s, obj.handle, [{ type: obj.spec.type === "rsa" ? P.CKA_PRIVATE_EXPONENT : P.CKA_VALUE }]);
        return new Uint8Array(v!.value as Buffer);
      });
    } catch (e) {
      throw toAppError(e, "read key value");
    }
  }

  // ---- operations ----

  private expect(obj: TokenObject, ...types: TokenKeySpec["type"][]): void {
    if (!obj || !types.includes(obj.spec.type) || obj.ref?.token !== this.token) throw new AppError("bad_request", `this operation takes a ${types.join(" or ")} key of token '${this.token}'`);
  }

  /** A JWS signature (ECDSA as r ‖ s, RSA PKCS#1 v1.5 or PSS, Ed25519) over `data`, made in the token. */
  async sign(obj: TokenObject, alg: TokenSignAlg, data: Uint8Array): Promise<Uint8Array> {
    if (!(data instanceof Uint8Array)) throw malformed("data must be bytes");
    const P0 = this.provider.lib;
    let mech: Mechanism;
    let input = Buffer.from(data);
    let outLen: number;
    if (alg === "ES256" || alg === "ES384" || alg === "ES512") {
      this.expect(obj, "ec");
      const spec = obj.spec as Extract<TokenKeySpec, { type: "ec" }>;
      const curve = { ES256: "P-256", ES384: "P-384", ES512: "P-521" }[alg];
      if (spec.curve !== curve || spec.use !== "sign") throw new AppError("bad_request", `${alg} needs a ${curve} signing key`);
      // CKM_ECDSA signs a digest (SoftHSM2 lacks CKM_ECDSA_SHA384/512); the message is not secret.
      const hash = { ES256: "SHA-256", ES384: "SHA-384", ES512: "SHA-512" }[alg];
      input = Buffer.from(await crypto.subtle.digest(hash, new Uint8Array(data)));
      mech = { mechanism: P0.CKM_ECDSA };
      outLen = 2 * FIELD_BYTES[spec.curve];
    } else if (alg === "RS256" || alg === "PS256") {
      this.expect(obj, "rsa");
      const spec = obj.spec as Extract<TokenKeySpec, { type: "rsa" }>;
      if (spec.use !== "sign") throw new AppError("bad_request", `${alg} needs an RSA signing key`);
      mech =
        alg === "RS256"
          ? { mechanism: P0.CKM_SHA256_RSA_PKCS }
          : { mechanism: P0.CKM_SHA256_RSA_PKCS_PSS, parameter: { type: P0.CK_PARAMS_RSA_PSS, hashAlg: P0.CKM_SHA256, mgf: P0.CKG_MGF1_SHA256, saltLen: 32 } as never };
      outLen = 1024;
    } else if (alg === "EdDSA") {
      this.expect(obj, "ed25519");
      mech = { mechanism: CKM_EDDSA };
      outLen = 64;
    } else {
      throw malformed(`unsupported signature algorithm ${String(alg)}`);
    }
    try {
      return await this.provider.withSession(async (s, p11) => {
        p11.C_SignInit(s, mech, obj.handle);
        return new Uint8Array(await p11.C_SignAsync(s, input, Buffer.alloc(outLen)));
      });
    } catch (e) {
      throw toAppError(e, `${alg} sign`);
    }
  }

  /** HMAC-`hash` of `data` with an HMAC secret, in the token. */
  async hmac(obj: TokenObject, hash: Hash, data: Uint8Array): Promise<Uint8Array> {
    this.expect(obj, "hmac");
    if (!(data instanceof Uint8Array)) throw malformed("data must be bytes");
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const mech = HMAC_MECH(P)[hash];
        if (mech === undefined) throw malformed(`unsupported hash ${String(hash)}`);
        p11.C_SignInit(s, { mechanism: mech }, obj.handle);
        return new Uint8Array(await p11.C_SignAsync(s, Buffer.from(data), Buffer.alloc(64)));
      });
    } catch (e) {
      throw toAppError(e, "HMAC");
    }
  }

  /** AES-256-GCM (96-bit IV, 128-bit tag appended) in the token. */
  async aesGcmEncrypt(obj: TokenObject, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    return this.aesGcm(obj, iv, data, aad, true);
  }

  /** AES-256-GCM decrypt of ciphertext ‖ tag; a wrong tag is `decryption_failed`. */
  async aesGcmDecrypt(obj: TokenObject, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    return this.aesGcm(obj, iv, data, aad, false);
  }

  private async aesGcm(obj: TokenObject, iv: Uint8Array, data: Uint8Array, aad: Uint8Array | undefined, encrypt: boolean): Promise<Uint8Array> {
    this.expect(obj, "aes");
    if (!(iv instanceof Uint8Array) || iv.length !== 12) throw malformed("AES-GCM takes a 96-bit IV");
    if (!(data instanceof Uint8Array) || (!encrypt && data.length < 16)) throw malformed("AES-GCM input is too short");
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const mech: Mechanism = { mechanism: P.CKM_AES_GCM, parameter: { type: P.CK_PARAMS_AES_GCM, iv: Buffer.from(iv), ivBits: 96, tagBits: 128, aad: aad && Buffer.from(aad) } as never };
        const input = Buffer.from(data);
        if (encrypt) {
          p11.C_EncryptInit(s, mech, obj.handle);
          return new Uint8Array(await p11.C_EncryptAsync(s, input, Buffer.alloc(data.length + 16)));
        }
        p11.C_DecryptInit(s, mech, obj.handle);
        return new Uint8Array(await p11.C_DecryptAsync(s, input, Buffer.alloc(data.length)));
      });
    } catch (e) {
      // Inputs were checked above, so a token error on decrypt is a failed tag (SoftHSM2: CKR_GENERAL_ERROR).
      if (!encrypt && ["CKR_ENCRYPTED_DATA_INVALID", "CKR_ENCRYPTED_DATA_LEN_RANGE", "CKR_GENERAL_ERROR"].includes(ckrName(e) ?? "")) throw decryptionFailed();
      throw toAppError(e, encrypt ? "AES-GCM encrypt" : "AES-GCM decrypt");
    }
  }

  /** RFC 3394 wrap of a per-message key (`cek`, 16..64 bytes) under an AES key of the token. */
  async aesKwWrap(obj: TokenObject, cek: Uint8Array): Promise<Uint8Array> {
    this.expect(obj, "aes");
    if (!(cek instanceof Uint8Array) || cek.length < 16 || cek.length > 64 || cek.length % 8 !== 0) throw malformed("the key to wrap must be 16..64 bytes, a multiple of 8");
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const t = p11.C_CreateObject(s, this.transient(P, cek.length, cek));
        try {
          return new Uint8Array(await p11.C_WrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP }, obj.handle, t, Buffer.alloc(cek.length + 8)));
        } finally {
          p11.C_DestroyObject(s, t);
        }
      });
    } catch (e) {
      throw toAppError(e, "AES key wrap");
    }
  }

  /** RFC 3394 unwrap of a per-message key; a failed integrity check is `decryption_failed`. */
  async aesKwUnwrap(obj: TokenObject, wrapped: Uint8Array): Promise<Uint8Array> {
    this.expect(obj, "aes");
    if (!(wrapped instanceof Uint8Array) || wrapped.length < 24 || wrapped.length > 72 || wrapped.length % 8 !== 0) throw decryptionFailed();
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const h = await p11.C_UnwrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP }, obj.handle, Buffer.from(wrapped), this.transient(P));
        return this.readOnce(p11, P, s, h);
      });
    } catch (e) {
      if (e instanceof AppError) throw e;
      // A token that is gone is the service's fault; any other refusal is a wrapped key that does not open.
      const mapped = toAppError(e, "AES key unwrap");
      if (mapped.code === "unavailable") throw mapped;
      throw decryptionFailed();
    }
  }

  /** ECDH (CKD_NULL) of a P-256/P-384 key with `peer` (SEC1 uncompressed) in the token; returns Z. */
  async ecdh(obj: TokenObject, peer: Uint8Array): Promise<Uint8Array> {
    this.expect(obj, "ec");
    const spec = obj.spec as Extract<TokenKeySpec, { type: "ec" }>;
    const n = FIELD_BYTES[spec.curve];
    if (spec.use !== "derive") throw new AppError("bad_request", "ECDH needs a key-agreement key");
    if (!(peer instanceof Uint8Array) || peer.length !== 2 * n + 1 || peer[0] !== 4) throw malformed(`the peer key is not an uncompressed ${spec.curve} point`);
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        const mech: Mechanism = { mechanism: P.CKM_ECDH1_DERIVE, parameter: { type: P.CK_PARAMS_EC_DH, kdf: P.CKD_NULL, publicData: Buffer.from(peer) } as never };
        const h = await p11.C_DeriveKeyAsync(s, mech, obj.handle, this.transient(P, n));
        return this.readOnce(p11, P, s, h);
      });
    } catch (e) {
      // SoftHSM2 reports an off-curve point only as CKR_GENERAL_ERROR: the caller's input.
      if (ckrName(e) === "CKR_GENERAL_ERROR") throw malformed(`the peer key is not a valid ${spec.curve} point`);
      throw toAppError(e, "ECDH");
    }
  }

  /** The raw RSA private operation (CKM_RSA_X_509) on `c`: the k-byte encoded message, padding still on. */
  async rsaDecryptRaw(obj: TokenObject, c: Uint8Array): Promise<Uint8Array> {
    this.expect(obj, "rsa");
    const spec = obj.spec as Extract<TokenKeySpec, { type: "rsa" }>;
    if (spec.use !== "decrypt") throw new AppError("bad_request", "RSA decryption needs a decryption key");
    if (!(c instanceof Uint8Array) || c.length < 1 || c.length > 1024) throw decryptionFailed();
    try {
      return await this.provider.withSession(async (s, p11, P) => {
        p11.C_DecryptInit(s, { mechanism: P.CKM_RSA_X_509 }, obj.handle);
        return new Uint8Array(await p11.C_DecryptAsync(s, Buffer.from(c), Buffer.alloc(1024)));
      });
    } catch (e) {
      // Out-of-range input (c >= n, wrong length) is a bad JWE, never a fault of the service.
      if (["CKR_ENCRYPTED_DATA_LEN_RANGE", "CKR_ENCRYPTED_DATA_INVALID", "CKR_DATA_LEN_RANGE", "CKR_GENERAL_ERROR"].includes(ckrName(e) ?? "")) throw decryptionFailed();
      throw toAppError(e, "RSA decrypt");
    }
  }

  /** A non-sensitive session secret for a per-message value that must be read out (`bytes` unset: from the mechanism). */
  private transient(P: Pkcs11Lib, bytes?: number, value?: Uint8Array): Template {
    const t: Template = [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
      { type: P.CKA_TOKEN, value: false },
      { type: P.CKA_SENSITIVE, value: false },
      { type: P.CKA_EXTRACTABLE, value: true },
      { type: P.CKA_LABEL, value: "cryptoutil-transient" },
    ];
    if (value) t.push({ type: P.CKA_VALUE, value: Buffer.from(value) });
    else if (bytes !== undefined) t.push({ type: P.CKA_VALUE_LEN, value: bytes });
    return t;
  }

  /** Reads a transient object's value and destroys the object, whatever happens. */
  private readOnce(p11: PKCS11, P: Pkcs11Lib, s: Handle, h: Handle): Uint8Array {
    try {
      const [v] = p11.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE }]);
      const buf = v!.value as Buffer;
      const out = new Uint8Array(buf);
      buf.fill(0);
      return out;
    } finally {
      p11.C_DestroyObject(s, h);
    }
  }
}

