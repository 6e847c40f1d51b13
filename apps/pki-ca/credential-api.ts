/**
 * The admin API shape every enrollment front end's per-profile credentials share (EST's Basic
 * credentials, CMP's PBM shared secrets, CMC's identifications and shared secrets): create one for a profile (the secret shown only in
 * that answer), list the tenant's (never their secrets), delete one. The tenant always comes
 * from the token; `pki:admin` scope.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../src/service/http.ts";

const ADMIN = ["pki:admin"];

/** What a front end's authority offers for its credentials. */
export interface CredentialAuthority {
  createCredential(tenant: string, profile: string): Promise<unknown>;
  store: { credentials(tenant: string): Promise<Array<{ tenant: string }>> };
  deleteCredential(tenant: string, id: string): Promise<void>;
}

export interface CredentialApi {
  /** OpenAPI tag, the first path segment (`/<tag>/credentials`) and the ids' prefix (`<tag>_...`). */
  tag: string;
  /** The field naming one credential (also the delete path's parameter) and the field of its secret. */
  idField: string;
  secretField: string;
  summaries: { create: string; list: string; remove: string };
}

export function credentialAdminApi(c: CredentialApi, authority: () => Promise<CredentialAuthority>) {
  const path = `/${c.tag}/credentials`;
  const listed = v.object({ [c.idField]: v.string(), profile: v.string(), created_at: v.string(), last_used_at: v.nullable(v.string()) });
  const created = v.object({ [c.idField]: v.string(), [c.secretField]: v.string(), profile: v.string(), created_at: v.string() });
  const idPattern = new RegExp(`^${c.tag}_[A-Za-z0-9_-]{1,64}$`);
  return new Elysia({ tags: [c.tag] } as never)
    .use(appBase)
    .post(
      path,
      async ({ request, body, set }) => {
        const out = await (await authority()).createCredential(principalOf(request).tenant, body.profile);
        set.status = 201;
        return out as never;
      },
      {
        body: v.strictObject({ profile: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)) }),
        response: { 201: created },
        scopes: ADMIN,
        detail: { summary: c.summaries.create },
      },
    )
    .get(path, async ({ request }) => ({ items: (await (await authority()).store.credentials(principalOf(request).tenant)).map(({ tenant: _t, ...rest }) => rest) }) as never, {
      response: v.object({ items: v.array(listed) }),
      scopes: ADMIN,
      detail: { summary: c.summaries.list },
    })
    .delete(
      `${path}/:${c.idField}`,
      async ({ request, params, set }) => {
        await (await authority()).deleteCredential(principalOf(request).tenant, (params as Record<string, string>)[c.idField]!);
        set.status = 204;
        return undefined;
      },
      { params: v.object({ [c.idField]: v.pipe(v.string(), v.regex(idPattern)) }), scopes: ADMIN, detail: { summary: c.summaries.remove } },
    );
}
