/**
 * sm-kms's rules: JOSE operations over the shared keyring. No HTTP here.
 *
 * Guarantees:
 * - Every output names its key and version in the `kid` header (`<key-id>.v<n>`); decrypt
 *   and verify take the version from that kid and refuse versions below the key's minimum
 *   decryption version, disabled keys and keys pending deletion.
 * - An encryption context is bound to the JWE as authenticated data. Compact JWEs have no
 *   AAD field, so there the protected header (which is the AAD) carries `ctx` = SHA-256 of the
 *   context's canonical JSON; flattened JSON JWEs carry the canonical JSON itself as `aad`.
 *   Decrypt refuses a JWE whose binding does not match the context given (absent must match
 *   absent). The context is authenticated, not secret: a JSON JWE shows it in `aad`.
 * - Each operation accepts only its key's own `alg` (and `A256GCM` content encryption):
 *   no algorithm substitution. The JOSE operations are the keyring's (`jose-ops.ts`): `jose`
 *   on WebCrypto for software keys, the HSM for keys held there; this file never branches on it.
 * - Failures to decrypt or verify are one code each (`decryption_failed`, `signature_invalid`),
 *   whatever check failed; malformed JOSE input is `malformed_jose`. Plaintext is never logged.
 */
import * as v from "valibot";
import { AppError } from "../../src/service/errors.ts";
import { equalStrings } from "../../src/crypto/constant-time.ts";
import { canonicalJson, decodeBase64url, encodeBase64url, KeyImporter, type ActiveVersion, type ElasticKey, type Keyring, type KeyPurpose, type PublicJwk } from "../../src/keyring/index.ts";
import type { ByokImporter } from "./byok.ts";
import { contentEncryptions, type ContentEncryption } from "../../src/keyring/algorithms.ts";
import { compactFromFlattened, decryptionFailed, encryptJwe, flattenedFromCompact, macOf, jweHeaderOf, malformedJose as malformed, openJwe, signCompact, signatureInvalid, verifyCompact, verifyMac, versionFromKid } from "../../src/keyring/jose-ops.ts";
import type { CreateKeyInput, DataKeyInput, ImportKeyInput, FlattenedJweValue, FlattenedJwsValue, JweFormat, ListKeysInput, UpdateKeyInput } from "../../schemas/sm-kms.ts";

/** A JWE in compact form or flattened JSON form (RFC 7516 §7.2.2, unprotected headers allowed). */
export type Jwe = string | FlattenedJweValue;

/** sm-kms's own config section (`app.*`). */
export const KmsConfig = v.strictObject({
  /** Most items in one batch request. */
  batch_max: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)), 100),
  /** How often the rotation / deletion sweep runs, in seconds. */
  rotation_check_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 60),
  /** How many opened key versions stay in memory. */
  key_cache_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000)), 1000),
  /** With an HSM configured: whether algorithms it cannot hold (ML-DSA, X25519) may have barrier-sealed software keys. */
  keyring_software_fallback: v.optional(v.boolean(), false),
});
export type KmsConfig = v.InferOutput<typeof KmsConfig>;

export function parseKmsConfig(app: unknown): KmsConfig {
  const r = v.safeParse(KmsConfig, app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".");
    throw new AppError("config_invalid", `app${path ? "." + path : ""}: ${issue.message}`);
  }
  return r.output;
}

const utf8 = new TextEncoder();

/** base64url without padding, the encoding of every binary field. */
export const b64u = encodeBase64url;
export const fromB64u = decodeBase64url;

const macInvalid = () => new AppError("mac_invalid", "the MAC does not verify with this key", { status: 400 });

async function contextHash(context: Record<string, string> | undefined): Promise<string | undefined> {
  if (!context) return undefined;
  return b64u(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(canonicalJson(context)))));
}

type BatchResult<T> = T | { error: { code: string; message: string } };

export class KmsService {
  private readonly importer: KeyImporter;

  constructor(
    readonly ring: Keyring,
    private readonly cfg: KmsConfig,
    /** BYOK import of wrapped key material (byok.ts). */
    readonly byok?: ByokImporter,
  ) {
    this.importer = new KeyImporter(ring);
  }

  // --- key management -------------------------------------------------------------------

