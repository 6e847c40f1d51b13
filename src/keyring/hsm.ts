/**
 * Keyring material held in a PKCS#11 token (an HSM): which algorithms a token can hold, where
 * each material version lives in it, and generating, importing, finding and destroying it.
 *
 * Guarantees:
 * - A version's token object is labelled from its tenant, key id and version, with a random
 *   CKA_ID; the sealed row keeps both, so it is found again after a restart. Opening checks the
 *   label is the version's own: a reference copied to another row does not open there. A
 *   random id means an object left by a crash (made, never stored) never blocks that version,
 *   and concurrent rotations each remove only their own losing object; purge removes by label.
 * - Objects are persistent, sensitive and non-extractable (`TokenKeyObjects`); the database
 *   keeps only the reference and, for asymmetric keys, the public JWK, both barrier-sealed.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import type { JWK } from "jose";
import { AppError } from "../service/errors.ts";
import type { TokenKeyObjects, TokenKeySpec, TokenObject, TokenObjectRef } from "../crypto/pkcs11/keyring-objects.ts";
import type { AlgorithmSpec } from "./algorithms.ts";
import { decodeBase64url } from "./base64url.ts";

/** What a material row holds (barrier-sealed) for a version whose key lives in a token. */
export interface HsmMaterialDoc {
  hsm: TokenObjectRef;
  /** The public JWK of asymmetric keys (kty and key members only). */
  public_jwk?: JWK;
}

export const algorithmNotInHsm = (name: string) =>
  new AppError("algorithm_not_in_hsm", `algorithm ${name} cannot be held in the configured HSM, and software keys are not allowed (app.keyring_software_fallback)`, {
    status: 422,
  });

/**
 * The token object an algorithm needs, or undefined when no PKCS#11 key type fits it (ML-DSA,
 * X25519). `secretBytes` is an imported HMAC key's length.
 */
export function tokenSpecOf(spec: AlgorithmSpec, secretBytes?: number): TokenKeySpec | undefined {
  switch (spec.name) {
    case "A256GCM":
    case "A256KW":
    case "A256GCMKW":
      return { type: "aes" };
    case "HS256":
    case "HS384":
    case "HS512":
      return { type: "hmac", bytes: secretBytes ?? Number(spec.name.slice(2)) / 8 };
    case "ES256":
      return { type: "ec", curve: "P-256", use: "sign" };
    case "ES384":
      return { type: "ec", curve: "P-384", use: "sign" };
    case "ES512":
      return { type: "ec", curve: "P-521", use: "sign" };
    case "RS256":
    case "PS256":
      return { type: "rsa", bits: 2048, use: "sign" };
    case "RSA-OAEP-256":
      return { type: "rsa", bits: 2048, use: "decrypt" };
    case "EdDSA":
      return { type: "ed25519" };
  }
  if (spec.jose.startsWith("ECDH-ES") && (spec.crv === "P-256" || spec.crv === "P-384")) return { type: "ec", curve: spec.crv, use: "derive" };
  return undefined;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const utf8 = new TextEncoder();

/** The CKA_LABEL of a version's token object: derived from tenant, key and version. */
export function tokenObjectLabel(tenant: string, keyId: string, version: number): string {
  return `cryptoutil-keyring/${hex(sha256(utf8.encode(tenant))).slice(0, 16)}/${keyId}/v${version}`;
}

/** Label and a fresh random CKA_ID for a new object of a version. */
function newObjectName(tenant: string, keyId: string, version: number): { label: string; id: string } {
  return { label: tokenObjectLabel(tenant, keyId, version), id: hex(crypto.getRandomValues(new Uint8Array(16))) };
}

/** The keyring's use of one token. */
export class KeyringHsm {
  constructor(readonly objects: TokenKeyObjects) {}

  /** Whether this token can hold `spec`'s material (for imports: of this JWK). */
  holds(spec: AlgorithmSpec, jwk?: JWK): boolean {
    const t = tokenSpecOf(spec, jwk?.kty === "oct" && jwk.k ? decodeBase64url(jwk.k).length : undefined);
    return t !== undefined && this.objects.supports(t);
  }

  private specFor(spec: AlgorithmSpec, jwk?: JWK): TokenKeySpec {
    const t = tokenSpecOf(spec, jwk?.kty === "oct" && jwk.k ? decodeBase64url(jwk.k).length : undefined);
    if (!t) throw algorithmNotInHsm(spec.name);
    if (t.type === "rsa" && jwk?.n) t.bits = decodeBase64url(jwk.n).length * 8;
    return t;
  }

  /** A new version's key, generated in the token; its sealed document and the live object. */
  async generate(spec: AlgorithmSpec, tenant: string, keyId: string, version: number): Promise<{ doc: HsmMaterialDoc; object: TokenObject }> {
    const object = await this.objects.generate(this.specFor(spec), newObjectName(tenant, keyId, version));
    return { doc: { hsm: object.ref, ...(object.publicJwk ? { public_jwk: object.publicJwk as JWK } : {}) }, object };
  }

  /** A caller's private/secret JWK (already checked against the algorithm) imported into the token. */
  async import(spec: AlgorithmSpec, jwk: JWK, tenant: string, keyId: string, version: number): Promise<{ doc: HsmMaterialDoc; object: TokenObject }> {
    const object = await this.objects.import(this.specFor(spec, jwk), jwk as Record<string, unknown>, newObjectName(tenant, keyId, version));
    return { doc: { hsm: object.ref, ...(object.publicJwk ? { public_jwk: object.publicJwk as JWK } : {}) }, object };
  }

  /** Finds a version's object again, refusing a reference that is not this version's own name. */
  async open(spec: AlgorithmSpec, doc: HsmMaterialDoc, tenant: string, keyId: string, version: number): Promise<TokenObject> {
    if (doc.hsm?.label !== tokenObjectLabel(tenant, keyId, version) || typeof doc.hsm.id !== "string") {
      throw new AppError("stored_material_corrupt", "the stored HSM reference does not belong to this key version");
    }
    const t = tokenSpecOf(spec);
    if (!t) throw new AppError("stored_material_corrupt", `algorithm ${spec.name} is not held in a token`);
    if (t.type === "hmac") return this.findHmac(doc.hsm, spec);
    if (t.type === "rsa" && doc.public_jwk?.n) t.bits = decodeBase64url(doc.public_jwk.n).length * 8;
    return this.objects.find(doc.hsm, t);
  }

  /** HMAC objects carry their length in the token; the spec's default is only a lower bound. */
  private async findHmac(ref: TokenObjectRef, spec: AlgorithmSpec): Promise<TokenObject> {
    return this.objects.find(ref, { type: "hmac", bytes: Number(spec.name.slice(2)) / 8 });
  }

  /** Destroys one object (a version made but not stored). */
  async discard(object: TokenObject): Promise<void> {
    await this.objects.destroy(object.ref);
  }

  /** Destroys every object of a version (purge), whatever its id; absent objects are not an error. */
  async destroyVersion(tenant: string, keyId: string, version: number): Promise<number> {
    return this.objects.destroy({ label: tokenObjectLabel(tenant, keyId, version) });
  }
}
