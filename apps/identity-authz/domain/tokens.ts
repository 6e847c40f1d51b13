/**
 * The token endpoint's grants, and the endpoints that read tokens back
 * (introspection, revocation, userinfo).
 *
 * Access tokens are RFC 9068 JWTs. client_credentials tokens get no database row:
 * they are revocable through the `revoked_tokens` deny list (by jti) and expire
 * by themselves. Tokens of user grants get one row linking the jti to the grant,
 * so revoking the grant (refresh reuse, code reuse, logout) makes introspection
 * and userinfo say inactive at once. Codes and refresh tokens are stored as
 * SHA-256; grant data (user claims) is barrier-encrypted; PKCE is compared in
 * constant time.
 */
import { createLocalJWKSet, jwtVerify, type JWTPayload } from "jose";
import type { DataProtector } from "../../../src/service/context.ts";
import type { AuthzConfig } from "../config.ts";
import type { AuthzStore, GrantRow } from "../store.ts";
import type { KeyRing } from "./keys.ts";
import type { RegisteredClient, Registry } from "./registry.ts";
import type { DpopVerifier } from "./dpop.ts";
import { oauthError } from "./oauth-error.ts";
import { equalConstantTime, nowS, randomToken, sha256B64url, sha256Hex } from "./crypto.ts";
import type { Form } from "./client-auth.ts";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import type { PairwiseSubjects } from "./pairwise.ts";

export interface TokenResponse {
  access_token: string;
  token_type: "Bearer" | "DPoP";
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
}

/** What a user login established, carried by codes and grants (stored encrypted). */
export interface LoginFacts {
  sub: string;
  auth_time: number;
  amr?: string[];
  acr?: string;
  claims: Record<string, unknown>;
  /** The idp session this login belongs to (OIDC `sid`, for back-channel logout). */
  sid?: string;
}

export interface CodeData extends LoginFacts {
  redirect_uri: string;
  redirect_uri_given: boolean;
  code_challenge: string;
  nonce?: string;
  scope: string;
  resource?: string;
  dpop_jkt?: string;
}

interface GrantData extends LoginFacts {
  aud: string;
  /**
   * The audiences a refresh of this grant may name as `resource` (RFC 8707): the one of the
   * authorization request, else the client's audiences at the time of the grant. Absent on
   * grants made before it was recorded: then only `aud`.
   */
  audiences?: string[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const RESERVED = new Set(["openid", "offline_access"]);
// Claims a scope may never override: the token's own.
const RESERVED_CLAIMS = new Set(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "azp", "amr", "acr", "at_hash", "sid", "cnf", "client_id", "scope", "tenant"]);
const grantCtx = (tenant: string, id: string) => `identity-authz/grants/${tenant}/${id}`;
export const codeCtx = (tenant: string, hash: string) => `identity-authz/codes/${tenant}/${hash}`;

export const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";
/** What a device authorization request asked for (stored encrypted with the device code). */
export interface DeviceParams {
  scope: string;
  resource?: string;
}
export const deviceCtx = (tenant: string, hash: string) => `identity-authz/device_codes/${tenant}/${hash}`;

export const splitScope = (s: string | undefined) => (s ?? "").split(" ").filter(Boolean);

/** Claims of the user that the granted scopes release (OIDC 5.4, plus the tenant's own scopes). */
export function releasedClaims(claims: Record<string, unknown>, scopes: string[], scopeClaims: Map<string, string[]>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of scopes) {
    for (const k of scopeClaims.get(s) ?? []) {
      if (claims[k] !== undefined && !RESERVED_CLAIMS.has(k)) out[k] = claims[k];
    }
  }
  return out;
}

export class TokenService {
  private jwksCache = new Map<string, { etag: string; set: ReturnType<typeof createLocalJWKSet> }>();

  constructor(
    private readonly store: AuthzStore,
    private readonly registry: Registry,
    private readonly keys: KeyRing,
    private readonly protector: DataProtector,
    private readonly dpop: DpopVerifier,
    private readonly cfg: AuthzConfig,
    private readonly issuer: (tenant: string) => string,
    private readonly pairwise?: PairwiseSubjects,
  ) {}

