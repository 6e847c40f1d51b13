/**
 * A client of one federated service (identity, JOSE, CA): its base URL and CA bundle from
 * configuration, a timeout on every attempt (escalating with each retry), retries with
 * exponential backoff and bounded jitter for idempotent requests only, and a circuit
 * breaker in front of the network. Peer failures are network errors, timeouts and 5xx
 * answers; a 4xx is the peer working as designed and goes back to the caller.
 *
 * The whole exchange (headers and body) runs inside the attempt's timeout: the Response
 * returned holds its body in memory, so reading it cannot hang on a stalled peer.
 *
 * With a tracer, each attempt made during a request is a client span of that request and
 * sends `traceparent`, so the peer's server span joins the trace.
 */
import { attemptTimeoutMs, backoffDelayMs, type RetryPolicy } from "./backoff.ts";
import { CircuitBreaker, type BreakerState } from "./breaker.ts";
import { systemClock, type Clock } from "./clock.ts";
import { FederationError, type FailureReason } from "./errors.ts";
import type { FederationMetrics } from "./metrics.ts";
import type { Logger } from "../service/log.ts";
import { formatTraceparent, SpanKind, SpanStatus, type Span, type Tracer } from "../telemetry/index.ts";
import { runtime } from "../runtime/index.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** A client certificate and its key, PEM. */
export interface ClientTls {
  cert: string;
  key: string;
}

/**
 * A fetch that verifies the server with `ca` (unset: the runtime's trust store) and presents
 * the client certificate `clientTls()` returns at the time of each call, so a renewed
 * certificate is used from the next call on (src/runtime's `fetch`); the certificate is sent
 * only to a server that asks for one (an mTLS port).
 *
 * @example
 *   const call = tlsFetch({ ca: trustBundle, clientTls: () => ({ cert, key }) });
 *   await call("https://127.0.0.1:8889/service/api/v1/pets/p1", { method: "GET" });
 */
export function tlsFetch(opts: { ca?: string; clientTls?: () => ClientTls | undefined }): (url: string, init: RequestInit) => Promise<Response> {
  const { ca, clientTls } = opts;
  if (!ca && !clientTls) return (url, init) => fetch(url, init);
  return (url, init) => {
    const client = clientTls?.();
    return runtime.fetch(url, init, { ca, ...client });
  };
}

export interface FederatedClientOptions {
  /** The federated service's name in metrics, logs and readiness (`identity`, `jose`, `ca`). */
  peer: string;
  baseUrl: string;
  /** PEM bundle that verifies the peer's TLS certificate; unset: the runtime's trust store. */
  caPem?: string;
  /** The service's own client certificate, presented to a peer that asks for one (mTLS). */
  clientTls?: () => ClientTls | undefined;
  policy: RetryPolicy;
  breaker: { failures: number; cooldownMs: number };
  /** Path of the peer's cheap public health URL, polled by `probe()`. */
  healthPath: string;
  clock?: Clock;
  random?: () => number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  metrics?: FederationMetrics;
  logger?: Logger;
  tracer?: Tracer;
}

export interface FederatedRequestInit extends RequestInit {
  /** Overrides the method's idempotency (e.g. a POST that is safe to repeat). */
  idempotent?: boolean;
  /** Overrides the policy's retries for this call. */
  retries?: number;
}

/** What readiness and /admin/v1/healthz show of a federated service. */
export interface PeerStatus {
  url: string;
  breaker: BreakerState;
  /** The last call or probe reached the peer; null before the first one. */
  reachable: boolean | null;
  last_error?: string;
  /** When the last call or probe ended (ISO 8601). */
  checked_at?: string;
}

export class FederatedClient {
  readonly peer: string;
  readonly baseUrl: string;
  readonly breaker: CircuitBreaker;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly fetchImpl: (url: string, init: RequestInit) => Promise<Response>;
  private last?: { ok: boolean; at: number; error?: string };

  constructor(private readonly opts: FederatedClientOptions) {
    this.peer = opts.peer;
    this.baseUrl = opts.baseUrl;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.fetchImpl = opts.fetch ?? tlsFetch({ ca: opts.caPem, clientTls: opts.clientTls });
    this.breaker = new CircuitBreaker({
      failures: opts.breaker.failures,
      cooldownMs: opts.breaker.cooldownMs,
      clock: this.clock,
      onChange: (from, to) => opts.logger?.[to === "open" ? "warn" : "info"]("federation: circuit breaker changed state", { federated_service: opts.peer, from, to }),
    });
    opts.metrics?.register(opts.peer, () => this.breaker.state);
  }

  /** True while the breaker is not closed: callers use their fallback. */
  get inFallback(): boolean {
    return this.breaker.state !== "closed";
  }

  status(): PeerStatus {
    const s: PeerStatus = { url: this.baseUrl, breaker: this.breaker.state, reachable: this.last ? this.last.ok : null };
    if (this.last?.error) s.last_error = this.last.error;
    if (this.last) s.checked_at = new Date(this.last.at).toISOString();
    return s;
  }

