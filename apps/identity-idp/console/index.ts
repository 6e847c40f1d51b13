/**
 * identity-idp's console: the tenant's users (create; disable/enable, reset the password,
 * reset second factors, unlock, end their sessions one by one or all, delete; their grants at
 * identity-authz's console) and the tenant's sign-in policy (MFA, self-registration, passkey
 * user verification, password length). Reads call UserService after the API's scope
 * (identity:admin); every change goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, section } from "../../../src/ui/layout.ts";
import { apiForm } from "../../../src/ui/form.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import type { UserView } from "../../../schemas/identity-idp.ts";
import type { UserService } from "../domain/users.ts";
import type { IdpSessions } from "../domain/sessions.ts";

const ADMIN = "identity:admin";
const API = "/browser/api/v1";
const time = (s: number) => new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19);

function usersPage(users: UserService): ConsolePage {
  return {
    path: "/",
    title: "Users",
    scopes: [ADMIN],
    async render({ viewer, query, path }) {
      const rows = await allPages((page_token) => users.list(viewer.tenant, { limit: 100, page_token }));
      return {
        body: html`<div id="users">${table<UserView>({
          caption: "Users",
          path,
          query,
          rows,
          sort: { key: "username", dir: "asc" },
          empty: "No users yet.",
          columns: [
            { key: "username", label: "Username", cell: (u) => html`<a href="/browser/users/${u.id}">${u.username}</a>`, sort: (u) => u.username },
            { key: "name", label: "Name", cell: (u) => u.name ?? "", sort: (u) => u.name ?? "" },
            { key: "email", label: "Email", cell: (u) => u.email ?? "" },
            { key: "mfa", label: "Second factors", cell: (u) => u.mfa.factors.map((f) => f.kind).join(", ") || "none" },
            { key: "status", label: "Status", cell: (u) => html`<span class="status-${u.disabled ? "disabled" : "enabled"}">${u.disabled ? "disabled" : "active"}</span>`, sort: (u) => String(u.disabled) },
          ],
        })}</div>
${section("create-title", "Create a user", apiForm({ id: "create", action: `${API}/users`, method: "POST", submit: "Create user", flash: "Created {username}.", then: "/browser/users/{id}", fields: [
  { name: "username", label: "Username", required: true, maxlength: 64 },
  { name: "name", label: "Display name", maxlength: 200 },
  { name: "email", label: "Email", maxlength: 254 },
  { name: "password", label: "Initial password", type: "password", hint: "Optional: without one the user cannot sign in yet" },
] }))}`,
      };
    },
  };
}

function userPage(ctx: ServiceContext, users: UserService, sessions: IdpSessions): ConsolePage {
  return {
    path: "/users/:id",
    title: "User",
    scopes: [ADMIN],
    async render({ viewer, params }) {
      const u = await users.get(viewer.tenant, params.id!);
      const url = `${API}/users/${u.id}`;
      const live = await sessions.listUser(viewer.tenant, u.id);
      // A user's grants (refresh tokens per application) live at identity-authz: its console, when the suite has one.
      const authzConsole = ctx.config.browser.consoles?.find((c) => c.name === "identity-authz")?.url;
      const grants = authzConsole ? new URL(`tenants/${encodeURIComponent(viewer.tenant)}/users/${encodeURIComponent(u.id)}`, authzConsole.endsWith("/") ? authzConsole : authzConsole + "/").toString() : undefined;
      return {
        title: u.username,
        body: html`
${details([
  ["Status", u.disabled ? "disabled" : "active"],
  ["Name", u.name],
  ["Email", u.email ? `${u.email}${u.email_verified ? " (verified)" : ""}` : null],
  ["Password", u.has_password ? "set" : "none"],
  ["Second factors", u.mfa.factors.map((f) => f.kind).join(", ") || "none"],
  ["Recovery codes left", u.mfa.recovery_codes_left],
  ["Sign-in lock", u.locked_until ? `locked until ${time(u.locked_until)} UTC (failed sign-ins)` : "not locked"],
  ["Id", html`<code>${u.id}</code>`],
])}
<div class="toolbar">
${
  u.disabled
    ? apiForm({ id: "enable", action: `${url}/enable`, method: "POST", submit: "Enable", inline: true, flash: "Enabled." })
    : apiForm({ id: "disable", action: `${url}/disable`, method: "POST", submit: "Disable", inline: true, confirm: `Disable ${u.username}? Their sessions end now.`, flash: "Disabled; sessions ended." })
}
${apiForm({ id: "reset-mfa", action: `${url}/mfa/reset`, method: "POST", submit: "Reset second factors", inline: true, confirm: `Remove every second factor and recovery code of ${u.username}?`, flash: "Second factors removed." })}
${u.locked_until ? apiForm({ id: "unlock", action: `${url}/unlock`, method: "POST", submit: "Unlock", inline: true, flash: "Unlocked." }) : ""}
</div>
${section("sessions-title", "Sessions", html`<div id="sessions">${table({
  caption: "Signed-in sessions",
  path: `/browser/users/${u.id}`,
  query: new URLSearchParams(),
  rows: live,
  empty: "No session: the user is signed out everywhere.",
  columns: [
    { key: "started", label: "Signed in", cell: (x) => time(x.created_at) },
    { key: "seen", label: "Last seen", cell: (x) => time(x.last_seen_at) },
    { key: "amr", label: "Methods", cell: (x) => x.amr || "—" },
    { key: "end", label: "End", cell: (x) => apiForm({ id: `end-session-${x.sid.slice(0, 16)}`, action: `${url}/sessions/${x.sid}`, method: "DELETE", submit: "End session", inline: true, confirm: "End this session? Its applications sign the user out too.", flash: "Session ended." }) },
  ],
})}
${live.length ? apiForm({ id: "end-sessions", action: `${url}/sessions/revoke`, method: "POST", submit: "End every session", inline: true, confirm: `Sign ${u.username} out everywhere?`, flash: "Every session ended." }) : ""}
${grants ? html`<p><a href="${grants}">Grants of ${u.username} at identity-authz</a> (applications holding refresh tokens)</p>` : ""}</div>`)}
<div class="grid">
${section("password-title", "Reset password", apiForm({ id: "password", action: `${url}/password`, method: "POST", submit: "Set password", flash: "Password set; sessions ended.", fields: [{ name: "password", label: "New password", type: "password", required: true }] }))}
${section("delete-title", "Delete", apiForm({ id: "delete", action: url, method: "DELETE", submit: "Delete user", confirm: `Delete ${u.username} with their factors, consents and sessions?`, flash: `Deleted ${u.username}.`, then: "/browser/" }))}
</div>
<p><a href="/browser/">All users</a></p>`,
      };
    },
  };
}

function policyPage(users: UserService): ConsolePage {
  return {
    path: "/policy",
    title: "Sign-in policy",
    scopes: [ADMIN],
    async render({ viewer }) {
      const p = await users.policy(viewer.tenant);
      return {
        body: apiForm({ id: "policy", action: `${API}/policy`, method: "PUT", submit: "Save policy", flash: "Policy saved.", fields: [
          { name: "mfa", label: "Second factor", type: "select", options: [{ value: "optional", label: "optional" }, { value: "required", label: "required for every user" }], value: p.mfa },
          { name: "password_min_length", label: "Minimum password length", type: "number", min: 8, max: 64, required: true, value: p.password_min_length, hint: "8 to 64 characters; common and breached passwords are refused whatever the length" },
          { name: "self_registration", label: "People may create their own account (verified e-mail)", type: "checkbox", value: p.self_registration },
          { name: "user_verification", label: "Passkey user verification", type: "select", options: ["required", "preferred", "discouraged"], value: p.user_verification },
          { name: "certificate_email", label: "A pki-ca client certificate signs in the user whose verified e-mail is its e-mail SAN (no registration)", type: "checkbox", value: p.certificate_email },
          { name: "certificate_upn", label: "A pki-ca client certificate signs in the user whose username is its UPN SAN (smart-card logon name; no registration)", type: "checkbox", value: p.certificate_upn },
        ] }),
      };
    },
  };
}

export function idpConsole(ctx: ServiceContext, users: UserService, sessions: IdpSessions) {
  return consolePages(ctx, {
    title: "Identity: users",
    sections: [
      { label: "Users", href: "/browser/" },
      { label: "Sign-in policy", href: "/browser/policy" },
    ],
    pages: [usersPage(users), userPage(ctx, users, sessions), policyPage(users)],
  });
}
