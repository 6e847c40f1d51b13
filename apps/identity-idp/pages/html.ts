/**
 * Server-rendered pages of identity-idp. Every interpolated value goes through `esc`; pages
 * load one same-origin stylesheet and, where passkeys are offered, one same-origin script
 * (`/assets/webauthn.js`), so they work under `script-src 'self'` with no exception. Errors are tied to their field (`aria-describedby`, `aria-invalid`).
 */
import type { Enrolment } from "../domain/factors.ts";

export const esc = (s: unknown) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

export function page(title: string, body: string, head = ""): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/assets/idp.css">${head}
</head>
<body><main>
<h1>${esc(title)}</h1>
${body}
</main></body>
</html>`;
}

const PASSKEY_SCRIPT = `\n<script src="/assets/webauthn.js" defer></script>`;

/** A button the passkey script drives, with the status line its errors go to. */
const passkeyButton = (p: { tenant: string; csrf: string; kind: "register" | "login" | "mfa"; label: string }) =>
  `<button type="button" id="passkey-${p.kind}" class="secondary" data-passkey="${p.kind}" data-tenant="${esc(p.tenant)}" data-csrf="${esc(p.csrf)}">${esc(p.label)}</button>
<p id="passkey-status" class="error" role="status"></p>`;

const csrf = (token: string) => `<input type="hidden" name="csrf_token" value="${esc(token)}">`;

/** A text input with its label and, when given, an error tied to it. */
function field(p: { id: string; label: string; type?: string; autocomplete: string; value?: string; error?: string; extra?: string; optional?: boolean }): string {
  const err = p.error ? `<p class="error" id="${p.id}-error">${esc(p.error)}</p>` : "";
  const aria = p.error ? ` aria-invalid="true" aria-describedby="${p.id}-error"` : "";
  return `<label for="${p.id}">${esc(p.label)}</label>
<input id="${p.id}" name="${p.id}" type="${p.type ?? "text"}" autocomplete="${p.autocomplete}" value="${esc(p.value ?? "")}"${p.optional ? "" : " required"}${aria}${p.extra ?? ""}>
${err}`;
}

export function loginPage(p: { tenant: string; csrf: string; username?: string; error?: string; clientName?: string; links?: string }): string {
  const who = p.clientName ? `<p>to continue to <strong>${esc(p.clientName)}</strong></p>` : "";
  return page(
    "Sign in",
    `${who}<form method="post" action="/t/${esc(p.tenant)}/login" novalidate>
${csrf(p.csrf)}
${field({ id: "username", label: "Username", autocomplete: "username", value: p.username, extra: ' autocapitalize="none" spellcheck="false"' })}
${field({ id: "password", label: "Password", type: "password", autocomplete: "current-password", error: p.error })}
<button type="submit">Sign in</button>
</form>
${passkeyButton({ tenant: p.tenant, csrf: p.csrf, kind: "login", label: "Sign in with a passkey" })}${p.links ?? ""}`,
    PASSKEY_SCRIPT,
  );
}

export function mfaPage(p: { tenant: string; csrf: string; error?: string; passkey?: boolean }): string {
  return page(
    "Two-step verification",
    `${p.passkey ? passkeyButton({ tenant: p.tenant, csrf: p.csrf, kind: "mfa", label: "Use your passkey or security key" }) : ""}
<p>Enter the 6-digit code from your authenticator app, touch your YubiKey, or enter one of your recovery codes.</p>
<form method="post" action="/t/${esc(p.tenant)}/mfa" novalidate>
${csrf(p.csrf)}
${field({ id: "code", label: "Code", autocomplete: "one-time-code", error: p.error, extra: ' inputmode="text" autocapitalize="none" spellcheck="false" maxlength="48"' })}
<button type="submit">Verify</button>
</form>`,
    p.passkey ? PASSKEY_SCRIPT : "",
  );
}

export function enrolPage(p: { tenant: string; csrf: string; e: Enrolment; error?: string; required: boolean }): string {
  const why = p.required ? `<p class="notice">Your organisation requires two-step verification. Set up an authenticator app to continue.</p>` : "";
  return page(
    "Set up your authenticator",
    `${why}<p>Scan this QR code with an authenticator app, or enter the key by hand.</p>
