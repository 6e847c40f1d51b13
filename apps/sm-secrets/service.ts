/**
 * sm-secrets: per-tenant secrets at paths with the semantics of Vault's KV version 2, each
 * version barrier-encrypted. `domain.ts` holds the rules, `access.ts` the scopes by path,
 * `routes.ts` the API under /service and /browser, `vault/` the Vault-compatible surface.
 */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { KvStore } from "./store.ts";
import { SecretKv } from "./domain.ts";
import { secretRoutes } from "./routes.ts";
import { vaultRoutes } from "./vault/routes.ts";
import { secretsPages } from "./console/index.ts";

/** The `app` section of sm-secrets's config. */
export const SecretsConfig = v.strictObject({
  /** The mount name of the Vault surface: `/v1/<vault_mount>/data/...`. */
  vault_mount: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a mount is a lowercase word"), v.check((m) => m !== "sys", "sys is Vault's own mount")), "secret"),
});
export type SecretsConfig = v.InferOutput<typeof SecretsConfig>;

export const parseSecretsConfig = (app: unknown): SecretsConfig => parseAppSection(SecretsConfig, app);

export interface SecretsOptions {
  /** The clock of delete_version_after and of every timestamp (tests inject one). */
  now?: () => Date;
}

/** sm-secrets's definition; `createSmSecrets({ now })` gives one with another clock. */
export function createSmSecrets(opts: SecretsOptions = {}): ServiceDefinition {
  // One domain per service context: the template calls `api` once per prefix.
  const instances = new WeakMap<ServiceContext, SecretKv>();
  const kvOf = (ctx: ServiceContext) => {
    let kv = instances.get(ctx);
    if (!kv) instances.set(ctx, (kv = new SecretKv(new KvStore(ctx.db), ctx.protector, opts.now)));
    return kv;
  };
  return {
    name: "sm-secrets",
    title: "sm-secrets: Secrets Manager (KV)",
    description:
      "Per-tenant secrets at paths with Vault KV v2 semantics: versions, max_versions, check-and-set, soft delete, undelete and destroy, metadata, delete_version_after, merge patch, list, subkeys. Every version is stored barrier-encrypted. Also served as a Vault KV v2-compatible API under /v1/<mount>/ for existing Vault clients.",
    version: "1.0.0",
    defaultPort: 8090,
    migrations,
    checkConfig: (c) => void parseSecretsConfig(c.app),
    api: (ctx) => secretRoutes(kvOf(ctx)),
    routes: (ctx) => vaultRoutes(kvOf(ctx), ctx.bearer, parseSecretsConfig(ctx.config.app).vault_mount),
    pages: (ctx) => secretsPages(ctx, kvOf(ctx)),
  };
}

export const smSecrets = createSmSecrets();
