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

export interface CredentialApi {
  /** OpenAPI tag, and the first path segment: `/<tag>/credentials`. */
  tag: string;
  /** The path parameter naming one credential, and its pattern. */
  idParam: string;
  idPattern: RegExp;
  /** The 201 answer (with the secret) and a listed item (without it). */
  created: v.GenericSchema;
  listed: v.GenericSchema;
  create(tenant: string, profile: string): Promise<unknown>;
  list(tenant: string): Promise<Array<{ tenant: string }>>;
  remove(tenant: string, id: string): Promise<void>;
  summaries: { create: string; list: string; remove: string };
}

export function credentialAdminApi(c: CredentialApi) {
  const path = `/${c.tag}/credentials`;
  return new Elysia({ tags: [c.tag] } as never)
    .use(appBase)
    .post(
      path,
      async ({ request, body, set }) => {
        const out = await c.create(principalOf(request).tenant, body.profile);
        set.status = 201;
        return out as never;
      },
      {
        body: v.strictObject({ profile: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)) }),
        response: { 201: c.created },
        scopes: ADMIN,
        detail: { summary: c.summaries.create },
      },
    )
    .get(path, async ({ request }) => ({ items: (await c.list(principalOf(request).tenant)).map(({ tenant: _t, ...rest }) => rest) }) as never, {
      response: v.object({ items: v.array(c.listed) }),
      scopes: ADMIN,
      detail: { summary: c.summaries.list },
    })
    .delete(
      `${path}/:${c.idParam}`,
      async ({ request, params, set }) => {
        await c.remove(principalOf(request).tenant, (params as Record<string, string>)[c.idParam]!);
        set.status = 204;
        return undefined;
      },
      { params: v.object({ [c.idParam]: v.pipe(v.string(), v.regex(c.idPattern)) }), scopes: ADMIN, detail: { summary: c.summaries.remove } },
    );
}
