/**
 * Bearer access tokens for `/service/**`: JWTs (RFC 9068) verified against the
 * configured issuer's JWKS, fetched over HTTPS with the configured CA bundle through the
 * identity service's federated client (timeouts, retries, circuit breaker).
 *
 * While identity is unreachable, `federation.identity.fallback` decides: `cached_jwks`
 * verifies with the last JWKS fetched (bounded in age), `reject_all` answers 503
 * `unavailable`, `allow_all` (development only) accepts tokens whose claims pass without
 * checking their signature, and never caches them.
 *
 * Checks: signature with an allowed algorithm, `iss`, `aud`, `exp`/`nbf` with
 * clock tolerance, a tenant, no sender constraint (`cnf`: a DPoP- or certificate-bound token
 * is not a Bearer token), and the route's scopes. Verified tokens are cached
 * until they expire, keyed by the full token string, so a repeat costs one
 * map lookup instead of a signature verification.
 */
import { decodeJwt, decodeProtectedHeader, jwtVerify, errors as joseErrors, type JWTPayload } from "jose";
import { AppError } from "../service/errors.ts";
import { defaultFederationConfig } from "../federation/config.ts";
import { Federation } from "../federation/federation.ts";
import { FederationError } from "../federation/errors.ts";
import type { IdentityKeys } from "../federation/identity-keys.ts";

export interface Principal {
  kind: "service" | "browser";
  tenant: string;
  subject: string;
  /** A browser user's name for display, when the login gave one. */
  name?: string;
  scopes: ReadonlySet<string>;
  clientId?: string;
}

export interface BearerConfig {
  /**
   * Expected `iss`. May hold `{tenant}` (e.g. `https://id.example/t/{tenant}`) for a
   * per-tenant issuer; the tenant then comes from the verified `iss`, and `jwksUrl`
   * may hold `{tenant}` too.
   */
  issuer?: string;
  jwksUrl?: string;
  audience: string;
  /** PEM of the CA that signs the issuer's TLS certificate. */
  caPem?: string;
  clockToleranceS: number;
  algorithms: string[];
  /**
   * The identity service's keys (the service's `Federation`). Unset: a client with the
   * default federation settings over `jwksUrl`'s origin and `caPem`, with no health polling.
   */
  keys?: IdentityKeys;
}

const MAX_CACHE = 10_000;

function scopesOf(payload: JWTPayload): Set<string> {
  const s = payload.scope ?? payload.scp;
  if (typeof s === "string") return new Set(s.split(" ").filter(Boolean));
  if (Array.isArray(s)) return new Set(s.filter((x): x is string => typeof x === "string"));
  return new Set();
}

/** Tenant from a `tenant` claim, else from a per-tenant issuer URL ending in `/t/{tenant}`. */
function tenantOf(payload: JWTPayload): string | undefined {
  if (typeof payload.tenant === "string" && payload.tenant) return payload.tenant;
  const m = typeof payload.iss === "string" ? payload.iss.match(/\/t\/([A-Za-z0-9._-]{1,64})$/) : null;
  return m?.[1];
}

const unauthorized = (code: "unauthenticated" | "invalid_token", message: string) =>
  new AppError(code, message, {
    headers: { "WWW-Authenticate": code === "invalid_token" ? 'Bearer error="invalid_token"' : "Bearer" },
  });

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

const identityUnavailable = (cause?: unknown) =>
  new AppError("unavailable", "the token issuer's keys could not be fetched", { cause, headers: { "Retry-After": "5" } });

/** A failed `jwtVerify` as the caller sees it: 503 when identity's keys are out of reach, else 401. */
function verificationError(e: unknown): AppError {
  if (e instanceof FederationError || e instanceof joseErrors.JWKSTimeout || !(e instanceof joseErrors.JOSEError)) return identityUnavailable(e);
  if (e instanceof joseErrors.JWTExpired) return unauthorized("invalid_token", "the access token has expired");
  if (e instanceof joseErrors.JWTClaimValidationFailed) return unauthorized("invalid_token", `token claim '${e.claim}' is not acceptable`);
  return unauthorized("invalid_token", "the access token is not valid");
}

export class BearerVerifier {
  private readonly keys?: IdentityKeys;
  private readonly cache = new Map<string, { principal: Principal; exp: number }>();
  private readonly issuerPattern?: RegExp;

  constructor(private readonly cfg: BearerConfig) {
    if (cfg.issuer?.includes("{tenant}")) {
      const [before, after] = cfg.issuer.split("{tenant}") as [string, string];
      const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      this.issuerPattern = new RegExp(`^${esc(before)}([A-Za-z0-9._-]{1,64})${esc(after)}$`);
    }
    this.keys =
      cfg.keys ??
      (cfg.jwksUrl ? new Federation(defaultFederationConfig(), { identity: { baseUrl: new URL(cfg.jwksUrl).origin, caPem: cfg.caPem } }).identity : undefined);
  }

  /** The JWKS URL of a tenant's issuer (the one URL for a single issuer). */
  private jwksUrlFor(tenant: string): string {
    return this.cfg.jwksUrl!.replace("{tenant}", encodeURIComponent(tenant));
  }

