/**
 * BYOK: bring your own key material into an elastic key that allows import.
 *
 * 1. `import-params` makes a one-off RSA-OAEP-256 import key (RSA-3072) for one tenant and
 *    key, valid for `ttlS`; its private half is stored barrier-encrypted, the public JWK is
 *    returned (kid = the import token).
 * 2. The caller wraps its key material as a JWK in a compact JWE to that public key
 *    (alg RSA-OAEP-256, enc A256GCM), e.g. with `jose`'s CompactEncrypt.
 * 3. `import` unwraps it, checks it fits the key's algorithm (src/keyring/import.ts), and adds
 *    it as the new current version. An import token works once, for its own tenant and key.
 *
 * The material never crosses the network in clear and never reaches the database unsealed.
 * With an HSM, the import key itself is generated in the token (RSA-3072, non-extractable, its
 * row holds only the sealed reference), the JWE is opened there (raw RSA in the token, OAEP in
 * code), the material goes straight into the token, and the import key is destroyed after use
 * or expiry.
 */
import { compactDecrypt, exportJWK, generateKeyPair, importJWK, errors as joseErrors, type JWK } from "jose";
import type { Kysely } from "kysely";
import type { DataProtector } from "../../src/service/context.ts";
import { AppError, notFound } from "../../src/service/errors.ts";
import type { ElasticKey, KeyImporter, Keyring } from "../../src/keyring/index.ts";
import { algorithmSpec } from "../../src/keyring/algorithms.ts";
import { openJweWith, protectedHeaderOf } from "../../src/keyring/jose-ops.ts";
import type { TokenObjectRef } from "../../src/crypto/pkcs11/keyring-objects.ts";

export interface ImportTokenRow {
  id: string;
  tenant: string;
  key_id: string;
  private_jwk: Uint8Array;
  expires_at: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const tokenContext = (tenant: string, keyId: string, id: string) => `sm-kms/import_tokens/${tenant}/${keyId}/${id}`;
const badWrap = (why: string) => new AppError("malformed_jose", `wrapped_key: ${why}`);
/** The token label of an import token's key (its id is random, kept in the sealed row). */
const importKeyLabel = (id: string) => `cryptoutil-byok/${id}`;
const IMPORT_KEY = { type: "rsa", bits: 3072, use: "decrypt" } as const;

/** What an import token's row seals: the private JWK, or with an HSM the token reference and public half. */
type ImportKeyDoc = JWK & { hsm?: TokenObjectRef; public_jwk?: JWK };

export class ByokImporter {
  constructor(
    private readonly db: Kysely<{ kms_import_tokens: ImportTokenRow }>,
    private readonly protector: DataProtector,
    private readonly ring: Keyring,
    private readonly importer: KeyImporter,
    private readonly ttlS = 24 * 3600,
  ) {}

