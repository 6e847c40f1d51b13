/**
 * The login hand-off with identity-authz (see README.md): verifies the `login_challenge`
 * JWS against authz's JWKS for the tenant and signs the `login_verifier` with the idp's key.
 *
 * Guarantees: a challenge is accepted only with ES256, `typ: login-challenge+jwt`, `iss`
 * exactly `{authz_url}/t/{tenant}` of the page's tenant, `aud: identity-idp`, an unexpired
 * `exp`, and a `jti`; so the verifier can only ever be sent to the configured authz. The
 * idp's private key is stored barrier-encrypted and never leaves this process in clear.
 */
import { SignJWT, createRemoteJWKSet, customFetch, exportJWK, generateKeyPair, importJWK, jwtVerify, errors as joseErrors, type JWK } from "jose";
import { readFileSync } from "node:fs";
import { AppError } from "../../../src/service/errors.ts";
import type { DataProtector } from "../../../src/service/context.ts";
import type { IdpStore } from "../store.ts";
import { runtime } from "../../../src/runtime/index.ts";

export interface LoginChallenge {
  jti: string;
  iss: string;
  tenant: string;
  client_id: string;
  client_name: string;
  scopes: string[];
  prompt: Set<string>;
  max_age?: number;
  login_hint?: string;
  acr_values?: string;
  exp: number;
}

export type VerifierResult =
  | { sub: string; authTime: number; amr: string[]; grantedScopes: string[]; claims: Record<string, unknown>; sid?: string }
  | { error: "access_denied" | "login_required" | "consent_required" | "interaction_required"; description?: string };

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The idp's ES256 signing key (one for every tenant), kept barrier-encrypted. Rotation makes a
 * new key current at once; the retired one stays in the JWKS for RETAIN_RETIRED_MS, far longer
 * than a login verifier lives, then is deleted. Instances re-read the current key every
 * RELOAD_MS, so a rotation made by one instance reaches the others.
 */
export class IdpKeys {
  private current?: Promise<{ kid: string; key: CryptoKey; publicJwk: JWK; loadedAt: number }>;
  static readonly RETAIN_RETIRED_MS = 3600_000;
  private static readonly RELOAD_MS = 600_000;
  constructor(
    private readonly store: IdpStore,
    private readonly protector: DataProtector,
    private readonly now: () => number = Date.now,
  ) {
    // Sealed means no signing key in memory; it is loaded again through the barrier after unseal.
    protector.onSeal(() => (this.current = undefined));
  }

  private static context = (kid: string) => `identity-idp/idp_keys/${kid}/private_jwk`;

  async signingKey() {
    const cached = this.current ? await this.current.catch(() => undefined) : undefined;
    if (!cached || this.now() - cached.loadedAt > IdpKeys.RELOAD_MS) {
      this.current = this.loadOrCreate().catch((e) => {
        this.current = undefined;
        throw e;
      });
    }
    return this.current!;
  }

