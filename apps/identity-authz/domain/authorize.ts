/**
 * The front channel: authorization requests (direct or pushed, RFC 9126), the
 * signed login hand-off to identity-idp and back, and RP-initiated logout.
 *
 * Validated before anything is trusted: the client, then the redirect URI by
 * exact string match, any port for a registered loopback IP URI without one (RFC 8252
 * §7.3) (errors before that point are shown, never redirected);
 * PKCE S256 is required; pending requests and PAR references are random,
 * single use and short-lived; the login verifier must be signed by the idp, be
 * addressed to this tenant's issuer, be fresh, answer a pending request and be
 * used once. Responses carry `iss` (RFC 9207).
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload } from "jose";
import type { DataProtector } from "../../../src/service/context.ts";
import type { AuthzConfig } from "../config.ts";
import type { AuthzStore } from "../store.ts";
import type { KeyRing } from "./keys.ts";
import type { RegisteredClient, Registry } from "./registry.ts";
import { codeCtx, splitScope, type CodeData, type LoginFacts, type TokenService } from "./tokens.ts";
import { oauthError, type OAuthErrorCode } from "./oauth-error.ts";
import { nowS, randomToken, sha256Hex } from "./crypto.ts";
import type { ClientAuthenticator, Form } from "./client-auth.ts";
import { AppError } from "../../../src/service/errors.ts";
import { runtime } from "../../../src/runtime/index.ts";
import type { AuditSender } from "../../../src/audit/sender.ts";
import type { BackchannelLogout } from "./backchannel-logout.ts";
import { OutboundRefused } from "../../../src/net/small-document.ts";
import type { ClientDocuments } from "./client-documents.ts";

export const PAR_PREFIX = "urn:ietf:params:oauth:request_uri:";
const PAR_TTL_S = 60;
const PENDING_TTL_S = 600;
/** A logout request only has to survive one browser redirect. */
const LOGOUT_REQUEST_TTL_S = 120;
const CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const PROMPTS = new Set(["none", "login", "consent", "select_account"]);
/** RFC 9101 request objects: the signing algorithms accepted (never `none`), the longest lifetime, the claims that are not parameters. */
export const REQUEST_OBJECT_ALGS = ["ES256", "RS256", "PS256", "EdDSA", "Ed25519"];
const REQUEST_OBJECT_MAX_LIFETIME_S = 3600;
/** The longest request object, by value or fetched by reference. */
const REQUEST_OBJECT_MAX_CHARS = 16_384;
/** OIDC Core §6.2: a request_uri is at most 512 ASCII characters. */
const REQUEST_URI_MAX_CHARS = 512;
const REQUEST_OBJECT_CLAIMS = new Set(["iss", "aud", "exp", "nbf", "iat", "jti", "sub"]);
const IDP_ERRORS = new Set(["access_denied", "login_required", "consent_required", "interaction_required", "account_selection_required"]);

export interface AuthParams {
  client_id: string;
  redirect_uri: string;
  redirect_uri_given: boolean;
  scope: string;
  state?: string;
  nonce?: string;
  code_challenge: string;
  prompt?: string;
  max_age?: number;
  login_hint?: string;
  acr_values?: string;
  resource?: string;
  dpop_jkt?: string;
  /** A device authorization request (RFC 8628): the SHA-256 of its device_code, and its user code. */
  device?: { hash: string; user_code: string };
}

/** A device request's user signed in: the page that asks to approve it follows. */
export interface DeviceSignIn {
  hash: string;
  user_code: string;
  client_id: string;
  scope: string;
  login: LoginFacts & { scope: string };
}

/** An error shown to the user agent, never redirected: the redirect URI is not trusted (yet). */
export class FrontChannelError extends AppError {}

/** An error reported to the client at its (validated) redirect URI. */
export class RedirectError extends Error {
  constructor(readonly location: string) {
    super("redirect");
  }
}

/**
 * Whether `given` is one of the client's redirect URIs: an exact string match, or (RFC 8252
 * §7.3) a loopback IP literal URI `http://127.0.0.1:<port>/...` or `http://[::1]:<port>/...`
 * whose registered form has no port: native apps listen on whatever port is free. Only the
 * port may differ; `localhost` is not a loopback IP literal and matches exactly only.
 */
