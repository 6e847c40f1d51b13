/**
 * Passkey ceremonies for the pages' script (`/assets/webauthn.js`): JSON in and out under
 * `/t/{T}/passkeys/...`, each POST carrying the session's CSRF token in `x-csrf-token`.
 * The challenge of a ceremony is kept in the browser's idp session and used once.
 *
 * - register: a signed-in user adds a named passkey (account page).
 * - login, purpose "login": username-less sign-in with any discoverable credential of the tenant.
 * - login, purpose "mfa": the second factor of a user whose first factor was accepted.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { readFileSync } from "node:fs";
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from "@simplewebauthn/server";
import { AppError } from "../../../src/service/errors.ts";
import type { IdpSession } from "../domain/sessions.ts";
import { loginFlow, NO_STORE, TenantParam, type PageDeps } from "./flow.ts";

const b64u = (max: number) => v.pipe(v.string(), v.maxLength(max), v.regex(/^[A-Za-z0-9_-]*$/));
const extensions = v.optional(v.record(v.pipe(v.string(), v.maxLength(64)), v.unknown()));
/** What both ceremonies' `PublicKeyCredential` JSON share; `response` differs. */
const credential = <T extends v.ObjectEntries>(response: T) =>
  v.object({
    id: b64u(1366),
    rawId: b64u(1366),
    type: v.literal("public-key"),
    authenticatorAttachment: v.optional(v.picklist(["platform", "cross-platform"])),
    clientExtensionResults: extensions,
    response: v.object(response),
  });
const RegistrationResponse = credential({
  clientDataJSON: b64u(8192),
  attestationObject: b64u(65536),
  transports: v.optional(v.pipe(v.array(v.pipe(v.string(), v.maxLength(32))), v.maxLength(8))),
});
const AuthenticationResponse = credential({
  clientDataJSON: b64u(8192),
  authenticatorData: b64u(8192),
  signature: b64u(16384), // large enough for ML-DSA-87 (4627 bytes)
  userHandle: v.optional(b64u(128)),
});
const RegisterOptionsBody = v.object({ name: v.optional(v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(64))) });
const RegisterBody = v.object({ response: RegistrationResponse });
const LoginOptionsBody = v.object({ purpose: v.picklist(["login", "mfa"]) });
const LoginBody = v.object({ response: AuthenticationResponse });

/** Ceremonies expire like any login step. */
const expired = () => new AppError("login_expired", "this passkey request has expired; start again", { status: 400 });

export function passkeyRoutes(d: PageDeps) {
  const f = loginFlow(d);
  const script = readFileSync(new URL("../pages/webauthn.js", import.meta.url));
  const json = (body: unknown, headers: Record<string, string> = {}) => Response.json(body, { headers: { ...NO_STORE, ...headers } });
  const csrfOf = (req: Request) => req.headers.get("x-csrf-token") ?? undefined;

  /** Takes the pending ceremony of `purpose` out of the session (single use) and returns its challenge. */
  async function takeChallenge(s: IdpSession, purpose: "register" | "login" | "mfa"): Promise<{ challenge: string; name?: string }> {
    const w = s.flow.webauthn;
    await d.sessions.saveFlow(s, { ...s.flow, webauthn: undefined });
    if (!w || w.purpose !== purpose || f.now() - w.at > d.cfg.login_flow_s) throw expired();
    return { challenge: w.challenge, name: w.name };
  }

  return new Elysia({ name: "identity-idp.passkeys" })
    .get("/assets/webauthn.js", () => new Response(script, { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "max-age=3600" } }), {
      detail: { hide: true },
    })
    .post(
      "/t/:tenant/passkeys/register/options",
      async ({ request, params, body }) => {
        const tenant = params.tenant;
        const s = await f.authenticated(request, tenant);
        d.sessions.verifyCsrf(s, csrfOf(request));
        const user = await d.users.row(tenant, s!.row.user_id!);
        const uv = (await d.users.policy(tenant)).user_verification;
        const options = await d.passkeys.registrationOptions(d.relyingParty(request), tenant, user, uv);
        await d.sessions.saveFlow(s!, { ...s!.flow, webauthn: { challenge: options.challenge, purpose: "register", at: f.now(), name: body.name ?? "Passkey" } });
        return json(options);
      },
      { params: TenantParam, body: RegisterOptionsBody, detail: { summary: "Passkey registration options (signed-in user)", tags: ["passkeys"] } },
    )
    .post(
      "/t/:tenant/passkeys/register",
      async ({ request, params, body }) => {
        const tenant = params.tenant;
        const s = await f.authenticated(request, tenant);
        d.sessions.verifyCsrf(s, csrfOf(request));
        const { challenge, name } = await takeChallenge(s!, "register");
        const uv = (await d.users.policy(tenant)).user_verification;
        const cred = await d.passkeys.register(d.relyingParty(request), tenant, s!.row.user_id!, name ?? "Passkey", body.response as RegistrationResponseJSON, challenge, uv);
        return json({ credential: cred, next: `/t/${tenant}/account` });
      },
      { params: TenantParam, body: RegisterBody, detail: { summary: "Register a passkey", tags: ["passkeys"] } },
    )
    .post(
      "/t/:tenant/passkeys/login/options",
      async ({ request, params, body }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, csrfOf(request));
        const userId = body.purpose === "mfa" ? f.pending(s, "mfa") : undefined;
        if (body.purpose === "mfa" && !userId) throw expired();
        const uv = (await d.users.policy(tenant)).user_verification;
        const options = await d.passkeys.authenticationOptions(d.relyingParty(request), tenant, uv, userId);
        await d.sessions.saveFlow(s!, { ...s!.flow, webauthn: { challenge: options.challenge, purpose: body.purpose, at: f.now() } });
        return json(options);
      },
      { params: TenantParam, body: LoginOptionsBody, detail: { summary: "Passkey sign-in options (username-less, or the pending user's)", tags: ["passkeys"] } },
    )
    .post(
      "/t/:tenant/passkeys/login",
      async ({ request, params, body }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, csrfOf(request));
        const purpose = s!.flow.webauthn?.purpose === "mfa" ? "mfa" : "login";
        const { challenge } = await takeChallenge(s!, purpose);
        const pendingUser = purpose === "mfa" ? f.pending(s, "mfa") : undefined;
        if (purpose === "mfa" && !pendingUser) throw expired();
        const policy = await d.users.policy(tenant);
        const r = await d.passkeys.authenticate(d.relyingParty(request), tenant, body.response as AuthenticationResponseJSON, challenge, policy.user_verification, pendingUser);
        const user = await d.users.row(tenant, r.userId);
        if (user.disabled) throw new AppError("passkey_refused", "the passkey was not accepted: this account is disabled", { status: 400 });
        let amr: string[];
        if (purpose === "mfa") amr = [...(s!.flow.firstAmr ?? ["pwd"]), "hwk"];
        else if (r.userVerified) amr = ["hwk", "user"];
        else if (policy.mfa === "required") {
          throw new AppError("passkey_refused", "the passkey was not accepted: this organisation requires a passkey that verifies you (PIN or biometrics)", { status: 400 });
        } else amr = ["hwk"];
        const next = await d.sessions.rotate(s!, { challenge: s!.flow.challenge }, { userId: user.id, authTime: f.now(), amr });
        return json({ next: `/t/${tenant}/login/continue` }, f.cookie(next));
      },
      { params: TenantParam, body: LoginBody, detail: { summary: "Sign in with a passkey (first or second factor)", tags: ["passkeys"] } },
    );
}