  private async insertNew(db: IdpStore["db"]): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const kid = crypto.randomUUID();
    const pub = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
    const priv = enc.encode(JSON.stringify(await exportJWK(privateKey)));
    try {
      await db
        .insertInto("idp_keys")
        .values({ kid, status: "current", public_jwk: JSON.stringify(pub), private_jwk: await this.protector.encrypt(priv, IdpKeys.context(kid)), created_at: this.now(), retired_at: null })
        .execute();
    } finally {
      priv.fill(0);
    }
    return kid;
  }

  private async loadOrCreate() {
    const db = this.store.db;
    let row = await db.selectFrom("idp_keys").selectAll().where("status", "=", "current").orderBy("created_at", "desc").executeTakeFirst();
    if (!row) {
      await this.insertNew(db);
      row = await db.selectFrom("idp_keys").selectAll().where("status", "=", "current").orderBy("created_at", "desc").executeTakeFirstOrThrow();
    }
    const priv = await this.protector.decrypt(new Uint8Array(row.private_jwk), IdpKeys.context(row.kid));
    const key = (await importJWK(JSON.parse(dec.decode(priv)) as JWK, "ES256", { extractable: false })) as CryptoKey;
    priv.fill(0);
    return { kid: row.kid, key, publicJwk: JSON.parse(row.public_jwk) as JWK, loadedAt: this.now() };
  }

  /** Retires the current key and makes a new one current; returns the new kid. */
  async rotate(): Promise<string> {
    const kid = await this.store.db.transaction().execute(async (trx) => {
      await trx.updateTable("idp_keys").set({ status: "retired", retired_at: this.now() }).where("status", "=", "current").execute();
      return this.insertNew(trx);
    });
    this.current = undefined;
    return kid;
  }

  /** The schedule: rotates a current key older than `maxAgeMs`; deletes retired keys past retention. */
  async rotateDue(maxAgeMs: number): Promise<boolean> {
    const t = this.now();
    await this.store.db.deleteFrom("idp_keys").where("status", "=", "retired").where("retired_at", "<", t - IdpKeys.RETAIN_RETIRED_MS).execute();
    const cur = await this.store.db.selectFrom("idp_keys").select("created_at").where("status", "=", "current").executeTakeFirst();
    if (cur && cur.created_at + maxAgeMs <= t) {
      await this.rotate();
      return true;
    }
    return false;
  }

  /** Current key first, then retired keys still within retention. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.signingKey();
    const rows = await this.store.db
      .selectFrom("idp_keys")
      .select(["public_jwk", "status", "retired_at"])
      .orderBy("created_at", "desc")
      .execute();
    const t = this.now();
    const live = rows.filter((r) => r.status === "current" || (r.retired_at ?? 0) >= t - IdpKeys.RETAIN_RETIRED_MS);
    return { keys: live.map((r) => JSON.parse(r.public_jwk) as JWK) };
  }
}

/**
 * Two factors of different kinds: a one-time code or hardware key after a first factor, or a
 * passkey whose authenticator verified the user (PIN or biometrics). A recovery code alone is not.
 */
export const isMultiFactor = (amr: string[]) => amr.includes("otp") || (amr.includes("hwk") && amr.length > 1);

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const badChallenge = (why: string, cause?: unknown) => new AppError("invalid_login_challenge", `the login request is not valid: ${why}`, { status: 400, cause });
const badLogout = (why: string, cause?: unknown) => new AppError("invalid_logout_request", `the logout request is not valid: ${why}`, { status: 400, cause });

export class LoginHandoff {
  private readonly jwksByTenant = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  private ca?: string;

  constructor(
    private readonly opts: { authzUrl: string; authzJwksUrl?: string; caFile: string },
    private readonly keys: IdpKeys,
  ) {}

  authzIssuer(tenant: string): string {
    return `${this.opts.authzUrl.replace(/\/+$/, "")}/t/${tenant}`;
  }

  private jwks(tenant: string) {
    let set = this.jwksByTenant.get(tenant);
    if (!set) {
      const url = (this.opts.authzJwksUrl ?? `${this.opts.authzUrl.replace(/\/+$/, "")}/t/{tenant}/jwks`).replace("{tenant}", encodeURIComponent(tenant));
      set = createRemoteJWKSet(new URL(url), {
        timeoutDuration: 5000,
        cooldownDuration: 30_000,
        [customFetch]: (u, init) => {
          this.ca ??= readFileSync(this.opts.caFile, "utf8");
          return runtime.fetch(u, init, { ca: this.ca });
        },
      });
      if (this.jwksByTenant.size > 10_000) this.jwksByTenant.clear();
      this.jwksByTenant.set(tenant, set);
    }
    return set;
  }