<div class="qr" role="img" aria-label="QR code of the authenticator key">${p.e.qrSvg}</div>
<p>Key: <code id="otp-secret">${esc(p.e.secret.match(/.{1,4}/g)!.join(" "))}</code></p>
<p><a id="otpauth-uri" href="${esc(p.e.uri)}">Open in an authenticator app on this device</a></p>
<form method="post" action="/t/${esc(p.tenant)}/enroll/${p.e.kind}" novalidate>
${csrf(p.csrf)}
<input type="hidden" name="factor_id" value="${esc(p.e.factorId)}">
${field({ id: "code", label: "Code shown by the app", autocomplete: "one-time-code", error: p.error, extra: ' inputmode="numeric" pattern="[0-9]{6}" maxlength="6"' })}
<button type="submit">Confirm</button>
</form>`,
  );
}

export function recoveryCodesPage(p: { codes: string[]; next: string; nextLabel: string }): string {
  return page(
    "Your recovery codes",
    `<p class="notice">Keep these codes somewhere safe. Each works once if you lose your authenticator. They will not be shown again.</p>
<ol class="codes" id="recovery-codes">${p.codes.map((c) => `<li>${esc(c)}</li>`).join("")}</ol>
<p><a id="continue" href="${esc(p.next)}">${esc(p.nextLabel)}</a></p>`,
  );
}

const SCOPE_TEXT: Record<string, string> = {
  openid: "Confirm your identity",
  profile: "Your name",
  email: "Your email address",
  offline_access: "Stay signed in (keep access while you are away)",
};

export function consentPage(p: { tenant: string; csrf: string; clientName: string; scopes: string[] }): string {
  const items = p.scopes.map((s) => `<li>${esc(SCOPE_TEXT[s] ?? s)} <code>${esc(s)}</code></li>`).join("");
  return page(
    "Allow access?",
    `<p><strong>${esc(p.clientName)}</strong> asks for:</p>