  private audienceOf(client: RegisteredClient, resource: string | undefined): string {
    if (resource !== undefined) {
      if (!client.audiences.includes(resource)) throw oauthError("invalid_target", "this client may not request that resource");
      return resource;
    }
    return client.audiences[0] ?? client.client_id;
  }

  private ttlOf(client: RegisteredClient): number {
    return Math.min(client.access_token_ttl_s ?? this.cfg.access_token_ttl_s, this.cfg.max_token_ttl_s);
  }

  async mintAccessToken(
    tenant: string,
    a: { client: RegisteredClient; sub: string; scope: string; aud: string; authTime?: number; jkt?: string | null; x5t?: string },
  ): Promise<{ token: string; jti: string; exp: number; ttl: number }> {
    const iat = nowS();
    const ttl = this.ttlOf(a.client);
    const jti = randomToken(16);
    const claims: JWTPayload = { iss: this.issuer(tenant), sub: a.sub, aud: a.aud, iat, exp: iat + ttl, client_id: a.client.client_id, scope: a.scope, tenant, jti };
    if (a.authTime !== undefined) claims.auth_time = a.authTime;
    // Bound to the DPoP key (RFC 9449) and/or the TLS client certificate (RFC 8705 §3).
    if (a.jkt || a.x5t) claims.cnf = { ...(a.jkt ? { jkt: a.jkt } : {}), ...(a.x5t ? { "x5t#S256": a.x5t } : {}) };
    if (a.client.access_token_format === "opaque") {
      // A reference only introspection resolves: the claims stay here, the token is stored hashed.
      const token = randomToken(32);
      await this.store.insertOpaqueToken({ hash: await sha256Hex(token), tenant, claims: JSON.stringify(claims), expires_at: iat + ttl });
      return { token, jti, exp: iat + ttl, ttl };
    }
    const token = await (await this.keys.signer(tenant, "ES256")).signJwt("at+jwt", claims);
    return { token, jti, exp: iat + ttl, ttl };
  }

  async mintIdToken(tenant: string, client: RegisteredClient, f: LoginFacts, scopes: string[], nonce?: string): Promise<string> {
    const signer = await this.keys.signer(tenant, client.id_token_signed_response_alg);
    const iat = nowS();
    const claims: JWTPayload = { ...releasedClaims(f.claims, scopes, await this.registry.scopeClaims(tenant)), auth_time: f.auth_time, azp: client.client_id };
    if (nonce) claims.nonce = nonce;
    if (f.amr?.length) claims.amr = f.amr;
    if (f.acr) claims.acr = f.acr;
    if (f.sid) claims.sid = f.sid;
    return signer.signJwt("JWT", {
      ...claims,
      iss: this.issuer(tenant),
      sub: f.sub,
      aud: client.client_id,
      iat,
      exp: iat + Math.min(this.cfg.id_token_ttl_s, this.cfg.max_token_ttl_s),
    });
  }

  /** client_credentials: no user, no grant row, no refresh token. */
  async clientCredentials(tenant: string, client: RegisteredClient, form: Form, jkt: string | null, x5t?: string): Promise<TokenResponse> {
    if (!client.grant_types.includes("client_credentials")) throw oauthError("unauthorized_client", "this client may not use client_credentials");
    const allowed = client.scopes.filter((s) => !RESERVED.has(s));
    const requested = form.has("scope") ? splitScope(form.get("scope")) : allowed;
    for (const s of requested) if (!allowed.includes(s)) throw oauthError("invalid_scope", `scope '${s}' is not allowed for this client`);
    const scope = [...new Set(requested)].join(" ");
    const at = await this.mintAccessToken(tenant, { client, sub: client.client_id, scope, aud: this.audienceOf(client, form.get("resource")), jkt, x5t });
    return { access_token: at.token, token_type: jkt ? "DPoP" : "Bearer", expires_in: at.ttl, scope };
  }

