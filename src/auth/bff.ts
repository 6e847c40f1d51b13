/**
 * The `/browser` login of every app (backend-for-frontend): OAuth 2.1 authorization code
 * + PKCE (S256) against identity-authz with `oauth4webapi`, ending in a server-side session
 * (`SessionStore`) whose id is the `__Host-cryptoutil_session` cookie. Tokens never reach
 * the browser.
 *
 * Guarantees: state, nonce and the PKCE verifier are random per login and kept in a
 * short-lived cookie that is barrier-encrypted (AEAD, bound to the client id), so it can be
 * neither read nor forged; the callback checks state, requires `iss` (RFC 9207) equal to the
 * discovered issuer, exchanges the code with client authentication over HTTPS (configured CA),
 * and checks the ID token's iss, aud, exp and nonce. `return_to` only accepts local
 * `/browser/` paths. Logout is POST only, same-origin, with the session's CSRF token.
 *
 * Back-channel logout (OIDC Back-Channel Logout 1.0, the receiving side):
 * `POST /browser/backchannel-logout` takes a `logout_token` from identity-authz and ends the
 * sessions of its `sid` (or of its `sub`). The token must verify against the issuer's JWKS with
 * the ID token algorithm, be `typ: logout+jwt`, name this issuer and this client, be issued
 * within the last five minutes and not be expired, carry the back-channel logout event, sid or
 * sub, and no nonce; its jti is spent in the service's database, so it works once across instances.
 *
 * @example
 *   app.use(browserLogin(ctx, parseBrowserLoginConfig(raw)))
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import * as oauth from "oauth4webapi";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AppError } from "../service/errors.ts";
import { requestInfo, principalOf } from "../service/http.ts";
import type { ServiceContext } from "../service/context.ts";
import { readCookie, sessionCookie } from "./session.ts";
import { escapeHtml } from "../service/html.ts";
import { runtime } from "../runtime/index.ts";
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify } from "jose";
import { DatabaseProofReplay } from "./proof-replay.ts";

/** `browser.login`: where and as whom an app logs its users in. */
export const BrowserLoginConfig = v.strictObject({
  /** Issuer of the tenant the app belongs to, e.g. `https://id.example:18000/t/acme`. */
  issuer: v.pipe(v.string(), v.url(), v.startsWith("https://")),
  client_id: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
  /** File holding the client secret (client_secret_basic). */
  client_secret_file: v.pipe(v.string(), v.minLength(1)),
  /** Registered redirect URI. Default: `{this server's origin}/browser/callback`. */
  redirect_uri: v.optional(v.pipe(v.string(), v.url())),
  scope: v.optional(v.pipe(v.string(), v.regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/)), "openid profile"),
  /** PEM bundle trusted for the issuer's TLS. Default: this service's trust bundle (the suite CA). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Where authz sends the browser after logout. Default: `{origin}/browser/`. */
  post_logout_redirect_uri: v.optional(v.pipe(v.string(), v.url())),
  /** Expected ID token algorithm. */
  id_token_alg: v.optional(v.picklist(["ES256", "ES384", "RS256", "PS256", "EdDSA"]), "ES256"),
  /** How long a started login may take. */
  login_ttl_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(30), v.maxValue(3600)), 600),
});

export type BrowserLoginSettings = v.InferOutput<typeof BrowserLoginConfig>;

/** Validates `browser.login`; a bad value stops the start with the key named. */
export function parseBrowserLoginConfig(raw: unknown): BrowserLoginSettings {
  const r = v.safeParse(BrowserLoginConfig, raw);
  if (!r.success) {
    const issue = r.issues[0];
    const key = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
    throw new AppError("config_invalid", `browser.login${key ? "." + key : ""}: ${issue.message}`, { status: 400 });
  }
  return r.output;
}

const LOGIN_COOKIE = "__Host-cryptoutil_login";
const enc = new TextEncoder();
const dec = new TextDecoder();
const b64url = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const unb64url = (s: string) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** What a started login keeps, sealed in a short-lived cookie, until the callback. */
export interface LoginState {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  exp: number;
}