  /**
   * Calls the peer; `target` is a path under the base URL or an absolute URL. Resolves with
   * any answer below 500; throws `FederationError` once the attempts are spent or the breaker
   * refuses. An abort of `init.signal` by the caller rejects with its reason and does not
   * count against the peer.
   */
  async request(target: string, init: FederatedRequestInit = {}): Promise<Response> {
    const url = new URL(target, this.baseUrl).href;
    const { idempotent, retries, ...requestInit } = init;
    const method = (init.method ?? "GET").toUpperCase();
    const attempts = 1 + ((idempotent ?? IDEMPOTENT.has(method)) ? (retries ?? this.opts.policy.retries) : 0);
    let lastError: FederationError | undefined;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await this.clock.sleep(backoffDelayMs(this.opts.policy, attempt, this.random), init.signal ?? undefined);
      // A caller that gave up before this attempt sends nothing (its abort event has fired already).
      init.signal?.throwIfAborted();
      if (!this.breaker.tryAcquire()) {
        this.opts.metrics?.fail(this.peer, "breaker_open");
        throw new FederationError(this.peer, "breaker_open", `${this.peer} is unavailable (circuit breaker open)`, lastError);
      }
      const started = performance.now();
      const traced = this.opts.tracer ? this.traced(this.opts.tracer, url, method, attempt, requestInit) : undefined;
      const span = traced?.span;
      try {
        const res = await this.attempt(url, traced?.init ?? requestInit, attemptTimeoutMs(this.opts.policy, attempt));
        this.opts.metrics?.observe(this.peer, (performance.now() - started) / 1000);
        span?.setAttribute("http.response.status_code", res.status);
        if (res.status >= 500) {
          lastError = this.failed("status", `${this.peer} answered ${res.status}`);
          span?.setAttribute("error.type", String(res.status)).setStatus(SpanStatus.ERROR, String(res.status)).end();
          continue;
        }
        span?.end();
        this.breaker.success();
        this.last = { ok: true, at: this.clock.now() };
        return res;
      } catch (e) {
        if (init.signal?.aborted) {
          span?.setAttribute("error.type", "aborted").setStatus(SpanStatus.ERROR, "aborted").end();
          this.breaker.release();
          throw init.signal.reason;
        }
        this.opts.metrics?.observe(this.peer, (performance.now() - started) / 1000);
        lastError = e instanceof TimeoutSignal ? this.failed("timeout", `${this.peer} did not answer within ${e.ms} ms`) : this.failed("network", `${this.peer} could not be reached`, e);
        span?.setAttribute("error.type", lastError.reason).setStatus(SpanStatus.ERROR, lastError.reason).end();
      }
    }
    throw lastError!;
  }

  /**
   * One health check of the peer, no retries. While the breaker is open nothing is sent;
   * once its cool-down has passed the probe is the half-open trial, so a recovered peer
   * closes the breaker even when no other traffic goes to it.
   */
  async probe(signal?: AbortSignal): Promise<boolean> {
    if (this.breaker.state === "open") return false;
    try {
      await this.request(this.opts.healthPath, { method: "GET", retries: 0, signal });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Inside a request: the attempt's client span (when the trace is recorded) and its init
   * with `traceparent` naming it, or the request's position when the trace is not recorded.
   * Outside any request (health polling): nothing.
   */
  private traced(tracer: Tracer, url: string, method: string, attempt: number, init: RequestInit): { span?: Span; init: RequestInit } | undefined {
    const parent = tracer.active();
    if (!parent) return undefined;
    const u = new URL(url);
    const span = tracer.startChild(`${method} ${this.peer}`, SpanKind.CLIENT, {
      "http.request.method": method,
      "server.address": u.hostname,
      "server.port": Number(u.port || (u.protocol === "https:" ? 443 : 80)),
      "url.full": `${u.origin}${u.pathname}`,
      "peer.service": this.peer,
      "http.request.resend_count": attempt > 0 ? attempt : undefined,
    });
    const headers = new Headers(init.headers);
    headers.set("traceparent", formatTraceparent(span ?? parent));
    return { span, init: { ...init, headers } };
  }

  private failed(reason: FailureReason, message: string, cause?: unknown): FederationError {
    this.breaker.failure();
    this.opts.metrics?.fail(this.peer, reason);
    this.last = { ok: false, at: this.clock.now(), error: reason };
    this.opts.logger?.debug("federation: attempt failed", { federated_service: this.peer, reason });
    return new FederationError(this.peer, reason, message, cause);
  }

  /** One HTTP exchange, body included, bounded by `ms` on the injected clock. */
  private async attempt(url: string, init: RequestInit, ms: number): Promise<Response> {
    const abort = new AbortController();
    const onCallerAbort = () => abort.abort(init.signal!.reason);
    init.signal?.addEventListener("abort", onCallerAbort, { once: true });
    const timerStop = new AbortController();
    const timedOut = this.clock.sleep(ms, timerStop.signal).then(() => {
      const t = new TimeoutSignal(ms);
      abort.abort(t);
      throw t;
    });
    const exchange = (async () => {
      const res = await this.fetchImpl(url, { ...init, signal: abort.signal, redirect: "manual" });
      const body = await res.arrayBuffer();
      return new Response(res.status === 204 || res.status === 304 ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
    })();
    try {
      return await Promise.race([exchange, timedOut]);
    } finally {
      timerStop.abort();
      init.signal?.removeEventListener("abort", onCallerAbort);
    }
  }
}

class TimeoutSignal extends Error {
  constructor(readonly ms: number) {
    super(`timed out after ${ms} ms`);
  }
}