  private async issueForGrant(tenant: string, client: RegisteredClient, grant: GrantRow, data: GrantData, jkt: string | null, scopes: string[], nonce?: string, x5t?: string): Promise<TokenResponse> {
    const scope = scopes.join(" ");
    const at = await this.mintAccessToken(tenant, { client, sub: grant.subject, scope, aud: data.aud, authTime: data.auth_time, jkt, x5t });
    await this.store.insertAccessToken({ jti: at.jti, tenant, grant_id: grant.id, expires_at: at.exp });
    const res: TokenResponse = { access_token: at.token, token_type: jkt ? "DPoP" : "Bearer", expires_in: at.ttl, scope };
    if (client.grant_types.includes("refresh_token")) {
      const rt = randomToken(32);
      await this.store.insertRefresh({ hash: await sha256Hex(rt), tenant, grant_id: grant.id, client_id: client.client_id, created_at: nowS(), expires_at: grant.expires_at });
      res.refresh_token = rt;
    }
    // The grant's subject is the one this client sees (pairwise or public), in every token.
    if (scopes.includes("openid")) res.id_token = await this.mintIdToken(tenant, client, { ...data, sub: grant.subject }, scopes, nonce);
    return res;
  }

  async authorizationCode(tenant: string, client: RegisteredClient, form: Form, jkt: string | null, x5t?: string): Promise<TokenResponse> {
    if (!client.grant_types.includes("authorization_code")) throw oauthError("unauthorized_client", "this client may not use authorization_code");
    const code = form.get("code");
    if (!code) throw oauthError("invalid_request", "code is missing");
    const verifier = form.get("code_verifier");
    if (!verifier) throw oauthError("invalid_request", "code_verifier is missing (PKCE is required)");
    const hash = await sha256Hex(code);
    const row = await this.store.getCode(tenant, hash);
    if (!row) throw oauthError("invalid_grant", "unknown or expired code");
    if (row.used) {
      // A replayed code: what it issued can no longer be trusted.
      if (row.grant_id) await this.store.revokeGrant(tenant, row.grant_id);
      throw oauthError("invalid_grant", "the code was already used; its tokens are revoked");
    }
    if (row.client_id !== client.client_id) throw oauthError("invalid_grant", "the code was issued to another client");
    if (row.expires_at < nowS()) throw oauthError("invalid_grant", "the code has expired");
    const data = JSON.parse(dec.decode(await this.protector.decrypt(row.data, codeCtx(tenant, hash)))) as CodeData;
    const redirect = form.get("redirect_uri");
    if (redirect !== undefined ? redirect !== data.redirect_uri : data.redirect_uri_given) throw oauthError("invalid_grant", "redirect_uri does not match the authorization request");
    if (!VERIFIER.test(verifier) || !equalConstantTime(await sha256B64url(verifier), data.code_challenge)) throw oauthError("invalid_grant", "PKCE verification failed");
    if (data.dpop_jkt && data.dpop_jkt !== jkt) throw oauthError("invalid_grant", "the code is bound to another DPoP key");
    const grantId = randomToken(16);
    if (!(await this.store.useCode(hash, grantId))) throw oauthError("invalid_grant", "the code was already used");
    return this.newGrant(tenant, client, grantId, data, data.scope, data.resource, jkt, data.nonce, x5t);
  }

  /** A user grant (claims barrier-encrypted) and its first tokens. */
  private async newGrant(tenant: string, client: RegisteredClient, grantId: string, facts: LoginFacts, scope: string, resource: string | undefined, jkt: string | null, nonce?: string, x5t?: string): Promise<TokenResponse> {
    const gdata: GrantData = {
      sub: facts.sub, auth_time: facts.auth_time, amr: facts.amr, acr: facts.acr, claims: facts.claims, sid: facts.sid,
      aud: this.audienceOf(client, resource),
      audiences: resource !== undefined ? [resource] : [...client.audiences],
    };
    const t = nowS();
    const grant: GrantRow = {
      id: grantId,
      tenant,
      client_id: client.client_id,
      subject: this.pairwise ? await this.pairwise.subject(tenant, client, facts.sub) : facts.sub,
      scope,
      data: await this.protector.encrypt(enc.encode(JSON.stringify(gdata)), grantCtx(tenant, grantId)),
      // Public clients' refresh tokens are bound to their DPoP key (RFC 9449 5).
      dpop_jkt: client.token_endpoint_auth_method === "none" ? jkt : null,
      created_at: t,
      expires_at: t + this.cfg.refresh_token_ttl_s,
      revoked: 0,
    };
    await this.store.insertGrant(grant);
    return this.issueForGrant(tenant, client, grant, gdata, jkt, splitScope(scope), nonce, x5t);
  }

