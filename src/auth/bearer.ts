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
 * clock tolerance, a tenant, the sender constraint, and the route's scopes. Verified tokens
 * are cached until they expire, keyed by the full token string, so a repeat costs one map
 * lookup instead of a signature verification; the sender constraint is checked on every use.
 *
 * Sender constraints (`cnf`):
 *  - none: `Authorization: Bearer` only;
 *  - `cnf.jkt` (RFC 9449 DPoP): `Authorization: DPoP <token>` with a `DPoP` proof of that key,
 *    whose `htu` is the service's configured URL of the route, `htm` the method, `ath` the
 *    token's hash and `jti` unused (src/auth/dpop.ts); as Bearer it is refused (§7.1);
 *  - `cnf.x5t#S256` (RFC 8705): the TLS client certificate with that SHA-256 thumbprint, which
 *    only the mTLS listener sees (Bun.serve gives handlers no peer certificate): refused on
 *    the public port, and with any other certificate;
 *  - any other confirmation method: refused.
 */
import { decodeJwt, decodeProtectedHeader, jwtVerify, errors as joseErrors, type JWTPayload } from "jose";
import { AppError } from "../service/errors.ts";
import { defaultFederationConfig } from "../federation/config.ts";
import { Federation } from "../federation/federation.ts";
import { FederationError } from "../federation/errors.ts";
import type { IdentityKeys } from "../federation/identity-keys.ts";
import { DPOP_ALGS, type DpopProofVerifier } from "./dpop.ts";
import type { ClientCertificate } from "./client-cert.ts";

export interface Principal {
  kind: "service" | "browser";
  tenant: string;
  subject: string;
  /** A browser user's name for display, when the login gave one. */
  name?: string;
  scopes: ReadonlySet<string>;
  clientId?: string;
  /** The access token's sender constraint, when it has one (checked before the principal is given). */
  confirmation?: { jkt?: string; "x5t#S256"?: string };
}

/**
 * What a sender-constrained token is checked against, besides the request it came with. The
 * public pipeline passes one constant object (no allocation per request).
 */
export interface TokenRequest {
  /** The URL of `req` as the service's configuration names it (DPoP `htu`). */
  htu(req: Request): string;
  /** The verified TLS client certificate (the mTLS listener only). */
  clientCert?: ClientCertificate;
  /** On the mTLS listener a token is accepted only when it is bound to the client certificate. */
  mtls?: boolean;
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
  /** Checks DPoP proofs; unset: DPoP-bound tokens are refused. */
  dpop?: DpopProofVerifier;
  /**
   * Tokens that are not JWTs (opaque): the principal from the issuer's introspection endpoint,
   * or null when it says inactive. Unset: opaque tokens are refused.
   */
  introspect?: (token: string) => Promise<VerifiedToken | null>;
}

/** A verified access token: its principal, expiry and sender constraint. */
export interface VerifiedToken {
  principal: Principal;
  exp: number;
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

const DPOP_CHALLENGE = `algs="${DPOP_ALGS.filter((a) => a !== "Ed25519").join(" ")}"`;
/** A refused DPoP request (RFC 9449 §7.1): 401 with a DPoP challenge. */
const dpopRefused = (code: "invalid_token" | "invalid_dpop_proof", message: string) =>
  new AppError(code, message, { status: 401, headers: { "WWW-Authenticate": `DPoP error="${code}", ${DPOP_CHALLENGE}` } });
/** A refused certificate-bound request (RFC 8705 §3). */
const certificateRefused = (message: string) => new AppError("invalid_token", message, { headers: { "WWW-Authenticate": 'Bearer error="invalid_token"' } });

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The sender constraint of a token's `cnf`; throws when it names a method this verifier does not know. */
function confirmationOf(cnf: unknown): Principal["confirmation"] {
  if (cnf === undefined) return undefined;
  const c = cnf as Record<string, unknown>;
  const keys = typeof cnf === "object" && cnf !== null && !Array.isArray(cnf) ? Object.keys(c) : [];
  const known = keys.filter((k) => (k === "jkt" || k === "x5t#S256") && typeof c[k] === "string" && c[k] !== "");
  if (keys.length === 0 || known.length !== keys.length) throw unauthorized("invalid_token", "the access token's confirmation (cnf) is not supported");
  return { jkt: c.jkt as string | undefined, "x5t#S256": c["x5t#S256"] as string | undefined };
}

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
  private readonly cache = new Map<string, VerifiedToken>();
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

