/**
 * The admin API (mounted under /service/api/v1 and /browser/api/v1): tenants,
 * clients, scopes and the claims they release, signing keys. Scope `identity:admin`; an admin of tenant `root`
 * manages every tenant, an admin of another tenant only its own.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../../src/service/http.ts";
import { AppError } from "../../../src/service/errors.ts";
import type { Principal } from "../../../src/auth/bearer.ts";
import {
  Client, ClientList, ClientParams, ClientWithSecret, CreateClient, CreateTenant, PutScope, RotateKeys, ScopeDefinition, ScopeList, ScopeParams,
  SigningKeyList, Tenant, TenantList, TenantParams, UpdateClient, PutRegistrationSettings, RegistrationSettings, InitialAccessToken, GrantList, GrantParams, SubjectParams,
} from "../../../schemas/identity-authz.ts";
import { ADMIN_SCOPE, ROOT_TENANT, type Authz } from "../domain/authz.ts";
import { auditedRoutes } from "../../../src/audit/routes.ts";

const ADMIN = [ADMIN_SCOPE];

/** Refuses an admin of another tenant: root admins manage every tenant, others only their own. */
export function requireManage(p: Principal, tenant: string): void {
  if (p.tenant !== ROOT_TENANT && p.tenant !== tenant) throw new AppError("forbidden", "an admin of this tenant cannot manage another tenant");
}

const mayManage = (request: Request, tenant: string) => requireManage(principalOf(request), tenant);
/** The admin changes sent to the audit service, under the tenant they change. */
const AUDITED: Record<string, string> = {
  "POST /tenants": "tenant.create",
  "DELETE /tenants/:tenant": "tenant.delete",
  "POST /tenants/:tenant/clients": "client.create",
  "PATCH /tenants/:tenant/clients/:client_id": "client.update",
  "DELETE /tenants/:tenant/clients/:client_id": "client.delete",
  "POST /tenants/:tenant/clients/:client_id/secret": "client.rotate_secret",
  "PUT /tenants/:tenant/scopes/:name": "scope.put",
  "DELETE /tenants/:tenant/scopes/:name": "scope.delete",
  "POST /tenants/:tenant/keys/rotate": "signing_key.rotate",
  "PUT /tenants/:tenant/registration": "registration.settings",
  "POST /tenants/:tenant/registration/initial-access-token": "registration.initial_access_token",
  "DELETE /tenants/:tenant/users/:sub/grants/:grant_id": "grant.revoke",
};

