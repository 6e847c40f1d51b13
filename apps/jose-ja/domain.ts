/**
 * jose-ja's rules: JWK management, JWKS publication, JWS, JWE and JWT on the shared keyring.
 * No HTTP here. Key lifecycle, storage and sealing are `src/keyring`'s; the JOSE primitives
 * shared with sm-kms are `src/keyring/jose-ops.ts`.
 *
 * Guarantees:
 * - Outputs carry `kid = <key-id>.v<n>`; verify, decrypt and validate take the version from
 *   the kid, which must name a retained version (at or above the minimum decryption version)
 *   of the addressed key, and accept only that key's own `alg`/`enc`.
 * - Public JWKs and JWKS never hold private members (`publicJwk` strips them; symmetric keys
 *   are never published).
 * - JWT validation checks the signature first, then exp, nbf, iat (not in the future), iss,
 *   aud, typ and the required claims, with the caller's clock skew; each failure has one code.
 * - A key imported as public-only verifies and encrypts but is refused for sign and decrypt.
 * - Keys in software or in an HSM are used alike, through the keyring's JOSE operations
 *   (`src/keyring/jose-ops.ts`); JWT claims are checked by `jose` after the signature.
 */
import { UnsecuredJWT, errors as joseErrors, type JWTPayload } from "jose";
import * as v from "valibot";
import { AppError, notFound } from "../../src/service/errors.ts";
import { algorithmSpec, decodeBase64url, parseKid, encodeBase64url, type ActiveVersion, type ElasticKey, type Keyring, type KeyPurpose, type PublicJwk } from "../../src/keyring/index.ts";
import { compactFromFlattened, decryptionFailed, encryptJwe, flattenedFromCompact, hasPrivate, type FlattenedJwsOut, jweHeaderOf, keyPublicOnly, malformedJose, openJwe, protectedHeaderOf, signCompact, signatureInvalid, verifyCompact, versionFromKid } from "../../src/keyring/jose-ops.ts";
import type { KeyImporter } from "../../src/keyring/import.ts";
import type { GenerateKeyInput, ImportKeyInput, JwtIssueInput, JwtValidateInput, ListKeysInput, UpdateKeyInput } from "../../schemas/jose-ja.ts";
import type { FlattenedJweValue } from "../../schemas/keyring.ts";

/** jose-ja's own config section (`app.*`). */
export const JoseConfig = v.strictObject({
  /** `Cache-Control: max-age` of the public JWKS, in seconds. */
  jwks_max_age_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400)), 300),
  /** Longest JWT lifetime a caller may ask for. */
  jwt_max_ttl_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(31_536_000)), 86_400),
  /** How often the rotation / deletion sweep runs, in seconds. */
  rotation_check_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 60),
  /** How many opened key versions stay in memory. */
  key_cache_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000)), 1000),
  /** Most keys one tenant JWKS lists. */
  jwks_max_keys: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)), 1000),
  /** With an HSM configured: whether algorithms it cannot hold (ML-DSA, X25519) may have barrier-sealed software keys. */
  keyring_software_fallback: v.optional(v.boolean(), false),
});
export type JoseConfig = v.InferOutput<typeof JoseConfig>;

export function parseJoseConfig(app: unknown): JoseConfig {
  const r = v.safeParse(JoseConfig, app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".");
    throw new AppError("config_invalid", `app${path ? "." + path : ""}: ${issue.message}`);
  }
  return r.output;
}

const SIGNING: readonly KeyPurpose[] = ["sign", "mac"];
const ENCRYPTING: readonly KeyPurpose[] = ["encrypt", "wrap"];
/** Claims the service sets itself on issue. */
const RESERVED_CLAIMS = ["iat", "exp"];

const jwtError = (code: "jwt_expired" | "jwt_not_yet_valid" | "jwt_claim_invalid", message: string, claim?: string) =>
  new AppError(code, message, { status: 400, details: claim ? { claim } : undefined });

function requirePrivate(active: ActiveVersion): void {
  if (!hasPrivate(active)) throw keyPublicOnly();
}

export interface Jwks {
  keys: PublicJwk[];
}

export class JoseService {
  constructor(
    readonly ring: Keyring,
    readonly importer: KeyImporter,
    readonly cfg: JoseConfig,
    private readonly now: () => Date = () => new Date(),
  ) {}

  // --- JWK management ---------------------------------------------------------------------

  generate(tenant: string, input: GenerateKeyInput): Promise<ElasticKey> {
    return this.ring.create(tenant, input);
  }

  importNew(tenant: string, input: ImportKeyInput): Promise<ElasticKey> {
    return this.importer.importNew(tenant, input);
  }

  importVersion(tenant: string, id: string, jwk: Record<string, unknown>): Promise<ElasticKey> {
    return this.importer.importVersion(tenant, id, jwk);
  }

