/**
 * Importing caller-supplied JWKs into the keyring: as version 1 of a new elastic key, or as
 * a new current version of a key that allows import.
 *
 * Guarantees:
 * - The JWK must fit the key's algorithm: `kty`, `crv`, key size, and `alg`/`use` when given;
 *   it must import in WebCrypto (points on the curve, consistent RSA members), else
 *   `validation_failed`. Only the members of its key type are kept (no `key_ops`, `ext`, ...).
 * - Material (private or public-only) is stored barrier-encrypted exactly as generated
 *   material is, under the same per-tenant/key/version context, with origin `imported`.
 * - A public-only key can verify and encrypt but never sign or decrypt (`key_public_only`).
 */
import type { JWK } from "jose";
import { materialContext } from "./keyring.ts";
import type { Kysely } from "kysely";
import type { DataProtector } from "../service/context.ts";
import { AppError, notFound } from "../service/errors.ts";
import { algorithmSpec, importMaterial, type AlgorithmSpec } from "./algorithms.ts";
import { decodeBase64url } from "./base64url.ts";
import { keyPendingDeletion, type ElasticKey, type Keyring } from "./keyring.ts";
import { KeyringStore, type ElasticKeyRow, type KeyringDb, type MaterialKeyRow } from "./store.ts";

/** Must match the keyring's own sealing context, so imported versions open like generated ones. */

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

/** Imports caller JWKs into a keyring's tables, sealing them with the same barrier. */
export class KeyImporter {
  private readonly store: KeyringStore;

  constructor(
    db: Kysely<any>,
    private readonly protector: DataProtector,
    private readonly ring: Keyring,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.store = new KeyringStore(db as Kysely<KeyringDb>);
  }

  private async seal(tenant: string, id: string, version: number, jwk: JWK, createdAt: string): Promise<MaterialKeyRow> {
    const bytes = new TextEncoder().encode(JSON.stringify(jwk));
    try {
      const material = await this.protector.encrypt(bytes, materialContext(tenant, id, version));
      return { key_id: id, version, tenant, origin: "imported", material, created_at: createdAt, retired_at: null };
    } finally {
      bytes.fill(0);
    }
  }

  /** A new elastic key (import allowed) whose version 1 is the caller's JWK. */
  async importNew(tenant: string, input: ImportNewKey): Promise<ElasticKey> {
    const { jwk, spec } = await normalizeImportedJwk(input.algorithm, input.jwk);
    const id = crypto.randomUUID();
    const iso = this.now().toISOString();
    const row: Omit<ElasticKeyRow, "seq"> = {
      id,
      tenant,
      name: input.name,
      description: input.description ?? null,
      algorithm: spec.name,
      purpose: spec.purpose,
      status: "enabled",
      deletion_date: null,
      rotation_period_s: null,
      next_rotation_at: null,
      current_version: 1,
      min_decryption_version: 1,
      import_allowed: 1,
      tags: JSON.stringify([...new Set(input.tags ?? [])]),
      created_at: iso,
      updated_at: iso,
    };
    const material = await this.seal(tenant, id, 1, jwk, iso);
    try {
      await this.store.insert(row, material);
    } catch (e) {
      if (/UNIQUE|constraint/i.test(String((e as Error)?.message ?? e))) throw new AppError("conflict", `an elastic key named ${input.name} already exists`);
      throw e;
    }
    return this.ring.get(tenant, id);
  }

  /** Adds the caller's JWK as the new current version of a key that allows import. */
  async importVersion(tenant: string, id: string, input: Record<string, unknown>): Promise<ElasticKey> {
    const row = await this.store.get(tenant, id);
    if (!row) throw notFound("elastic key");
    if (row.status === "pending_deletion") throw keyPendingDeletion();
    if (row.import_allowed !== 1) throw new AppError("import_not_allowed", "this key does not allow import", { status: 409 });
    const { jwk } = await normalizeImportedJwk(row.algorithm, input);
    const iso = this.now().toISOString();
    const material = await this.seal(tenant, id, row.current_version + 1, jwk, iso);
    const ok = await this.store.addVersion(tenant, id, row.current_version, material, { updated_at: iso });
    if (!ok) throw new AppError("conflict", "the key was rotated concurrently; retry");
    return this.ring.get(tenant, id);
  }
}
