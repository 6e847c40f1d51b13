/**
 * Pages of the e-mail flows: magic sign-in links, self-registration (when the tenant allows
 * it), password reset and address change, plus the development outbox. Every form carries
 * the idp session's CSRF token; requests for mail answer the same whether or not an account
 * has the address.
 *
 * A magic link is bound to the browser that asked: asking sets `__Host-idp_magic` (a random
 * nonce, HttpOnly); the link works only with it.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { AppError } from "../../../src/service/errors.ts";
import { readCookie } from "../../../src/auth/session.ts";
import { randomToken } from "../domain/email-links.ts";
import { passwordProblem } from "../domain/password.ts";
import * as H from "../pages/html.ts";
import { asPage, html, loginFlow, TenantParam, type PageDeps } from "./flow.ts";

const MAGIC_COOKIE = "__Host-idp_magic";
const short = v.optional(v.pipe(v.string(), v.maxLength(1024)));
const EmailForm = v.object({ csrf_token: short, email: short });
const TokenQuery = v.object({ token: short });
const RegisterForm = v.object({ csrf_token: short, username: short, email: short, name: short, password: short });
const ResetForm = v.object({ csrf_token: short, token: short, new_password: short });
const ChangeEmailForm = v.object({ csrf_token: short, new_email: short });
const EMAIL = /^[^\s@<>()",;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$/;
const USERNAME = /^[a-z0-9][a-z0-9._@+-]{0,127}$/;

const unavailable = () => new AppError("not_found", "this is not available here", { status: 404 });

export function emailRoutes(d: PageDeps) {
  const f = loginFlow(d);
  const mail = () => {
    if (!d.email) throw unavailable();
    return d.email;
  };
  /** Where links in mails point: the configured public URL; a request's own origin only in development. */
  const linkBase = (req: Request) => {
    if (d.publicUrl) return d.publicUrl.replace(/\/+$/, "");
    if (d.development) return new URL(req.url).origin;
    throw new AppError("config_invalid", "e-mail links need server.public_url", { status: 404 });
  };
  const normEmail = (e: string | undefined) => (e ?? "").trim().toLowerCase();

  /**
   * A page asking for an address to mail a link to, and its answer: the same whether or not an
   * account has the address. `send` mails the link and returns headers for the answer.
   */
  function addressForm(path: string, copy: { title: string; intro: string; button: string }, sent: string, send: (req: Request, tenant: string, email: string) => Promise<Record<string, string>>) {
    const form = (tenant: string, csrf: string, error?: string) => H.emailFormPage({ ...copy, action: `/t/${tenant}/${path}`, csrf, error });
    return new Elysia({ name: `identity-idp.email.${path}` })
      .get(
        `/t/:tenant/${path}`,
        asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
          mail();
          const { s, fresh } = await f.sessionOf(request, params.tenant);
          return html(form(params.tenant, s.csrf), 200, fresh ? f.cookie(s) : {});
        }),
        { params: TenantParam, detail: { hide: true } },
      )
      .post(
        `/t/:tenant/${path}`,
        asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof EmailForm> }) => {
          const s = await d.sessions.load(request, params.tenant);
          d.sessions.verifyCsrf(s, body.csrf_token);
          const email = normEmail(body.email);
          if (!EMAIL.test(email)) return html(form(params.tenant, s!.csrf, "Enter an e-mail address."), 400);
          const headers = await send(request, params.tenant, email);
          return html(H.messagePage("Check your e-mail", sent), 200, headers);
        }),
        { params: TenantParam, body: EmailForm, detail: { hide: true } },
      );
  }

  return new Elysia({ name: "identity-idp.email" })
    .use(
      addressForm(
        "magic",
        { title: "Sign in by e-mail", intro: "We send a sign-in link to your address. Open it in this browser.", button: "Email me a link" },
        "If an account has this address, we sent it a sign-in link. Open it in this browser within 10 minutes.",
        async (req, tenant, email) => {
          const nonce = randomToken();
          await mail().requestMagicLink(tenant, email, f.ip(req), nonce, linkBase(req));
          return { "set-cookie": `${MAGIC_COOKIE}=${nonce}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${d.cfg.magic_link_ttl_s}` };
        },
      ),
    )
    .use(
      addressForm(
        "password/forgot",
        { title: "Reset your password", intro: "We send a link to choose a new password to your address.", button: "Send the link" },
        "If an account has this address, we sent it a link to choose a new password.",
        async (req, tenant, email) => {
          await mail().requestPasswordReset(tenant, email, f.ip(req), linkBase(req));
          return {};
        },
      ),
    )
    .get(
      "/t/:tenant/magic/open",
      asPage(async ({ request, params, query }: { request: Request; params: { tenant: string }; query: v.InferOutput<typeof TokenQuery> }) => {
        const tenant = params.tenant;
        const user = await mail().openMagicLink(tenant, query.token, readCookie(request.headers.get("cookie"), MAGIC_COOKIE));
        const { s } = await f.sessionOf(request, tenant);
        const res = await f.afterFirstFactor(request, s, user, ["email"]);
        res.headers.append("set-cookie", `${MAGIC_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`);
        return res;
      }),
      { params: TenantParam, query: TokenQuery, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/register",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        mail();
        if (!(await d.users.policy(params.tenant)).self_registration) throw unavailable();
        const { s, fresh } = await f.sessionOf(request, params.tenant);
        return html(H.registerPage({ tenant: params.tenant, csrf: s.csrf }), 200, fresh ? f.cookie(s) : {});
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/register",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof RegisterForm> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        if (!(await d.users.policy(tenant)).self_registration) throw unavailable();
        const username = (body.username ?? "").trim().toLowerCase();
        const email = normEmail(body.email);
        const name = (body.name ?? "").trim() || undefined;
        const password = body.password ?? "";
        const errors = {
          username: USERNAME.test(username) ? undefined : "1-128 characters: letters, digits and . _ @ + -",
          email: EMAIL.test(email) ? undefined : "Enter an e-mail address.",
          password: passwordProblem(password, await d.users.passwordRules(tenant), [username, email]),
        };
        const again = (status: number) => html(H.registerPage({ tenant, csrf: s!.csrf, username, email, name, errors }), status);
        if (errors.username || errors.email || errors.password) return again(400);
        try {
          await mail().requestRegistration(tenant, { username, email, name, password }, f.ip(request), linkBase(request), await d.users.passwordRules(tenant));
        } catch (e) {
          if (!(e instanceof AppError) || e.code !== "conflict") throw e;
          errors.username = e.message;
          return again(409);
        }
        return html(H.messagePage("Check your e-mail", "We sent a link to your address. Your account is created when you open it."));
      }),
      { params: TenantParam, body: RegisterForm, detail: { hide: true } },
    )
    .get(
      "/t/:tenant/register/confirm",
      asPage(async ({ params, query }: { params: { tenant: string }; query: v.InferOutput<typeof TokenQuery> }) => {
        const user = await mail().confirmRegistration(params.tenant, query.token);
        return html(H.messagePage("Your account is ready", `Your address is confirmed and the account "${user.username}" is created.`, { href: `/t/${params.tenant}/login`, label: "Sign in" }));
      }),
      { params: TenantParam, query: TokenQuery, detail: { hide: true } },
    )

    .get(
      "/t/:tenant/password/reset",
      asPage(async ({ request, params, query }: { request: Request; params: { tenant: string }; query: v.InferOutput<typeof TokenQuery> }) => {
        await mail().peekReset(params.tenant, query.token);
        const { s, fresh } = await f.sessionOf(request, params.tenant);
        return html(H.resetPage({ tenant: params.tenant, csrf: s.csrf, token: query.token! }), 200, fresh ? f.cookie(s) : {});
      }),
      { params: TenantParam, query: TokenQuery, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/password/reset",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof ResetForm> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        await mail().peekReset(tenant, body.token);
        const problem = passwordProblem(body.new_password ?? "", await d.users.passwordRules(tenant), []);
        if (problem) return html(H.resetPage({ tenant, csrf: s!.csrf, token: body.token!, error: problem }), 400);
        const userId = await mail().useReset(tenant, body.token);
        await d.users.setPassword(tenant, userId, body.new_password!);
        // Whoever knew the old password is signed out everywhere.
        await d.sessions.revokeUser(tenant, userId);
        return html(H.messagePage("Password changed", "Your new password is set. Every session of your account was signed out.", { href: `/t/${tenant}/login`, label: "Sign in" }));
      }),
      { params: TenantParam, body: ResetForm, detail: { hide: true } },
    )

    .post(
      "/t/:tenant/account/email",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof ChangeEmailForm> }) => {
        const tenant = params.tenant;
        const s = await f.authenticated(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const email = normEmail(body.new_email);
        if (!EMAIL.test(email)) return html(await f.accountView(s!, { emailError: "Enter an e-mail address." }), 400);
        const user = await d.users.row(tenant, s!.row.user_id!);
        await mail().requestEmailChange(tenant, user, email, f.ip(request), linkBase(request));
        return html(await f.accountView(s!, { message: `We sent a confirmation link to ${email}. Your address changes when you open it.` }));
      }),
      { params: TenantParam, body: ChangeEmailForm, detail: { hide: true } },
    )
    .get(
      "/t/:tenant/email/confirm",
      asPage(async ({ params, query }: { params: { tenant: string }; query: v.InferOutput<typeof TokenQuery> }) => {
        await mail().confirmEmailChange(params.tenant, query.token);
        return html(H.messagePage("Address confirmed", "Your new e-mail address is confirmed.", { href: `/t/${params.tenant}/account`, label: "Your account" }));
      }),
      { params: TenantParam, query: TokenQuery, detail: { hide: true } },
    )

    .get(
      "/dev/outbox",
      () => {
        // Only a development service without SMTP has an outbox; production has no such page.
        if (!d.outbox || !d.development) throw unavailable();
        return html(H.outboxPage(d.outbox.mails));
      },
      { detail: { hide: true } },
    );
}
