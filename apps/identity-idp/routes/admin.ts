/** identity-idp's admin API (scope `identity:admin`, tenant of the caller's token): users and the MFA policy. */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../../src/service/http.ts";
import {
  CreateUser,
  RegisterCertificate,
  UserCertificate,
  UserCertificateId,
  UserCertificateList,
  ImportYubiKey,
  ListUsersQuery,
  MfaPolicy,
  PolicyUpdate,
  ResetPassword,
  UpdateUser,
  User,
  UserId,
  UserList,
  UserSessionList,
  UserSessionParams,
  YubicoClient,
  YubicoClientId,
  YubicoClientList,
  YubiKey,
  YubiKeyId,
  YubiKeyList,
} from "../../../schemas/identity-idp.ts";
import type { YubiKeys } from "../domain/yubikeys.ts";
import type { UserCertificates } from "../domain/certificates.ts";
import type { UserService } from "../domain/users.ts";
import type { IdpSessions } from "../domain/sessions.ts";
import type { IdpKeys } from "../domain/handoff.ts";
import { AppError, notFound } from "../../../src/service/errors.ts";

const ADMIN = ["identity:admin"];

export function adminRoutes(users: UserService, sessions: IdpSessions, keys: IdpKeys, yubikeys: YubiKeys, certificates: UserCertificates) {
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
        const tenant = tenantOf(request);
        // Ended (and reported for back-channel logout) before the rows go with the user.
        await sessions.revokeUser(tenant, params.id);
        await users.delete(tenant, params.id);
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
    .post("/users/:id/unlock", ({ request, params }) => users.unlock(tenantOf(request), params.id), {
      params: UserId,
      response: User,
      scopes: ADMIN,
      detail: { summary: "Unlock a user locked out by failed sign-ins" },
    })
    .get(
      "/users/:id/sessions",
      async ({ request, params }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        return { items: (await sessions.listUser(tenant, params.id)).map(({ idHash: _, amr, ...s }) => ({ ...s, amr: amr.split(" ").filter(Boolean) })) };
      },
      { params: UserId, response: UserSessionList, scopes: ADMIN, detail: { summary: "A user's signed-in sessions" } },
    )
    .post(
      "/users/:id/sessions/revoke",
      async ({ request, params, set }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        await sessions.revokeUser(tenant, params.id);
        set.status = 204;
      },
      { params: UserId, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "End every session of a user (their applications are told by back-channel logout)" } },
    )
    .delete(
      "/users/:id/sessions/:sid",
      async ({ request, params, set }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        if (!(await sessions.revokeSid(tenant, params.id, params.sid))) throw notFound("session");
        set.status = 204;
      },
      { params: UserSessionParams, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "End one session of a user (its applications are told by back-channel logout)" } },
    )
    .get("/policy", ({ request }) => users.policy(tenantOf(request)), {
      response: MfaPolicy,
      scopes: ADMIN,
      detail: { summary: "The tenant's sign-in policy (MFA, self-registration, passkey user verification)" },
    })
    .put("/policy", ({ request, body }) => users.setPolicy(tenantOf(request), body), {
      body: PolicyUpdate,
      response: MfaPolicy,
      scopes: ADMIN,
      detail: { summary: "Change the tenant's sign-in policy (the fields given)" },
    })
    .post(
      "/users/:id/yubikeys",
      async ({ request, params, body, set }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        set.status = 201;
        return yubikeys.import(tenant, params.id, body);
      },
      { params: UserId, body: ImportYubiKey, response: { 201: YubiKey }, scopes: ADMIN, detail: { summary: "Import a YubiKey's Yubico OTP credential (public id, private id, AES key) for a user" } },
    )
    .get(
      "/users/:id/yubikeys",
      async ({ request, params }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        return { items: await yubikeys.list(tenant, params.id) };
      },
      { params: UserId, response: YubiKeyList, scopes: ADMIN, detail: { summary: "A user's YubiKeys" } },
    )
    .delete(
      "/users/:id/yubikeys/:key_id",
      async ({ request, params, set }) => {
        await yubikeys.remove(tenantOf(request), params.id, params.key_id);
        set.status = 204;
      },
      { params: YubiKeyId, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Remove a user's YubiKey" } },
    )
    .post(
      "/users/:id/certificates",
      async ({ request, params, body, set }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        set.status = 201;
        return certificates.register(tenant, params.id, body);
      },
      {
        params: UserId,
        body: RegisterCertificate,
        response: { 201: UserCertificate },
        scopes: ADMIN,
        detail: { summary: "Register a client certificate (PEM) with which the user signs in on the idp's mTLS port" },
      },
    )
    .get(
      "/users/:id/certificates",
      async ({ request, params }) => {
        const tenant = tenantOf(request);
        await users.row(tenant, params.id);
        return { items: await certificates.list(tenant, params.id) };
      },
      { params: UserId, response: UserCertificateList, scopes: ADMIN, detail: { summary: "A user's sign-in certificates" } },
    )
    .delete(
      "/users/:id/certificates/:cert_id",
      async ({ request, params, set }) => {
        await certificates.remove(tenantOf(request), params.id, params.cert_id);
        set.status = 204;
      },
      { params: UserCertificateId, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Remove a user's sign-in certificate" } },
    )
    .post(
      "/yubico-clients",
      async ({ request, set }) => {
        set.status = 201;
        return yubikeys.createClient(tenantOf(request));
      },
      { response: { 201: YubicoClient }, scopes: ADMIN, detail: { summary: "Create an API client of /wsapi/2.0/verify (its HMAC-SHA1 key is shown once)" } },
    )
    .get("/yubico-clients", async ({ request }) => ({ items: await yubikeys.listClients(tenantOf(request)) }), {
      response: YubicoClientList,
      scopes: ADMIN,
      detail: { summary: "The tenant's API clients of the validation protocol" },
    })
    .delete(
      "/yubico-clients/:id",
      async ({ request, params, set }) => {
        await yubikeys.removeClient(tenantOf(request), params.id);
        set.status = 204;
      },
      { params: YubicoClientId, response: { 204: v.undefined() }, scopes: ADMIN, detail: { summary: "Remove an API client" } },
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
