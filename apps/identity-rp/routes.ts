/**
 * identity-rp's HTTP layer: sign-in (`/login`, `/callback`), the session (`/session`,
 * `/logout`), the back-channel logout receiver and the API proxy (`/api/*`). Rules live in
 * domain.ts; the issuer conversation in issuer.ts.
 *
 * Cookies: `__Host-rp_session` (the opaque session id: HttpOnly, Secure, SameSite=Strict) and,
 * during a sign-in, `__Host-rp_login` (state, nonce and PKCE verifier, barrier-encrypted and
 * bound to the client: SameSite=Lax, so it comes back with the issuer's redirect). Unsafe calls
 * (`/logout`, `/api/*` other than GET) need the session's CSRF token in `X-CSRF-Token` and an
 * Origin that is this service or a configured frontend; frontends get CORS with credentials.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { base64url } from "jose";
import { appBase, errorResponse, requestInfo } from "../../src/service/http.ts";
import { AppError } from "../../src/service/errors.ts";
import { escapeHtml } from "../../src/service/html.ts";
import { readCookie } from "../../src/auth/session.ts";
import type { LoginState } from "../../src/auth/bff.ts";
import type { DataProtector } from "../../src/service/context.ts";
import type { Logger } from "../../src/service/log.ts";
import type { RpConfig } from "./config.ts";
import type { RpSessions } from "./domain.ts";
import type { IssuerClient } from "./issuer.ts";
import { verifyLogoutToken } from "./logout-token.ts";

export const SESSION_COOKIE = "__Host-rp_session";
const LOGIN_COOKIE = "__Host-rp_login";
const enc = new TextEncoder();
const dec = new TextDecoder();
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Headers of the API's answer passed back to the browser. */
const PASSED_HEADERS = ["content-type", "www-authenticate", "retry-after"];
/** The API paths that may be proxied: plain segments, no dot-segments or escapes that could climb out of `api_url`. */
const API_PATH = /^(\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*\/?$/;
const API_TIMEOUT_MS = 15_000;

export interface RpDeps {
  cfg: RpConfig;
  sessions: RpSessions;
  issuer: IssuerClient;
  protector: DataProtector;
  logger: Logger;
  /** This service's public origin (`server.public_url`, else the listener's). */
  origin(req: Request): string;
  /** Records a logout token id once; false on a replay. */
  spend(key: string, expiresAt: number): Promise<boolean>;
}

const SessionBody = v.object({ tenant: v.string(), subject: v.string(), name: v.nullable(v.string()), scopes: v.array(v.string()), expires_at: v.number(), csrf_token: v.string() });

function page(title: string, message: string, status: number): Response {
  return new Response(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1><p role="alert">${escapeHtml(message)}</p><p><a href="/login">Sign in again</a></p></main></body></html>`,
    { status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } },
  );
}

export function rpRoutes(d: RpDeps) {
  const { cfg, sessions, issuer } = d;
  const frontends = new Set(cfg.frontend_origins);
  const stateContext = `identity-rp/login-state/${cfg.client_id}`;
  const redirectUri = (req: Request) => cfg.redirect_uri ?? `${d.origin(req)}/callback`;
  const loginCookie = (value: string, maxAge: number) => `${LOGIN_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAge}`;
  const sessionCookie = (value: string, maxAge: number) => `${SESSION_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAge}`;
  const sid = (req: Request) => readCookie(req.headers.get("cookie"), SESSION_COOKIE);

  /** A local path, or a page of a configured frontend: nothing else is a place to return to. */
  const safeReturn = (req: Request, to: string | undefined): string => {
    if (!to) return "/session";
    if (/^\/[A-Za-z0-9._~\-/?=&%]*$/.test(to) && !to.startsWith("//")) return to;
    try {
      const u = new URL(to);
      if (frontends.has(u.origin) || u.origin === d.origin(req)) return u.toString();
    } catch {
      // not a URL: refused below
    }
    throw new AppError("validation_failed", "return_to must be a local path or a page of a configured frontend");
  };

  /** CORS for configured frontends, on answers and on errors alike (the page must read a 401). */
  const withCors = (req: Request, res: Response): Response => {
    const o = req.headers.get("origin");
    if (o && frontends.has(o)) {
      res.headers.set("access-control-allow-origin", o);
      res.headers.set("access-control-allow-credentials", "true");
      res.headers.append("vary", "Origin");
    }
    return res;
  };
  const guarded = (fn: (req: Request) => Promise<Response>) => async ({ request }: { request: Request }) => {
    try {
      return withCors(request, await fn(request));
    } catch (e) {
      return withCors(request, errorResponse(e, requestInfo(request).id, d.logger));
    }
  };
  const preflight = ({ request }: { request: Request }) => {
    const o = request.headers.get("origin");
    if (!o || !frontends.has(o)) return errorResponse(new AppError("forbidden", "origin not allowed"), requestInfo(request).id);
    return new Response(null, {
      status: 204,
      headers: {
        "access-control-allow-origin": o,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": "content-type, x-csrf-token",
        "access-control-max-age": "600",
        vary: "Origin",
      },
    });
  };
  /** Unsafe calls: from this origin or a frontend, with the session's CSRF token. */
  const checkUnsafe = async (req: Request) => {
    const o = req.headers.get("origin");
    if (o !== null && o !== d.origin(req) && !frontends.has(o)) throw new AppError("csrf_failed", "cross-origin request refused");
    await sessions.verifyCsrf(sid(req), req.headers.get("x-csrf-token"));
  };
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json;charset=utf-8", "cache-control": "no-store" } });

  async function openState(cookie: string | undefined): Promise<LoginState | undefined> {
    if (!cookie || cookie.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(cookie)) return undefined;
    try {
      const s = JSON.parse(dec.decode(await d.protector.decrypt(base64url.decode(cookie), stateContext))) as LoginState;
      return s.exp > Date.now() / 1000 ? s : undefined;
    } catch {
      return undefined; // not ours, tampered, or from before a key rotation: start again
    }
  }

  return new Elysia({ name: "identity-rp.routes", tags: ["identity-rp"] } as never)
    .use(appBase)
    .get(
      "/login",
      async ({ request, query }) => {
        const returnTo = safeReturn(request, query.return_to);
        const start = await issuer.startAuthorization(redirectUri(request));
        const s: LoginState = { state: start.state, nonce: start.nonce, verifier: start.verifier, returnTo, exp: Math.floor(Date.now() / 1000) + cfg.login_ttl_s };
        const sealed = base64url.encode(await d.protector.encrypt(enc.encode(JSON.stringify(s)), stateContext));
        return new Response(null, { status: 302, headers: { location: start.url, "set-cookie": loginCookie(sealed, cfg.login_ttl_s), "cache-control": "no-store" } });
      },
      {
        query: v.object({ return_to: v.optional(v.pipe(v.string(), v.maxLength(512))) }),
        detail: { summary: "Start a sign-in: a pushed authorization request (PAR) with PKCE, then the issuer's login" },
      },
    )
    .get(
      "/callback",
      async ({ request }) => {
        const clear = loginCookie("", 0);
        const s = await openState(readCookie(request.headers.get("cookie"), LOGIN_COOKIE));
        if (!s) return page("Sign-in failed", "This sign-in has expired or was started elsewhere.", 400);
        let result: Awaited<ReturnType<IssuerClient["finishAuthorization"]>>;
        try {
          result = await issuer.finishAuthorization(new URL(request.url), s, redirectUri(request));
        } catch (e) {
          if (e instanceof AppError && e.status >= 500) throw e;
          const denied = (e as { error?: unknown }).error === "access_denied";
          d.logger.warn("identity-rp: sign-in not completed", { request_id: requestInfo(request).id, error: e instanceof Error ? e.message : String(e) });
          const res = page("Sign-in failed", denied ? "Access was denied." : "The sign-in could not be completed.", denied ? 403 : 400);
          res.headers.append("set-cookie", clear);
          return res;
        }
        const id = await sessions.create(result.tokens, result.claims);
        const headers = new Headers({ location: s.returnTo, "cache-control": "no-store" });
        headers.append("set-cookie", sessionCookie(id, cfg.session_absolute_s));
        headers.append("set-cookie", clear);
        return new Response(null, { status: 303, headers });
      },
      { detail: { summary: "Finish a sign-in: check state and iss, exchange the code, start the session" } },
    )
    .options("/session", preflight, { detail: { hide: true } })
    .get(
      "/session",
      guarded(async (req) => {
        const id = sid(req);
        return json({ ...(await sessions.view(id)), csrf_token: await sessions.csrfToken(id!) });
      }),
      { response: { 200: SessionBody }, detail: { summary: "The signed-in user and the CSRF token for unsafe calls (401 when signed out)" } },
    )
    .options("/logout", preflight, { detail: { hide: true } })
    .post(
      "/logout",
      guarded(async (req) => {
        await checkUnsafe(req);
        const idToken = await sessions.end(sid(req));
        const logoutUrl = await issuer.endSessionUrl(idToken, cfg.post_logout_redirect_uri ?? `${d.origin(req)}/`);
        const res = json({ logout_url: logoutUrl ?? null });
        res.headers.append("set-cookie", sessionCookie("", 0));
        return res;
      }),
      { detail: { summary: "End the session here and its grant at the issuer; answers the issuer's logout URL for the browser" } },
    )
    .post(
      "/backchannel-logout",
      async ({ body }) => {
        const noStore = { "content-type": "application/json;charset=utf-8", "cache-control": "no-store" };
        try {
          const as = await issuer.server();
          const target = await verifyLogoutToken(body.logout_token, { issuer: as.issuer, clientId: cfg.client_id, keys: await issuer.keys(), spend: d.spend });
          const n = await sessions.endMatching(target);
          d.logger.info("identity-rp: back-channel logout", { sessions_ended: n });
          return new Response(null, { status: 200, headers: { "cache-control": "no-store" } });
        } catch (e) {
          if (e instanceof AppError && e.status === 400) {
            // The protocol's own error form (Back-Channel Logout 1.0, section 2.8).
            return new Response(JSON.stringify({ error: "invalid_request", error_description: e.message }), { status: 400, headers: noStore });
          }
          throw e;
        }
      },
      {
        body: v.object({ logout_token: v.pipe(v.string(), v.minLength(1), v.maxLength(16_384)) }),
        detail: { summary: "OpenID Connect Back-Channel Logout: the issuer ends sessions with a signed logout token" },
      },
    )
    .options("/api/*", preflight, { detail: { hide: true } })
    .all(
      "/api/*",
      guarded(async (req) => {
        if (!["GET", "POST", "PUT", "PATCH", "DELETE"].includes(req.method)) throw new AppError("method_not_allowed", "method not allowed");
        if (UNSAFE.has(req.method)) await checkUnsafe(req);
        const url = new URL(req.url);
        const rest = url.pathname.slice("/api".length);
        if (!API_PATH.test(rest) || rest.split("/").includes("..")) throw new AppError("validation_failed", "not an API path");
        const token = await sessions.accessToken(sid(req));
        if (!cfg.api_url) throw new AppError("unavailable", "no API is configured behind /api (app.api_url)");
        const target = cfg.api_url.replace(/\/+$/, "") + rest + url.search;
        const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: req.headers.get("accept") ?? "application/json" };
        const ct = req.headers.get("content-type");
        if (ct) headers["content-type"] = ct;
        let upstream: Response;
        try {
          upstream = await issuer.tlsFetch(target, {
            method: req.method,
            headers,
            body: UNSAFE.has(req.method) ? await req.arrayBuffer() : undefined,
            redirect: "manual",
            signal: AbortSignal.timeout(API_TIMEOUT_MS),
          });
        } catch (e) {
          throw new AppError("unavailable", "the API could not be reached", { cause: e, headers: { "Retry-After": "5" } });
        }
        const out = new Headers({ "cache-control": "no-store" });
        for (const h of PASSED_HEADERS) {
          const value = upstream.headers.get(h);
          if (value) out.set(h, value);
        }
        return new Response(upstream.status === 204 ? null : await upstream.arrayBuffer(), { status: upstream.status, headers: out });
      }),
      { detail: { summary: "The API (identity-rs) with the session's access token, refreshed before it expires" } },
    );
}


/** The same paths while identity-rp has no `app` section: each answers 503 and says what to set. */
export function unconfiguredRoutes() {
  const refuse = () => {
    throw new AppError("unavailable", "identity-rp is not configured: set app.issuer, app.client_id, app.client_secret_file and app.api_url");
  };
  return new Elysia({ name: "identity-rp.unconfigured" })
    .use(appBase)
    .get("/login", refuse)
    .get("/callback", refuse)
    .get("/session", refuse)
    .post("/logout", refuse)
    .post("/backchannel-logout", refuse)
    .all("/api/*", refuse);
}
