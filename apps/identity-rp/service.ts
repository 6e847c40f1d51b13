/**
 * identity-rp: the reference backend-for-frontend. A confidential client of identity-authz
 * (PAR + PKCE, client_secret_basic) that keeps the user's tokens in a server-side session
 * (the browser holds only an opaque cookie), refreshes them before they expire, ends sessions
 * on OpenID Connect back-channel logout, and proxies `/api/*` to identity-rs with the user's
 * access token. A single-page app (identity-spa) signs in through it.
 */
import { Elysia } from "elysia";
import { join, resolve } from "node:path";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { DatabaseProofReplay } from "../../src/auth/proof-replay.ts";
import { migrations } from "./migrations.ts";
import { parseRpConfig } from "./config.ts";
import { IssuerClient } from "./issuer.ts";
import { RpStore } from "./store.ts";
import { RpSessions } from "./domain.ts";
import { rpRoutes, unconfiguredRoutes } from "./routes.ts";

const SWEEP_MS = 10 * 60_000;

function rpOf(ctx: ServiceContext) {
  const cfg = parseRpConfig(ctx.config.app);
  if (!cfg) {
    ctx.logger.warn("identity-rp has no app section: sign-in and the API proxy answer 503 until app.issuer, app.client_id, app.client_secret_file and app.api_url are set");
    return unconfiguredRoutes();
  }
  const issuer = new IssuerClient(cfg, cfg.ca_file ?? join(resolve(ctx.config.data.dir), "trust-bundle.pem"));
  const tenant = cfg.issuer.match(/\/t\/([A-Za-z0-9._-]{1,64})$/)![1]!;
  const sessions = new RpSessions(
    new RpStore(ctx.db),
    ctx.protector,
    issuer,
    (id) => ctx.sessions.csrfToken(id),
    { refreshBeforeS: cfg.refresh_before_s, idleS: cfg.session_idle_s, absoluteS: cfg.session_absolute_s },
    ctx.logger,
    tenant,
  );
  const sweep = setInterval(() => void sessions.sweep().catch((e) => ctx.logger.warn("sweeping ended sessions failed", { error: e })), SWEEP_MS);
  ctx.onStop(() => clearInterval(sweep));
  const replay = new DatabaseProofReplay(ctx.db);
  return rpRoutes({
    cfg,
    sessions,
    issuer,
    protector: ctx.protector,
    logger: ctx.logger,
    origin: (req) => (ctx.config.server.public_url ?? ctx.urls.public ?? new URL(req.url).origin).replace(/\/+$/, ""),
    spend: (key, exp) => replay.useOnce(key, exp),
  });
}

export const identityRp: ServiceDefinition = {
  name: "identity-rp",
  title: "identity-rp: reference backend-for-frontend",
  description:
    "The relying party to copy: signs users in at identity-authz (PAR + PKCE), keeps their tokens in a server-side session, refreshes them, ends sessions on back-channel logout, and proxies /api/* to identity-rs with the user's token.",
  version: "1.0.0",
  defaultPort: 18300,
  migrations,
  checkConfig: (c) => void parseRpConfig(c.app),
  // The machine API is empty: browsers use the routes below, with the session cookie.
  api: () => new Elysia(),
  routes: rpOf,
};