  create(tenant: string, input: CreateKeyInput): Promise<ElasticKey> {
    return this.ring.create(tenant, input);
  }
  /** A new key (import allowed) whose version 1 is the caller's JWK, checked by the keyring's importer. */
  importKey(tenant: string, input: ImportKeyInput): Promise<ElasticKey> {
    return this.importer.importNew(tenant, input);
  }
  get(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.get(tenant, id);
  }
  list(tenant: string, q: ListKeysInput) {
    return this.ring.list(tenant, q);
  }
  update(tenant: string, id: string, patch: UpdateKeyInput): Promise<ElasticKey> {
    return this.ring.update(tenant, id, patch);
  }
  rotate(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.rotate(tenant, id);
  }
  disable(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.disable(tenant, id);
  }
  enable(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.enable(tenant, id);
  }
  scheduleDeletion(tenant: string, id: string, days: number): Promise<ElasticKey> {
    return this.ring.scheduleDeletion(tenant, id, days);
  }
  restore(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.restore(tenant, id);
  }
  publicKey(tenant: string, id: string, version?: number): Promise<PublicJwk> {
    return this.ring.publicKey(tenant, id, version);
  }

  // --- encrypt / decrypt ----------------------------------------------------------------

  private async encryptWith(active: ActiveVersion, plaintext: Uint8Array, context: Record<string, string> | undefined, format: JweFormat, enc?: ContentEncryption): Promise<Jwe> {
    if (enc && !contentEncryptions(active.spec).includes(enc)) {
      throw new AppError("validation_failed", `enc ${enc} needs a key-wrapping or key-agreement key; ${active.spec.name} keys use ${active.spec.enc}`);
    }
    if (format === "json") {
      // jose always emits protected, iv and tag for these algorithms; the type marks them optional.
      return (await encryptJwe(active, plaintext, { format, enc, aad: context ? utf8.encode(canonicalJson(context)) : undefined })) as FlattenedJweValue;
    }
    const ctx = await contextHash(context);
    return (await encryptJwe(active, plaintext, { enc, header: ctx ? { ctx } : {} })) as string;
  }

  async encrypt(tenant: string, id: string, plaintext: Uint8Array, context?: Record<string, string>, format: JweFormat = "compact", enc?: ContentEncryption): Promise<{ kid: string; jwe: Jwe }> {
    const active = await this.ring.current(tenant, id, ENCRYPTING);
    return { kid: active.kid, jwe: await this.encryptWith(active, plaintext, context, format, enc) };
  }

  /** Checks that the JWE's context binding matches `context`; every mismatch is `decryption_failed`. */
  private async checkContext(jwe: Jwe, header: Record<string, unknown>, context: Record<string, string> | undefined): Promise<void> {
    if (typeof jwe === "string") {
      const expected = await contextHash(context);
      const got = header.ctx;
      if (expected === undefined ? got !== undefined : typeof got !== "string" || !equalStrings(got, expected)) throw decryptionFailed();
      return;
    }
    // JSON: the aad itself is checked by the AEAD; here only that it is this context's canonical form.
    if (header.ctx !== undefined) throw decryptionFailed();
    const expected = context ? b64u(utf8.encode(canonicalJson(context))) : undefined;
    if (expected === undefined ? jwe.aad !== undefined : jwe.aad === undefined || !equalStrings(jwe.aad, expected)) {
      throw decryptionFailed();
    }
  }

  async decrypt(tenant: string, id: string, jwe: Jwe, context?: Record<string, string>): Promise<{ kid: string; plaintext: Uint8Array; format: JweFormat }> {
    const header = jweHeaderOf(jwe);
    const version = versionFromKid(header.kid, id, decryptionFailed);
    const active = await this.ring.version(tenant, id, version, ENCRYPTING);
    if (header.alg !== active.spec.jose || !contentEncryptions(active.spec).includes(header.enc as ContentEncryption)) throw decryptionFailed();
    await this.checkContext(jwe, header, context);
    const plaintext = await openJwe(active, jwe);
    return { kid: active.kid, plaintext, format: typeof jwe === "string" ? "compact" : "json" };
  }

