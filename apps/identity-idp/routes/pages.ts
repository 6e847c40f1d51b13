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
import { IdpSessions, sidOf } from "../domain/sessions.ts";
import { lockedError } from "../domain/users.ts";
import { passwordProblem } from "../domain/password.ts";
import * as H from "../pages/html.ts";
import { asPage, html, loginFlow, seeOther, TenantParam, type PageDeps } from "./flow.ts";

const short = v.optional(v.pipe(v.string(), v.maxLength(1024)));
const LoginQuery = v.object({ login_challenge: v.optional(v.pipe(v.string(), v.maxLength(8192))) });
const LoginForm = v.object({ csrf_token: short, username: short, password: short });
const CodeForm = v.object({ csrf_token: short, code: short, factor_id: short });
const ConsentForm = v.object({ csrf_token: short, decision: v.optional(v.picklist(["allow", "deny"])) });
const CsrfForm = v.object({ csrf_token: short });
const PasswordForm = v.object({ csrf_token: short, current_password: short, new_password: short });
const RemoveForm = v.object({ csrf_token: short, factor_id: short, password: short });
const ResyncForm = v.object({ csrf_token: short, factor_id: short, code1: short, code2: short });

export function idpPages(d: PageDeps) {
  const { now, idpUrl, ip, cookie, sessionOf, challengeOf, pending, finish, advance, complete, accountView, authenticated, afterFirstFactor } = loginFlow(d);
  const css = readFileSync(new URL("../pages/idp.css", import.meta.url));
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
        const mtls = d.mtlsUrl?.();
        const links = H.loginLinks({
          tenant,
          email: !!d.email,
          register: !!d.email && (await d.users.policy(tenant)).self_registration,
          certificateUrl: mtls ? `${mtls.replace(/\/+$/, "")}/t/${tenant}/login/certificate` : undefined,
        });
        return html(H.loginPage({ tenant, csrf: s.csrf, username: ch?.login_hint, clientName: ch?.client_name, links }), 200, fresh ? cookie(s) : {});
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
        return afterFirstFactor(request, s!, r.user, ["pwd"]);
      }),
      { params: TenantParam, body: LoginForm, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/mfa",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const s = await d.sessions.load(request, params.tenant);
        if (!pending(s, "mfa")) return seeOther(`/t/${params.tenant}/login`);
        return html(H.mfaPage({ tenant: params.tenant, csrf: s!.csrf, passkey: await d.users.factors.hasPasskey(params.tenant, pending(s, "mfa")!) }));
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
        const passkey = await d.users.factors.hasPasskey(tenant, userId);
        const again = (error: string, status: number, headers: Record<string, string> = {}) => html(H.mfaPage({ tenant, csrf: s!.csrf, error, passkey }), status, headers);
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
        const first = s!.flow.firstAmr ?? ["pwd"];
        return complete(request, s!, userId, [...first, kind === "recovery" ? "mfa" : kind]);
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
          next = await d.sessions.rotate(s!, { challenge: s!.flow.challenge }, { userId, authTime: now(), amr: [...(s!.flow.firstAmr ?? ["pwd"]), "otp"] });
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
        if (s!.row.user_id) d.sessions.onEnded?.(params.tenant, [await sidOf(s!.row.id_hash)]);
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
        if (ended) {
          await d.sessions.revoke(s);
          d.sessions.onEnded?.(params.tenant, [await sidOf(s.row.id_hash)]);
        }
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
        const problem = passwordProblem(body.new_password ?? "", await d.users.passwordRules(tenant), [user.username, user.email ?? ""]);
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