  /**
   * The device grant (RFC 8628 §3.4-3.5): answers `authorization_pending` until the user decides,
   * `slow_down` to a poll sooner than the interval, `access_denied`, `expired_token`; an approved
   * request turns into a grant once (a conditional update), as a code does.
   */
  async deviceCode(tenant: string, client: RegisteredClient, form: Form, jkt: string | null, x5t?: string): Promise<TokenResponse> {
    if (!client.grant_types.includes(DEVICE_GRANT)) throw oauthError("unauthorized_client", "this client may not use the device grant");
    const code = form.get("device_code");
    if (!code) throw oauthError("invalid_request", "device_code is missing");
    const hash = await sha256Hex(code);
    const row = code.length <= 512 ? await this.store.getDeviceCode(tenant, hash) : undefined;
    if (!row || row.client_id !== client.client_id) throw oauthError("invalid_grant", "unknown device_code");
    const t = nowS();
    if (row.status === "issued") {
      if (row.grant_id) await this.store.revokeGrant(tenant, row.grant_id);
      throw oauthError("invalid_grant", "the device_code was already used; its tokens are revoked");
    }
    if (row.expires_at < t) throw oauthError("expired_token", "the device_code has expired; start again");
    if (row.status === "denied") throw oauthError("access_denied", "the user denied the request");
    if (!(await this.store.pollDevice(hash, t))) throw oauthError("slow_down", "polling too often; wait 5 s more between polls");
    if (row.status !== "approved" || !row.login) throw oauthError("authorization_pending", "the user has not yet approved the request");
    const params = JSON.parse(dec.decode(await this.protector.decrypt(row.params, deviceCtx(tenant, hash)))) as DeviceParams;
    const facts = JSON.parse(dec.decode(await this.protector.decrypt(row.login, deviceCtx(tenant, hash)))) as LoginFacts & { scope: string };
    const grantId = randomToken(16);
    if (!(await this.store.issueDevice(hash, grantId))) throw oauthError("invalid_grant", "the device_code was already used");
    return this.newGrant(tenant, client, grantId, facts, facts.scope, params.resource, jkt, undefined, x5t);
  }

  async refresh(tenant: string, client: RegisteredClient, form: Form, jkt: string | null, x5t?: string): Promise<TokenResponse> {
    if (!client.grant_types.includes("refresh_token")) throw oauthError("unauthorized_client", "this client may not use refresh_token");
    const rt = form.get("refresh_token");
    if (!rt) throw oauthError("invalid_request", "refresh_token is missing");
    const hash = await sha256Hex(rt);
    const row = await this.store.getRefresh(tenant, hash);
    if (!row || row.client_id !== client.client_id) throw oauthError("invalid_grant", "unknown refresh token");
    if (row.used) {
      // Reuse of a rotated token: someone holds a copy. Revoke the whole family.
      await this.store.revokeGrant(tenant, row.grant_id);
      throw oauthError("invalid_grant", "the refresh token was already used; the grant is revoked");
    }
    const grant = await this.store.getGrant(tenant, row.grant_id);
    if (!grant || grant.revoked || grant.expires_at < nowS() || row.expires_at < nowS()) throw oauthError("invalid_grant", "the grant is revoked or expired");
    if (grant.dpop_jkt && grant.dpop_jkt !== jkt) throw oauthError("invalid_grant", "the refresh token is bound to another DPoP key");
    // Scope and resource are checked before the token is used up, so a refused request leaves it valid.
    const granted = splitScope(grant.scope);
    const requested = form.has("scope") ? splitScope(form.get("scope")) : granted;
    for (const s of requested) if (!granted.includes(s)) throw oauthError("invalid_scope", `scope '${s}' was not granted`);
    const data = JSON.parse(dec.decode(await this.protector.decrypt(grant.data, grantCtx(tenant, grant.id)))) as GrantData;
    // RFC 8707: an access token for one of the audiences the grant covers, still allowed to the client.
    const resource = form.get("resource");
    if (resource !== undefined && !((data.audiences ?? [data.aud]).includes(resource) && client.audiences.includes(resource))) {
      throw oauthError("invalid_target", "this grant does not cover that resource");
    }
    if (!(await this.store.useRefresh(hash))) {
      await this.store.revokeGrant(tenant, row.grant_id);
      throw oauthError("invalid_grant", "the refresh token was already used; the grant is revoked");
    }
    return this.issueForGrant(tenant, client, grant, resource === undefined ? data : { ...data, aud: resource }, jkt, requested, undefined, x5t);
  }

