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
 */
import { compactDecrypt, exportJWK, generateKeyPair, importJWK, errors as joseErrors, type JWK } from "jose";
import type { Kysely } from "kysely";
import type { DataProtector } from "../../src/service/context.ts";
import { AppError, notFound } from "../../src/service/errors.ts";
import type { ElasticKey, KeyImporter, Keyring } from "../../src/keyring/index.ts";

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
    const { publicKey, privateKey } = await generateKeyPair("RSA-OAEP-256", { modulusLength: 3072, extractable: true });
    const id = crypto.randomUUID();
    const priv = enc.encode(JSON.stringify(await exportJWK(privateKey)));
    const expires = Math.floor(Date.now() / 1000) + this.ttlS;
    try {
      await this.db
        .insertInto("kms_import_tokens")
        .values({ id, tenant, key_id: keyId, private_jwk: await this.protector.encrypt(priv, tokenContext(tenant, keyId, id)), expires_at: expires })
        .execute();
    } finally {
      priv.fill(0);
    }
    await this.db.deleteFrom("kms_import_tokens").where("expires_at", "<", Math.floor(Date.now() / 1000)).execute();
    return {
      import_token: id,
      public_jwk: { ...(await exportJWK(publicKey)), alg: "RSA-OAEP-256", use: "enc", kid: id },
      expires_at: new Date(expires * 1000).toISOString(),
    };
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
    if (row.expires_at < Date.now() / 1000) throw new AppError("import_token_expired", "the import token has expired; request new import parameters");
    const priv = await this.protector.decrypt(new Uint8Array(row.private_jwk), tokenContext(tenant, keyId, token));
    let material: Record<string, unknown>;
    try {
      const key = await importJWK(JSON.parse(dec.decode(priv)) as JWK, "RSA-OAEP-256");
      const { plaintext } = await compactDecrypt(wrapped, key, { keyManagementAlgorithms: ["RSA-OAEP-256"], contentEncryptionAlgorithms: ["A256GCM"] });
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
    .addColumn("private_jwk", "blob", (c) => c.notNull()) // barrier ciphertext
    .addColumn("expires_at", "integer", (c) => c.notNull())
    .execute();
}
