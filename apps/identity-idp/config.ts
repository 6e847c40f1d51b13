/** The `app` config section of identity-idp, validated once at start. */
import * as v from "valibot";
import { AppError } from "../../src/service/errors.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const int = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

export const IdpAppConfig = v.strictObject({
  /** Public base URL of identity-authz; the issuer of tenant T is `{authz_url}/t/{T}`. */
  authz_url: v.optional(v.pipe(v.string(), v.url()), "https://127.0.0.1:18000"),
  /** JWKS of authz's login-challenge keys; may hold `{tenant}`. Default `{authz_url}/t/{tenant}/jwks`. */
  authz_jwks_url: v.optional(v.pipe(v.string(), v.url())),
  /** PEM bundle trusted for authz's TLS. Default: this service's trust bundle (the suite CA). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Name shown in authenticator apps (otpauth issuer). */
  display_name: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(64)), "cryptoutil"),
  password_min_length: v.optional(int(8, 64), 12),
  password_max_length: v.optional(int(64, 1024), 128),
  /** Argon2id cost; never below the OWASP minimum (m=19 MiB, t=2, p=1). */
  argon2_memory_kib: v.optional(int(19 * 1024, 4 * 1024 * 1024), 19 * 1024),
  argon2_iterations: v.optional(int(2, 100), 2),
  argon2_parallelism: v.optional(int(1, 16), 1),
  /** Web Workers that compute Argon2id off the event loop; 0 computes in the request's thread. */
  argon2_workers: v.optional(int(0, 64), Math.max(1, Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 1))),
  /** Failures before a lockout, per username and per client IP. */
  lockout_user_threshold: v.optional(int(1, 1000), 5),
  lockout_ip_threshold: v.optional(int(1, 100_000), 50),
  /** First lockout length; doubles with each further failure up to the maximum. */
  lockout_base_s: v.optional(int(1, 3600), 30),
  lockout_max_s: v.optional(int(1, 86_400), 900),
  /** idp sessions (the login cookie `__Host-idp_session`). */
  session_idle_s: v.optional(int(60, 86_400), 1800),
  session_absolute_s: v.optional(int(300, 30 * 86_400), 12 * 3600),
  /** Unfinished logins (password given, second factor pending) expire after this. */
  login_flow_s: v.optional(int(60, 3600), 600),
  /** Default MFA policy of a tenant without its own. */
  mfa_default: v.optional(v.picklist(["optional", "required"]), "optional"),
  totp_drift_steps: v.optional(int(0, 3), 1),
  hotp_look_ahead: v.optional(int(1, 100), 10),
  /** WebAuthn RP ID (a registrable domain of the pages' host). Default: the host of server.public_url. */
  webauthn_rp_id: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9.-]{1,253}$/))),
  /** Origins passkey ceremonies may run on. Default: the origin of server.public_url. */
  webauthn_origins: v.optional(v.array(v.pipe(v.string(), v.url()))),
  /** Outgoing mail (sign-in links, sign-up, password reset, address change). Unset: in development
   *  the mails go to the outbox page /dev/outbox; in production those features are off. */
  smtp: v.optional(
    v.strictObject({
      host: v.pipe(v.string(), v.minLength(1), v.maxLength(253)),
      port: v.optional(int(1, 65535), 587),
      /** starttls (default) or implicit TLS; none only in development. */
      tls: v.optional(v.picklist(["starttls", "implicit", "none"]), "starttls"),
      user: v.optional(v.pipe(v.string(), v.minLength(1))),
      /** File holding the SMTP password (a Docker secret). */
      password_file: v.optional(v.pipe(v.string(), v.minLength(1))),
      from: v.pipe(v.string(), v.minLength(3), v.maxLength(254)),
      /** PEM bundle trusted for the SMTP server's certificate. Default: the system's. */
      ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
    }),
  ),
  /** Magic sign-in links live at most this long (10 minutes at most). */
  magic_link_ttl_s: v.optional(int(60, 600), 600),
  /** Sign-up, password reset and address change links. */
  email_token_ttl_s: v.optional(int(300, 86_400), 3600),
  /** Mails asked for per address, and per client IP, in 15 minutes. */
  mail_per_address: v.optional(int(1, 100), 5),
  mail_per_ip: v.optional(int(1, 100_000), 30),
  /**
   * pki-ca's CAs whose client certificates sign users in on the mTLS port: their ids as in
   * `/pki/ca/<id>.pem`, fetched from `federation.ca.url` (unset: none) at start and every
   * `certificate_ca_refresh_s`, and trusted by the listener from then on. Their certificates are
   * checked at pki-ca's OCSP responder at each sign-in, and may sign in by e-mail or UPN SAN where
   * the tenant's policy says so (`certificate_email`, `certificate_upn`).
   */
  certificate_cas: v.optional(v.array(v.pipe(v.string(), v.regex(/^[a-z0-9-]{1,40}$/, "a pki-ca CA id such as issuing-p-256"))), ["issuing-p-256"]),
  certificate_ca_refresh_s: v.optional(int(60, 86_400), 3600),
  /** The signing key of login verifiers is replaced after this many days. */
  signing_key_rotation_days: v.optional(int(1, 3650), 90),
});

export type IdpConfig = v.InferOutput<typeof IdpAppConfig>;

/** Validates `app`; a bad value stops the start with the key named. */
export function parseAppConfig(config: ServiceConfig): IdpConfig {
  const r = v.safeParse(IdpAppConfig, (config as { app?: unknown }).app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const key = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
    throw new AppError("config_invalid", `app${key ? "." + key : ""}: ${issue.message}`, { status: 400 });
  }
  return r.output;
}