  /** Verifies an access token of this tenant; null if it is not one (bad signature, expired, wrong issuer). */
  async verifyAccessToken(tenant: string, token: string): Promise<JWTPayload | null> {
    if (token.length > 8192 || token.split(".").length !== 3) return null;
    const { etag } = await this.keys.jwks(tenant);
    let hit = this.jwksCache.get(tenant);
    if (!hit || hit.etag !== etag) {
      hit = { etag, set: createLocalJWKSet({ keys: await this.keys.publicKeys(tenant) } as never) };
      this.jwksCache.set(tenant, hit);
    }
    try {
      const { payload } = await jwtVerify(token, hit.set, { issuer: this.issuer(tenant), typ: "at+jwt", algorithms: ["ES256"], requiredClaims: ["exp", "jti", "sub"] });
      return payload;
    } catch {
      return null;
    }
  }

  /** The claims of a live opaque access token of this tenant; null if it is not one. */
  private async opaqueClaims(tenant: string, token: string): Promise<JWTPayload | null> {
    if (token.length > 512 || token.includes(".")) return null;
    const row = await this.store.getOpaqueToken(tenant, await sha256Hex(token));
    return row ? (JSON.parse(row.claims) as JWTPayload) : null;
  }

  /** Whether a verified access token is still live: not revoked, its grant (if any) not revoked. */
  private async live(tenant: string, p: JWTPayload): Promise<{ grant: GrantRow | null } | null> {
    const jti = String(p.jti);
    if (await this.store.isRevokedJti(tenant, jti)) return null;
    const link = await this.store.getAccessToken(tenant, jti);
    if (!link) return { grant: null };
    const grant = await this.store.getGrant(tenant, link.grant_id);
    if (!grant || grant.revoked) return null;
    return { grant };
  }

  async introspect(tenant: string, token: string | undefined, hint: string | undefined): Promise<Record<string, unknown>> {
    if (!token) throw oauthError("invalid_request", "token is missing");
    if (hint !== "refresh_token") {
      const p = (await this.verifyAccessToken(tenant, token)) ?? (await this.opaqueClaims(tenant, token));
      if (p && (await this.live(tenant, p))) {
        const cnf = p.cnf as { jkt?: string } | undefined;
        return {
          active: true,
          iss: p.iss, sub: p.sub, aud: p.aud, client_id: p.client_id, scope: p.scope, exp: p.exp, iat: p.iat, jti: p.jti,
          token_type: cnf?.jkt ? "DPoP" : "Bearer",
          ...(cnf ? { cnf } : {}),
        };
      }
      if (p) return { active: false };
    }
    const row = token.length <= 512 ? await this.store.getRefresh(tenant, await sha256Hex(token)) : undefined;
    if (row && !row.used && row.expires_at >= nowS()) {
      const grant = await this.store.getGrant(tenant, row.grant_id);
      if (grant && !grant.revoked) {
        return { active: true, iss: this.issuer(tenant), sub: grant.subject, client_id: row.client_id, scope: grant.scope, exp: row.expires_at, iat: row.created_at, token_type: "refresh_token" };
      }
    }
    return { active: false };
  }

