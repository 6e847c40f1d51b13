/**
 * What every page of the sign-in flow shares: the dependencies, the HTML answers, and the steps
 * after a first factor (second factor or enrolment, consent, the hand-off back to authz).
 * The password pages, passkeys and e-mail links all end their step through `afterFirstFactor`
 * or `complete`, so one set of rules decides what comes next.
 */
import * as v from "valibot";
import { AppError } from "../../../src/service/errors.ts";
import { requestInfo } from "../../../src/service/http.ts";
import type { IdpStore } from "../store.ts";
import type { IdpConfig } from "../config.ts";
import { sidOf, type IdpSessions, type IdpSession, type LoginFlow } from "../domain/sessions.ts";
import type { LoginChallenge, LoginHandoff, IdpKeys } from "../domain/handoff.ts";
import type { UserService } from "../domain/users.ts";
import type { UserRow } from "../store.ts";
import type { Passkeys, RelyingParty } from "../domain/passkeys.ts";
import type { EmailLinks } from "../domain/email-links.ts";
import type { DevOutbox } from "../domain/mailer.ts";
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
  passkeys: Passkeys;
  /** The WebAuthn relying party of a page request (configured, or in development the page's own origin). */
  relyingParty: (req: Request) => RelyingParty;
  /** Development mode. */
  development?: boolean;
  /** E-mail links; undefined when no mail can be sent (production without SMTP). */
  email?: EmailLinks;
  /** The development outbox (development without SMTP only). */
  outbox?: DevOutbox;
  /** The mTLS port's URL (certificate sign-in), once the listener is up; undefined without one. */
  mtlsUrl?: () => string | undefined;
  /** The public listener's URL: the idp's name towards authz for logins finished on the mTLS port. */
  publicListenerUrl?: () => string | undefined;
}

export const TenantParam = v.object({ tenant: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,64}$/)) });
export const NO_STORE = { "cache-control": "no-store" };
export const html = (body: string, status = 200, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE, ...headers } });
export const seeOther = (location: string, headers: Record<string, string> = {}) => new Response(null, { status: 303, headers: { location, ...NO_STORE, ...headers } });

/** Turns page errors into HTML pages (bad input and lockouts); faults stay JSON 500s. */
export function asPage<C>(fn: (c: C) => Promise<Response>) {
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

/** The flow steps, bound to the service's dependencies. */
export function loginFlow(d: PageDeps) {
  const now = d.now ?? (() => Math.floor(Date.now() / 1000));
  // authz knows the idp by its public URL; a login finished on the mTLS port names that one too.
  const idpUrl = (req: Request) => d.publicUrl ?? (requestInfo(req).mtls ? d.publicListenerUrl?.() : undefined) ?? new URL(req.url).origin;
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
    const url = await d.handoff.callbackUrl(ch, { sub: user.id, authTime: s.row.auth_time!, amr: (s.row.amr ?? "pwd").split(" "), grantedScopes: granted, claims, sid: await sidOf(s.row.id_hash) }, idpUrl(req));
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

  async function accountView(s: IdpSession, extra: { message?: string; passwordError?: string; currentError?: string; removeError?: string; emailError?: string } = {}) {
    const u = await d.users.row(s.row.tenant, s.row.user_id!);
    return H.accountPage({
      tenant: s.row.tenant,
      csrf: s.csrf,
      username: u.username,
      name: u.name,
      factors: await d.users.factors.list(s.row.tenant, u.id),
      codesLeft: await d.users.factors.recoveryCodesLeft(s.row.tenant, u.id),
      ...(d.email ? { email: u.email, emailVerified: !!u.email_verified } : {}),
      ...extra,
    });
  }

  async function authenticated(req: Request, tenant: string): Promise<IdpSession | undefined> {
    const s = await d.sessions.load(req, tenant);
    return s?.row.user_id ? s : undefined;
  }

  /**
   * A first factor (password, magic link) succeeded for `user`: the second factor when the user
   * has one, enrolment when the tenant requires one, else signed in.
   */
  async function afterFirstFactor(req: Request, s: IdpSession, user: UserRow, amr: string[]): Promise<Response> {
    const tenant = s.row.tenant;
    const flow: LoginFlow = { challenge: s.flow.challenge, pendingUser: user.id, pendingAt: now(), firstAmr: amr };
    if (await d.users.factors.hasFactor(tenant, user.id)) {
      const next = await d.sessions.rotate(s, { ...flow, stage: "mfa" });
      return seeOther(`/t/${tenant}/mfa`, cookie(next));
    }
    if ((await d.users.mfaPolicy(tenant)) === "required") {
      const next = await d.sessions.rotate(s, { ...flow, stage: "enroll" });
      return seeOther(`/t/${tenant}/enroll/totp`, cookie(next));
    }
    return complete(req, s, user.id, amr);
  }

  return { now, idpUrl, ip, cookie, sessionOf, challengeOf, pending, finish, advance, complete, accountView, authenticated, afterFirstFactor };
}
