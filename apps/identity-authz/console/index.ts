/**
 * identity-authz's console: tenants; a tenant's clients (register, edit redirect URIs,
 * scopes and audiences, back-channel logout, rotate the secret, delete) and its signing keys
 * (rotate); a user's grants (revoke), reached from identity-idp's user page. Reads call
 * the registry and key store after the API's scope and tenant rule (`requireManage`);
 * every change goes through /browser/api/v1.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { consolePages, type ConsolePage, type Viewer } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, section } from "../../../src/ui/layout.ts";
import { apiForm, type Field } from "../../../src/ui/form.ts";
import { table } from "../../../src/ui/table.ts";
import { AUTH_METHODS, SIGNING_ALGS, type ClientView } from "../../../schemas/identity-authz.ts";
import { ADMIN_SCOPE, ROOT_TENANT, type Authz } from "../domain/authz.ts";
import { requireManage } from "../routes/admin.ts";

const API = "/browser/api/v1/tenants";
const time = (s: number | null) => (s ? new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19) : "—");

const clientFields = (c?: ClientView): Field[] => [
  { name: "client_name", label: "Client name", required: true, maxlength: 200, value: c?.client_name },
  { name: "grant_types", label: "Grant types", type: "list", value: c?.grant_types ?? ["authorization_code", "refresh_token"], hint: "authorization_code, refresh_token, client_credentials" },
  { name: "redirect_uris", label: "Redirect URIs", type: "list", value: c?.redirect_uris, placeholder: "https://app.example/callback" },
  { name: "post_logout_redirect_uris", label: "Post-logout redirect URIs", type: "list", value: c?.post_logout_redirect_uris },
  { name: "scopes", label: "Scopes", type: "list", value: c?.scopes, placeholder: "openid profile" },
  { name: "audiences", label: "Audiences", type: "list", value: c?.audiences, placeholder: "sm-kms" },
  { name: "token_endpoint_auth_method", label: "Client authentication", type: "select", options: AUTH_METHODS, value: c?.token_endpoint_auth_method ?? "client_secret_basic" },
  { name: "backchannel_logout_uri", label: "Back-channel logout URI", value: c?.backchannel_logout_uri, placeholder: "https://app.example/backchannel-logout", empty: c ? "null" : "omit", hint: "Where logout tokens are sent when a user's session ends (OIDC Back-Channel Logout)" },
  { name: "backchannel_logout_session_required", label: "Logout tokens must carry sid", type: "checkbox", value: c?.backchannel_logout_session_required ?? false },
  { name: "request_uris", label: "Request URIs", type: "list", value: c?.request_uris, placeholder: "https://app.example/requests/1", hint: "Where the client serves signed request objects by reference (needs its jwks or jwks_uri)" },
];

function tenantsPage(authz: Authz): ConsolePage {
  return {
    path: "/",
    title: "Tenants",
    scopes: [ADMIN_SCOPE],
    async render({ viewer, query, path }) {
      await authz.ready;
      const all = await authz.registry.listTenants();
      const rows = viewer.tenant === ROOT_TENANT ? all : all.filter((t) => t.id === viewer.tenant);
      return {
        body: html`<div id="tenants">${table({
          caption: "Tenants you manage",
          path,
          query,
          rows,
          sort: { key: "id", dir: "asc" },
          columns: [
            { key: "id", label: "Tenant", cell: (t) => html`<a href="/browser/tenants/${t.id}">${t.id}</a>`, sort: (t) => t.id },
            { key: "name", label: "Display name", cell: (t) => t.display_name, sort: (t) => t.display_name },
            { key: "created", label: "Created", cell: (t) => t.created_at.slice(0, 10), sort: (t) => t.created_at },
          ],
        })}</div>`,
      };
    },
  };
}

/** The page's tenant, after the API's rule (an admin of it, or of root) and once it is known to exist. */
async function managedTenant(authz: Authz, viewer: Viewer, tenant: string) {
  requireManage(viewer.principal, tenant);
  await authz.ready;
  return authz.registry.requireTenant(tenant);
}

function tenantPage(authz: Authz): ConsolePage {
  return {
    path: "/tenants/:tenant",
    title: "Tenant",
    scopes: [ADMIN_SCOPE],
    async render({ viewer, params, query, path }) {
      const tenant = params.tenant!;
      const t = await managedTenant(authz, viewer, tenant);
      const [clients, keys] = await Promise.all([authz.registry.listClients(tenant), authz.keys.list(tenant)]);
      return {
        title: `Tenant ${t.id}`,
        body: html`
${section("clients-title", "Clients", html`<div id="clients">${table<ClientView>({
          caption: "Clients",
          path,
          query,
          rows: clients,
          sort: { key: "name", dir: "asc" },
          columns: [
            { key: "name", label: "Name", cell: (c) => html`<a href="/browser/tenants/${tenant}/clients/${encodeURIComponent(c.client_id)}">${c.client_name}</a>`, sort: (c) => c.client_name.toLowerCase() },
            { key: "id", label: "Client id", cell: (c) => html`<code>${c.client_id}</code>`, sort: (c) => c.client_id },
            { key: "grants", label: "Grants", cell: (c) => c.grant_types.join(", ") },
            { key: "audiences", label: "Audiences", cell: (c) => c.audiences.join(", ") },
          ],
        })}</div>`)}
${section("register-title", "Register a client", apiForm({ id: "register", action: `${API}/${tenant}/clients`, method: "POST", submit: "Register client", then: "stay", result: { field: "client_secret", label: "Client secret (shown once; copy it now)" }, flash: "Registered {client_id}.", fields: clientFields() }))}
${section("keys-title", "Signing keys", html`${table({
  caption: "Signing keys",
  path,
  query,
  rows: keys,
  sort: { key: "created", dir: "desc" },
  columns: [
    { key: "kid", label: "kid", cell: (k) => html`<code>${k.kid}</code>` },
    { key: "alg", label: "Algorithm", cell: (k) => k.alg, sort: (k) => k.alg },
    { key: "status", label: "Status", cell: (k) => html`<span class="status-${k.status === "current" ? "good" : "disabled"}">${k.status}</span>`, sort: (k) => k.status },
    { key: "created", label: "Created", cell: (k) => time(k.created_at), sort: (k) => k.created_at },
    { key: "until", label: "Published until", cell: (k) => time(k.publish_until) },
  ],
})}
${apiForm({ id: "rotate-keys", action: `${API}/${tenant}/keys/rotate`, method: "POST", submit: "Rotate signing key", confirm: "Rotate this tenant's signing key? New tokens are signed with a new key; the old one stays published until its tokens expire.", flash: "Signing key rotated.", fields: [{ name: "alg", label: "Algorithm", type: "select", options: SIGNING_ALGS, value: "ES256" }] })}`)}`,
      };
    },
  };
}