  /** RFC 7009: revokes a token of this client; unknown tokens are not an error. */
  async revoke(tenant: string, client: RegisteredClient, token: string | undefined, hint: string | undefined): Promise<void> {
    if (!token) throw oauthError("invalid_request", "token is missing");
    if (hint !== undefined && hint !== "access_token" && hint !== "refresh_token") throw oauthError("unsupported_token_type", "token_type_hint is not supported");
    const p = (await this.verifyAccessToken(tenant, token)) ?? (await this.opaqueClaims(tenant, token));
    if (p) {
      if (p.client_id === client.client_id) await this.store.revokeJti(tenant, String(p.jti), Number(p.exp));
      return;
    }
    const row = token.length <= 512 ? await this.store.getRefresh(tenant, await sha256Hex(token)) : undefined;
    if (row && row.client_id === client.client_id) await this.store.revokeGrant(tenant, row.grant_id);
  }

  /** OIDC userinfo: the claims the grant's scopes release. DPoP-bound tokens need their proof. */
  async userinfo(tenant: string, req: Request, htu: string, cert?: ClientCertificate): Promise<Record<string, unknown>> {
    const h = req.headers.get("authorization") ?? "";
    const m = h.match(/^(Bearer|DPoP) ([A-Za-z0-9_\-.~+/]+=*)$/i);
    const challenge = (code: string) => ({ "WWW-Authenticate": `Bearer error="${code}", DPoP algs="ES256 PS256 RS256 EdDSA"` });
    if (!m) throw oauthError("invalid_token", "an access token is required", { "WWW-Authenticate": "Bearer, DPoP" });
    const scheme = m[1]!.toLowerCase();
    const token = m[2]!;
    const p = await this.verifyAccessToken(tenant, token);
    const state = p ? await this.live(tenant, p) : null;
    if (!p || !state) throw oauthError("invalid_token", "the access token is not valid", challenge("invalid_token"));
    const jkt = (p.cnf as { jkt?: string } | undefined)?.jkt;
    if (jkt) {
      if (scheme !== "dpop") throw oauthError("invalid_token", "this token is DPoP-bound; use the DPoP scheme", challenge("invalid_token"));
      const proofJkt = await this.dpop.verify(tenant, req, htu, token, "invalid_token");
      if (proofJkt !== jkt) throw oauthError("invalid_token", "the DPoP proof does not match the token's key", challenge("invalid_token"));
    } else if (scheme === "dpop") {
      throw oauthError("invalid_token", "this token is not DPoP-bound", challenge("invalid_token"));
    }
    const x5t = (p.cnf as { "x5t#S256"?: string } | undefined)?.["x5t#S256"];
    if (x5t !== undefined && cert?.x5tS256 !== x5t) throw oauthError("invalid_token", "this token is bound to another client certificate (use the mTLS endpoint with it)", challenge("invalid_token"));
    const scopes = splitScope(String(p.scope ?? ""));
    if (!state.grant || !scopes.includes("openid")) throw oauthError("insufficient_scope", "userinfo needs a user token with scope openid", challenge("insufficient_scope"));
    const data = JSON.parse(dec.decode(await this.protector.decrypt(state.grant.data, grantCtx(tenant, state.grant.id)))) as GrantData;
    return { sub: state.grant.subject, ...releasedClaims(data.claims, scopes, await this.registry.scopeClaims(tenant)) };
  }

  /**
   * RP-initiated logout: ends the grants of this user (`sub` as the client sees it) at this
   * client, and returns the user's own subject (a pairwise client's is found through its grant).
   */
  async endGrants(tenant: string, sub: string, client: RegisteredClient): Promise<string> {
    let local = sub;
    if (client.subject_type === "pairwise") {
      const g = await this.store.grantBySubject(tenant, sub, client.client_id);
      if (g) local = (JSON.parse(dec.decode(await this.protector.decrypt(g.data, grantCtx(tenant, g.id)))) as GrantData).sub;
    }
    await this.store.revokeGrantsOf(tenant, sub, client.client_id);
    return local;
  }
}