  /** The key and, for asymmetric keys not pending deletion, its current public JWK. */
  async get(tenant: string, id: string): Promise<ElasticKey & { public_jwk?: PublicJwk }> {
    const key = await this.ring.get(tenant, id);
    if (!algorithmSpec(key.algorithm).asymmetric || key.status === "pending_deletion") return key;
    return { ...key, public_jwk: await this.ring.publicKey(tenant, id) };
  }

  publicJwk(tenant: string, id: string, version?: number): Promise<PublicJwk> {
    return this.ring.publicKey(tenant, id, version);
  }

  list(tenant: string, q: ListKeysInput) {
    return this.ring.list(tenant, q);
  }

  update(tenant: string, id: string, patch: UpdateKeyInput): Promise<ElasticKey> {
    return this.ring.update(tenant, id, patch);
  }

  disable(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.disable(tenant, id);
  }

  enable(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.enable(tenant, id);
  }

  delete(tenant: string, id: string, waitingDays?: number): Promise<ElasticKey> {
    return this.ring.scheduleDeletion(tenant, id, waitingDays);
  }

  restore(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.restore(tenant, id);
  }

  rotate(tenant: string, id: string): Promise<ElasticKey> {
    return this.ring.rotate(tenant, id);
  }

  setRotation(tenant: string, id: string, days: number | null): Promise<ElasticKey> {
    return this.ring.update(tenant, id, { rotation_period_days: days });
  }

  // --- JWKS -------------------------------------------------------------------------------

  /** Every retained version (min decryption version .. current) of one asymmetric key. */
  async keyJwks(tenant: string, id: string): Promise<Jwks> {
    const key = await this.ring.get(tenant, id);
    if (!algorithmSpec(key.algorithm).asymmetric) throw new AppError("key_not_asymmetric", "only asymmetric keys have a public JWKS");
    if (key.status === "pending_deletion") throw notFound("elastic key");
    const keys: PublicJwk[] = [];
    for (let ver = key.current_version; ver >= key.min_decryption_version; ver--) keys.push(await this.ring.publicKey(tenant, id, ver));
    return { keys };
  }

  /** The tenant's JWKS: every retained version of its enabled or disabled asymmetric keys, newest first per key. */
  async tenantJwks(tenant: string): Promise<Jwks> {
    const keys: PublicJwk[] = [];
    let page_token: string | undefined;
    let seen = 0;
    do {
      const page = await this.ring.list(tenant, { limit: 100, page_token });
      for (const k of page.items) {
        if (++seen > this.cfg.jwks_max_keys) return { keys };
        if (k.status === "pending_deletion" || !algorithmSpec(k.algorithm).asymmetric) continue;
        for (let ver = k.current_version; ver >= k.min_decryption_version; ver--) keys.push(await this.ring.publicKey(tenant, k.id, ver));
      }
      page_token = page.next_page_token ?? undefined;
    } while (page_token);
    return { keys };
  }

  // --- JWS --------------------------------------------------------------------------------

  async sign(tenant: string, id: string, payload: Uint8Array, opts: { typ?: string; cty?: string; format?: "compact" | "json" } = {}): Promise<{ kid: string; version: number; jws: string | FlattenedJwsOut }> {
    const active = await this.ring.current(tenant, id, SIGNING);
    requirePrivate(active);
    const extra: Record<string, string> = {};
    if (opts.typ) extra.typ = opts.typ;
    if (opts.cty) extra.cty = opts.cty;
    const jws = await signCompact(active, payload, extra);
    return { kid: active.kid, version: active.version, jws: opts.format === "json" ? flattenedFromCompact(jws) : jws };
  }

  /** Verifies a compact or flattened JSON JWS (payload attached) with the version its kid names. */
  async verify(tenant: string, id: string, input: string | FlattenedJwsOut): Promise<{ valid: true; kid: string; version: number; payload: string; header: Record<string, unknown> }> {
    const jws = typeof input === "string" ? input : compactFromFlattened(input);
    if (jws.split(".")[1] === "") throw malformedJose("JWS");
    const r = await verifyCompact(this.ring, tenant, id, jws, SIGNING);
    return { valid: true, kid: r.active.kid, version: r.active.version, payload: encodeBase64url(r.payload), header: r.header };
  }

  // --- JWE --------------------------------------------------------------------------------

  async encrypt(tenant: string, id: string, plaintext: Uint8Array, cty?: string): Promise<{ kid: string; version: number; jwe: string }> {
    const active = await this.ring.current(tenant, id, ENCRYPTING);
    const jwe = (await encryptJwe(active, plaintext, { header: cty ? { cty } : {} })) as string;
    return { kid: active.kid, version: active.version, jwe };
  }