  async params(tenant: string, keyId: string): Promise<{ import_token: string; public_jwk: JWK; expires_at: string }> {
    const key = await this.ring.get(tenant, keyId); // 404 for another tenant's key
    if (!key.import_allowed) throw new AppError("import_not_allowed", "this key does not allow import", { status: 409 });
    const id = crypto.randomUUID();
    // A token without RSA decryption keeps the (short-lived, single-use) import key sealed in software.
    const hsm = this.ring.hsm?.objects.supports(IMPORT_KEY) ? this.ring.hsm.objects : undefined;
    let publicJwk: JWK;
    let doc: ImportKeyDoc;
    if (hsm) {
      const obj = await hsm.generate(IMPORT_KEY, { label: importKeyLabel(id), id: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex") });
      publicJwk = obj.publicJwk as JWK;
      doc = { hsm: obj.ref, public_jwk: publicJwk };
    } else {
      const { publicKey, privateKey } = await generateKeyPair("RSA-OAEP-256", { modulusLength: 3072, extractable: true });
      publicJwk = await exportJWK(publicKey);
      doc = await exportJWK(privateKey);
    }
    const priv = enc.encode(JSON.stringify(doc));
    const expires = Math.floor(Date.now() / 1000) + this.ttlS;
    try {
      await this.db
        .insertInto("kms_import_tokens")
        .values({ id, tenant, key_id: keyId, private_jwk: await this.protector.encrypt(priv, tokenContext(tenant, keyId, id)), expires_at: expires })
        .execute();
    } catch (e) {
      if (hsm) await hsm.destroy({ label: importKeyLabel(id) }).catch(() => undefined);
      throw e;
    } finally {
      priv.fill(0);
    }
    await this.dropExpired();
    return {
      import_token: id,
      public_jwk: { ...publicJwk, alg: "RSA-OAEP-256", use: "enc", kid: id },
      expires_at: new Date(expires * 1000).toISOString(),
    };
  }

  /** Deletes expired import tokens, and their token keys. */
  private async dropExpired(): Promise<void> {
    const expired = await this.db.deleteFrom("kms_import_tokens").where("expires_at", "<", Math.floor(Date.now() / 1000)).returning(["id"]).execute();
    const hsm = this.ring.hsm?.objects;
    if (hsm) for (const r of expired) await hsm.destroy({ label: importKeyLabel(r.id) });
  }

  /** Opens the caller's JWE with the import key: in the token, or with the unsealed private JWK. */
  private async unwrap(doc: ImportKeyDoc, token: string, wrapped: string): Promise<Uint8Array> {
    const hsm = this.ring.hsm?.objects;
    if (doc.hsm) {
      if (!hsm) throw new AppError("unavailable", "this import token's key lives in an HSM, which is not configured");
      try {
        const header = protectedHeaderOf(wrapped, 5, "JWE");
        if (header.alg !== "RSA-OAEP-256" || header.enc !== "A256GCM") throw badWrap("the JWE must be RSA-OAEP-256 with A256GCM");
        const object = await hsm.find(doc.hsm, IMPORT_KEY);
        return await openJweWith({ spec: algorithmSpec("RSA-OAEP-256"), usable: { token: { objects: hsm, object }, publicJwk: doc.public_jwk } }, wrapped);
      } catch (e) {
        if ((e as AppError)?.code === "decryption_failed") throw new AppError("decryption_failed", "wrapped_key does not decrypt with this import key");
        throw e;
      } finally {
        // Single use: the key goes with its row, whatever the outcome.
        await hsm.destroy({ label: importKeyLabel(token) });
      }
    }
    const key = await importJWK(doc, "RSA-OAEP-256");
    return (await compactDecrypt(wrapped, key, { keyManagementAlgorithms: ["RSA-OAEP-256"], contentEncryptionAlgorithms: ["A256GCM"] })).plaintext;
  }

  async import(tenant: string, keyId: string, token: string, wrapped: string): Promise<ElasticKey> {
    // Single use: the row is taken (deleted) before anything else can use it.
    const row = await this.db
      .deleteFrom("kms_import_tokens")
      .where("id", "=", token)
      .where("tenant", "=", tenant)
      .where("key_id", "=", keyId)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw notFound("import token");
    if (row.expires_at < Date.now() / 1000) {
      await this.ring.hsm?.objects.destroy({ label: importKeyLabel(token) });
      throw new AppError("import_token_expired", "the import token has expired; request new import parameters");
    }
    const priv = await this.protector.decrypt(new Uint8Array(row.private_jwk), tokenContext(tenant, keyId, token));
    let material: Record<string, unknown>;
    try {
      const plaintext = await this.unwrap(JSON.parse(dec.decode(priv)) as ImportKeyDoc, token, wrapped);
      try {
        material = JSON.parse(dec.decode(plaintext)) as Record<string, unknown>;
      } finally {
        plaintext.fill(0);
      }
    } catch (e) {
      if (e instanceof joseErrors.JWEDecryptionFailed) throw new AppError("decryption_failed", "wrapped_key does not decrypt with this import key");
      if (e instanceof joseErrors.JOSEError) throw badWrap(e.message);
      if (e instanceof SyntaxError) throw badWrap("the plaintext is not a JWK");
      throw e;
    } finally {
      priv.fill(0);
    }
    if (typeof material !== "object" || material === null || Array.isArray(material)) throw badWrap("the plaintext is not a JWK");
    return this.importer.importVersion(tenant, keyId, material);
  }
}

/** sm-kms's table for import tokens (a migration of the app). */
export async function createImportTokenTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("kms_import_tokens")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("key_id", "text", (c) => c.notNull())
    .addColumn("private_jwk", "blob", (c) => c.notNull()) // barrier ciphertext (the private JWK, or an HSM reference)
    .addColumn("expires_at", "integer", (c) => c.notNull())
    .execute();
}