<ul id="scopes">${items}</ul>
<form method="post" action="/t/${esc(p.tenant)}/consent">
${csrf(p.csrf)}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>`,
  );
}

/** Sends the browser on to `url` without a form-submission redirect (CSP form-action stays 'self'). */
export function continuePage(url: string): string {
  return page(
    "Signing you in",
    `<p><a id="continue" href="${esc(url)}">Continue</a></p>`,
    `\n<meta http-equiv="refresh" content="0;url=${esc(url)}">`,
  );
}

export function logoutPage(p: { tenant: string; csrf?: string; done?: boolean }): string {
  if (p.done || !p.csrf) return page("Signed out", `<p>You are signed out.</p><p><a href="/t/${esc(p.tenant)}/login">Sign in again</a></p>`);
  return page(
    "Sign out",
    `<form method="post" action="/t/${esc(p.tenant)}/logout">${csrf(p.csrf)}<button type="submit">Sign out</button></form>`,
  );
}

const FACTOR_TEXT: Record<string, string> = {
  totp: "Authenticator app (TOTP)",
  hotp: "Hardware token (HOTP)",
  yubikey: "YubiKey (Yubico OTP)",
  passkey: "Passkey",
};

export function accountPage(p: {
  tenant: string;
  csrf: string;
  username: string;
  name: string | null;
  factors: Array<{ id: string; kind: string; name?: string; created_at: number }>;
  codesLeft: number;
  message?: string;
  passwordError?: string;
  currentError?: string;
  removeError?: string;
  /** Shown (with the change form) when mail can be sent. */
  email?: string | null;
  emailVerified?: boolean;
  emailError?: string;
}): string {
  const t = esc(p.tenant);
  const factors = p.factors.length
    ? `<ul id="factors">${p.factors
        .map(
          (f) => `<li>${esc(FACTOR_TEXT[f.kind] ?? f.kind)}${f.name ? ` <strong class="factor-name">${esc(f.name)}</strong>` : ""}, added ${esc(new Date(f.created_at * 1000).toISOString().slice(0, 10))}
<form class="inline" method="post" action="/t/${t}/account/factors/remove">${csrf(p.csrf)}<input type="hidden" name="factor_id" value="${esc(f.id)}">
<label for="pw-${esc(f.id)}">Password to confirm</label><input id="pw-${esc(f.id)}" name="password" type="password" autocomplete="current-password" required${p.removeError ? ` aria-invalid="true" aria-describedby="remove-error"` : ""}>
<button type="submit" class="secondary">Remove</button></form>${
            f.kind === "hotp"
              ? `
<form method="post" action="/t/${t}/account/factors/resync">${csrf(p.csrf)}<input type="hidden" name="factor_id" value="${esc(f.id)}">
<label for="c1-${esc(f.id)}">Next code</label><input id="c1-${esc(f.id)}" name="code1" type="text" inputmode="numeric" autocomplete="one-time-code" required>
<label for="c2-${esc(f.id)}">The code after it</label><input id="c2-${esc(f.id)}" name="code2" type="text" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit" class="secondary">Resynchronise</button></form>`
              : ""
          }</li>`,
        )
        .join("")}</ul>${p.removeError ? `<p class="error" id="remove-error">${esc(p.removeError)}</p>` : ""}`
    : `<p>No second factor yet.</p>`;
  return page(
    "Your account",
    `${p.message ? `<p class="notice" role="status">${esc(p.message)}</p>` : ""}
<p>Signed in as <strong id="account-username">${esc(p.username)}</strong>${p.name ? ` (${esc(p.name)})` : ""}.</p>
<h2>Two-step verification</h2>
${factors}
<p><a href="/t/${t}/enroll/totp">Add an authenticator app</a> · <a href="/t/${t}/enroll/hotp">Add a hardware token (HOTP)</a></p>
<h3>Passkeys</h3>
<label for="passkey-name">Name of a new passkey</label>
<input id="passkey-name" name="passkey_name" type="text" maxlength="64" value="Passkey">
${passkeyButton({ tenant: p.tenant, csrf: p.csrf, kind: "register", label: "Add a passkey" })}
<p>Recovery codes left: ${p.codesLeft}</p>
<form method="post" action="/t/${t}/account/recovery-codes">${csrf(p.csrf)}<button type="submit" class="secondary">New recovery codes</button></form>
${p.email !== undefined ? `<h2>E-mail address</h2>
<p>Now: <strong id="account-email">${esc(p.email ?? "none")}</strong>${p.email && !p.emailVerified ? " (not verified)" : ""}</p>
<form method="post" action="/t/${t}/account/email" novalidate>
${csrf(p.csrf)}
${field({ id: "new_email", label: "New address", type: "email", autocomplete: "email", error: p.emailError, extra: ' maxlength="254"' })}
<button type="submit" class="secondary">Send a confirmation link</button>
</form>` : ""}
<h2>Change password</h2>
<form method="post" action="/t/${t}/account/password" novalidate>
${csrf(p.csrf)}
${field({ id: "current_password", label: "Current password", type: "password", autocomplete: "current-password", error: p.currentError })}
${field({ id: "new_password", label: "New password", type: "password", autocomplete: "new-password", error: p.passwordError })}
<button type="submit">Change password</button>
</form>
<p><a href="/t/${t}/logout">Sign out</a></p>`,
    PASSKEY_SCRIPT,
  );
}

export function errorPage(title: string, message: string): string {
  return page(title, `<p class="error" role="alert">${esc(message)}</p>`);
}

/** A page with one message (a link sent, an account made). */
export function messagePage(title: string, message: string, link?: { href: string; label: string }): string {
  return page(title, `<p class="notice" role="status">${esc(message)}</p>${link ? `<p><a id="continue" href="${esc(link.href)}">${esc(link.label)}</a></p>` : ""}`);
}

