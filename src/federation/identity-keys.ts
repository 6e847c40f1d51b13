/**
 * The identity service's JWKS, fetched through its federated client and kept, with the
 * identity fallback made explicit:
 *  - a cached JWKS is used as is until `refreshMs` old, or until a token names a `kid` it
 *    lacks (then fetched again, at most once per `KID_MISS_COOLDOWN_MS`);
 *  - when a fetch fails (timeout, network, 5xx, breaker open), `cached_jwks` verifies with the
 *    cached set if it is no older than `maxStaleMs`; `reject_all` and `allow_all` do not
 *    (the bearer verifier answers 503, or skips the signature, itself);
 *  - concurrent fetches of one URL share one request.
 */
import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import { FederationError } from "./errors.ts";
import type { FederatedClient } from "./client.ts";
import type { Clock } from "./clock.ts";
import type { FederationConfig } from "./config.ts";

const KID_MISS_COOLDOWN_MS = 30_000;
const MAX_SETS = 10_000;

export type IdentityFallback = FederationConfig["identity"]["fallback"];

interface CachedSet {
  fetchedAt: number;
  kids: Set<string>;
  get: ReturnType<typeof createLocalJWKSet>;
}

export interface IdentityKeysOptions {
  fallback: IdentityFallback;
  refreshMs: number;
  maxStaleMs: number;
  clock: Clock;
}

export class IdentityKeys {
  private readonly sets = new Map<string, CachedSet>();
  private readonly inFlight = new Map<string, Promise<CachedSet>>();

  constructor(
    readonly client: FederatedClient,
    private readonly opts: IdentityKeysOptions,
  ) {}

  get fallback(): IdentityFallback {
    return this.opts.fallback;
  }

  /**
   * True while identity's breaker is open: calls are refused without touching the network.
   * Half-open is not open: the next fetch is the trial that can close the breaker.
   */
  get open(): boolean {
    return this.client.breaker.state === "open";
  }

  /** Whether the fallback keeps tokens verifiable now: allow_all always, cached_jwks with a usable cached set. */
  covered(): boolean {
    if (this.opts.fallback === "allow_all") return true;
    if (this.opts.fallback === "reject_all") return false;
    const now = this.opts.clock.now();
    for (const s of this.sets.values()) if (now - s.fetchedAt <= this.opts.maxStaleMs) return true;
    return false;
  }

  /** A key resolver for `jwtVerify`, over the JWKS at `url`. */
  keySet(url: string): JWTVerifyGetKey {
    return async (header, token) => (await this.setFor(url, header.kid)).get(header, token);
  }

  private async setFor(url: string, kid: string | undefined): Promise<CachedSet> {
    const cached = this.sets.get(url);
    const now = this.opts.clock.now();
    const fresh = cached && now - cached.fetchedAt < this.opts.refreshMs;
    const kidMiss = cached && kid !== undefined && !cached.kids.has(kid) && now - cached.fetchedAt >= KID_MISS_COOLDOWN_MS;
    // Half-open: fetch even a fresh set, so that traffic, not only health polling, is the trial.
    const trial = this.client.breaker.state === "half_open";
    if (cached && fresh && !kidMiss && !trial) return cached;
    try {
      return await this.fetch(url);
    } catch (e) {
      const usable = cached && now - cached.fetchedAt <= this.opts.maxStaleMs;
      if (e instanceof FederationError && this.opts.fallback === "cached_jwks" && usable) return cached;
      throw e;
    }
  }

  private fetch(url: string): Promise<CachedSet> {
    let p = this.inFlight.get(url);
    if (!p) {
      p = (async () => {
        const res = await this.client.request(url, { headers: { accept: "application/json" } });
        // The peer is up and says no (an unknown tenant's JWKS is a 404): the token is not
        // verifiable, which is the caller's 401, never a fallback.
        if (res.status !== 200) throw new joseErrors.JWKSInvalid(`the JWKS at ${url} answered ${res.status}`);
        let jwks: JSONWebKeySet;
        try {
          jwks = (await res.json()) as JSONWebKeySet;
        } catch {
          throw new joseErrors.JWKSInvalid(`the JWKS at ${url} is not JSON`);
        }
        if (!Array.isArray(jwks?.keys)) throw new joseErrors.JWKSInvalid(`the JWKS at ${url} is not a JWK set`);
        const set: CachedSet = {
          fetchedAt: this.opts.clock.now(),
          kids: new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string")),
          get: createLocalJWKSet(jwks),
        };
        if (this.sets.size >= MAX_SETS) this.sets.clear();
        this.sets.set(url, set);
        return set;
      })().finally(() => this.inFlight.delete(url));
      this.inFlight.set(url, p);
    }
    return p;
  }
}