function clientPage(authz: Authz): ConsolePage {
  return {
    path: "/tenants/:tenant/clients/:client_id",
    title: "Client",
    scopes: [ADMIN_SCOPE],
    async render({ viewer, params }) {
      const tenant = params.tenant!;
      requireManage(viewer.principal, tenant);
      await authz.ready;
      const { secretHash: _, ...c } = await authz.registry.requireClient(tenant, params.client_id!);
      const url = `${API}/${tenant}/clients/${encodeURIComponent(c.client_id)}`;
      return {
        title: c.client_name,
        body: html`
${details([
  ["Client id", html`<code>${c.client_id}</code>`],
  ["Tenant", tenant],
  ["Grant types", c.grant_types.join(", ")],
  ["Redirect URIs", c.redirect_uris.join(", ") || "none"],
  ["Request URIs", c.request_uris.join(", ") || "none"],
  ["Scopes", c.scopes.join(" ") || "none"],
  ["Audiences", c.audiences.join(", ") || "none"],
  ["Client authentication", c.token_endpoint_auth_method],
  ["Back-channel logout", c.backchannel_logout_uri ? `${c.backchannel_logout_uri}${c.backchannel_logout_session_required ? " (sid required)" : ""}` : "none"],
  ["Changed", c.updated_at],
])}
<div class="grid">
${section("edit-title", "Edit", apiForm({ id: "edit", action: url, method: "PATCH", submit: "Save", flash: "Saved.", fields: clientFields(c) }))}
<div>
${section("secret-title", "Secret", apiForm({ id: "rotate-secret", action: `${url}/secret`, method: "POST", submit: "Rotate secret", confirm: "Rotate the secret? The old one stops working at once.", then: "stay", result: { field: "client_secret", label: "New secret (shown once; copy it now)" }, flash: "Secret rotated." }))}
${section("delete-title", "Delete", apiForm({ id: "delete", action: url, method: "DELETE", submit: "Delete client", confirm: `Delete ${c.client_name}? Its tokens stop working.`, flash: `Deleted ${c.client_name}.`, then: `/browser/tenants/${tenant}` }))}
</div>
</div>
<p><a href="/browser/tenants/${tenant}">All clients of ${tenant}</a></p>`,
      };
    },
  };
}

function userGrantsPage(authz: Authz): ConsolePage {
  return {
    path: "/tenants/:tenant/users/:sub",
    title: "Grants of a user",
    scopes: [ADMIN_SCOPE],
    async render({ viewer, params, query, path }) {
      const tenant = params.tenant!;
      await managedTenant(authz, viewer, tenant);
      const sub = params.sub!;
      const [grants, clients] = await Promise.all([authz.store.listGrantsOf(tenant, sub), authz.registry.listClients(tenant)]);
      const nameOf = new Map(clients.map((c) => [c.client_id, c.client_name]));
      const url = `${API}/${tenant}/users/${encodeURIComponent(sub)}/grants`;
      return {
        title: `Grants of ${sub}`,
        body: html`<p>Each grant is one sign-in of the user at an application; its refresh tokens hang on it. Revoking it signs the application out at its next refresh.</p>
<div id="grants">${table({
          caption: "Live grants",
          path,
          query,
          rows: grants,
          sort: { key: "created", dir: "desc" },
          empty: "No live grant.",
          columns: [
            { key: "client", label: "Application", cell: (g) => nameOf.get(g.client_id) ?? g.client_id, sort: (g) => nameOf.get(g.client_id) ?? g.client_id },
            { key: "scope", label: "Scope", cell: (g) => g.scope },
            { key: "created", label: "Granted", cell: (g) => time(g.created_at), sort: (g) => g.created_at },
            { key: "expires", label: "Expires", cell: (g) => time(g.expires_at), sort: (g) => g.expires_at },
            { key: "revoke", label: "Revoke", cell: (g) => apiForm({ id: `revoke-${g.id}`, action: `${url}/${g.id}`, method: "DELETE", submit: "Revoke", inline: true, confirm: `Revoke the grant of ${nameOf.get(g.client_id) ?? g.client_id}?`, flash: "Grant revoked." }) },
          ],
        })}</div>
<p><a href="/browser/tenants/${tenant}">Tenant ${tenant}</a></p>`,
      };
    },
  };
}

export function authzPages(ctx: ServiceContext, authz: Authz) {
  return consolePages(ctx, { title: "Identity: clients and keys", sections: [{ label: "Tenants", href: "/browser/" }], pages: [tenantsPage(authz), tenantPage(authz), clientPage(authz), userGrantsPage(authz)] });
}
