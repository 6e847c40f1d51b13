/**
 * `identity tenant|client ...` (identity-authz's admin API) and `identity user ...`
 * (identity-idp's admin API, in the tenant of the caller's token).
 */
import type { Command } from "commander";
import * as A from "../../schemas/identity-authz.ts";
import * as I from "../../schemas/identity-idp.ts";
import { checked, collect, emit, fields, intOption, Session, sub, table } from "../command.ts";
import { UsageError } from "../errors.ts";
import { readSecretFile } from "../auth.ts";
import { writeSecretFile } from "../io.ts";
import type { ServiceClient } from "../http.ts";
import { listAll } from "./kms.ts";

type Tenant = { id: string; display_name: string; created_at: string };
type Client = { client_id: string; client_name: string; grant_types: string[]; scopes: string[]; audiences: string[]; redirect_uris: string[]; token_endpoint_auth_method: string; created_at: string; client_secret?: string | null };
type User = { id: string; username: string; name: string | null; email: string | null; disabled: boolean; has_password: boolean; mfa: { factors: Array<{ kind: string }>; recovery_codes_left: number }; created_at: number };

const AUTHZ = "identity-authz";
const IDP = "identity-idp";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const clientFields = (c: Client) =>
  fields({ client_id: c.client_id, name: c.client_name, "auth method": c.token_endpoint_auth_method, grants: c.grant_types, scopes: c.scopes, audiences: c.audiences, "redirect URIs": c.redirect_uris, created: c.created_at });
const userFields = (u: User) =>
  fields({ id: u.id, username: u.username, name: u.name, email: u.email, disabled: u.disabled, password: u.has_password ? "set" : "none", "second factors": u.mfa.factors.map((f) => f.kind), "recovery codes left": u.mfa.recovery_codes_left, created: new Date(u.created_at * 1000).toISOString() });

/** The tenant an identity command acts on: `--tenant`, else the context's. */
const tenantOf = (s: Session, flag?: string) => checked(A.TenantParams, { tenant: flag ?? s.context.tenant }, "tenant").tenant;

/** A user given by id or by username (looked up in the tenant's list). */
async function userIdOf(api: ServiceClient, user: string): Promise<string> {
  if (UUID.test(user)) return user;
  let page: string | undefined;
  do {
    const r = await api.api<{ items: User[]; next_page_token: string | null }>("GET", "/users", undefined, { limit: 100, page_token: page });
    const hit = r.items.find((u) => u.username === user.toLowerCase());
    if (hit) return hit.id;
    page = r.next_page_token ?? undefined;
  } while (page);
  throw new UsageError(`no user named '${user}' in this tenant`);
}

