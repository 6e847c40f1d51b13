/**
 * The browser side of identity-idp: login, second factor, enrolment, consent, logout and
 * account pages under `/t/{tenant}/...` (root routes: the template does not authenticate
 * them; each checks the idp session and, for every POST, its CSRF token).
 *
 * Flow: authz sends the browser to /login with a signed challenge -> password -> second
 * factor (or enrolment when the tenant requires one) -> consent unless remembered -> a page
 * that forwards the browser to authz's /login/callback with the signed verifier.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { readFileSync } from "node:fs";
import { AppError } from "../../../src/service/errors.ts";
import { requestInfo } from "../../../src/service/http.ts";
import type { IdpStore } from "../store.ts";
import type { IdpConfig } from "../config.ts";
import { IdpSessions, type IdpSession, type LoginFlow } from "../domain/sessions.ts";
import type { LoginChallenge, LoginHandoff, IdpKeys } from "../domain/handoff.ts";
import { lockedError, type UserService } from "../domain/users.ts";
import { passwordProblem } from "../domain/password.ts";
import * as H from "../pages/html.ts";

export interface PageDeps {
  users: UserService;
  store: IdpStore;
  sessions: IdpSessions;
  handoff: LoginHandoff;
  keys: IdpKeys;
  cfg: IdpConfig;
  publicUrl?: string;
  now?: () => number;
}

const TenantParam = v.object({ tenant: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,64}$/)) });
const short = v.optional(v.pipe(v.string(), v.maxLength(1024)));
const LoginQuery = v.object({ login_challenge: v.optional(v.pipe(v.string(), v.maxLength(8192))) });
const LoginForm = v.object({ csrf_token: short, username: short, password: short });
const CodeForm = v.object({ csrf_token: short, code: short, factor_id: short });
const ConsentForm = v.object({ csrf_token: short, decision: v.optional(v.picklist(["allow", "deny"])) });
const CsrfForm = v.object({ csrf_token: short });
const PasswordForm = v.object({ csrf_token: short, current_password: short, new_password: short });
const RemoveForm = v.object({ csrf_token: short, factor_id: short, password: short });
const ResyncForm = v.object({ csrf_token: short, factor_id: short, code1: short, code2: short });

const NO_STORE = { "cache-control": "no-store" };
const html = (body: string, status = 200, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE, ...headers } });
const seeOther = (location: string, headers: Record<string, string> = {}) => new Response(null, { status: 303, headers: { location, ...NO_STORE, ...headers } });

/** Turns page errors into HTML pages (bad input and lockouts); faults stay JSON 500s. */
function asPage<C>(fn: (c: C) => Promise<Response>) {
  return async (c: C): Promise<Response> => {
    try {
      return await fn(c);
    } catch (e) {
      if (e instanceof AppError && e.status < 500) {
        const title = e.status === 429 ? "Too many attempts" : e.code === "csrf_failed" ? "Please try again" : "Sign-in problem";
        return html(H.errorPage(title, e.message), e.status, e.headers ?? {});
      }
      throw e;
    }
  };
}