  async decrypt(tenant: string, id: string, jwe: string | FlattenedJweValue): Promise<{ kid: string; version: number; plaintext: Uint8Array }> {
    const header = jweHeaderOf(jwe);
    const version = versionFromKid(header.kid, id, decryptionFailed);
    const active = await this.ring.version(tenant, id, version, ENCRYPTING);
    requirePrivate(active);
    if (header.alg !== active.spec.jose || header.enc !== active.spec.enc) throw decryptionFailed();
    return { kid: active.kid, version: active.version, plaintext: await openJwe(active, jwe) };
  }

  // --- JWT --------------------------------------------------------------------------------

  async issueJwt(tenant: string, id: string, input: JwtIssueInput): Promise<{ kid: string; version: number; jwt: string; exp: number }> {
    if (input.ttl_s > this.cfg.jwt_max_ttl_s) throw new AppError("validation_failed", `ttl_s is at most ${this.cfg.jwt_max_ttl_s}`);
    for (const c of RESERVED_CLAIMS) if (c in input.claims) throw new AppError("validation_failed", `claim ${c} is set by the service (use ttl_s)`);
    const active = await this.ring.current(tenant, id, SIGNING);
    requirePrivate(active);
    const iat = Math.floor(this.now().getTime() / 1000);
    const exp = iat + input.ttl_s;
    const claims: JWTPayload = { ...(input.claims as JWTPayload) };
    if (input.iss !== undefined) claims.iss = input.iss;
    if (input.aud !== undefined) claims.aud = input.aud;
    if (input.sub !== undefined) claims.sub = input.sub;
    if (input.jti) claims.jti = crypto.randomUUID();
    claims.iat = iat;
    claims.exp = exp;
    const jwt = await signCompact(active, utf8.encode(JSON.stringify(claims)), input.typ ? { typ: input.typ } : {});
    return { kid: active.kid, version: active.version, jwt, exp };
  }

  /** The key a JWS/JWT's kid names, for the tenant-wide routes; a kid that is not ours is `signature_invalid`. */
  keyIdOf(jws: string | FlattenedJwsOut): string {
    const header = protectedHeaderOf(typeof jws === "string" ? jws : compactFromFlattened(jws), 3, "JWS");
    const k = parseKid(header.kid);
    if (!k) throw signatureInvalid();
    return k.id;
  }

  async validateJwt(tenant: string, id: string, input: JwtValidateInput): Promise<{ valid: true; kid: string; version: number; header: Record<string, unknown>; claims: JWTPayload }> {
    const parts = input.jwt.split(".");
    if (parts.length !== 3) throw malformedJose("JWT");
    const { active, header } = await verifyCompact(this.ring, tenant, id, input.jwt, SIGNING);
    if (header.b64 === false) throw malformedJose("JWT");
    const now = this.now();
    try {
      // The signature is verified above (in software or the HSM); jose checks the claims of
      // the same header and payload, presented to it as an unsecured JWT.
      const unsecured = `${encodeBase64url(utf8.encode(JSON.stringify(header.typ === undefined ? { alg: "none" } : { alg: "none", typ: header.typ })))}.${parts[1]}.`;
      const r = { payload: UnsecuredJWT.decode(unsecured, {
        issuer: input.iss,
        audience: input.aud,
        typ: input.typ,
        clockTolerance: input.clock_skew_s,
        maxTokenAge: input.max_age_s,
        requiredClaims: input.required_claims,
        currentDate: now,
      }).payload, protectedHeader: header };
      // jose checks iat only with maxTokenAge: a token issued in the future is refused regardless.
      if (typeof r.payload.iat === "number" && r.payload.iat > now.getTime() / 1000 + input.clock_skew_s) {
        throw jwtError("jwt_claim_invalid", 'the "iat" claim is in the future', "iat");
      }
      return { valid: true, kid: active.kid, version: active.version, header: r.protectedHeader as Record<string, unknown>, claims: r.payload };
    } catch (e) {
      if (e instanceof AppError) throw e;
      if (e instanceof joseErrors.JWTExpired) throw jwtError("jwt_expired", e.claim === "iat" ? "the token is older than max_age_s" : "the token has expired", e.claim);
      if (e instanceof joseErrors.JWTClaimValidationFailed) {
        if (e.claim === "nbf") throw jwtError("jwt_not_yet_valid", "the token is not valid yet", "nbf");
        throw jwtError("jwt_claim_invalid", `the "${e.claim}" claim is not valid (${e.reason})`, e.claim);
      }
      if (e instanceof joseErrors.JWTInvalid || e instanceof joseErrors.JWSInvalid) throw malformedJose("JWT");
      throw signatureInvalid();
    }
  }
}

const utf8 = new TextEncoder();

/** base64url helpers of the API's binary fields. */
export const b64u = encodeBase64url;
export const fromB64u = decodeBase64url;
