/**
 * Key backends: where a material version's private or secret key lives. The keyring decides
 * which backend makes a new version, seals the document the backend returns (barrier) in the
 * version's row, and asks the same backend to open it again and to destroy it at purge. The
 * row's `origin` names the backend, so versions of one key may live in different backends
 * (a key that predates the HSM keeps its software versions).
 *
 * Two backends exist and are tested: `software` (the key itself, barrier-sealed in the
 * database; WebCrypto and the wasm core use it) and `pkcs11` (a sensitive, non-extractable
 * object in an HSM token; the row keeps only its reference and public key). Cloud key
 * services (AWS KMS, Azure Key Vault, Google Cloud KMS) fit the same interface; the adapter
 * plan is in docs/key-backends.md. None ships: they cannot be tested without the clouds.
 */
import type { JWK } from "jose";
import { AppError } from "../service/errors.ts";
import { generateMaterial, importMaterial, importPublic, type AlgorithmSpec, type UsableKey } from "./algorithms.ts";
import type { HsmMaterialDoc, KeyringHsm } from "./hsm.ts";

/** Which version of which key: what a backend names and checks its material by. */
export interface VersionRef {
  tenant: string;
  keyId: string;
  version: number;
}

/** A version's new material: the document the keyring seals, and how to undo it if the row is never stored. */
export interface CreatedMaterial {
  doc: JWK | HsmMaterialDoc;
  discard(): Promise<void>;
}

export interface KeyBackend {
  /** The row origins of the versions it holds: made here, and imported. */
  readonly origins: { generated: string; imported: string };
  /** Whether it can hold `spec`'s material (for an import: this JWK). */
  holds(spec: AlgorithmSpec, jwk?: JWK): boolean;
  /** Makes a version's material, or takes in the caller's (already checked) JWK. */
  create(spec: AlgorithmSpec, ref: VersionRef, supplied?: JWK): Promise<CreatedMaterial>;
  /** Turns an opened (unsealed) document back into usable keys; the document is not kept. */
  open(spec: AlgorithmSpec, doc: unknown, ref: VersionRef): Promise<UsableKey>;
  /** Destroys what lives outside the database for a version (purge); absent is not an error. */
  destroy(ref: VersionRef): Promise<void>;
}

const PRIVATE_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "priv"] as const;

/** Keys as barrier-sealed JWKs in the database: the document is the key. */
export const softwareBackend: KeyBackend = {
  origins: { generated: "generated", imported: "imported" },
  holds: () => true,
  async create(spec, _ref, supplied) {
    return { doc: supplied ?? (await generateMaterial(spec)), discard: async () => undefined };
  },
  async open(spec, doc) {
    const jwk = doc as JWK;
    try {
      return await importMaterial(spec, jwk);
    } finally {
      for (const k of PRIVATE_JWK_MEMBERS) delete (jwk as Record<string, unknown>)[k];
    }
  },
  destroy: async () => undefined,
};

/** Keys as token objects of an HSM (PKCS#11): the document is a reference and the public JWK. */
export function pkcs11Backend(hsm: KeyringHsm): KeyBackend {
  return {
    origins: { generated: "hsm", imported: "hsm-imported" },
    holds: (spec, jwk) => hsm.holds(spec, jwk),
    async create(spec, ref, supplied) {
      const { doc, object } = supplied ? await hsm.import(spec, supplied, ref.tenant, ref.keyId, ref.version) : await hsm.generate(spec, ref.tenant, ref.keyId, ref.version);
      return { doc, discard: () => hsm.discard(object) };
    },
    async open(spec, raw, ref) {
      const doc = raw as HsmMaterialDoc;
      const object = await hsm.open(spec, doc, ref.tenant, ref.keyId, ref.version);
      if (spec.asymmetric && !doc.public_jwk) throw new AppError("stored_material_corrupt", "an HSM key version has no public key stored");
      const pub = spec.asymmetric ? await importPublic(spec, doc.public_jwk!) : {};
      return { ...pub, token: { objects: hsm.objects, object } };
    },
    async destroy(ref) {
      await hsm.destroyVersion(ref.tenant, ref.keyId, ref.version);
    },
  };
}
