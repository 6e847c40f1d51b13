/**
 * The federated services of one running service, built from its config: a client per
 * configured peer (identity, jose, ca, audit), the identity JWKS keeper for the bearer verifier,
 * the health pollers, the metrics and what readiness reports.
 *
 * A peer is federated when its URL is configured; identity also when `auth.jwks_url` is (its
 * origin is then the base URL, so the suite's `auth.*` wiring keeps working unchanged).
 * JOSE and CA have no caller yet: an app gets their client from `ctx.federation.client(...)`
 * and applies its configured fallback (`fallbackOf`) when a call throws `FederationError`.
 */
import { readFileSync } from "node:fs";
import type { ServiceConfig } from "../service/config.ts";
import type { Logger } from "../service/log.ts";
import type { Tracer } from "../telemetry/index.ts";
import { FederatedClient, type ClientTls, type PeerStatus } from "./client.ts";
import { systemClock, type Clock } from "./clock.ts";
import { retryPolicy, type FederationConfig, type PeerConfig } from "./config.ts";
import { HealthPoller } from "./health.ts";
import { IdentityKeys } from "./identity-keys.ts";
import { FederationMetrics } from "./metrics.ts";

export type Peer = keyof FederationConfig;
const PEERS: Peer[] = ["identity", "jose", "ca", "audit"];

export interface FederationDeps {
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** With a tracer, calls made during a request are client spans and carry `traceparent`. */
  tracer?: Tracer;
  /** The service's client certificate (renewed in place), presented to peers that ask for one. */
  clientTls?: () => ClientTls | undefined;
}

/** Where the identity service's keys are: `auth.*` first, else derived from `federation.identity.url`. */
export function identityEndpoints(config: Pick<ServiceConfig, "auth" | "federation">): { issuer?: string; jwksUrl?: string; baseUrl?: string; caFile?: string } {
  const base = config.federation.identity.url?.replace(/\/+$/, "");
  const jwksUrl = config.auth.jwks_url ?? (base ? `${base}/t/{tenant}/jwks` : undefined);
  const issuer = config.auth.issuer ?? (base ? `${base}/t/{tenant}` : undefined);
  return { issuer, jwksUrl, baseUrl: base ?? (jwksUrl ? new URL(jwksUrl).origin : undefined), caFile: config.federation.identity.ca_file ?? config.auth.ca_file };
}

/** What readiness shows of one federated service. */
export interface PeerReadiness extends PeerStatus {
  fallback: string;
  /** The breaker is not closed: calls go to the fallback. */
  in_fallback: boolean;
  /** The service can still do its work: reachable, or in a fallback that covers it. */
  ok: boolean;
}

export class Federation {
  readonly metrics = new FederationMetrics();
  /** The identity JWKS keeper, when identity is federated. */
  readonly identity?: IdentityKeys;
  private readonly clients = new Map<Peer, FederatedClient>();
  private readonly pollers: HealthPoller[] = [];

  constructor(
    private readonly config: FederationConfig,
    peers: Partial<Record<Peer, { baseUrl: string; caPem?: string }>>,
    deps: FederationDeps = {},
  ) {
    const clock = deps.clock ?? systemClock;
    for (const peer of PEERS) {
      const where = peers[peer];
      if (!where) continue;
      const c: PeerConfig = config[peer];
      const client = new FederatedClient({
        peer,
        baseUrl: where.baseUrl,
        caPem: where.caPem,
        clientTls: deps.clientTls,
        policy: retryPolicy(c),
        breaker: { failures: c.breaker_failures, cooldownMs: c.breaker_cooldown_ms },
        healthPath: c.health_path,
        clock,
        random: deps.random,
        fetch: deps.fetch,
        metrics: this.metrics,
        logger: deps.logger,
        tracer: deps.tracer,
      });
      this.clients.set(peer, client);
      this.pollers.push(new HealthPoller(client, c.health_interval_ms, clock));
    }
    const id = this.clients.get("identity");
    if (id) {
      this.identity = new IdentityKeys(id, {
        fallback: config.identity.fallback,
        refreshMs: config.identity.jwks_refresh_ms,
        maxStaleMs: config.identity.jwks_max_stale_ms,
        clock,
      });
    }
  }

  /** The federation of a service's config; reads the CA bundles it names. */
  static fromConfig(config: Pick<ServiceConfig, "auth" | "federation">, deps: FederationDeps = {}): Federation {
    const read = (file?: string) => (file ? readFileSync(file, "utf8") : undefined);
    const peers: Partial<Record<Peer, { baseUrl: string; caPem?: string }>> = {};
    const id = identityEndpoints(config);
    if (id.baseUrl && id.jwksUrl) peers.identity = { baseUrl: id.baseUrl, caPem: read(id.caFile) };
    for (const peer of ["jose", "ca", "audit"] as const) {
      const c = config.federation[peer];
      if (c.url) peers[peer] = { baseUrl: c.url.replace(/\/+$/, ""), caPem: read(c.ca_file) };
    }
    return new Federation(config.federation, peers, deps);
  }

  /** The client of a federated service, when it is configured. */
  client(peer: Peer): FederatedClient | undefined {
    return this.clients.get(peer);
  }

  /** The configured fallback of a federated service. */
  fallbackOf<P extends Peer>(peer: P): FederationConfig[P]["fallback"] {
    return this.config[peer].fallback;
  }

  /** Starts health polling of every configured peer. */
  start(): void {
    for (const p of this.pollers) p.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.pollers.map((p) => p.stop()));
  }

  /** Each federated service's state; ready while every one is reachable or covered by its fallback. */
  readiness(): { ok: boolean; peers: Partial<Record<Peer, PeerReadiness>> } {
    const peers: Partial<Record<Peer, PeerReadiness>> = {};
    let ok = true;
    for (const [peer, client] of this.clients) {
      const status = client.status();
      const inFallback = status.breaker !== "closed";
      const fallback = this.config[peer].fallback;
      const covered = peer === "identity" ? this.identity!.covered() : fallback !== "reject_all";
      const peerOk = !inFallback || covered;
      ok &&= peerOk;
      peers[peer] = { ...status, fallback, in_fallback: inFallback, ok: peerOk };
    }
    return { ok, peers };
  }
}