  /** Verifies a JWT authz signed for the idp (`typ` names its kind) for the tenant of the page it arrived on. */
  private async fromAuthz(tenant: string, jws: unknown, typ: string, bad: (why: string, cause?: unknown) => AppError): Promise<Record<string, unknown>> {
    if (!TENANT.test(tenant)) throw bad("unknown tenant");
    if (typeof jws !== "string" || jws.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws)) throw bad("malformed");
    try {
      const { payload } = await jwtVerify(jws, this.jwks(tenant), {
        issuer: this.authzIssuer(tenant),
        audience: "identity-idp",
        typ,
        algorithms: ["ES256"],
        clockTolerance: 5,
        requiredClaims: ["exp", "jti"],
      });
      return payload as Record<string, unknown>;
    } catch (e) {
      if (e instanceof joseErrors.JWKSTimeout || !(e instanceof joseErrors.JOSEError)) {
        throw new AppError("unavailable", "the authorization server's keys could not be fetched", { cause: e });
      }
      if (e instanceof joseErrors.JWTExpired) throw bad("it has expired; start again from the application", e);
      throw bad("its signature or claims do not verify", e);
    }
  }

  /**
   * Verifies a `logout_request` authz sends after an RP-initiated logout: whose session to end
   * here and where to send the browser next (a URI authz checked against the client's registration).
   */
  async verifyLogoutRequest(tenant: string, jws: unknown): Promise<{ sub: string; returnTo?: string }> {
    const p = await this.fromAuthz(tenant, jws, "logout-request+jwt", badLogout);
    if (typeof p.sub !== "string" || !p.sub) throw badLogout("no subject");
    const back = p.post_logout_redirect_uri;
    if (back !== undefined && (typeof back !== "string" || !/^https?:\/\//.test(back))) throw badLogout("bad post_logout_redirect_uri");
    return { sub: p.sub, returnTo: back as string | undefined };
  }

  /** Verifies a `login_challenge` for the tenant of the page it arrived on. */
  async verifyChallenge(tenant: string, jws: unknown): Promise<LoginChallenge> {
    const p = await this.fromAuthz(tenant, jws, "login-challenge+jwt", badChallenge);
    const str = (k: string) => (typeof p[k] === "string" ? (p[k] as string) : undefined);
    const clientId = str("client_id");
    if (!clientId) throw badChallenge("no client_id");
    const maxAge = p.max_age;
    return {
      jti: str("jti")!,
      iss: str("iss")!,
      tenant,
      client_id: clientId,
      client_name: str("client_name") ?? clientId,
      scopes: (str("scope") ?? "").split(" ").filter(Boolean),
      prompt: new Set((str("prompt") ?? "").split(" ").filter(Boolean)),
      max_age: typeof maxAge === "number" && Number.isInteger(maxAge) && maxAge >= 0 ? maxAge : undefined,
      login_hint: str("login_hint"),
      acr_values: str("acr_values"),
      exp: p.exp as number,
    };
  }

  /** The URL of authz's login callback carrying the signed verifier. */
  async callbackUrl(ch: LoginChallenge, result: VerifierResult, idpUrl: string): Promise<string> {
    const { kid, key } = await this.keys.signingKey();
    const body: Record<string, unknown> = { challenge: ch.jti };
    if ("error" in result) {
      body.error = result.error;
      if (result.description) body.error_description = result.description;
    } else {
      Object.assign(body, {
        sub: result.sub,
        auth_time: result.authTime,
        amr: result.amr,
        acr: isMultiFactor(result.amr) ? "urn:cryptoutil:acr:mfa" : "urn:cryptoutil:acr:pwd",
        granted_scope: result.grantedScopes.join(" "),
        claims: result.claims,
        ...(result.sid ? { sid: result.sid } : {}),
      });
    }
    const jws = await new SignJWT(body)
      .setProtectedHeader({ alg: "ES256", kid, typ: "login-verifier+jwt" })
      .setIssuer(idpUrl)
      .setAudience(this.authzIssuer(ch.tenant))
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime("120s")
      .sign(key);
    return `${this.authzIssuer(ch.tenant)}/login/callback?login_verifier=${encodeURIComponent(jws)}`;
  }

  /**
   * The signed report of ended sessions that identity-authz turns into back-channel logout
   * tokens for their clients (`POST {issuer}/sessions/ended`): typ `session-ended+jwt`, signed
   * with the verifier key, addressed to the tenant's issuer, two minutes, single use.
   */
  async sessionEndedReport(tenant: string, sid: string, idpUrl: string): Promise<{ url: string; body: string }> {
    const { kid, key } = await this.keys.signingKey();
    const jws = await new SignJWT({ sid })
      .setProtectedHeader({ alg: "ES256", kid, typ: "session-ended+jwt" })
      .setIssuer(idpUrl)
      .setAudience(this.authzIssuer(tenant))
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime("120s")
      .sign(key);
    return { url: `${this.authzIssuer(tenant)}/sessions/ended`, body: new URLSearchParams({ session_ended: jws }).toString() };
  }

  /** POSTs one report to identity-authz (the trust bundle as for its keys); throws on a non-2xx answer. */
  async postReport(r: { url: string; body: string }): Promise<void> {
    this.ca ??= readFileSync(this.opts.caFile, "utf8");
    const res = await runtime.fetch(r.url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: r.body, signal: AbortSignal.timeout(10_000) }, { ca: this.ca });
    await res.body?.cancel().catch(() => undefined);
    if (!res.ok) throw new Error(`identity-authz answered ${res.status}`);
  }
}
