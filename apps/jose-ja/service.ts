/**
 * jose-ja: the JOSE Authority. JWK management on elastic keys (the shared keyring of
 * `src/keyring`, as sm-kms), public JWKS, JWS, JWE, JWT issue and validation, and an audit
 * log of every key operation. `domain.ts` holds the rules, `routes.ts` the HTTP layer.
 */
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { KeyImporter, serviceKeyring } from "../../src/keyring/index.ts";
import { migrations } from "./migrations.ts";
import { JoseService, parseJoseConfig } from "./domain.ts";
import { AuditLog } from "./audit.ts";
import { joseRootRoutes, joseRoutes } from "./routes.ts";
import { josePages } from "./console/index.ts";

const instances = new WeakMap<ServiceContext, { jose: JoseService; audit: AuditLog }>();

/** One domain per service context (the template calls `api` once per prefix), with its sweep timer. */
function joseOf(ctx: ServiceContext): { jose: JoseService; audit: AuditLog } {
  let inst = instances.get(ctx);
  if (!inst) {
    const cfg = parseJoseConfig(ctx.config.app);
    const ring = serviceKeyring(ctx, cfg);
    inst = { jose: new JoseService(ring, new KeyImporter(ring), cfg), audit: new AuditLog(ctx.db, ctx.audit) };
    instances.set(ctx, inst);
  }
  return inst;
}

export const joseJa: ServiceDefinition = {
  name: "jose-ja",
  title: "jose-ja: JOSE Authority",
  description:
    "Multi-tenant JOSE on elastic keys: JWK generate/import/get/list/delete/rotate, public JWKS (cacheable, ETag), JWS sign/verify, JWE encrypt/decrypt, JWT issue/validate, and an audit log of every key operation. Key material is stored barrier-encrypted, or kept in the HSM when one is configured.",
  version: "1.0.0",
  defaultPort: 9443,
  migrations,
  checkConfig: (c) => void parseJoseConfig(c.app),
  api: (ctx) => {
    const { jose, audit } = joseOf(ctx);
    return joseRoutes(jose, audit);
  },
  routes: (ctx) => joseRootRoutes(joseOf(ctx).jose),
  pages: (ctx) => {
    const { jose, audit } = joseOf(ctx);
    return josePages(ctx, jose, audit);
  },
};