function registerTenants(identity: Command): void {
  const tenant = sub(identity, "tenant", "Tenants of identity-authz (root tenant admins)", ["identity tenant create acme", "identity tenant list"]);
  sub(tenant, "create <id>", "Create a tenant", ["identity tenant create acme --display-name 'Acme Corp' --context admin"])
    .option("--display-name <name>", "a display name")
    .action(async (id: string, o: { displayName?: string }, cmd: Command) => {
      const body = checked(A.CreateTenant, { id, display_name: o.displayName });
      emit(cmd, await Session.open(cmd).api(AUTHZ).api<Tenant>("POST", "/tenants", body), (t) => `created tenant ${t.id} (${t.display_name})`);
    });
  sub(tenant, "list", "List the tenants this admin may manage", ["identity tenant list", "identity tenant list --json"]).action(async (_: unknown, cmd: Command) => {
    const r = await Session.open(cmd).api(AUTHZ).api<{ items: Tenant[] }>("GET", "/tenants");
    emit(cmd, r, (x) => table(["ID", "DISPLAY NAME", "CREATED"], x.items.map((t) => [t.id, t.display_name, t.created_at])));
  });
  sub(tenant, "get <id>", "Show a tenant", ["identity tenant get acme"]).action(async (id: string, _: unknown, cmd: Command) => {
    const t = checked(A.TenantParams, { tenant: id }, "tenant").tenant;
    emit(cmd, await Session.open(cmd).api(AUTHZ).api<Tenant>("GET", `/tenants/${t}`), (x) => fields({ id: x.id, "display name": x.display_name, created: x.created_at }));
  });
  sub(tenant, "registration <id>", "Show or set a tenant's dynamic client registration (RFC 7591; off by default)", [
    "identity tenant registration acme",
    "identity tenant registration acme --enable --scope openid --scope profile --audience learn-ps",
    "identity tenant registration acme --initial-token required --new-initial-token",
    "identity tenant registration acme --disable",
  ])
    .option("--enable", "turn registration on")
    .option("--disable", "turn registration off")
    .option("--scope <scope>", "a scope registered clients may ask for (repeatable; replaces the list)", collect)
    .option("--audience <name>", "an audience registered clients get (repeatable; replaces the list)", collect)
    .option("--initial-token <mode>", "'required' (registration needs an initial access token) or 'none'")
    .option("--new-initial-token", "issue a new initial access token (printed once; the previous one stops working)")
    .action(async (id: string, o: { enable?: boolean; disable?: boolean; scope?: string[]; audience?: string[]; initialToken?: string; newInitialToken?: boolean }, cmd: Command) => {
      const t = checked(A.TenantParams, { tenant: id }, "tenant").tenant;
      if (o.enable && o.disable) throw new UsageError("give --enable or --disable, not both");
      if (o.initialToken !== undefined && o.initialToken !== "required" && o.initialToken !== "none") throw new UsageError("--initial-token is 'required' or 'none'");
      const api = Session.open(cmd).api(AUTHZ);
      type Settings = { enabled: boolean; scopes: string[]; audiences: string[]; require_initial_access_token: boolean; initial_access_token_issued: boolean; initial_access_token?: string };
      let r = await api.api<Settings>("GET", `/tenants/${t}/registration`);
      if (o.enable || o.disable || o.scope || o.audience || o.initialToken) {
        const body = checked(A.PutRegistrationSettings, {
          enabled: o.enable ? true : o.disable ? false : r.enabled,
          scopes: o.scope ?? r.scopes,
          audiences: o.audience ?? r.audiences,
          require_initial_access_token: o.initialToken ? o.initialToken === "required" : r.require_initial_access_token,
        });
        r = await api.api<Settings>("PUT", `/tenants/${t}/registration`, body);
      }
      if (o.newInitialToken) r = { ...r, initial_access_token_issued: true, ...(await api.api<{ initial_access_token: string }>("POST", `/tenants/${t}/registration/initial-access-token`)) };
      emit(cmd, r, (x) =>
        fields({ registration: x.enabled ? "on" : "off", scopes: x.scopes, audiences: x.audiences, "initial access token": x.require_initial_access_token ? (x.initial_access_token_issued ? "required" : "required (none issued yet)") : "not required", ...(x.initial_access_token ? { "new initial access token (shown once)": x.initial_access_token } : {}) }),
      );
    });
  sub(tenant, "delete <id>", "Delete a tenant with its clients, keys, grants and scopes (root admins)", ["identity tenant delete acme --context admin"]).action(async (id: string, _: unknown, cmd: Command) => {
    const t = checked(A.TenantParams, { tenant: id }, "tenant").tenant;
    await Session.open(cmd).api(AUTHZ).api<undefined>("DELETE", `/tenants/${t}`);
    emit(cmd, { deleted: t }, (x) => `deleted tenant ${x.deleted}`);
  });
}

function registerClients(identity: Command): void {
  const client = sub(identity, "client", "OAuth clients of a tenant (identity-authz)", ["identity client create ci --scope kms:encrypt --audience sm-kms --secret-out ci.secret", "identity client list"]);
  const tenantOpt = (c: Command) => c.option("--tenant <id>", "the tenant (default: the context's)");
  tenantOpt(
    sub(client, "create <name>", "Register a client; a confidential client's secret is shown once (or written to --secret-out, 0600)", [
      "identity client create ci --scope kms:encrypt --scope kms:decrypt --audience sm-kms --secret-out ci.secret",
      "identity client create web --grant-type authorization_code --grant-type refresh_token --redirect-uri https://app.example/cb --scope openid",
      "identity client create native --public --grant-type authorization_code --redirect-uri http://127.0.0.1/callback --scope openid",
    ]),
  )
    .option("--client-id <id>", "the client id (default: generated)")
    .option("--grant-type <grant>", "authorization_code, refresh_token, client_credentials (repeatable; default client_credentials)", collect)
    .option("--scope <scope>", "a scope the client may request (repeatable)", collect)
    .option("--audience <aud>", "an audience (service) it may request tokens for (repeatable; the first is the default)", collect)
    .option("--redirect-uri <uri>", "a redirect URI (repeatable)", collect)
    .option("--public", "a public client (token_endpoint_auth_method none, PKCE)")
    .option("--secret-out <file>", "write the client secret here (mode 0600) instead of printing it")
    .action(async (name: string, o: { tenant?: string; clientId?: string; grantType?: string[]; scope?: string[]; audience?: string[]; redirectUri?: string[]; public?: boolean; secretOut?: string }, cmd: Command) => {
      const s = Session.open(cmd);
      const t = tenantOf(s, o.tenant);
      const body = checked(A.CreateClient, {
        client_id: o.clientId,
        client_name: name,
        grant_types: o.grantType,
        scopes: o.scope,
        audiences: o.audience,
        redirect_uris: o.redirectUri,
        token_endpoint_auth_method: o.public ? "none" : undefined,
      });
      const c = await s.api(AUTHZ).api<Client>("POST", `/tenants/${t}/clients`, body);
      if (o.secretOut && c.client_secret) writeSecretFile(o.secretOut, c.client_secret + "\n");
      const shown = o.secretOut ? { ...c, client_secret: c.client_secret ? `written to ${o.secretOut}` : null } : c;
      emit(cmd, shown, (x) => `${clientFields(x)}${x.client_secret ? `\nclient_secret: ${x.client_secret}${o.secretOut ? "" : "   (shown once)"}` : ""}`);
    });
  tenantOpt(sub(client, "list", "List a tenant's clients", ["identity client list", "identity client list --tenant acme --context admin"])).action(async (o: { tenant?: string }, cmd: Command) => {
    const s = Session.open(cmd);
    const r = await s.api(AUTHZ).api<{ items: Client[] }>("GET", `/tenants/${tenantOf(s, o.tenant)}/clients`);
    emit(cmd, r, (x) => table(["CLIENT ID", "NAME", "AUTH", "GRANTS", "AUDIENCES"], x.items.map((c) => [c.client_id, c.client_name, c.token_endpoint_auth_method, c.grant_types.join(","), c.audiences.join(",")])));
  });
  tenantOpt(sub(client, "get <client-id>", "Show a client", ["identity client get demo-cli"])).action(async (id: string, o: { tenant?: string }, cmd: Command) => {
    const s = Session.open(cmd);
    const p = checked(A.ClientParams, { tenant: tenantOf(s, o.tenant), client_id: id }, "client id");
    emit(cmd, await s.api(AUTHZ).api<Client>("GET", `/tenants/${p.tenant}/clients/${p.client_id}`), clientFields);
  });
  tenantOpt(sub(client, "delete <client-id>", "Delete a client", ["identity client delete old-ci"])).action(async (id: string, o: { tenant?: string }, cmd: Command) => {
    const s = Session.open(cmd);
    const p = checked(A.ClientParams, { tenant: tenantOf(s, o.tenant), client_id: id }, "client id");
    await s.api(AUTHZ).api<undefined>("DELETE", `/tenants/${p.tenant}/clients/${p.client_id}`);
    emit(cmd, { deleted: p.client_id, tenant: p.tenant }, (x) => `deleted client ${x.deleted} of tenant ${x.tenant}`);
  });
}

