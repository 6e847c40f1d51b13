/** identity-idp's admin API (scope `identity:admin`, tenant of the caller's token): users and the MFA policy. */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../../src/service/http.ts";
import { CreateUser, ListUsersQuery, MfaPolicy, ResetPassword, UpdateUser, User, UserId, UserList } from "../../../schemas/identity-idp.ts";
import type { UserService } from "../domain/users.ts";
import type { IdpSessions } from "../domain/sessions.ts";
import type { IdpKeys } from "../domain/handoff.ts";
import { AppError } from "../../../src/service/errors.ts";

const ADMIN = ["identity:admin"];

export function adminRoutes(users: UserService, sessions: IdpSessions, keys: IdpKeys) {
  const tenantOf = (req: Request) => principalOf(req).tenant;
  return new Elysia({ tags: ["users"] } as never)
    .use(appBase)
    .post(
      "/users",
      async ({ request, body, set }) => {
        set.status = 201;
        return users.create(tenantOf(request), body);
      },
      { body: CreateUser, response: { 201: User }, scopes: ADMIN, detail: { summary: "Create a user" } },
    )
    .get("/users", ({ request, query }) => users.list(tenantOf(request), query), {
      query: ListUsersQuery,
      response: UserList,
      scopes: ADMIN,
      detail: { summary: "List users" },
    })
    .get("/users/:id", ({ request, params }) => users.get(tenantOf(request), params.id), {
      params: UserId,
      response: User,
      scopes: ADMIN,
      detail: { summary: "Get a user" },
    })
    .patch(
      "/users/:id",
      async ({ request, params, body }) => {
        const tenant = tenantOf(request);
        const u = await users.update(tenant, params.id, body);
        if (body.disabled) await sessions.revokeUser(tenant, params.id);
        return u;
      },
      { params: UserId, body: UpdateUser, response: User, scopes: ADMIN, detail: { summary: "Update a user (name, email, disabled)" } },
    )
    .post(
      "/users/:id/disable",
      async ({ request, params }) => {
        const tenant = tenantOf(request);
        const u = await users.update(tenant, params.id, { disabled: true });
        await sessions.revokeUser(tenant, params.id);
        return u;
      },
      { params: UserId, response: User, scopes: ADMIN, detail: { summary: "Disable a user and end their sessions" } },
    )
    .post("/users/:id/enable", ({ request, params }) => users.update(tenantOf(request), params.id, { disabled: false }), {
      params: UserId,
      response: User,
      scopes: ADMIN,
      detail: { summary: "Enable a user" },
    })
    .delete(
      "/users/:id",
      async ({ request, params, set }) => {
        await users.delete(tenantOf(request), params.id);
        set.status = 204;
      },
      { params: UserId, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Delete a user with their factors, consents and sessions" } },
    )
    .post(
      "/users/:id/password",
      async ({ request, params, body, set }) => {
        const tenant = tenantOf(request);
        await users.setPassword(tenant, params.id, body.password);
        await sessions.revokeUser(tenant, params.id);
        set.status = 204;
      },
      { params: UserId, body: ResetPassword, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Reset a user's password (ends their sessions)" } },
    )
    .post(
      "/users/:id/mfa/reset",
      async ({ request, params }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        await users.factors.reset(tenant, params.id);
        return users.get(tenant, params.id);
      },
      { params: UserId, response: User, scopes: ADMIN, detail: { summary: "Remove every second factor and recovery code of a user" } },
    )
    .get("/policy", async ({ request }) => ({ mfa: await users.mfaPolicy(tenantOf(request)) }), {
      response: MfaPolicy,
      scopes: ADMIN,
      detail: { summary: "The tenant's MFA policy" },
    })
    .put(
      "/policy",
      async ({ request, body }) => {
        await users.setMfaPolicy(tenantOf(request), body.mfa);
        return { mfa: body.mfa };
      },
      { body: MfaPolicy, response: MfaPolicy, scopes: ADMIN, detail: { summary: "Set the tenant's MFA policy" } },
    )
    .post(
      "/signing-keys/rotate",
      async ({ request }) => {
        // One key signs for every tenant, so only the root tenant's admins may replace it.
        if (tenantOf(request) !== "root") throw new AppError("forbidden", "only the root tenant's administrators rotate the idp's signing key");
        return { kid: await keys.rotate() };
      },
      { response: v.object({ kid: v.string() }), scopes: ADMIN, detail: { summary: "Replace the idp's signing key (root tenant only)" } },
    );
}
