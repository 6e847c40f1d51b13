/**
 * sm-secrets's HTTP layer under /service/api/v1 and /browser/api/v1: paths, schemas, status
 * codes. Which scope a route needs depends on the path (see access.ts), so each handler checks
 * it through `SecretAccess` instead of the `scopes` macro. Rules live in domain.ts.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../src/service/http.ts";
import * as S from "../../schemas/sm-secrets.ts";
import { SecretAccess, type Capability } from "./access.ts";
import type { SecretKv } from "./domain.ts";

/** The tenant and the access of the caller, after checking `cap` on `path`. */
function caller(request: Request, cap: Capability, path: string) {
  const p = principalOf(request);
  SecretAccess.of(p).require(cap, path);
  return p.tenant;
}

const VERSION_WRITTEN = v.object({ path: v.string(), ...S.VersionMeta.entries });

const VERSION_OPS = [
  ["delete", "Soft-delete versions", (kv: SecretKv) => kv.deleteVersions.bind(kv)],
  ["undelete", "Undelete soft-deleted versions (not destroyed ones)", (kv: SecretKv) => kv.undeleteVersions.bind(kv)],
  ["destroy", "Destroy versions: their data is removed for good", (kv: SecretKv) => kv.destroyVersions.bind(kv)],
] as const;

export function secretRoutes(kv: SecretKv) {
  const paramsOf = S.SecretPathParams;
  let app = new Elysia({ tags: ["secrets"] } as never).use(appBase);
  // POST /secrets/{delete,undelete,destroy}/{path} with {"versions": [...]}: 204.
  for (const [op, summary, fnOf] of VERSION_OPS) {
    const fn = fnOf(kv);
    app = app.post(
      `/secrets/${op}/*`,
      async ({ request, params, body, set }) => {
        await fn(caller(request, "delete", params["*"]), params["*"], body.versions);
        set.status = 204;
      },
      { params: paramsOf, body: S.Versions, response: { 204: v.undefined() }, detail: { summary: `${summary}. Scope secrets:delete` } },
    ) as never;
  }
  return (
    app
      // --- the tenant's defaults ------------------------------------------------------------
      .get("/secrets/config", ({ request }) => {
        SecretAccess.of(principalOf(request)).requireAll("read");
        return kv.config(principalOf(request).tenant);
      }, { response: S.KvConfig, detail: { summary: "The tenant's defaults: max_versions (0: 10), cas_required, delete_version_after_s (0: never). Scope secrets:read" } })
      .put(
        "/secrets/config",
        ({ request, body }) => {
          SecretAccess.of(principalOf(request)).requireAll("admin");
          return kv.setConfig(principalOf(request).tenant, body);
        },
        { body: S.WriteKvConfig, response: S.KvConfig, detail: { summary: "Set the tenant's defaults (the members given). Scope secrets:admin" } },
      )
      // --- versions -------------------------------------------------------------------------
      .get("/secrets/data/*", ({ request, params, query }) => kv.read(caller(request, "read", params["*"]), params["*"], query.version), {
        params: paramsOf,
        query: S.ReadSecretQuery,
        response: S.SecretVersion,
        detail: { summary: "Read the current version, or ?version=N. 404 not_found, version_deleted or version_destroyed. Scope secrets:read" },
      })
      .put(
        "/secrets/data/*",
        async ({ request, params, body }) => ({ path: params["*"], ...(await kv.write(caller(request, "write", params["*"]), params["*"], body.data, body.cas)) }),
        {
          params: paramsOf,
          body: S.WriteSecret,
          response: VERSION_WRITTEN,
          detail: { summary: "Write a new version. cas: only if the current version is this one (0: only if none); 409 cas_mismatch, 400 cas_required. Scope secrets:write" },
        },
      )
      .patch(
        "/secrets/data/*",
        async ({ request, params, body }) => ({ path: params["*"], ...(await kv.patch(caller(request, "write", params["*"]), params["*"], body.data, body.cas)) }),
        {
          params: paramsOf,
          body: S.PatchSecret,
          response: VERSION_WRITTEN,
          detail: { summary: "A new version from a JSON merge patch (RFC 7386) of the current one (null removes a member); 404 without a live current version. Scope secrets:write" },
        },
      )
      .delete(
        "/secrets/data/*",
        async ({ request, params, set }) => {
          await kv.deleteLatest(caller(request, "delete", params["*"]), params["*"]);
          set.status = 204;
        },
        { params: paramsOf, response: { 204: v.undefined() }, detail: { summary: "Soft-delete the current version (undelete brings it back). Scope secrets:delete" } },
      )
      .get("/secrets/subkeys/*", ({ request, params, query }) => kv.subkeys(caller(request, "read", params["*"]), params["*"], query.version, query.depth ?? 0), {
        params: paramsOf,
        query: S.SubkeysQuery,
        response: S.Subkeys,
        detail: { summary: "The members of a version with every leaf null, down to ?depth= levels (0: all). Scope secrets:read" },
      })
      // --- metadata -------------------------------------------------------------------------
      .get("/secrets/metadata/*", ({ request, params }) => kv.metadata(caller(request, "read", params["*"]), params["*"]), {
        params: paramsOf,
        response: S.KeyMetadata,
        detail: { summary: "A key's settings, custom_metadata and the history of its versions. Scope secrets:read" },
      })
      .put("/secrets/metadata/*", ({ request, params, body }) => kv.writeMetadata(caller(request, "write", params["*"]), params["*"], body, false), {
        params: paramsOf,
        body: S.WriteMetadata,
        response: S.KeyMetadata,
        detail: { summary: "Set a key's settings (the members given; custom_metadata replaced whole); creates the key without versions. Scope secrets:write" },
      })
      .patch("/secrets/metadata/*", ({ request, params, body }) => kv.writeMetadata(caller(request, "write", params["*"]), params["*"], body, true), {
        params: paramsOf,
        body: S.PatchMetadata,
        response: S.KeyMetadata,
        detail: { summary: "As PUT, but custom_metadata is merged (null removes a member). Scope secrets:write" },
      })
      .delete(
        "/secrets/metadata/*",
        async ({ request, params, set }) => {
          await kv.deleteMetadata(caller(request, "delete", params["*"]), params["*"]);
          set.status = 204;
        },
        { params: paramsOf, response: { 204: v.undefined() }, detail: { summary: "Remove the key, its metadata and every version for good. Scope secrets:delete" } },
      )
      .get(
        "/secrets/list",
        async ({ request, query }) => {
          const p = principalOf(request);
          const access = SecretAccess.of(p);
          access.requireList(query.prefix);
          return { prefix: query.prefix, keys: await kv.list(p.tenant, query.prefix, (full) => access.visible(full)) };
        },
        { query: S.ListQuery, response: S.KeyList, detail: { summary: "The keys and folders (ending in /) one level under ?prefix= (empty: the root), those the caller may read. Scope secrets:read" } },
      )
  );
}