function registerUsers(identity: Command): void {
  const user = sub(identity, "user", "Users of the context's tenant (identity-idp)", ["identity user create alice --password-file alice.pw", "identity user list"]);
  sub(user, "create <username>", "Create a user", ["identity user create alice --password-file alice.pw --name 'Alice Doe' --email alice@example.com", "identity user create bob    # cannot log in until a password is set"])
    .option("--password-file <file>", "file holding the initial password (checked against the password rules)")
    .option("--name <name>", "display name")
    .option("--email <email>", "e-mail address")
    .option("--email-verified", "mark the e-mail address as verified")
    .action(async (username: string, o: { passwordFile?: string; name?: string; email?: string; emailVerified?: boolean }, cmd: Command) => {
      const body = checked(I.CreateUser, { username, password: o.passwordFile === undefined ? undefined : readSecretFile(o.passwordFile), name: o.name, email: o.email, email_verified: o.emailVerified });
      emit(cmd, await Session.open(cmd).api(IDP).api<User>("POST", "/users", body), userFields);
    });
  sub(user, "list", "List users", ["identity user list", "identity user list --json"])
    .option("--limit <n>", "at most this many (default: all)", intOption("--limit"))
    .action(async (o: { limit?: number }, cmd: Command) => {
      const shown = await listAll<User>(Session.open(cmd).api(IDP), "/users", I.ListUsersQuery, {}, o.limit);
      emit(cmd, { items: shown }, (x) => (x.items.length === 0 ? "no users" : table(["ID", "USERNAME", "NAME", "EMAIL", "DISABLED", "MFA"], x.items.map((u) => [u.id, u.username, u.name, u.email, u.disabled ? "yes" : "no", u.mfa.factors.map((f) => f.kind).join(",")]))));
    });
  sub(user, "get <user>", "Show a user (by id or username)", ["identity user get alice"]).action(async (u: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(IDP);
    emit(cmd, await api.api<User>("GET", `/users/${await userIdOf(api, u)}`), userFields);
  });
  sub(user, "delete <user>", "Delete a user (by id or username) with their factors, consents and sessions", ["identity user delete alice"]).action(async (u: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(IDP);
    const id = await userIdOf(api, u);
    await api.api<undefined>("DELETE", `/users/${id}`);
    emit(cmd, { deleted: u, id }, (x) => `deleted user ${x.deleted}`);
  });
  const mfa = sub(user, "mfa", "A user's second factors", ["identity user mfa reset alice"]);
  sub(mfa, "reset <user>", "Remove every second factor and recovery code of a user", ["identity user mfa reset alice"]).action(async (u: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(IDP);
    const r = await api.api<User>("POST", `/users/${await userIdOf(api, u)}/mfa/reset`);
    emit(cmd, r, (x) => `second factors of ${x.username} removed`);
  });
}

export function registerIdentity(program: Command): void {
  const identity = sub(program, "identity", "identity-authz tenants and clients, identity-idp users", ["identity client list", "identity user create alice --password-file alice.pw"]);
  registerTenants(identity);
  registerClients(identity);
  registerUsers(identity);
}