const TENANT_OF_ISSUER = /\/t\/([A-Za-z0-9._-]{1,64})$/;
const safeReturn = (p: unknown) => (typeof p === "string" && /^\/browser\/[A-Za-z0-9._~\-/?=&%]*$/.test(p) && !p.includes("//") ? p : "/browser/");

function loginErrorPage(message: string, status: number): Response {
  const esc = escapeHtml(message);
  return new Response(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head><body><main><h1>Sign-in failed</h1><p role="alert">${esc}</p><p><a href="/browser/login">Try again</a></p></main></body></html>`,
    { status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } },
  );
}

const ID_TOKEN_COOKIE = "__Host-cryptoutil_idt";
export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";
/** How old a logout token may be (its iat), and the clock skew allowed on iat and exp. */
const LOGOUT_TOKEN_MAX_AGE_S = 300;
const LOGOUT_CLOCK_TOLERANCE_S = 30;
const badLogoutToken = (why: string) => new AppError("invalid_logout_token", `the logout token is not valid: ${why}`, { status: 400 });

/** A page that sends the browser on to `url` without script (meta refresh, plus a link). */
function continuePage(url: string, what = "signing out"): string {
  const u = escapeHtml(url);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${u}"><title>${what[0]!.toUpperCase()}${what.slice(1)}</title></head><body><p><a href="${u}">Continue ${what}</a></p></body></html>`;
}

/** The Elysia plugin: `/browser/login`, `/browser/callback`, `/browser/logout`, `/browser/api/v1/session`. */
export function browserLogin(ctx: ServiceContext, cfg: BrowserLoginSettings) {
  const tenant = cfg.issuer.match(TENANT_OF_ISSUER)?.[1];
  if (!tenant) throw new AppError("config_invalid", "browser.login.issuer: must end in /t/{tenant}", { status: 400 });
  // identity-authz's own console signs in through itself: under `npm start` its client (and this
  // file) is made once it runs, so a file missing at start is read at the first sign-in instead.
  const readSecret = () => {
    const secret = readFileSync(cfg.client_secret_file, "utf8").trim();
    if (!secret) throw new AppError("config_invalid", "browser.login.client_secret_file: the file is empty", { status: 400 });
    return secret;
  };
  let clientAuth: oauth.ClientAuth | undefined = existsSync(cfg.client_secret_file) ? oauth.ClientSecretBasic(readSecret()) : undefined;
  if (!clientAuth) ctx.logger.info("browser login: the client secret file does not exist yet; it is read at the first sign-in", { file: cfg.client_secret_file });
  const clientAuthOf = () => {
    if (clientAuth) return clientAuth;
    if (!existsSync(cfg.client_secret_file)) throw new AppError("unavailable", "this console's sign-in is not provisioned yet");
    return (clientAuth = oauth.ClientSecretBasic(readSecret()));
  };
  const caFile = cfg.ca_file ?? join(resolve(ctx.config.data.dir), "trust-bundle.pem");
  let ca: string | undefined;
  const tlsFetch = (url: string, init: RequestInit) => runtime.fetch(url, init, { ca: (ca ??= readFileSync(caFile, "utf8")) });
  const httpOpts = { [oauth.customFetch]: tlsFetch, signal: () => AbortSignal.timeout(10_000) };
  const client: oauth.Client = { client_id: cfg.client_id, id_token_signed_response_alg: cfg.id_token_alg };
  const stateContext = `bff/login-state/${cfg.client_id}`;
  const sessionMaxAge = ctx.config.browser.session_absolute_s;
  const loginCookie = (value: string, maxAge: number) => `${LOGIN_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAge}`;
  const origin = (req: Request) => ctx.config.server.public_url?.replace(/\/+$/, "") ?? new URL(req.url).origin;
  const redirectUri = (req: Request) => cfg.redirect_uri ?? `${origin(req)}/browser/callback`;

  let discovered: Promise<oauth.AuthorizationServer> | undefined;
  const server = () => {
    discovered ??= (async () => {
      const issuer = new URL(cfg.issuer);
      const res = await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...httpOpts });
      return oauth.processDiscoveryResponse(issuer, res);
    })().catch((e) => {
      discovered = undefined;
      throw new AppError("unavailable", "the identity service could not be reached", { cause: e });
    });
    return discovered;
  };

  let jwks: { uri: string; set: ReturnType<typeof createRemoteJWKSet> } | undefined;
  const issuerKeys = async () => {
    const as = await server();
    if (!as.jwks_uri) throw new AppError("unavailable", "the identity service publishes no keys");
    if (jwks?.uri !== as.jwks_uri) {
      jwks = { uri: as.jwks_uri, set: createRemoteJWKSet(new URL(as.jwks_uri), { timeoutDuration: 5000, cooldownDuration: 30_000, [customFetch]: (u, init) => tlsFetch(String(u), init as RequestInit) }) };
    }
    return { as, set: jwks.set };
  };
  const spentLogoutTokens = new DatabaseProofReplay(ctx.db);

  /** Checks a logout token; returns whose sessions it ends. Throws `invalid_logout_token` (400). */
  async function verifyLogoutToken(token: unknown): Promise<{ sid?: string; sub?: string }> {
    if (typeof token !== "string" || token.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw badLogoutToken("missing or malformed");
    const { as, set } = await issuerKeys();
    let p: Record<string, unknown>;
    try {
      ({ payload: p } = await jwtVerify(token, set, {
        issuer: as.issuer,
        audience: cfg.client_id,
        typ: "logout+jwt",
        algorithms: [cfg.id_token_alg],
        requiredClaims: ["iat", "exp", "jti"],
        maxTokenAge: LOGOUT_TOKEN_MAX_AGE_S,
        clockTolerance: LOGOUT_CLOCK_TOLERANCE_S,
      }));
    } catch (e) {
      if (e instanceof joseErrors.JWKSTimeout || !(e instanceof joseErrors.JOSEError)) throw new AppError("unavailable", "the identity service's keys could not be fetched", { cause: e });
      throw badLogoutToken(e instanceof joseErrors.JWTExpired ? "expired" : "its signature or claims do not verify");
    }
    const events = p.events;
    if (!events || typeof events !== "object" || Array.isArray(events)) throw badLogoutToken("no events claim");
    const ev = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT];
    if (!ev || typeof ev !== "object" || Array.isArray(ev)) throw badLogoutToken("not a back-channel logout event");
    if ("nonce" in p) throw badLogoutToken("a logout token carries no nonce");
    const sid = typeof p.sid === "string" && p.sid.length > 0 && p.sid.length <= 200 ? p.sid : undefined;
    const sub = typeof p.sub === "string" && p.sub.length > 0 && p.sub.length <= 255 ? p.sub : undefined;
    if (!sid && !sub) throw badLogoutToken("names neither sid nor sub");
    const jti = p.jti;
    if (typeof jti !== "string" || jti.length > 256) throw badLogoutToken("malformed jti");
    const exp = p.exp as number;
    if (!(await spentLogoutTokens.useOnce(`logout:${cfg.client_id}:${jti}`, exp + LOGOUT_CLOCK_TOLERANCE_S))) throw badLogoutToken("already used");
    return { sid, sub };
  }

  const idTokenContext = (sid: string) => `bff/${cfg.client_id}/id_token/${sid}`;
  const idTokenCookie = (value: string, maxAge: number) => `${ID_TOKEN_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAge}`;
  async function openIdToken(cookie: string | undefined, sid: string): Promise<string | undefined> {
    if (!cookie || cookie.length > 8192 || !/^[A-Za-z0-9_-]+$/.test(cookie)) return undefined;
    try {
      return dec.decode(await ctx.protector.decrypt(unb64url(cookie), idTokenContext(sid)));
    } catch {
      return undefined; // another session's, tampered, or from before a key rotation: log out without a hint
    }
  }

  async function sealState(s: LoginState): Promise<string> {
    return b64url(await ctx.protector.encrypt(enc.encode(JSON.stringify(s)), stateContext));
  }
  async function openState(cookie: string | undefined): Promise<LoginState | undefined> {
    if (!cookie || cookie.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(cookie)) return undefined;
    try {
      const s = JSON.parse(dec.decode(await ctx.protector.decrypt(unb64url(cookie), stateContext))) as LoginState;
      return s.exp > Date.now() / 1000 ? s : undefined;
    } catch {
      return undefined; // not ours, tampered or from before a key rotation: start again
    }
  }

  return new Elysia({ name: `cryptoutil.bff.${cfg.client_id}` })
    .get(
      "/browser/login",
      async ({ request, query }) => {
        const as = await server();
        if (!as.authorization_endpoint) throw new AppError("unavailable", "the identity service has no authorization endpoint");
        const s: LoginState = {
          state: oauth.generateRandomState(),
          nonce: oauth.generateRandomNonce(),
          verifier: oauth.generateRandomCodeVerifier(),
          returnTo: safeReturn(query.return_to),
          exp: Math.floor(Date.now() / 1000) + cfg.login_ttl_s,
        };
        const url = new URL(as.authorization_endpoint);
        url.search = new URLSearchParams({
          response_type: "code",
          client_id: cfg.client_id,
          redirect_uri: redirectUri(request),
          scope: cfg.scope,
          state: s.state,
          nonce: s.nonce,
          code_challenge: await oauth.calculatePKCECodeChallenge(s.verifier),
          code_challenge_method: "S256",
        }).toString();
        return new Response(null, { status: 302, headers: { location: url.toString(), "set-cookie": loginCookie(await sealState(s), cfg.login_ttl_s), "cache-control": "no-store" } });
      },
      { query: v.object({ return_to: v.optional(v.pipe(v.string(), v.maxLength(512))) }), detail: { summary: "Start a browser login (authorization code + PKCE)", tags: ["browser"] } },
    )
    .get(
      "/browser/callback",
      async ({ request }) => {
        const clear = loginCookie("", 0);
        const s = await openState(readCookie(request.headers.get("cookie"), LOGIN_COOKIE));
        if (!s) return loginErrorPage("This sign-in has expired or was started elsewhere.", 400);
        const as = await server();
        const current = new URL(request.url);
        let params: URLSearchParams;
        try {
          if (current.searchParams.get("iss") !== as.issuer) throw new AppError("login_failed", "the response does not name the expected issuer", { status: 400 });
          params = oauth.validateAuthResponse(as, client, current, s.state);
        } catch (e) {
          const why = e instanceof oauth.AuthorizationResponseError ? (e.error === "access_denied" ? "Access was denied." : `The identity service refused: ${e.error}.`) : "The sign-in response is not valid.";
          const res = loginErrorPage(why, e instanceof oauth.AuthorizationResponseError && e.error === "access_denied" ? 403 : 400);
          res.headers.append("set-cookie", clear);
          return res;
        }
        let result: oauth.TokenEndpointResponse;
        try {
          const res = await oauth.authorizationCodeGrantRequest(as, client, clientAuthOf(), params, redirectUri(request), s.verifier, httpOpts);
          result = await oauth.processAuthorizationCodeResponse(as, client, res, { expectedNonce: s.nonce, requireIdToken: true });
        } catch (e) {
          ctx.logger.warn("browser login: code exchange failed", { request_id: requestInfo(request).id, error: e instanceof Error ? e.message : String(e) });
          const res = loginErrorPage("The sign-in could not be completed.", 400);
          res.headers.append("set-cookie", clear);
          return res;
        }
        const claims = oauth.getValidatedIdTokenClaims(result)!;
        const scopes = (result.scope ?? cfg.scope).split(" ").filter(Boolean);
        const shown = [claims.preferred_username, claims.name, claims.email].find((x): x is string => typeof x === "string" && x.length > 0);
        const opSid = typeof claims.sid === "string" ? claims.sid : undefined;
        const session = await ctx.sessions.create({ tenant, subject: claims.sub, scopes, name: shown, opSid });
        // A browser arriving from identity-authz on another site gets a page that moves on by
        // itself: after a cross-site redirect chain the SameSite=Strict session cookie would not
        // be sent with the next request, so the console would look signed out.
        const crossSite = request.headers.get("sec-fetch-mode") === "navigate" && request.headers.get("sec-fetch-site") === "cross-site";
        const headers = new Headers(crossSite ? { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } : { location: s.returnTo, "cache-control": "no-store" });
        headers.append("set-cookie", sessionCookie(session.id, sessionMaxAge));
        // The ID token, sealed and bound to this session, for the id_token_hint at logout.
        if (result.id_token) {
          const sealed = b64url(await ctx.protector.encrypt(enc.encode(result.id_token), idTokenContext(session.id)));
          headers.append("set-cookie", idTokenCookie(sealed, sessionMaxAge));
        }
        headers.append("set-cookie", clear);
        return crossSite ? new Response(continuePage(s.returnTo, "signing in"), { status: 200, headers }) : new Response(null, { status: 303, headers });
      },
      { detail: { summary: "Finish a browser login: check state and iss, exchange the code, start the session", tags: ["browser"] } },
    )
    .post(
      "/browser/logout",
      async ({ request, body }) => {
        const o = request.headers.get("origin");
        // A form POST from a page with `Referrer-Policy: no-referrer` carries `Origin: null`;
        // the browser's own Sec-Fetch-Site then says whether it came from this origin.
        const sameOrigin = o === null || o === new URL(request.url).origin || o === origin(request) || (o === "null" && request.headers.get("sec-fetch-site") === "same-origin");
        if (!sameOrigin) throw new AppError("csrf_failed", "cross-origin request refused");
        const sid = readCookie(request.headers.get("cookie"), "__Host-cryptoutil_session");
        const token = request.headers.get("x-csrf-token") ?? (body as { csrf_token?: string } | undefined)?.csrf_token ?? null;
        if (!sid) throw new AppError("unauthenticated", "no session");
        await ctx.sessions.verifyCsrf(sid, token);
        await ctx.sessions.revoke(sid);
        const idToken = await openIdToken(readCookie(request.headers.get("cookie"), ID_TOKEN_COOKIE), sid);
        const as = await server().catch(() => undefined);
        let location = "/browser/";
        if (as?.end_session_endpoint) {
          const u = new URL(as.end_session_endpoint);
          u.searchParams.set("client_id", cfg.client_id);
          // With the hint, identity-authz ends this user's grants at this client.
          if (idToken) u.searchParams.set("id_token_hint", idToken);
          u.searchParams.set("post_logout_redirect_uri", cfg.post_logout_redirect_uri ?? `${origin(request)}/browser/`);
          location = u.toString();
        }
        // A browser form POST gets a page that moves on by itself: the page's CSP
        // (form-action 'self') would stop a redirect from the form to authz's origin.
        const navigate = request.headers.get("sec-fetch-mode") === "navigate";
        const headers = new Headers(navigate ? { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } : { location, "cache-control": "no-store" });
        headers.append("set-cookie", sessionCookie("", 0));
        headers.append("set-cookie", idTokenCookie("", 0));
        return navigate ? new Response(continuePage(location), { status: 200, headers }) : new Response(null, { status: 303, headers });
      },
      { body: v.optional(v.object({ csrf_token: v.optional(v.pipe(v.string(), v.maxLength(200))) })), detail: { summary: "End the browser session", tags: ["browser"] } },
    )
    .post(
      "/browser/backchannel-logout",
      async ({ body }) => {
        const who = await verifyLogoutToken((body as { logout_token?: unknown } | undefined)?.logout_token);
        const ended = await ctx.sessions.revokeByOp(tenant, { sid: who.sid, subject: who.sub });
        ctx.logger.info("back-channel logout", { tenant, sessions_ended: ended });
        return new Response(null, { status: 200, headers: { "cache-control": "no-store" } });
      },
      {
        body: v.optional(v.object({ logout_token: v.optional(v.pipe(v.string(), v.maxLength(8192))) })),
        detail: { summary: "OIDC back-channel logout: identity-authz ends the sessions of a signed-out user (form field logout_token)", tags: ["browser"] },
      },
    )
    .get(
      "/browser/api/v1/session",
      async ({ request }) => {
        const p = principalOf(request);
        const sid = requestInfo(request).sessionId;
        if (!sid || p.kind !== "browser") throw new AppError("unauthenticated", "no session");
        return { tenant: p.tenant, subject: p.subject, name: p.name ?? null, scopes: [...p.scopes], csrf_token: await ctx.sessions.csrfToken(sid) };
      },
      {
        response: v.object({ tenant: v.string(), subject: v.string(), name: v.nullable(v.string()), scopes: v.array(v.string()), csrf_token: v.string() }),
        detail: { summary: "The signed-in user and the CSRF token for unsafe calls", tags: ["browser"] },
      },
    );
}
