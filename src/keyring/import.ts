/**
 * Importing caller-supplied JWKs into the keyring: as version 1 of a new elastic key, or as
 * a new current version of a key that allows import.
 *
 * Guarantees:
 * - The JWK must fit the key's algorithm: `kty`, `crv`, key size, and `alg`/`use` when given;
 *   it must import in WebCrypto (points on the curve, consistent RSA members), else
 *   `validation_failed`. Only the members of its key type are kept (no `key_ops`, `ext`, ...).
 * - Material (private or public-only) is sealed and stored by the keyring itself, exactly as
 *   generated material is, with origin `imported`.
 * - A public-only key can verify and encrypt but never sign or decrypt (`key_public_only`).
 */
import type { JWK } from "jose";
import { AppError } from "../service/errors.ts";
import { algorithmSpec, importMaterial, isMlKem, type AlgorithmSpec } from "./algorithms.ts";
import { validateMlKemJwk, type MlKemAlg } from "./pq-kem.ts";
import { decodeBase64url } from "./base64url.ts";
import { keyPendingDeletion, type ElasticKey, type Keyring } from "./keyring.ts";


const MEMBERS: Record<string, readonly string[]> = {
  EC: ["kty", "crv", "x", "y", "d"],
  OKP: ["kty", "crv", "x", "d"],
  RSA: ["kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"],
  oct: ["kty", "k"],
};

const invalid = (msg: string) => new AppError("validation_failed", `the JWK does not fit: ${msg}`);

/** What kty/crv (and sizes) each algorithm takes. */
function expectedShape(s: AlgorithmSpec): { kty: string; crv?: string[]; octBytes?: number } {
  switch (s.name) {
    case "ES256":
      return { kty: "EC", crv: ["P-256"] };
    case "ES384":
      return { kty: "EC", crv: ["P-384"] };
    case "ES512":
      return { kty: "EC", crv: ["P-521"] };
    case "EdDSA":
      return { kty: "OKP", crv: ["Ed25519"] };
    case "ECDH-ES":
    case "ECDH-ES+A256KW":
    case "ECDH-ES/P-384":
    case "ECDH-ES+A256KW/P-384":
    case "ECDH-ES/X25519":
    case "ECDH-ES+A256KW/X25519":
      return s.crv === "X25519" ? { kty: "OKP", crv: ["X25519"] } : { kty: "EC", crv: [s.crv!] };
    case "PS256":
    case "RS256":
    case "RSA-OAEP-256":
      return { kty: "RSA" };
    case "HS256":
      return { kty: "oct", octBytes: 32 };
    case "HS384":
      return { kty: "oct", octBytes: 48 };
    case "HS512":
      return { kty: "oct", octBytes: 64 };
    default:
      return { kty: "oct", octBytes: 32 }; // A256GCM, A256KW, A256GCMKW: exactly 256 bits
  }
}

/**
 * Checks the JWK against the algorithm and returns its normalized form (only its key type's
 * members) and whether it holds private material.
 */
export async function normalizeImportedJwk(algorithm: string, input: Record<string, unknown>): Promise<{ jwk: JWK; isPrivate: boolean; spec: AlgorithmSpec }> {
  const spec = algorithmSpec(algorithm);
  if (isMlKem(spec)) {
    // AKP keys: pq-kem.ts checks sizes, the key's alg, and that pub is the one priv derives.
    if (input.use !== undefined && input.use !== "enc") throw invalid("use must be enc");
    const key = validateMlKemJwk(input, spec.jose as MlKemAlg) as unknown as Record<string, unknown>;
    const jwk: JWK = { kty: "AKP", alg: spec.jose, pub: key.pub as string, ...(typeof key.priv === "string" ? { priv: key.priv } : {}) } as JWK;
    return { jwk, isPrivate: typeof key.priv === "string", spec };
  }
  const shape = expectedShape(spec);
  if (input.kty !== shape.kty) throw invalid(`${spec.name} needs kty ${shape.kty}`);
  if (shape.crv && !shape.crv.includes(input.crv as string)) throw invalid(`${spec.name} needs crv ${shape.crv.join(" or ")}`);
  if (input.alg !== undefined && input.alg !== spec.jose) throw invalid(`alg ${String(input.alg)} is not ${spec.jose}`);
  const use = spec.purpose === "sign" ? "sig" : spec.purpose === "mac" ? "sig" : "enc";
  if (input.use !== undefined && input.use !== use) throw invalid(`use must be ${use}`);
  const jwk: Record<string, unknown> = {};
  for (const m of MEMBERS[shape.kty]!) {
    const val = input[m];
    if (val === undefined) continue;
    if (typeof val !== "string" || val.length > 4096) throw invalid(`member ${m} must be a base64url string`);
    if (m !== "kty" && m !== "crv") decodeBase64url(val).fill(0); // strict alphabet, else validation_failed
    jwk[m] = val;
  }
  if (shape.kty === "oct") {
    const k = decodeBase64url((jwk.k as string | undefined) ?? "");
    const len = k.length;
    k.fill(0);
    if (len !== shape.octBytes && !(spec.purpose === "mac" && len > shape.octBytes!)) throw invalid(`${spec.name} needs a ${shape.octBytes! * 8}-bit key`);
  }
  if (shape.kty === "RSA") {
    const n = decodeBase64url((jwk.n as string | undefined) ?? "");
    const bits = (n.length - (n[0] === 0 ? 1 : 0)) * 8;
    if (bits < 2048 || bits > 8192) throw invalid("RSA keys are 2048..8192 bits");
  }
  const isPrivate = shape.kty === "oct" || typeof jwk.d === "string";
  if (shape.kty === "RSA" && isPrivate && MEMBERS.RSA!.slice(3).some((m) => jwk[m] === undefined)) throw invalid("a private RSA key needs d, p, q, dp, dq and qi");
  try {
    await importMaterial(spec, jwk as JWK);
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw invalid("it does not import (bad point, size or members)");
  }
  return { jwk: jwk as JWK, isPrivate, spec };
}

export interface ImportNewKey {
  name: string;
  algorithm: string;
  jwk: Record<string, unknown>;
  description?: string;
  tags?: string[];
}

/** Imports caller JWKs into a keyring: checks them here; the keyring seals and stores them. */
export class KeyImporter {
  constructor(private readonly ring: Keyring) {}

  /** A new elastic key (import allowed) whose version 1 is the caller's JWK. */
  async importNew(tenant: string, input: ImportNewKey): Promise<ElasticKey> {
    const { jwk, spec } = await normalizeImportedJwk(input.algorithm, input.jwk);
    return this.ring.create(tenant, { name: input.name, algorithm: spec.name, description: input.description, tags: input.tags, import_allowed: true }, jwk);
  }

  /** Adds the caller's JWK as the new current version of a key that allows import. */
  async importVersion(tenant: string, id: string, input: Record<string, unknown>): Promise<ElasticKey> {
    const key = await this.ring.get(tenant, id);
    if (key.status === "pending_deletion") throw keyPendingDeletion();
    if (!key.import_allowed) throw new AppError("import_not_allowed", "this key does not allow import", { status: 409 });
    const { jwk } = await normalizeImportedJwk(key.algorithm, input);
    return this.ring.rotate(tenant, id, jwk);
  }
}