/** The links under the sign-in form: e-mail sign-in and password reset when mail works, sign-up when the tenant allows it. */
export function loginLinks(p: { tenant: string; email: boolean; register: boolean; certificateUrl?: string }): string {
  const t = esc(p.tenant);
  const links = [
    p.certificateUrl ? `<a href="${esc(p.certificateUrl)}">Sign in with a certificate</a>` : "",
    p.email ? `<a href="/t/${t}/magic">Email me a sign-in link</a>` : "",
    p.email ? `<a href="/t/${t}/password/forgot">Forgot your password?</a>` : "",
    p.register ? `<a href="/t/${t}/register">Create an account</a>` : "",
  ].filter(Boolean);
  return links.length ? `\n<p class="links">${links.join(" · ")}</p>` : "";
}

/** Confirms a sign-in with the client certificate the browser presented on the mTLS port. */
export function certificatePage(p: { tenant: string; csrf: string; subject: string; username?: string }): string {
  const who = p.username
    ? `<p>It signs you in as <strong id="certificate-user">${esc(p.username)}</strong>.</p>`
    : `<p id="certificate-user-none">It is not registered to an account here.</p>`;
  return page(
    "Sign in with a certificate",
    `<p>Your browser presented the certificate <code id="certificate-subject">${esc(p.subject)}</code>.</p>
${who}
<form method="post" action="/t/${esc(p.tenant)}/login/certificate">
${csrf(p.csrf)}
<button type="submit">Sign in with this certificate</button>
</form>`,
  );
}

/** One form asking for an e-mail address (magic link, password reset). */
export function emailFormPage(p: { title: string; intro: string; action: string; csrf: string; button: string; error?: string }): string {
  return page(
    p.title,
    `<p>${esc(p.intro)}</p>
<form method="post" action="${esc(p.action)}" novalidate>
${csrf(p.csrf)}
${field({ id: "email", label: "E-mail address", type: "email", autocomplete: "email", error: p.error, extra: ' maxlength="254"' })}
<button type="submit">${esc(p.button)}</button>
</form>`,
  );
}

export function registerPage(p: { tenant: string; csrf: string; username?: string; email?: string; name?: string; errors?: { username?: string; email?: string; password?: string } }): string {
  const e = p.errors ?? {};
  return page(
    "Create an account",
    `<form method="post" action="/t/${esc(p.tenant)}/register" novalidate>
${csrf(p.csrf)}
${field({ id: "username", label: "Username", autocomplete: "username", value: p.username, error: e.username, extra: ' autocapitalize="none" spellcheck="false" maxlength="128"' })}
${field({ id: "email", label: "E-mail address", type: "email", autocomplete: "email", value: p.email, error: e.email, extra: ' maxlength="254"' })}
${field({ id: "name", label: "Your name (optional)", autocomplete: "name", value: p.name, extra: ' maxlength="200"', optional: true })}
${field({ id: "password", label: "Password", type: "password", autocomplete: "new-password", error: e.password })}
<button type="submit">Create account</button>
</form>
<p>We send a link to your address; the account is created when you open it.</p>`,
  );
}

export function resetPage(p: { tenant: string; csrf: string; token: string; error?: string }): string {
  return page(
    "Choose a new password",
    `<form method="post" action="/t/${esc(p.tenant)}/password/reset" novalidate>
${csrf(p.csrf)}
<input type="hidden" name="token" value="${esc(p.token)}">
${field({ id: "new_password", label: "New password", type: "password", autocomplete: "new-password", error: p.error })}
<button type="submit">Set password</button>
</form>`,
  );
}

/** The development outbox: mails that would have been sent (development mode without SMTP). */
export function outboxPage(mails: Array<{ to: string; subject: string; text: string; at: number }>): string {
  const items = mails
    .map((m) => `<li><p><strong>${esc(m.subject)}</strong> to ${esc(m.to)}, ${esc(new Date(m.at).toISOString())}</p><pre>${esc(m.text)}</pre></li>`)
    .join("");
  return page("Development outbox", `<p class="notice">Development mode, no SMTP server configured: mails are kept here instead of being sent.</p><ol id="outbox">${items}</ol>`);
}
