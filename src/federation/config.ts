/**
 * The `federation` config section: where each federated service is and how it is called.
 *
 *   federation:
 *     identity:                 # identity-authz, whose JWKS verifies /service tokens
 *       url: https://identity-authz:18000      # compose service name, Kubernetes DNS, ...
 *       timeout_ms: 5000        # first attempt; each retry's grows by timeout_escalation
 *       retries: 2              # idempotent requests only
 *       breaker_failures: 5     # consecutive failures that open the breaker
 *       breaker_cooldown_ms: 30000
 *       fallback: cached_jwks   # or reject_all; allow_all in development only
 *     jose: { url: ..., fallback: local_crypto }
 *     ca:   { url: ..., fallback: cached_certificates }
 *     audit: { url: https://audit:8801, fallback: spool }   # the audit service's mTLS port
 *
 * Every key also comes from the environment (`CRYPTOUTIL_FEDERATION_IDENTITY_URL`,
 * `CRYPTOUTIL_FEDERATION_IDENTITY_TIMEOUT_MS`, ...) and from flags, through the one loader.
 */
import * as v from "valibot";
import { AppError } from "../service/errors.ts";
import type { RetryPolicy } from "./backoff.ts";

const ms = (max: number) => v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(max));
const HOUR = 3_600_000;

/** The keys every federated service has. */
const peerEntries = {
  /** Base URL of the peer; unset: not federated (identity falls back to `auth.jwks_url`). */
  url: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://", "must be an https:// URL"))),
  /** PEM bundle that verifies the peer's TLS certificate (identity: default `auth.ca_file`). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  timeout_ms: ms(300_000),
  /** Factor applied to the timeout at each retry (1: the same timeout every time). */
  timeout_escalation: v.pipe(v.number(), v.minValue(1), v.maxValue(10)),
  max_timeout_ms: ms(600_000),
  retries: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(10)),
  backoff_base_ms: ms(60_000),
  backoff_max_ms: ms(600_000),
  /** Fraction of each backoff delay drawn at random: delays fall in [d * (1 - jitter), d]. */
  jitter: v.pipe(v.number(), v.minValue(0), v.maxValue(1)),
  breaker_failures: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)),
  breaker_cooldown_ms: ms(HOUR),
  /** The peer's public health path, polled every `health_interval_ms` (0: no polling). */
  health_path: v.pipe(v.string(), v.startsWith("/", "must be a path starting with /")),
  health_interval_ms: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(HOUR)),
};

export const IDENTITY_FALLBACKS = ["cached_jwks", "reject_all", "allow_all"] as const;
export const JOSE_FALLBACKS = ["local_crypto", "reject_all"] as const;
export const CA_FALLBACKS = ["cached_certificates", "self_signed", "reject_all"] as const;
/** While audit is unreachable, events wait in the service's own database (src/audit/sender.ts). */
export const AUDIT_FALLBACKS = ["spool"] as const;

export const FederationConfig = v.strictObject({
  identity: v.strictObject({
    ...peerEntries,
    /**
     * While identity is unreachable: `cached_jwks` verifies tokens with the last JWKS fetched
     * (no older than `jwks_max_stale_ms`); `reject_all` answers every /service request 503;
     * `allow_all` accepts tokens without checking their signature (development only).
     */
    fallback: v.picklist(IDENTITY_FALLBACKS),
    /** A cached JWKS older than this is fetched again before use. */
    jwks_refresh_ms: ms(24 * HOUR),
    /** The oldest cached JWKS the `cached_jwks` fallback still verifies with. */
    jwks_max_stale_ms: ms(7 * 24 * HOUR),
  }),
  jose: v.strictObject({ ...peerEntries, fallback: v.picklist(JOSE_FALLBACKS) }),
  ca: v.strictObject({ ...peerEntries, fallback: v.picklist(CA_FALLBACKS) }),
  /**
   * The audit service, reached on its mutual-TLS port with this service's client certificate.
   * Set: the service sends its security events there (src/audit/sender.ts).
   */
  audit: v.strictObject({
    ...peerEntries,
    fallback: v.picklist(AUDIT_FALLBACKS),
    /** Events per delivery at most. */
    batch_size: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(500)),
    /** How often the spool is looked at when nothing new was recorded (other instances' events, a restart's). */
    poll_ms: v.pipe(v.number(), v.integer(), v.minValue(10), v.maxValue(HOUR)),
  }),
});

export type FederationConfig = v.InferOutput<typeof FederationConfig>;
export type PeerConfig = FederationConfig["identity"] | FederationConfig["jose"] | FederationConfig["ca"] | FederationConfig["audit"];

const PEER_DEFAULTS = {
  timeout_ms: 5000,
  timeout_escalation: 1.5,
  max_timeout_ms: 15_000,
  retries: 2,
  backoff_base_ms: 200,
  backoff_max_ms: 5000,
  jitter: 0.5,
  breaker_failures: 5,
  breaker_cooldown_ms: 30_000,
  health_path: "/livez",
  health_interval_ms: 10_000,
};

export function defaultFederationConfig(): FederationConfig {
  return {
    identity: { ...PEER_DEFAULTS, fallback: "cached_jwks", jwks_refresh_ms: 600_000, jwks_max_stale_ms: 24 * HOUR },
    jose: { ...PEER_DEFAULTS, fallback: "local_crypto" },
    ca: { ...PEER_DEFAULTS, fallback: "cached_certificates" },
    // Delivery retries on its own schedule (backoff_*), so each call is one attempt.
    audit: { ...PEER_DEFAULTS, retries: 0, backoff_base_ms: 500, backoff_max_ms: 30_000, fallback: "spool", batch_size: 500, poll_ms: 1000 },
  };
}

/**
 * The checks across keys, run at start after the schema: fallbacks that trust anything are
 * refused outside development mode, and the ceilings must not sit below their bases.
 */
export function checkFederationConfig(f: FederationConfig, development: boolean): void {
  const bad = (key: string, message: string) => new AppError("config_invalid", `federation.${key}: ${message}`, { status: 400 });
  if (f.identity.fallback === "allow_all" && !development) {
    throw bad("identity.fallback", "allow_all accepts unverified tokens and is refused unless in development mode (no barrier.unseal_files)");
  }
  if (f.ca.fallback === "self_signed" && !development) {
    throw bad("ca.fallback", "self_signed is refused unless in development mode (no barrier.unseal_files)");
  }
  for (const peer of ["identity", "jose", "ca", "audit"] as const) {
    const p = f[peer];
    if (p.max_timeout_ms < p.timeout_ms) throw bad(`${peer}.max_timeout_ms`, `must be at least timeout_ms (${p.timeout_ms})`);
    if (p.backoff_max_ms < p.backoff_base_ms) throw bad(`${peer}.backoff_max_ms`, `must be at least backoff_base_ms (${p.backoff_base_ms})`);
  }
}

/** The retry policy of a peer's config. */
export function retryPolicy(p: PeerConfig): RetryPolicy {
  return {
    retries: p.retries,
    timeoutMs: p.timeout_ms,
    timeoutEscalation: p.timeout_escalation,
    maxTimeoutMs: p.max_timeout_ms,
    backoffBaseMs: p.backoff_base_ms,
    backoffMaxMs: p.backoff_max_ms,
    jitter: p.jitter,
  };
}