export function redirectMatches(registered: readonly string[], given: string): boolean {
  if (registered.includes(given)) return true;
  const m = /^http:\/\/(127\.0\.0\.1|\[::1\]):(\d{1,5})([/?][^#]*)?$/.exec(given);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return false;
  return registered.includes(`http://${m[1]}${m[3] ?? ""}`);
}

export type FrontResult = { redirect: string } | { page: string; status: number };

const enc = new TextEncoder();
const dec = new TextDecoder();
const pendingCtx = (tenant: string, id: string) => `identity-authz/auth_requests/${tenant}/${id}`;

function withParams(uri: string, params: Record<string, string | undefined>): string {
  const u = new URL(uri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u.toString();
}

const limited = (q: Form, k: string, max: number) => {
  const x = q.get(k);
  if (x !== undefined && x.length > max) throw oauthError("invalid_request", `${k} is too long`);
  return x;
};

export class AuthorizeService {
  private readonly idpSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(
    private readonly store: AuthzStore,
    private readonly registry: Registry,
    private readonly keys: KeyRing,
    private readonly tokens: TokenService,
    private readonly protector: DataProtector,
    private readonly cfg: AuthzConfig,
    private readonly issuer: (tenant: string) => string,
    private readonly caPem: () => string | undefined,
    private readonly documents: ClientDocuments,
    private readonly audit?: AuditSender,
    private readonly clientKeys?: ClientAuthenticator,
    private readonly backchannel?: BackchannelLogout,
  ) {}

  private get idpUrl(): string {
    return this.cfg.idp_url.replace(/\/+$/, "");
  }

  private errorRedirect(tenant: string, p: { redirect_uri: string; state?: string }, code: OAuthErrorCode, description: string): RedirectError {
    return new RedirectError(withParams(p.redirect_uri, { error: code, error_description: description, state: p.state, iss: this.issuer(tenant) }));
  }

  /** Client and redirect URI first: until both are known good, errors are shown, not redirected. */
  private redirectOf(client: RegisteredClient, q: Form): { redirect_uri: string; given: boolean } {
    const given = q.get("redirect_uri");
    if (given !== undefined) {
      if (!redirectMatches(client.redirect_uris, given)) throw new FrontChannelError("invalid_request", "redirect_uri is not registered for this client", { status: 400 });
      return { redirect_uri: given, given: true };
    }
    if (client.redirect_uris.length !== 1) throw new FrontChannelError("invalid_request", "redirect_uri is required", { status: 400 });
    return { redirect_uri: client.redirect_uris[0]!, given: false };
  }

  /** The rest of the request, once the redirect URI is trusted. Throws OAuth AppErrors. */
  private parse(client: RegisteredClient, q: Form, redirect: { redirect_uri: string; given: boolean }): AuthParams {
    if (!client.grant_types.includes("authorization_code")) throw oauthError("unauthorized_client", "this client may not use authorization_code");
    if (q.get("response_type") !== "code") throw oauthError("unsupported_response_type", "only response_type=code is supported");
    const challenge = q.get("code_challenge");
    if (!challenge) throw oauthError("invalid_request", "code_challenge is required (PKCE)");
    if (q.get("code_challenge_method") !== "S256") throw oauthError("invalid_request", "code_challenge_method must be S256");
    if (!CHALLENGE.test(challenge)) throw oauthError("invalid_request", "code_challenge is malformed");
    const scopes = splitScope(limited(q, "scope", 2000));
    for (const s of scopes) if (!client.scopes.includes(s)) throw oauthError("invalid_scope", `scope '${s}' is not allowed for this client`);
    const prompt = limited(q, "prompt", 100);
    const prompts = splitScope(prompt);
    if (prompts.some((p) => !PROMPTS.has(p)) || (prompts.includes("none") && prompts.length > 1)) throw oauthError("invalid_request", "prompt is not valid");
    const maxAgeRaw = q.get("max_age");
    if (maxAgeRaw !== undefined && !/^\d{1,9}$/.test(maxAgeRaw)) throw oauthError("invalid_request", "max_age must be a non-negative integer");
    const resource = limited(q, "resource", 300);
    if (resource !== undefined && !client.audiences.includes(resource)) throw oauthError("invalid_target", "this client may not request that resource");
    const dpopJkt = q.get("dpop_jkt");
    if (dpopJkt !== undefined && !CHALLENGE.test(dpopJkt)) throw oauthError("invalid_request", "dpop_jkt is malformed");
    return {
      client_id: client.client_id,
      redirect_uri: redirect.redirect_uri,
      redirect_uri_given: redirect.given,
      scope: [...new Set(scopes)].join(" "),
      state: limited(q, "state", 2000),
      nonce: limited(q, "nonce", 512),
      code_challenge: challenge,
      prompt,
      max_age: maxAgeRaw === undefined ? undefined : Number(maxAgeRaw),
      login_hint: limited(q, "login_hint", 256),
      acr_values: limited(q, "acr_values", 256),
      resource,
      dpop_jkt: dpopJkt,
    };
  }

  /**
   * RFC 9101: the authorization request's parameters from a signed request object. Verified with
   * the client's registered keys (`jwks` or `jwks_uri`; ES256, RS256, PS256, EdDSA; never `none`),
   * `iss` = the client, `aud` = this issuer, `exp` required and at most an hour after `nbf` (or
   * now), `nbf` not in the future, `jti` used once. Only the object's parameters count.
   */
  private async requestObject(tenant: string, client: RegisteredClient, jwt: string): Promise<Form> {
    const refuse = (d: string) => oauthError("invalid_request_object", d);
    if (!this.clientKeys || (!client.jwks && !client.jwks_uri)) throw refuse("the client has no registered keys (jwks or jwks_uri) to verify a request object");
    if (jwt.length > REQUEST_OBJECT_MAX_CHARS) throw refuse("the request object is too long");
    let payload: JWTPayload;
    let typ: string | undefined;
    try {
      const r = await jwtVerify(jwt, this.clientKeys.keySet(client), {
        issuer: client.client_id,
        audience: this.issuer(tenant),
        algorithms: REQUEST_OBJECT_ALGS,
        requiredClaims: ["exp", "jti"],
        clockTolerance: 5,
      });
      payload = r.payload;
      typ = r.protectedHeader.typ;
    } catch {
      throw refuse("the request object's signature, issuer, audience or lifetime is not valid");
    }
    if (typ !== undefined && !["oauth-authz-req+jwt", "JWT", "jwt"].includes(typ)) throw refuse("the request object's typ must be oauth-authz-req+jwt");
    const t = nowS();
    const exp = payload.exp!;
    if (exp - (payload.nbf ?? t) > REQUEST_OBJECT_MAX_LIFETIME_S) throw refuse("the request object lives longer than an hour");
    if (payload.client_id !== undefined && payload.client_id !== client.client_id) throw refuse("the request object's client_id differs from the request's");
    if (typeof payload.jti !== "string" || payload.jti.length > 256) throw refuse("the request object's jti is not valid");
    if (!(await this.store.useJti(tenant, `request:${client.client_id}`, payload.jti, exp + 10))) throw refuse("the request object was already used");
    const form: Form = new Map();
    for (const [k, v] of Object.entries(payload)) {
      if (REQUEST_OBJECT_CLAIMS.has(k)) continue;
      if (k === "request" || k === "request_uri") throw refuse(`a request object cannot hold ${k}`);
      if (typeof v === "string") {
        if (v.length > 16_384) throw refuse(`parameter '${k.slice(0, 64)}' is too long`);
        if (v !== "") form.set(k, v);
      } else if (typeof v === "number" && Number.isInteger(v)) form.set(k, String(v));
      else throw refuse(`parameter '${k.slice(0, 64)}' must be a string`);
    }
    form.set("client_id", client.client_id);
    return form;
  }

  /**
   * RFC 9101 §5.2 / OIDC Core §6.2: a request object by reference. Only a URI the client
   * registered in `request_uris` (compared exactly, fragments left out), fetched once per use
   * under src/net/small-document.ts's rules (https, no redirects, `app.request_uri_timeout_ms`,
   * 16 KiB, public addresses unless `app.client_urls_allow_private_addresses`), then verified
   * exactly as a `request` value. A URI or fetch that fails is `invalid_request_uri`; an object
   * that fails is `invalid_request_object`.
   */
  private async requestObjectByReference(tenant: string, client: RegisteredClient, uri: string): Promise<Form> {
    const refuse = (d: string) => oauthError("invalid_request_uri", d);
    if (uri.length > REQUEST_URI_MAX_CHARS) throw refuse(`request_uri is longer than ${REQUEST_URI_MAX_CHARS} characters`);
    if (!URL.canParse(uri) || new URL(uri).protocol !== "https:") throw refuse("request_uri must be an https URL (or PAR's urn)");
    if (!client.request_uris.length) throw refuse("this client registered no request_uris");
    const bare = (u: string) => u.split("#", 1)[0]!;
    const target = bare(uri);
    if (!client.request_uris.some((r) => bare(r) === target)) throw refuse("request_uri is not registered for this client");
    let jwt: string;
    try {
      jwt = await this.documents(target, { timeoutMs: this.cfg.request_uri_timeout_ms, maxBytes: REQUEST_OBJECT_MAX_CHARS, accept: "application/oauth-authz-req+jwt" });
    } catch (e) {
      if (e instanceof OutboundRefused) throw refuse(`request_uri could not be fetched: ${e.message}`);
      throw e;
    }
    return this.requestObject(tenant, client, jwt.trim());
  }

  /** PAR (RFC 9126): the client is already authenticated; errors are JSON, not redirects. */
  async par(tenant: string, client: RegisteredClient, outer: Form, dpopJkt: string | null): Promise<{ request_uri: string; expires_in: number }> {
    if (outer.has("request_uri")) throw oauthError("invalid_request", "request_uri is not allowed in a pushed request");
    const jwt = outer.get("request");
    if (jwt === undefined && client.require_signed_request_object) throw oauthError("invalid_request", "this client must send a signed request object (request)");
    const form = jwt === undefined ? outer : await this.requestObject(tenant, client, jwt);
    let redirect;
    try {
      redirect = this.redirectOf(client, form);
    } catch (e) {
      throw oauthError("invalid_request", (e as Error).message);
    }
    const params = this.parse(client, form, redirect);
    // A DPoP proof at PAR binds the code to that key (RFC 9449 10.1).
    if (dpopJkt) {
      if (params.dpop_jkt && params.dpop_jkt !== dpopJkt) throw oauthError("invalid_dpop_proof", "dpop_jkt differs from the proof's key");
      params.dpop_jkt = dpopJkt;
    }
    const ref = randomToken(32);
    const id = await sha256Hex(ref);
    const t = nowS();
    await this.store.insertAuthRequest({
      id, tenant, kind: "par", client_id: client.client_id,
      params: await this.protector.encrypt(enc.encode(JSON.stringify(params)), pendingCtx(tenant, id)),
      created_at: t, expires_at: t + PAR_TTL_S,
    });
    return { request_uri: PAR_PREFIX + ref, expires_in: PAR_TTL_S };
  }

  /** GET /authorize: validates, stores the pending request, and hands the browser to the idp. */
  async authorize(tenant: string, query: Form): Promise<string> {
    let q = query;
    const clientId = q.get("client_id");
    if (!clientId) throw new FrontChannelError("invalid_request", "client_id is required", { status: 400 });
    const client = await this.registry.client(tenant, clientId);
    if (!client) throw new FrontChannelError("invalid_client", "unknown client", { status: 400 });
    let params: AuthParams;
    const requestUri = q.get("request_uri");
    const jwt = q.get("request");
    const pushed = requestUri?.startsWith(PAR_PREFIX) ?? false;
    // The redirect URI inside an unverified object is not trusted: its refusals are shown, never redirected.
    const shown = async (object: () => Promise<Form>) => {
      try {
        return await object();
      } catch (e) {
        if (e instanceof AppError) throw new FrontChannelError(e.code, e.message, { status: 400 });
        throw e;
      }
    };
    if (jwt !== undefined) {
      if (requestUri !== undefined) throw new FrontChannelError("invalid_request", "request and request_uri cannot both be given", { status: 400 });
      q = await shown(() => this.requestObject(tenant, client, jwt));
    } else if (requestUri !== undefined && !pushed) {
      q = await shown(() => this.requestObjectByReference(tenant, client, requestUri));
    } else if (requestUri === undefined && client.require_signed_request_object) {
      throw new FrontChannelError("invalid_request", "this client must send a signed request object (request, request_uri, or request_uri from PAR)", { status: 400 });
    }
    if (requestUri !== undefined && pushed) {
      if (requestUri.length > 200) throw new FrontChannelError("invalid_request_uri", "request_uri is not valid", { status: 400 });
      const id = await sha256Hex(requestUri.slice(PAR_PREFIX.length));
      const row = await this.store.takeAuthRequest(tenant, id, "par");
      if (!row || row.client_id !== client.client_id) throw new FrontChannelError("invalid_request_uri", "request_uri is unknown, expired or used", { status: 400 });
      params = JSON.parse(dec.decode(await this.protector.decrypt(row.params, pendingCtx(tenant, id)))) as AuthParams;
    } else {
      const redirect = this.redirectOf(client, q);
      try {
        if (client.require_par) throw oauthError("invalid_request", "this client must use pushed authorization requests");
        params = this.parse(client, q, redirect);
      } catch (e) {
        if (e instanceof AppError) throw this.errorRedirect(tenant, { redirect_uri: redirect.redirect_uri, state: q.get("state")?.slice(0, 2000) }, e.code as OAuthErrorCode, e.message);
        throw e;
      }
    }

    return this.handOff(tenant, client, params);
  }

  /**
   * A device request's user code was entered: the same signed hand-off to the idp as an
   * authorization request; the callback then returns the sign-in instead of a code.
   */
  async deviceHandOff(tenant: string, client: RegisteredClient, d: { hash: string; user_code: string; scope: string }): Promise<string> {
    return this.handOff(tenant, client, {
      client_id: client.client_id, redirect_uri: "", redirect_uri_given: false, code_challenge: "", scope: d.scope,
      device: { hash: d.hash, user_code: d.user_code },
    });
  }

  /** Stores the pending request and returns the idp's login URL with the signed challenge. */
  private async handOff(tenant: string, client: RegisteredClient, params: AuthParams): Promise<string> {
    const id = randomToken(16); // 128-bit pending-request id, the challenge's jti
    const t = nowS();
    await this.store.insertAuthRequest({
      id, tenant, kind: "pending", client_id: client.client_id,
      params: await this.protector.encrypt(enc.encode(JSON.stringify(params)), pendingCtx(tenant, id)),
      created_at: t, expires_at: t + PENDING_TTL_S,
    });
    const signer = await this.keys.signer(tenant, "ES256");
    const challenge = await signer.signJwt("login-challenge+jwt", {
      iss: this.issuer(tenant),
      aud: "identity-idp",
      iat: t,
      exp: t + PENDING_TTL_S,
      jti: id,
      client_id: client.client_id,
      client_name: client.client_name,
      scope: params.scope,
      ...(params.prompt ? { prompt: params.prompt } : {}),
      ...(params.max_age !== undefined ? { max_age: params.max_age } : {}),
      ...(params.login_hint ? { login_hint: params.login_hint } : {}),
      ...(params.acr_values ? { acr_values: params.acr_values } : {}),
    });
    return withParams(`${this.idpUrl}/t/${encodeURIComponent(tenant)}/login`, { login_challenge: challenge });
  }

  private idpKeys(tenant: string) {
    const url = (this.cfg.idp_jwks_url ?? `${this.idpUrl}/t/{tenant}/jwks`).replace("{tenant}", encodeURIComponent(tenant));
    let set = this.idpSets.get(url);
    if (!set) {
      const ca = this.caPem();
      set = createRemoteJWKSet(new URL(url), {
        timeoutDuration: 5000,
        cooldownDuration: 30_000,
        [customFetch]: (u, init) => runtime.fetch(u, init, { ca }),
      });
      if (this.idpSets.size > 10_000) this.idpSets.clear();
      this.idpSets.set(url, set);
    }
    return set;
  }

  /** GET /login/callback: the idp's signed answer; issues the code and returns the client redirect. */
  async callback(tenant: string, verifier: string | undefined): Promise<string | { device: DeviceSignIn }> {
    if (!verifier || verifier.length > 16_384) throw new FrontChannelError("invalid_request", "login_verifier is missing", { status: 400 });
    let v: JWTPayload;
    try {
      ({ payload: v } = await jwtVerify(verifier, this.idpKeys(tenant), {
        typ: "login-verifier+jwt",
        issuer: [this.idpUrl, this.idpUrl + "/"],
        audience: this.issuer(tenant),
        algorithms: ["ES256", "ES384", "EdDSA", "Ed25519", "PS256", "RS256"],
        requiredClaims: ["exp", "jti"],
        clockTolerance: 5,
      }));
    } catch (e) {
      throw new FrontChannelError("invalid_request", "the login verifier is not valid", { status: 400, cause: e });
    }
    if (typeof v.challenge !== "string" || typeof v.jti !== "string" || v.jti.length > 256) throw new FrontChannelError("invalid_request", "the login verifier is malformed", { status: 400 });
    if (!(await this.store.useJti(tenant, "verifier", v.jti, (v.exp ?? nowS()) + 10))) throw new FrontChannelError("invalid_request", "the login verifier was already used", { status: 400 });
    const row = await this.store.takeAuthRequest(tenant, v.challenge, "pending");
    if (!row) throw new FrontChannelError("invalid_request", "the login request is unknown, expired or already completed", { status: 400 });
    const p = JSON.parse(dec.decode(await this.protector.decrypt(row.params, pendingCtx(tenant, row.id)))) as AuthParams;
    const fail = (code: OAuthErrorCode, d: string): string => {
      // A device request has no redirect URI: the user is told on the page.
      if (p.device) throw new FrontChannelError(code, d, { status: 400 });
      return withParams(p.redirect_uri, { error: code, error_description: d, state: p.state, iss: this.issuer(tenant) });
    };

    if (typeof v.error === "string") return fail(IDP_ERRORS.has(v.error) ? (v.error as OAuthErrorCode) : "access_denied", "the user did not complete the login");
    if (typeof v.sub !== "string" || !v.sub || v.sub.length > 255 || typeof v.auth_time !== "number") return fail("server_error", "the login verifier lacks the subject");
    const t = nowS();
    if (p.max_age !== undefined && t - v.auth_time > p.max_age + 5) return fail("login_required", "the authentication is older than max_age");
    if (splitScope(p.prompt).includes("login") && v.auth_time < row.created_at - 5) return fail("login_required", "prompt=login needs a fresh authentication");
    const granted = Array.isArray(v.granted_scope) ? v.granted_scope.map(String) : typeof v.granted_scope === "string" ? splitScope(v.granted_scope) : splitScope(p.scope);
    const scope = splitScope(p.scope).filter((s) => granted.includes(s)).join(" ");
    const claims = v.claims && typeof v.claims === "object" && !Array.isArray(v.claims) ? (v.claims as Record<string, unknown>) : {};
    const amr = Array.isArray(v.amr) ? v.amr.map(String).slice(0, 10) : undefined;
    const acr = typeof v.acr === "string" ? v.acr : undefined;
    if (p.device) {
      return { device: { ...p.device, client_id: p.client_id, scope, login: { sub: v.sub, auth_time: v.auth_time, amr, acr, claims, scope } } };
    }

    // The idp's session id (opaque, stable while its session lasts): ID tokens carry it as `sid`.
    const sid = typeof v.sid === "string" && /^[A-Za-z0-9_-]{16,128}$/.test(v.sid) ? v.sid : undefined;
    if (sid) await this.backchannel?.joined(tenant, sid, v.sub, p.client_id, t + this.cfg.refresh_token_ttl_s);
    const code = randomToken(32);
    const hash = await sha256Hex(code);
    const data: CodeData = {
      sub: v.sub, auth_time: v.auth_time, sid,
      amr, acr, claims, redirect_uri: p.redirect_uri, redirect_uri_given: p.redirect_uri_given, code_challenge: p.code_challenge,
      nonce: p.nonce, scope, resource: p.resource, dpop_jkt: p.dpop_jkt,
    };
    await this.store.insertCode({ hash, tenant, client_id: p.client_id, data: await this.protector.encrypt(enc.encode(JSON.stringify(data)), codeCtx(tenant, hash)), expires_at: t + this.cfg.code_ttl_s });
    // The user's subject is kept as an HMAC only: a sign-in is found by it, never shown.
    await this.audit?.record({ tenant, actor: p.client_id, action: "user.sign_in", resource: p.client_id, result: "ok", details: { acr: data.acr ?? "", scope: scope.slice(0, 512) }, sensitive: { sub: v.sub } });
    return withParams(p.redirect_uri, { code, state: p.state, iss: this.issuer(tenant) });
  }

  /**
   * identity-idp's signed report that sessions ended there (an admin revoked them, the user was
   * disabled, or signed out at the idp): one session (`sid`) or every session of `sub`. Signed
   * with the idp's login-verifier keys, addressed to this tenant's issuer, fresh and used once.
   */
  async verifySessionEnded(tenant: string, jws: string | undefined): Promise<{ sid: string } | { subject: string }> {
    const bad = (why: string) => oauthError("invalid_request", `session_ended is not valid: ${why}`);
    if (!jws || jws.length > 8192) throw bad("missing or too long");
    let v: JWTPayload;
    try {
      ({ payload: v } = await jwtVerify(jws, this.idpKeys(tenant), {
        typ: "session-ended+jwt",
        issuer: [this.idpUrl, this.idpUrl + "/"],
        audience: this.issuer(tenant),
        algorithms: ["ES256"],
        requiredClaims: ["exp", "iat", "jti"],
        maxTokenAge: 300,
        clockTolerance: 5,
      }));
    } catch {
      throw bad("its signature or claims do not verify");
    }
    if (typeof v.jti !== "string" || v.jti.length > 256) throw bad("malformed jti");
    if (!(await this.store.useJti(tenant, "session-ended", v.jti, (v.exp ?? nowS()) + 10))) throw bad("already used");
    if (typeof v.sid === "string" && /^[A-Za-z0-9_-]{16,128}$/.test(v.sid)) return { sid: v.sid };
    if (typeof v.sub === "string" && v.sub.length > 0 && v.sub.length <= 255) return { subject: v.sub };
    throw bad("names neither sid nor sub");
  }

  /** RP-initiated logout: ends this client's grants for the user and returns to a registered URI. */
  async logout(tenant: string, q: Form): Promise<FrontResult> {
    const hint = q.get("id_token_hint");
    let clientId = q.get("client_id");
    let sub: string | undefined;
    let sid: string | undefined;
    if (hint) {
      try {
        const set = createLocalJWKSet({ keys: await this.keys.publicKeys(tenant) } as never);
        // An expired hint still names the session to end.
        const { payload } = await jwtVerify(hint, set, { issuer: this.issuer(tenant), typ: "JWT", clockTolerance: this.cfg.refresh_token_ttl_s });
        const aud = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
        if (clientId && clientId !== aud) throw new Error("client_id differs");
        clientId = aud;
        sub = payload.sub;
        if (typeof payload.sid === "string") sid = payload.sid;
      } catch {
        throw new FrontChannelError("invalid_request", "id_token_hint is not valid", { status: 400 });
      }
    }
    const target = q.get("post_logout_redirect_uri");
    const client = clientId ? await this.registry.client(tenant, clientId) : null;
    if (target !== undefined && (!client || !client.post_logout_redirect_uris.includes(target))) {
      throw new FrontChannelError("invalid_request", "post_logout_redirect_uri is not registered for this client", { status: 400 });
    }
    // The idp knows the user by their own subject, not a pairwise one.
    if (sub && client) sub = await this.tokens.endGrants(tenant, sub, client);
    // The session's other clients hear of it over the back channel, in the background.
    if (sid) await this.backchannel?.sessionEnded(tenant, { sid });
    const returnTo = target ? withParams(target, { state: q.get("state")?.slice(0, 2000) }) : undefined;
    if (sub) {
      // Front-channel hand-off: the browser carries a signed logout request to identity-idp,
      // which ends its own session of this user (its cookie is on its origin) and comes back.
      const t = nowS();
      const signer = await this.keys.signer(tenant, "ES256");
      const request = await signer.signJwt("logout-request+jwt", {
        iss: this.issuer(tenant),
        aud: "identity-idp",
        iat: t,
        exp: t + LOGOUT_REQUEST_TTL_S,
        jti: randomToken(16),
        sub,
        ...(client ? { client_id: client.client_id } : {}),
        ...(returnTo ? { post_logout_redirect_uri: returnTo } : {}),
      });
      return { redirect: withParams(`${this.idpUrl}/t/${encodeURIComponent(tenant)}/logout/continue`, { logout_request: request }) };
    }
    if (returnTo) return { redirect: returnTo };
    return { page: "You are signed out of this application.", status: 200 };
  }
}
