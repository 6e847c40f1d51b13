/**
 * identity-authz: the OAuth 2.1 authorization server and OpenID Connect provider,
 * one issuer per tenant (`{public_url}/t/{tenant}`). `routes/oauth.ts` holds the
 * protocol endpoints, `routes/admin.ts` the admin API, `domain/` the rules,
 * `store.ts` the queries.
 */
import { join, resolve } from "node:path";
import type { ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { parseAppConfig } from "./config.ts";
import { Authz } from "./domain/authz.ts";
import { adminRoutes } from "./routes/admin.ts";
import { authzPages } from "./console/index.ts";
import { oauthFastRoutes, oauthRoutes } from "./routes/oauth.ts";

export const identityAuthz: ServiceDefinition = {
  name: "identity-authz",
  title: "identity-authz: OAuth 2.1 / OpenID Connect",
  description: "Multi-tenant OAuth 2.1 authorization server and OpenID Connect provider: code + PKCE, PAR, DPoP, client credentials, RFC 9068 access tokens.",
  version: "1.0.0",
  defaultPort: 18000,
  migrations,
  checkConfig: (c) => void parseAppConfig(c),
  // The admin API is protected by this service's own tokens: unless auth.* is configured,
  // point the template's verifier at our per-tenant issuers (needs a fixed port or public_url).
  configure(c) {
    if (c.auth.issuer || (c.server.port === 0 && !c.server.public_url)) return;
    const host = c.server.bind === "0.0.0.0" || c.server.bind === "::" ? "127.0.0.1" : c.server.bind;
    const base = (c.server.public_url ?? `https://${host.includes(":") ? `[${host}]` : host}:${c.server.port}`).replace(/\/+$/, "");
    c.auth.issuer = `${base}/t/{tenant}`;
    c.auth.jwks_url = `${base}/t/{tenant}/jwks`;
    c.auth.ca_file ??= join(resolve(c.data.dir), "trust-bundle.pem");
  },
  protocolCors: (c) => {
    const origins = parseAppConfig(c).cors_origins;
    return origins.length ? { paths: /^\/t\/[^/]+\/(token|jwks|userinfo|revoke|\.well-known\/[a-z-]+)$/, origins } : undefined;
  },
  api: (ctx) => adminRoutes(Authz.of(ctx)),
  pages: (ctx) => authzPages(ctx, Authz.of(ctx)),
  routes: (ctx) => oauthRoutes(Authz.of(ctx), ctx.logger),
  fastRoutes: (ctx) => oauthFastRoutes(Authz.of(ctx), ctx.logger),
};