export function idpPages(d: PageDeps) {
  const now = d.now ?? (() => Math.floor(Date.now() / 1000));
  const css = readFileSync(new URL("../pages/idp.css", import.meta.url));
  const idpUrl = (req: Request) => d.publicUrl ?? new URL(req.url).origin;
  const ip = (req: Request) => requestInfo(req).ip;
  const cookie = (s: IdpSession) => ({ "set-cookie": d.sessions.cookie(s.id) });

  /** The session of a request, or a fresh pre-login one (its cookie must then be set). */
  async function sessionOf(req: Request, tenant: string): Promise<{ s: IdpSession; fresh: boolean }> {
    const s = await d.sessions.load(req, tenant);
    if (s) return { s, fresh: false };
    return { s: await d.sessions.create(tenant, {}, undefined, now() + d.cfg.login_flow_s), fresh: true };
  }

  const challengeOf = async (s: IdpSession): Promise<LoginChallenge | undefined> =>
    s.flow.challenge ? d.handoff.verifyChallenge(s.row.tenant, s.flow.challenge) : undefined;

  /** Pending second-factor or enrolment state of a session; undefined when there is none or it timed out. */
  function pending(s: IdpSession | undefined, stage: "mfa" | "enroll"): string | undefined {
    if (!s || s.flow.stage !== stage || !s.flow.pendingUser || !s.flow.pendingAt) return undefined;
    return now() - s.flow.pendingAt <= d.cfg.login_flow_s ? s.flow.pendingUser : undefined;
  }

  /** Sends the verifier to authz for an authenticated session. */
  async function finish(req: Request, s: IdpSession, ch: LoginChallenge, granted: string[], extra: Record<string, string> = {}): Promise<Response> {
    const user = await d.users.row(s.row.tenant, s.row.user_id!);
    const claims: Record<string, unknown> = {};
    if (granted.includes("profile")) {
      claims.name = user.name ?? user.username;
      claims.preferred_username = user.username;
    }
    if (granted.includes("email") && user.email) {
      claims.email = user.email;
      claims.email_verified = !!user.email_verified;
    }
    const url = await d.handoff.callbackUrl(ch, { sub: user.id, authTime: s.row.auth_time!, amr: (s.row.amr ?? "pwd").split(" "), grantedScopes: granted, claims }, idpUrl(req));
    await d.sessions.saveFlow(s, {});
    return html(H.continuePage(url), 200, extra);
  }

  /** After authentication: consent when needed, then back to authz (or to the account page). */
  async function advance(req: Request, s: IdpSession, extra: Record<string, string> = {}): Promise<Response> {
    const tenant = s.row.tenant;
    const ch = await challengeOf(s);
    if (!ch) return seeOther(`/t/${tenant}/account`, extra);
    const stored = await d.store.consent(tenant, s.row.user_id!, ch.client_id);
    const remembered = stored ? new Set(stored.scopes.split(" ")) : new Set<string>();
    const covered = ch.scopes.every((x) => remembered.has(x));
    if (ch.prompt.has("consent") || !covered) {
      if (ch.prompt.has("none")) return html(H.continuePage(await d.handoff.callbackUrl(ch, { error: "consent_required" }, idpUrl(req))), 200, extra);
      return seeOther(`/t/${tenant}/consent`, extra);
    }
    return finish(req, s, ch, ch.scopes, extra);
  }

  async function complete(req: Request, s: IdpSession, userId: string, amr: string[]): Promise<Response> {
    const flow: LoginFlow = { challenge: s.flow.challenge };
    const next = await d.sessions.rotate(s, flow, { userId, authTime: now(), amr });
    return advance(req, next, cookie(next));
  }

  async function accountView(s: IdpSession, extra: { message?: string; passwordError?: string; currentError?: string; removeError?: string } = {}) {
    const u = await d.users.row(s.row.tenant, s.row.user_id!);
    return H.accountPage({
      tenant: s.row.tenant,
      csrf: s.csrf,
      username: u.username,
      name: u.name,
      factors: await d.users.factors.list(s.row.tenant, u.id),
      codesLeft: await d.users.factors.recoveryCodesLeft(s.row.tenant, u.id),
      ...extra,
    });
  }

  async function authenticated(req: Request, tenant: string): Promise<IdpSession | undefined> {
    const s = await d.sessions.load(req, tenant);
    return s?.row.user_id ? s : undefined;
  }

  return new Elysia({ name: "identity-idp.pages" })
    .get("/assets/idp.css", () => new Response(css, { headers: { "content-type": "text/css; charset=utf-8", "cache-control": "max-age=3600" } }), { detail: { hide: true } })
    .get("/jwks", () => d.keys.jwks(), { detail: { summary: "The idp's public keys (login verifiers)" } })
    .get("/t/:tenant/jwks", () => d.keys.jwks(), { params: TenantParam, detail: { summary: "The idp's public keys (same for every tenant)" } })

    .get(
      "/t/:tenant/login",
      asPage(async ({ request, params, query }: { request: Request; params: { tenant: string }; query: { login_challenge?: string } }) => {
        const tenant = params.tenant;
        const ch = query.login_challenge !== undefined ? await d.handoff.verifyChallenge(tenant, query.login_challenge) : undefined;
        const existing = await d.sessions.load(request, tenant);
        if (ch && existing?.row.user_id) {
          const tooOld = ch.max_age !== undefined && now() - existing.row.auth_time! > ch.max_age;
          if (!ch.prompt.has("login") && !tooOld) {
            await d.sessions.saveFlow(existing, { challenge: query.login_challenge });
            return advance(request, existing);
          }
        }
        if (ch?.prompt.has("none")) return html(H.continuePage(await d.handoff.callbackUrl(ch, { error: "login_required" }, idpUrl(request))), 200);
        const { s, fresh } = existing ? { s: existing, fresh: false } : await sessionOf(request, tenant);
        await d.sessions.saveFlow(s, { challenge: query.login_challenge });
        return html(H.loginPage({ tenant, csrf: s.csrf, username: ch?.login_hint, clientName: ch?.client_name }), 200, fresh ? cookie(s) : {});
      }),
      { params: TenantParam, query: LoginQuery, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/login",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof LoginForm> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const username = (body.username ?? "").trim();
        const ch = await challengeOf(s!);
        const again = (error: string, status: number, headers: Record<string, string> = {}) =>
          html(H.loginPage({ tenant, csrf: s!.csrf, username, error, clientName: ch?.client_name }), status, headers);
        let r;
        try {
          r = await d.users.login(tenant, username, body.password ?? "", ip(request));
        } catch (e) {
          if (e instanceof AppError && e.code === "login_locked") return again(e.message, 429, e.headers);
          throw e;
        }
        if (!r.ok) {
          if (r.lockedForS > 0) return again(`Wrong username or password. Too many failed attempts: wait ${r.lockedForS} s.`, 429, { "Retry-After": String(r.lockedForS) });
          return again("Wrong username or password.", 401);
        }
        const user = r.user;
        const flow: LoginFlow = { challenge: s!.flow.challenge, pendingUser: user.id, pendingAt: now() };
        if (await d.users.factors.hasFactor(tenant, user.id)) {
          const next = await d.sessions.rotate(s!, { ...flow, stage: "mfa" });
          return seeOther(`/t/${tenant}/mfa`, cookie(next));
        }
        if ((await d.users.mfaPolicy(tenant)) === "required") {
          const next = await d.sessions.rotate(s!, { ...flow, stage: "enroll" });
          return seeOther(`/t/${tenant}/enroll/totp`, cookie(next));
        }
        return complete(request, s!, user.id, ["pwd"]);
      }),
      { params: TenantParam, body: LoginForm, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/mfa",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await d.sessions.load(request, params.tenant);
        if (!pending(s, "mfa")) return seeOther(`/t/${params.tenant}/login`);
        return html(H.mfaPage({ tenant: params.tenant, csrf: s!.csrf }));
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/mfa",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof CodeForm> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const userId = pending(s, "mfa");
        if (!userId) throw new AppError("login_expired", "this sign-in has expired; start again", { status: 400 });
        const user = await d.users.row(tenant, userId);
        const again = (error: string, status: number, headers: Record<string, string> = {}) => html(H.mfaPage({ tenant, csrf: s!.csrf, error }), status, headers);
        try {
          await d.users.assertNotLocked(tenant, user.username, ip(request));
        } catch (e) {
          if (e instanceof AppError && e.code === "login_locked") return again(e.message, 429, e.headers);
          throw e;
        }
        const kind = await d.users.factors.verify(tenant, userId, body.code ?? "");
        if (!kind) {
          const lock = await d.users.recordFailure(tenant, user.username, ip(request));
          if (lock > 0) return again(`That code is not valid. Too many failed attempts: wait ${lock} s.`, 429, { "Retry-After": String(lock) });
          return again("That code is not valid, or it was already used.", 401);
        }
        await d.users.recordSuccess(tenant, user.username);
        return complete(request, s!, userId, kind === "otp" ? ["pwd", "otp"] : ["pwd", "mfa"]);
      }),
      { params: TenantParam, body: CodeForm, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/enroll/:kind",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string; kind: string } }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        const userId = s?.row.user_id ?? pending(s, "enroll");
        if (!userId) return seeOther(`/t/${tenant}/login`);
        const user = await d.users.row(tenant, userId);
        const e = await d.users.factors.begin(tenant, userId, user.username, params.kind as "totp" | "hotp");
        return html(H.enrolPage({ tenant, csrf: s!.csrf, e, required: !s!.row.user_id }));
      }),
      { params: v.object({ ...TenantParam.entries, kind: v.picklist(["totp", "hotp"]) }), detail: { hide: true } },
    )
    .post(
      "/t/:tenant/enroll/:kind",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string; kind: string }; body: v.InferOutput<typeof CodeForm> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const inLogin = !s!.row.user_id;
        const userId = s!.row.user_id ?? pending(s, "enroll");
        if (!userId) throw new AppError("login_expired", "this sign-in has expired; start again", { status: 400 });
        const user = await d.users.row(tenant, userId);
        const factorId = body.factor_id ?? "";
        const r = await d.users.factors.confirm(tenant, userId, factorId, body.code ?? "");
        if (!r.ok) {
          const lock = await d.users.recordFailure(tenant, user.username, ip(request));
          if (lock > 0) throw lockedError(lock);
          const e = await d.users.factors.resume(tenant, userId, user.username, factorId);
          if (!e) return seeOther(`/t/${tenant}/enroll/${params.kind}`);
          return html(H.enrolPage({ tenant, csrf: s!.csrf, e, required: inLogin, error: "That code is not valid; check the time on your device and try again." }), 400);
        }
        let next = s!;
        let headers: Record<string, string> = {};
        if (inLogin) {
          next = await d.sessions.rotate(s!, { challenge: s!.flow.challenge }, { userId, authTime: now(), amr: ["pwd", "otp"] });
          headers = cookie(next);
        }
        const nextUrl = inLogin ? `/t/${tenant}/login/continue` : `/t/${tenant}/account`;
        if (r.recoveryCodes) return html(H.recoveryCodesPage({ codes: r.recoveryCodes, next: nextUrl, nextLabel: "Continue" }), 200, headers);
        return seeOther(nextUrl, headers);
      }),
      { params: v.object({ ...TenantParam.entries, kind: v.picklist(["totp", "hotp"]) }), body: CodeForm, detail: { hide: true } },
    )
    .get(
      "/t/:tenant/login/continue",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await authenticated(request, params.tenant);
        if (!s) return seeOther(`/t/${params.tenant}/login`);
        return advance(request, s);
      }),
      { params: TenantParam, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/consent",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await authenticated(request, params.tenant);
        const ch = s && (await challengeOf(s));
        if (!s || !ch) return seeOther(`/t/${params.tenant}/login`);
        return html(H.consentPage({ tenant: params.tenant, csrf: s.csrf, clientName: ch.client_name, scopes: ch.scopes }));
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/consent",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof ConsentForm> }) => {
        const s = await authenticated(request, params.tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const ch = await challengeOf(s!);
        if (!ch) throw new AppError("login_expired", "there is no sign-in waiting for consent", { status: 400 });
        if (body.decision !== "allow") {
          await d.sessions.saveFlow(s!, {});
          return html(H.continuePage(await d.handoff.callbackUrl(ch, { error: "access_denied", description: "the user denied the request" }, idpUrl(request))));
        }
        await d.store.saveConsent(params.tenant, s!.row.user_id!, ch.client_id, [...new Set(ch.scopes)].sort().join(" "), now());
        return finish(request, s!, ch, ch.scopes);
      }),
      { params: TenantParam, body: ConsentForm, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/logout",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await d.sessions.load(request, params.tenant);
        return html(H.logoutPage({ tenant: params.tenant, csrf: s?.csrf }));
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/logout",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof CsrfForm> }) => {
        const s = await d.sessions.load(request, params.tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        await d.sessions.revoke(s!);
        return html(H.logoutPage({ tenant: params.tenant, done: true }), 200, { "set-cookie": IdpSessions.clearCookie() });
      }),
      { params: TenantParam, body: CsrfForm, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/logout/continue",
      asPage(async ({ request, params, query }: { request: Request; params: { tenant: string }; query: { logout_request?: string } }) => {
        // RP-initiated logout arriving from authz: end this browser's session if it is the
        // same user's (a request for someone else ends nothing), then return to the client.
        const r = await d.handoff.verifyLogoutRequest(params.tenant, query.logout_request);
        const s = await d.sessions.load(request, params.tenant);
        const ended = s !== undefined && s.row.user_id === r.sub;
        if (ended) await d.sessions.revoke(s);
        const cookie: Record<string, string> = ended ? { "set-cookie": IdpSessions.clearCookie() } : {};
        if (r.returnTo) return seeOther(r.returnTo, cookie);
        return html(H.logoutPage({ tenant: params.tenant, done: true }), 200, cookie);
      }),
      { params: TenantParam, query: v.object({ logout_request: v.optional(v.pipe(v.string(), v.maxLength(8192))) }), detail: { hide: true } },
    )
    .get(
      "/t/:tenant/account",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await authenticated(request, params.tenant);
        if (!s) return seeOther(`/t/${params.tenant}/login`);
        return html(await accountView(s));
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/account/password",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof PasswordForm> }) => {
        const tenant = params.tenant;
        const s = await authenticated(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const user = await d.users.row(tenant, s!.row.user_id!);
        const problem = passwordProblem(body.new_password ?? "", { minLength: d.cfg.password_min_length, maxLength: d.cfg.password_max_length }, [user.username, user.email ?? ""]);
        if (problem) return html(await accountView(s!, { passwordError: problem }), 400);
        if (!(await d.users.changePassword(tenant, user.id, body.current_password ?? "", body.new_password!, ip(request)))) {
          return html(await accountView(s!, { currentError: "The current password is wrong." }), 401);
        }
        // Every other session of the user ends; this one continues under a new id.
        await d.sessions.revokeUser(tenant, user.id, s);
        const next = await d.sessions.rotate(s!, {}, { userId: user.id, authTime: now(), amr: (s!.row.amr ?? "pwd").split(" ") });
        return html(await accountView(next, { message: "Your password was changed. Other sessions were signed out." }), 200, cookie(next));
      }),
      { params: TenantParam, body: PasswordForm, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/account/factors/remove",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof RemoveForm> }) => {
        const tenant = params.tenant;
        const s = await authenticated(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const user = await d.users.row(tenant, s!.row.user_id!);
        const r = await d.users.login(tenant, user.username, body.password ?? "", ip(request));
        if (!r.ok) return html(await accountView(s!, { removeError: "The password is wrong." }), 401);
        await d.users.factors.remove(tenant, user.id, body.factor_id ?? "");
        return html(await accountView(s!, { message: "The authenticator was removed." }));
      }),
      { params: TenantParam, body: RemoveForm, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/account/factors/resync",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof ResyncForm> }) => {
        const tenant = params.tenant;
        const s = await authenticated(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const user = await d.users.row(tenant, s!.row.user_id!);
        await d.users.assertNotLocked(tenant, user.username, ip(request));
        if (!(await d.users.factors.resync(tenant, user.id, body.factor_id ?? "", body.code1 ?? "", body.code2 ?? ""))) {
          await d.users.recordFailure(tenant, user.username, ip(request));
          return html(await accountView(s!, { removeError: "Those codes do not match two consecutive codes of the token." }), 400);
        }
        return html(await accountView(s!, { message: "The token was resynchronised." }));
      }),
      { params: TenantParam, body: ResyncForm, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/account/recovery-codes",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof CsrfForm> }) => {
        const s = await authenticated(request, params.tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const codes = await d.users.factors.regenerateRecoveryCodes(params.tenant, s!.row.user_id!);
        return html(H.recoveryCodesPage({ codes, next: `/t/${params.tenant}/account`, nextLabel: "Back to your account" }));
      }),
      { params: TenantParam, body: CsrfForm, detail: { hide: true } },
    );
}