  /** Re-encrypts under the current version, in the input's own format. */
  async rewrap(tenant: string, id: string, jwe: Jwe, context?: Record<string, string>): Promise<{ kid: string; jwe: Jwe }> {
    const { plaintext, format } = await this.decrypt(tenant, id, jwe, context);
    try {
      return await this.encrypt(tenant, id, plaintext, context, format);
    } finally {
      plaintext.fill(0);
    }
  }

  async dataKey(tenant: string, id: string, input: DataKeyInput): Promise<{ kid: string; wrapped_key: Jwe; plaintext_key?: string }> {
    const key = crypto.getRandomValues(new Uint8Array(input.bytes));
    try {
      const { kid, jwe } = await this.encrypt(tenant, id, key, input.context, input.format);
      return input.include_plaintext ? { kid, wrapped_key: jwe, plaintext_key: b64u(key) } : { kid, wrapped_key: jwe };
    } finally {
      key.fill(0);
    }
  }

  // --- sign / verify ----------------------------------------------------------------------

  async sign(tenant: string, id: string, payload: Uint8Array, detached = false, format: JweFormat = "compact"): Promise<{ kid: string; jws: string | FlattenedJwsValue }> {
    const active = await this.ring.current(tenant, id, ["sign"]);
    const jws = await signCompact(active, payload);
    if (format === "json") return { kid: active.kid, jws: flattenedFromCompact(jws, detached) };
    if (!detached) return { kid: active.kid, jws };
    const [h, , s] = jws.split(".");
    return { kid: active.kid, jws: `${h}..${s}` };
  }

  async verify(tenant: string, id: string, input: string | FlattenedJwsValue, payload?: Uint8Array): Promise<{ valid: true; kid: string }> {
    let jws = typeof input === "string" ? input : compactFromFlattened(input);
    const parts = jws.split(".");
    if (parts.length !== 3) throw malformed("JWS");
    if (parts[1] === "") {
      if (!payload) throw new AppError("validation_failed", "a detached JWS needs the payload");
      jws = `${parts[0]}.${b64u(payload)}.${parts[2]}`;
    } else if (payload && parts[1] !== b64u(payload)) {
      throw signatureInvalid();
    }
    const { active } = await verifyCompact(this.ring, tenant, id, jws, ["sign"]);
    return { valid: true, kid: active.kid };
  }

  // --- MAC, random ----------------------------------------------------------------------

  async mac(tenant: string, id: string, data: Uint8Array<ArrayBuffer>): Promise<{ kid: string; mac: string }> {
    const active = await this.ring.current(tenant, id, ["mac"]);
    return { kid: active.kid, mac: b64u(await macOf(active, data)) };
  }

  async macVerify(tenant: string, id: string, data: Uint8Array<ArrayBuffer>, mac: Uint8Array<ArrayBuffer>, kid: string): Promise<{ valid: true; kid: string }> {
    const version = versionFromKid(kid, id, macInvalid);
    const active = await this.ring.version(tenant, id, version, ["mac"]);
    // Compared in constant time (WebCrypto's verify, or the token's MAC against `mac`).
    if (!(await verifyMac(active, data, mac))) throw macInvalid();
    return { valid: true, kid: active.kid };
  }

  random(bytes: number): { random: string } {
    if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) throw new AppError("validation_failed", "bytes must be 1..1024");
    return { random: b64u(crypto.getRandomValues(new Uint8Array(bytes))) };
  }

  // --- batches ----------------------------------------------------------------------------

  /**
   * Runs `op` on each item of a batch on key `id`; an item that fails reports its own error and
   * the others go on. A key the tenant does not have (unknown, or another tenant's) fails the
   * whole request with 404, as on the single-item routes.
   */
  async batch<I, O>(tenant: string, id: string, items: I[], op: (item: I) => Promise<O>): Promise<{ results: Array<BatchResult<O>> }> {
    if (items.length > this.cfg.batch_max) throw new AppError("batch_too_large", `a batch holds at most ${this.cfg.batch_max} items`);
    await this.ring.get(tenant, id);
    const results = await Promise.all(
      items.map(async (item): Promise<BatchResult<O>> => {
        try {
          return await op(item);
        } catch (e) {
          if (e instanceof AppError && e.status < 500) return { error: { code: e.code, message: e.message } };
          throw e;
        }
      }),
    );
    return { results };
  }
}

const ENCRYPTING: readonly KeyPurpose[] = ["encrypt", "wrap"];