export function adminRoutes(authz: Authz) {
  const r = authz.registry;
  return new Elysia({ tags: ["admin"] } as never)
    .use(appBase)
    .use(auditedRoutes(authz.audit, AUDITED, { resource: (p) => p.client_id ?? p.name ?? p.tenant ?? "", tenant: (p) => (p.tenant && /^[A-Za-z0-9._-]{1,64}$/.test(p.tenant) ? p.tenant : undefined) }))
    .onBeforeHandle(async () => {
      await authz.ready;
    })
    .post(
      "/tenants",
      async ({ request, body, set }) => {
        mayManage(request, ROOT_TENANT);
        set.status = 201;
        return r.createTenant(body);
      },
      { body: CreateTenant, response: { 201: Tenant }, scopes: ADMIN, detail: { summary: "Create a tenant (root admins)" } },
    )
    .get(
      "/tenants",
      async ({ request }) => {
        const p = principalOf(request);
        const all = await r.listTenants();
        return { items: p.tenant === ROOT_TENANT ? all : all.filter((t) => t.id === p.tenant) };
      },
      { response: TenantList, scopes: ADMIN, detail: { summary: "List tenants" } },
    )
    .get(
      "/tenants/:tenant",
      ({ request, params }) => {
        mayManage(request, params.tenant);
        return r.requireTenant(params.tenant);
      },
      { params: TenantParams, response: Tenant, scopes: ADMIN, detail: { summary: "Get a tenant" } },
    )
    .delete(
      "/tenants/:tenant",
      async ({ request, params, set }) => {
        mayManage(request, ROOT_TENANT);
        if (params.tenant === ROOT_TENANT) throw new AppError("forbidden", "tenant root cannot be deleted");
        await r.requireTenant(params.tenant);
        await authz.keys.destroyTenantKeys(params.tenant);
        await r.deleteTenant(params.tenant);
        authz.pairwise.forget(params.tenant);
        set.status = 204;
      },
      { params: TenantParams, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Delete a tenant with its clients, keys, grants and scopes (root admins)" } },
    )
    .post(
      "/tenants/:tenant/clients",
      async ({ request, params, body, set }) => {
        mayManage(request, params.tenant);
        const c = await r.createClient(params.tenant, body);
        // The key of the client's ID token algorithm is published before its first token.
        await authz.keys.signer(params.tenant, c.id_token_signed_response_alg);
        set.status = 201;
        return c;
      },
      { params: TenantParams, body: CreateClient, response: { 201: ClientWithSecret }, scopes: ADMIN, detail: { summary: "Register a client; the secret is shown once" } },
    )
    .get(
      "/tenants/:tenant/clients",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        return { items: await r.listClients(params.tenant) };
      },
      { params: TenantParams, response: ClientList, scopes: ADMIN, detail: { summary: "List clients" } },
    )
    .get(
      "/tenants/:tenant/clients/:client_id",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        const { secretHash: _, ...c } = await r.requireClient(params.tenant, params.client_id);
        return c;
      },
      { params: ClientParams, response: Client, scopes: ADMIN, detail: { summary: "Get a client" } },
    )
    .patch(
      "/tenants/:tenant/clients/:client_id",
      async ({ request, params, body }) => {
        mayManage(request, params.tenant);
        const c = await r.updateClient(params.tenant, params.client_id, body);
        await authz.keys.signer(params.tenant, c.id_token_signed_response_alg);
        return c;
      },
      { params: ClientParams, body: UpdateClient, response: Client, scopes: ADMIN, detail: { summary: "Update a client" } },
    )
    .delete(
      "/tenants/:tenant/clients/:client_id",
      async ({ request, params, set }) => {
        mayManage(request, params.tenant);
        await r.deleteClient(params.tenant, params.client_id);
        set.status = 204;
      },
      { params: ClientParams, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Delete a client" } },
    )
    .post(
      "/tenants/:tenant/clients/:client_id/secret",
      ({ request, params }) => {
        mayManage(request, params.tenant);
        return r.rotateSecret(params.tenant, params.client_id);
      },
      { params: ClientParams, response: ClientWithSecret, scopes: ADMIN, detail: { summary: "Rotate a client's secret; shown once" } },
    )
    .get(
      "/tenants/:tenant/scopes",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        return { items: await r.listScopes(params.tenant) };
      },
      { params: TenantParams, response: ScopeList, scopes: ADMIN, detail: { summary: "List scopes and the claims they release" } },
    )
    .put(
      "/tenants/:tenant/scopes/:name",
      ({ request, params, body }) => {
        mayManage(request, params.tenant);
        return r.putScope(params.tenant, params.name, body);
      },
      { params: ScopeParams, body: PutScope, response: ScopeDefinition, scopes: ADMIN, detail: { summary: "Define a scope and the user claims it releases" } },
    )
    .delete(
      "/tenants/:tenant/scopes/:name",
      async ({ request, params, set }) => {
        mayManage(request, params.tenant);
        await r.deleteScope(params.tenant, params.name);
        set.status = 204;
      },
      { params: ScopeParams, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Delete a scope definition" } },
    )
    .get(
      "/tenants/:tenant/registration",
      ({ request, params }) => {
        mayManage(request, params.tenant);
        return authz.registration.settings(params.tenant);
      },
      { params: TenantParams, response: RegistrationSettings, scopes: ADMIN, detail: { summary: "Dynamic client registration settings of a tenant (off by default)" } },
    )
    .put(
      "/tenants/:tenant/registration",
      ({ request, params, body }) => {
        mayManage(request, params.tenant);
        return authz.registration.putSettings(params.tenant, body);
      },
      { params: TenantParams, body: PutRegistrationSettings, response: RegistrationSettings, scopes: ADMIN, detail: { summary: "Turn dynamic client registration (RFC 7591) on or off; the scopes and audiences registered clients get" } },
    )
    .post(
      "/tenants/:tenant/registration/initial-access-token",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        return { initial_access_token: await authz.registration.newInitialToken(params.tenant) };
      },
      { params: TenantParams, response: InitialAccessToken, scopes: ADMIN, detail: { summary: "Issue a new initial access token for registration (shown once; the previous one stops working)" } },
    )
    .get(
      "/tenants/:tenant/users/:sub/grants",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        await r.requireTenant(params.tenant);
        return { items: await authz.store.listGrantsOf(params.tenant, params.sub) };
      },
      { params: SubjectParams, response: GrantList, scopes: ADMIN, detail: { summary: "A user's live grants (one per sign-in at a client; refresh tokens hang on them)" } },
    )
    .delete(
      "/tenants/:tenant/users/:sub/grants/:grant_id",
      async ({ request, params, set }) => {
        mayManage(request, params.tenant);
        if (!(await authz.store.revokeGrantOf(params.tenant, params.sub, params.grant_id))) throw new AppError("not_found", "grant not found");
        set.status = 204;
      },
      { params: v.object({ ...SubjectParams.entries, ...GrantParams.entries }), response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Revoke a grant: its refresh tokens stop working and introspection reports its access tokens inactive" } },
    )
    .get(
      "/tenants/:tenant/keys",
      async ({ request, params }) => {
        mayManage(request, params.tenant);
        await r.requireTenant(params.tenant);
        return { items: await authz.keys.list(params.tenant) };
      },
      { params: TenantParams, response: SigningKeyList, scopes: ADMIN, detail: { summary: "List signing keys" } },
    )
    .post(
      "/tenants/:tenant/keys/rotate",
      async ({ request, params, body }) => {
        mayManage(request, params.tenant);
        await r.requireTenant(params.tenant);
        await authz.keys.rotate(params.tenant, body?.alg ?? "ES256");
        return { items: await authz.keys.list(params.tenant) };
      },
      { params: TenantParams, body: v.optional(RotateKeys), response: SigningKeyList, scopes: ADMIN, detail: { summary: "Rotate a signing key now" } },
    );
}