  /**
   * Verifies an `Authorization` header value (`Bearer` or `DPoP`), and the token's sender
   * constraint against `req` and `request` (without them, bound tokens are refused); throws
   * 401 AppErrors with stable codes.
   */
  async verify(authorization: string | null, req?: Request, request?: TokenRequest): Promise<Principal> {
    if (!authorization) throw unauthorized("unauthenticated", "a bearer access token is required");
    const keys = this.keys;
    if (keys?.fallback === "reject_all" && keys.open) throw identityUnavailable();
    const now = Date.now() / 1000;
    // Only verified tokens are cached, and each passed the syntax check below, so a hit
    // needs no regular expression.
    const seen = authorization.startsWith("Bearer ") ? this.cache.get(authorization.slice(7)) : undefined;
    if (seen && seen.exp > now - this.cfg.clockToleranceS) {
      if (!seen.principal.confirmation && !request?.mtls) return seen.principal;
      return this.bound(seen.principal, "bearer", authorization.slice(7), req, request);
    }
    const m = authorization.match(/^(Bearer|DPoP) ([A-Za-z0-9_\-.~+/]+=*)$/i);
    if (!m) throw unauthorized("invalid_token", "malformed Authorization header");
    const scheme = m[1]!.toLowerCase() as "bearer" | "dpop";
    const token = m[2]!;
    const hit = this.cache.get(token);
    const verified = hit && hit.exp > now - this.cfg.clockToleranceS ? hit : await this.verifyToken(token);
    const p = verified.principal;
    if (p.confirmation) return this.bound(p, scheme, token, req, request);
    if (scheme === "dpop") throw dpopRefused("invalid_token", "the access token is not DPoP-bound; send it as a Bearer token");
    if (request?.mtls) throw certificateRefused("on the mTLS port an access token must be bound to the client certificate (RFC 8705)");
    return p;
  }

  /** Checks a sender-constrained token's proof of possession; returns its principal. */
  private async bound(p: Principal, scheme: "bearer" | "dpop", token: string, req?: Request, request?: TokenRequest): Promise<Principal> {
    const { jkt, "x5t#S256": x5t } = p.confirmation ?? {};
    if (jkt !== undefined) {
      // A DPoP-bound token is only good with the proof of its key (RFC 9449 §7.1).
      if (scheme !== "dpop") {
        throw new AppError("invalid_token", "the access token is sender-constrained (cnf) and cannot be used as a Bearer token", {
          headers: { "WWW-Authenticate": `Bearer error="invalid_token", error_description="sender-constrained access tokens are not accepted as Bearer tokens", DPoP ${DPOP_CHALLENGE}` },
        });
      }
      if (!req || !request || !this.cfg.dpop) throw dpopRefused("invalid_token", "DPoP-bound access tokens are not accepted on this route");
      const proven = await this.cfg.dpop.verify(
        { proof: req.headers.get("dpop"), method: req.method, htu: request.htu(req), accessToken: token },
        (why) => dpopRefused("invalid_dpop_proof", why),
      );
      if (proven === null) throw dpopRefused("invalid_dpop_proof", "a DPoP proof is required with a DPoP-bound access token");
      if (proven !== jkt) throw dpopRefused("invalid_dpop_proof", "the DPoP proof's key is not the one the access token is bound to");
    } else if (scheme === "dpop") {
      throw dpopRefused("invalid_token", "the access token is not DPoP-bound");
    }
    if (x5t !== undefined) {
      const cert = request?.clientCert;
      if (!cert) throw certificateRefused("the access token is bound to a client certificate: present it on the service's mTLS port");
      if (cert.x5tS256 !== x5t) throw certificateRefused("the client certificate is not the one the access token is bound to");
    } else if (request?.mtls) {
      throw certificateRefused("on the mTLS port an access token must be bound to the client certificate (RFC 8705)");
    }
    return p;
  }

  /** Verifies a token (JWT, or opaque through introspection) and caches it when its signature was checked. */
  private async verifyToken(token: string): Promise<VerifiedToken> {
    if (!JWT_SHAPE.test(token)) {
      if (!this.cfg.introspect) throw unauthorized("invalid_token", "the access token is not valid");
      const r = await this.cfg.introspect(token);
      if (!r) throw unauthorized("invalid_token", "the access token is not active");
      return r;
    }
    const keys = this.keys;
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
    const principal: Principal = {
      kind: "service",
      tenant,
      subject: payload.sub!,
      scopes: scopesOf(payload),
      clientId: typeof payload.client_id === "string" ? payload.client_id : undefined,
      confirmation: confirmationOf(payload.cnf),
    };
    const verified = { principal, exp: payload.exp! };
    if (unverified) return verified;
    if (this.cache.size >= MAX_CACHE) this.cache.clear();
    this.cache.set(token, verified);
    return verified;
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
