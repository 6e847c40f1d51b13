/**
 * identity-idp's console: the tenant's users (create; disable/enable, reset the password,
 * reset second factors, delete) and the tenant's MFA policy. Reads call UserService after
 * the API's scope (identity:admin); every change goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, section } from "../../../src/ui/layout.ts";
import { apiForm } from "../../../src/ui/form.ts";
import { allPages, table } from "../../../src/ui/table.ts";
import type { UserView } from "../../../schemas/identity-idp.ts";
import type { UserService } from "../domain/users.ts";

const ADMIN = "identity:admin";
const API = "/browser/api/v1";

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

function userPage(users: UserService): ConsolePage {
  return {
    path: "/users/:id",
    title: "User",
    scopes: [ADMIN],
    async render({ viewer, params }) {
      const u = await users.get(viewer.tenant, params.id!);
      const url = `${API}/users/${u.id}`;
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
  ["Id", html`<code>${u.id}</code>`],
])}
<div class="toolbar">
${
  u.disabled
    ? apiForm({ id: "enable", action: `${url}/enable`, method: "POST", submit: "Enable", inline: true, flash: "Enabled." })
    : apiForm({ id: "disable", action: `${url}/disable`, method: "POST", submit: "Disable", inline: true, confirm: `Disable ${u.username}? Their sessions end now.`, flash: "Disabled; sessions ended." })
}
${apiForm({ id: "reset-mfa", action: `${url}/mfa/reset`, method: "POST", submit: "Reset second factors", inline: true, confirm: `Remove every second factor and recovery code of ${u.username}?`, flash: "Second factors removed." })}
</div>
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
      const mfa = await users.mfaPolicy(viewer.tenant);
      return {
        body: apiForm({ id: "policy", action: `${API}/policy`, method: "PUT", submit: "Save policy", flash: "Policy saved.", fields: [
          { name: "mfa", label: "Second factor", type: "select", options: [{ value: "optional", label: "optional" }, { value: "required", label: "required for every user" }], value: mfa },
        ] }),
      };
    },
  };
}

export function idpConsole(ctx: ServiceContext, users: UserService) {
  return consolePages(ctx, {
    title: "Identity: users",
    sections: [
      { label: "Users", href: "/browser/" },
      { label: "Sign-in policy", href: "/browser/policy" },
    ],
    pages: [usersPage(users), userPage(users), policyPage(users)],
  });
}
