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
import { Notifier } from "../../src/notify/notifier.ts";
import { prepareDummy } from "./domain/password.ts";
import { Argon2Pool } from "./domain/argon2-pool.ts";
import { adminRoutes } from "./routes/admin.ts";
import { wsapiRoutes } from "./routes/wsapi.ts";
import { passkeyRoutes } from "./routes/passkeys.ts";
import { YubiKeys } from "./domain/yubikeys.ts";
import { UserCertificates } from "./domain/certificates.ts";
import { certificateRoutes } from "./routes/certificate.ts";
import { CertificateIssuers } from "./domain/certificate-issuers.ts";
import { Passkeys, type RelyingParty } from "./domain/passkeys.ts";
import { AppError } from "../../src/service/errors.ts";
import { DevOutbox, SmtpMailer, type Mailer } from "./domain/mailer.ts";
import { EmailLinks } from "./domain/email-links.ts";
import { SendLimit } from "./domain/throttle.ts";
import { emailRoutes } from "./routes/email.ts";
import type { IdpConfig } from "./config.ts";
import { idpPages } from "./routes/pages.ts";
import { idpConsole } from "./console/index.ts";

/** For tests: the clock of e-mail links and their send limits (seconds since the epoch). */
export interface IdpOptions {
  now?: () => number;
}

/** SMTP when configured; else the development outbox, and in production no mail at all. */
function mailerOf(cfg: IdpConfig, development: boolean): Mailer | undefined {
  if (cfg.smtp) {
    if (cfg.smtp.tls === "none" && !development) throw new AppError("config_invalid", "app.smtp.tls: none (plain SMTP) is allowed only in development", { status: 400 });
    return new SmtpMailer(cfg.smtp);
  }
  return development ? new DevOutbox() : undefined;
}

/** Everything the routes share; built once per service start. */
export function buildIdp(ctx: ServiceContext, opts: IdpOptions = {}) {
  const cfg = parseAppConfig(ctx.config);
  const store = new IdpStore(ctx.db);
  const sessions = new IdpSessions(ctx.db, ctx.protector, ctx.sessions, { idleS: cfg.session_idle_s, absoluteS: cfg.session_absolute_s });
  const yubikeys = new YubiKeys(store, ctx.protector);
  const certificates = new UserCertificates(store);
  // pki-ca's CAs, fetched over federation.ca and added to the mTLS listener's trust at run time.
  const issuers = new CertificateIssuers({ ca: ctx.federation.client("ca"), ids: cfg.certificate_cas, refreshMs: cfg.certificate_ca_refresh_s * 1000, trust: (pem) => ctx.addClientCa(pem), logger: ctx.logger });
  issuers.start();
  ctx.onStop(() => issuers.stop());
  const passkeys = new Passkeys(store);
  const factors = new SecondFactors(store, ctx.protector, { issuerName: cfg.display_name, driftSteps: cfg.totp_drift_steps, hotpLookAhead: cfg.hotp_look_ahead }, yubikeys, passkeys);
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
  // Sessions ended here (revoked by an admin, the user disabled, signed out) are reported to
  // identity-authz, which sends back-channel logout tokens to their clients; retried in the background.
  const idpBase = () => (ctx.config.server.public_url ?? ctx.urls.public ?? "").replace(/\/+$/, "");
  const reports = new Notifier([{ name: "session-ended report", send: async (n) => handoff.postReport(await handoff.sessionEndedReport(n.tenant, String(n.data.sid), idpBase())) }], { logger: ctx.logger });
  sessions.onEnded = (tenant, sids) => {
    for (const sid of sids) reports.emit("session_ended", tenant, { sid });
  };
  ctx.onStop(() => reports.stop());
  const relyingParty = relyingPartyOf(cfg, ctx.config.server.public_url, ctx.development);
  const mail = mailerOf(cfg, ctx.development);
  const email = mail
    ? new EmailLinks(
        store,
        ctx.protector,
        mail,
        new SendLimit(ctx.db, 900, opts.now),
        {
          magicTtlS: cfg.magic_link_ttl_s,
          tokenTtlS: cfg.email_token_ttl_s,
          perAddress: cfg.mail_per_address,
          perIp: cfg.mail_per_ip,
          displayName: cfg.display_name,
          password: { minLength: cfg.password_min_length, maxLength: cfg.password_max_length },
          argon2,
          runner,
        },
        ctx.logger,
        opts.now,
      )
    : undefined;
  return { cfg, store, sessions, factors, throttle, users, keys, handoff, yubikeys, certificates, issuers, passkeys, relyingParty, email, outbox: mail instanceof DevOutbox ? mail : undefined };
}