  /** Verifies an `Authorization` header value; throws 401 AppErrors with stable codes. */
  async verify(authorization: string | null): Promise<Principal> {
    if (!authorization) throw unauthorized("unauthenticated", "a bearer access token is required");
    const keys = this.keys;
    if (keys?.fallback === "reject_all" && keys.open) throw identityUnavailable();
    const now = Date.now() / 1000;
    // Only verified tokens are cached, and each passed the syntax check below, so a hit
    // needs no regular expression.
    const seen = authorization.startsWith("Bearer ") ? this.cache.get(authorization.slice(7)) : undefined;
    if (seen && seen.exp > now - this.cfg.clockToleranceS) return seen.principal;
    const m = authorization.match(/^Bearer ([A-Za-z0-9_\-.~+/]+=*)$/);
    if (!m) throw unauthorized("invalid_token", "malformed Authorization header");
    const token = m[1]!; // the same string as the cache key looked up above: not cached
    if (!this.cfg.jwksUrl || !this.cfg.issuer) {
      throw unauthorized(
        "invalid_token",
        "no token issuer is configured: set auth.issuer, auth.jwks_url and auth.ca_file (CRYPTOUTIL_AUTH_ISSUER, _JWKS_URL, _CA_FILE), or run the suite with npm start",
      );
    }

    // For a per-tenant issuer, pick the tenant from the (still unverified) iss; the
    // signature check below then pins iss to exactly that tenant's issuer.
    let issuer = this.cfg.issuer;
    let issuerTenant = "";
    if (this.issuerPattern) {
      let iss: unknown;
      try {
        iss = decodeJwt(token).iss;
      } catch {
        throw unauthorized("invalid_token", "the access token is not valid");
      }
      const m = typeof iss === "string" ? iss.match(this.issuerPattern) : null;
      if (!m || !TENANT.test(m[1]!)) throw unauthorized("invalid_token", "token claim 'iss' is not acceptable");
      issuerTenant = m[1]!;
      issuer = this.cfg.issuer.replace("{tenant}", issuerTenant);
    }

    let payload!: JWTPayload;
    // allow_all: while identity is unreachable, claims are checked and the signature is not.
    let unverified = keys?.fallback === "allow_all" && keys.open;
    try {
      if (!unverified) {
        ({ payload } = await jwtVerify(token, keys!.keySet(this.jwksUrlFor(issuerTenant)), {
          issuer,
          audience: this.cfg.audience,
          algorithms: this.cfg.algorithms,
          clockTolerance: this.cfg.clockToleranceS,
          requiredClaims: ["exp", "sub"],
        }));
      }
    } catch (e) {
      if (e instanceof FederationError && keys?.fallback === "allow_all") unverified = true;
      else throw verificationError(e);
    }
    if (unverified) payload = this.claimsWithoutSignature(token, issuer);
    const tenant = issuerTenant || tenantOf(payload);
    if (issuerTenant && payload.tenant !== undefined && payload.tenant !== issuerTenant) {
      throw unauthorized("invalid_token", "token claim 'tenant' does not match its issuer");
    }
    if (!tenant) throw unauthorized("invalid_token", "the access token names no tenant");
    // A sender-constrained token (RFC 9449 DPoP `cnf.jkt`, RFC 8705 `cnf.x5t#S256`) is only
    // good with the proof of its key, which a Bearer request does not carry (RFC 9449 §7.1).
    // Refused before the cache below, so a bound token is never a cache hit.
    if (payload.cnf !== undefined) {
      throw new AppError("invalid_token", "the access token is sender-constrained (cnf) and cannot be used as a Bearer token", {
        headers: { "WWW-Authenticate": 'Bearer error="invalid_token", error_description="sender-constrained access tokens are not accepted as Bearer tokens"' },
      });
    }
    const principal: Principal = {
      kind: "service",
      tenant,
      subject: payload.sub!,
      scopes: scopesOf(payload),
      clientId: typeof payload.client_id === "string" ? payload.client_id : undefined,
    };
    if (unverified) return principal;
    if (this.cache.size >= MAX_CACHE) this.cache.clear();
    this.cache.set(token, { principal, exp: payload.exp! });
    return principal;
  }

  /** The allow_all fallback: the checks of `jwtVerify` but the signature's. Development mode only. */
  private claimsWithoutSignature(token: string, issuer: string): JWTPayload {
    let header, payload: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      payload = decodeJwt(token);
    } catch {
      throw unauthorized("invalid_token", "the access token is not valid");
    }
    const now = Date.now() / 1000;
    const tol = this.cfg.clockToleranceS;
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (typeof header.alg !== "string" || !this.cfg.algorithms.includes(header.alg)) throw unauthorized("invalid_token", "the access token is not valid");
    if (payload.iss !== issuer) throw unauthorized("invalid_token", "token claim 'iss' is not acceptable");
    if (!aud.includes(this.cfg.audience)) throw unauthorized("invalid_token", "token claim 'aud' is not acceptable");
    if (typeof payload.exp !== "number" || typeof payload.sub !== "string") throw unauthorized("invalid_token", "the access token is not valid");
    if (payload.exp <= now - tol) throw unauthorized("invalid_token", "the access token has expired");
    if (typeof payload.nbf === "number" && payload.nbf > now + tol) throw unauthorized("invalid_token", "token claim 'nbf' is not acceptable");
    return payload;
  }
}

/** Throws 403 unless the principal holds every required scope. */
export function requireScopes(p: Principal, required: readonly string[]): void {
  const missing = required.filter((s) => !p.scopes.has(s));
  if (missing.length) {
    throw new AppError("insufficient_scope", `missing scope: ${missing.join(" ")}`, {
      headers: p.kind === "service" ? { "WWW-Authenticate": `Bearer error="insufficient_scope", scope="${required.join(" ")}"` } : undefined,
    });
  }
}
