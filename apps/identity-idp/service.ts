/**
 * identity-idp: login, second factors, consent and the user store of the Identity product.
 * Layout as in learn-ps: `migrations.ts`, `store.ts`, `domain/` (rules), `routes/` (HTTP),
 * `pages/` (HTML), and this definition tying them together.
 */
import { join, resolve } from "node:path";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { IdpStore } from "./store.ts";
import { parseAppConfig } from "./config.ts";
import { IdpSessions } from "./domain/sessions.ts";
import { SecondFactors } from "./domain/factors.ts";
import { LoginThrottle } from "./domain/throttle.ts";
import { UserService } from "./domain/users.ts";
import { IdpKeys, LoginHandoff } from "./domain/handoff.ts";
import { prepareDummy } from "./domain/password.ts";
import { Argon2Pool } from "./domain/argon2-pool.ts";
import { adminRoutes } from "./routes/admin.ts";
import { idpPages } from "./routes/pages.ts";
import { idpConsole } from "./console/index.ts";

/** Everything the routes share; built once per service start. */
export function buildIdp(ctx: ServiceContext) {
  const cfg = parseAppConfig(ctx.config);
  const store = new IdpStore(ctx.db);
  const sessions = new IdpSessions(ctx.db, ctx.protector, ctx.sessions, { idleS: cfg.session_idle_s, absoluteS: cfg.session_absolute_s });
  const factors = new SecondFactors(store, ctx.protector, { issuerName: cfg.display_name, driftSteps: cfg.totp_drift_steps, hotpLookAhead: cfg.hotp_look_ahead });
  const throttle = new LoginThrottle(ctx.db, { userThreshold: cfg.lockout_user_threshold, ipThreshold: cfg.lockout_ip_threshold, baseS: cfg.lockout_base_s, maxS: cfg.lockout_max_s });
  const argon2 = { m: cfg.argon2_memory_kib, t: cfg.argon2_iterations, p: cfg.argon2_parallelism };
  const runner = Argon2Pool.create(cfg.argon2_workers);
  const users = new UserService(store, factors, throttle, {
    rules: { minLength: cfg.password_min_length, maxLength: cfg.password_max_length },
    argon2,
    mfaDefault: cfg.mfa_default,
    runner,
  });
  void prepareDummy(argon2, runner).catch(() => undefined);
  const keys = new IdpKeys(store, ctx.protector);
  // Hourly check of the signing key's age; stopped with the service.
  const rotation = setInterval(() => {
    keys.rotateDue(cfg.signing_key_rotation_days * 86_400_000).then(
      (rotated) => rotated && ctx.logger.info("idp signing key rotated"),
      (e) => (e as { code?: string })?.code !== "sealed" && ctx.logger.warn("idp signing key rotation failed", { error: e }),
    );
  }, 3600_000);
  (rotation as { unref?: () => void }).unref?.();
  ctx.onStop(() => clearInterval(rotation));
  const caFile = cfg.ca_file ?? join(resolve(ctx.config.data.dir), "trust-bundle.pem");
  const handoff = new LoginHandoff({ authzUrl: cfg.authz_url, authzJwksUrl: cfg.authz_jwks_url, caFile }, keys);
  return { cfg, store, sessions, factors, throttle, users, keys, handoff };
}

const built = new WeakMap<ServiceContext, ReturnType<typeof buildIdp>>();
const idpOf = (ctx: ServiceContext) => {
  let b = built.get(ctx);
  if (!b) built.set(ctx, (b = buildIdp(ctx)));
  return b;
};

export const identityIdp: ServiceDefinition = {
  name: "identity-idp",
  title: "identity-idp: login, second factors and users",
  description:
    "The login, consent and account pages identity-authz hands users to, and the user store: Argon2id passwords, TOTP/HOTP and recovery codes, lockout, per-tenant MFA policy.",
  version: "1.0.0",
  defaultPort: 18100,
  migrations,
  checkConfig: (c) => void parseAppConfig(c),
  api: (ctx) => {
    const b = idpOf(ctx);
    return adminRoutes(b.users, b.sessions, b.keys);
  },
  pages: (ctx) => idpConsole(ctx, idpOf(ctx).users),
  routes: (ctx) => {
    const b = idpOf(ctx);
    return idpPages({ users: b.users, store: b.store, sessions: b.sessions, handoff: b.handoff, keys: b.keys, cfg: b.cfg, publicUrl: ctx.config.server.public_url });
  },
};