/**
 * Where passkey ceremonies may run: configured, or the host of the public URL. Without either,
 * development mode takes the page's own origin (a local test); production refuses passkeys.
 */
function relyingPartyOf(cfg: IdpConfig, publicUrl: string | undefined, development: boolean): (req: Request) => RelyingParty {
  const fixed = cfg.webauthn_origins ?? (publicUrl ? [new URL(publicUrl).origin] : undefined);
  const rpId = cfg.webauthn_rp_id ?? (fixed ? new URL(fixed[0]!).hostname : undefined);
  return (req) => {
    if (fixed && rpId) return { id: rpId, name: cfg.display_name, origins: fixed };
    if (!development) throw new AppError("passkeys_unconfigured", "passkeys need app.webauthn_rp_id and app.webauthn_origins, or server.public_url", { status: 404 });
    const origin = new URL(req.url).origin;
    return { id: new URL(origin).hostname, name: cfg.display_name, origins: [origin] };
  };
}

/** identity-idp's service definition; `opts` lets tests inject a clock. */
export function identityIdpService(opts: IdpOptions = {}): ServiceDefinition {
  const built = new WeakMap<ServiceContext, ReturnType<typeof buildIdp>>();
  const idpOf = (ctx: ServiceContext) => {
    let b = built.get(ctx);
    if (!b) built.set(ctx, (b = buildIdp(ctx, opts)));
    return b;
  };
  return {
    name: "identity-idp",
    title: "identity-idp: login, second factors and users",
    description:
      "The login, consent and account pages identity-authz hands users to, and the user store: Argon2id passwords, passkeys (WebAuthn), TOTP/HOTP, YubiKey OTP (with the Yubico validation protocol) and recovery codes, magic links, self-registration and password reset by e-mail, lockout, per-tenant policy.",
    version: "1.0.0",
    defaultPort: 18100,
    migrations,
    checkConfig: (c) => void parseAppConfig(c),
    api: (ctx) => {
      const b = idpOf(ctx);
      return adminRoutes(b.users, b.sessions, b.keys, b.yubikeys, b.certificates);
    },
    pages: (ctx) => idpConsole(ctx, idpOf(ctx).users, idpOf(ctx).sessions),
    routes: (ctx) => {
      const b = idpOf(ctx);
      const deps = {
        users: b.users,
        store: b.store,
        sessions: b.sessions,
        handoff: b.handoff,
        keys: b.keys,
        cfg: b.cfg,
        publicUrl: ctx.config.server.public_url,
        passkeys: b.passkeys,
        relyingParty: b.relyingParty,
        development: ctx.development,
        email: b.email,
        outbox: b.outbox,
        mtlsUrl: () => (ctx.config.server.mtls_port ? ctx.urls.mtls : undefined),
        publicListenerUrl: () => ctx.urls.public,
      };
      return idpPages(deps).use(passkeyRoutes(deps)).use(emailRoutes(deps)).use(wsapiRoutes(b.yubikeys)).use(certificateRoutes(deps, b.certificates, b.issuers));
    },
  };
}

export const identityIdp: ServiceDefinition = identityIdpService();
