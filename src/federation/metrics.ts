/**
 * Prometheus series of the federation clients, per federated service:
 *   federation_request_duration_seconds  histogram, one observation per HTTP attempt
 *   federation_request_failures_total    counter, by reason (timeout, network, status, breaker_open)
 *   federation_circuit_breaker_state     gauge, 0 closed, 1 open, 2 half_open
 * Rendered into the service's /admin/v1/metrics through `HttpMetrics.collector`.
 */
import { BREAKER_GAUGE, type BreakerState } from "./breaker.ts";
import type { FailureReason } from "./errors.ts";
import { escapeLabel as esc, Histogram } from "../service/histogram.ts";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];


interface PeerSeries {
  duration: Histogram;
  failures: Map<FailureReason, number>;
  state: () => BreakerState;
}

export class FederationMetrics {
  private readonly peers = new Map<string, PeerSeries>();

  /** Registers a federated service; its breaker state is read at export time. */
  register(peer: string, state: () => BreakerState): void {
    this.peers.set(peer, { duration: new Histogram(BUCKETS), failures: new Map(), state });
  }

  observe(peer: string, seconds: number): void {
    this.peers.get(peer)?.duration.observe(seconds);
  }

  fail(peer: string, reason: FailureReason): void {
    const s = this.peers.get(peer);
    if (s) s.failures.set(reason, (s.failures.get(reason) ?? 0) + 1);
  }

  /** The exposition lines, labelled with the emitting `service` and the `federated_service`. */
  render(service: string): string[] {
    if (this.peers.size === 0) return [];
    const out: string[] = [];
    const label = (peer: string) => `service="${esc(service)}",federated_service="${esc(peer)}"`;
    out.push("# HELP federation_request_duration_seconds Latency of each HTTP attempt to a federated service.");
    out.push("# TYPE federation_request_duration_seconds histogram");
    for (const [peer, s] of this.peers) out.push(...s.duration.render("federation_request_duration_seconds", label(peer)));
    out.push("# HELP federation_request_failures_total Failed attempts to reach a federated service, by reason.");
    out.push("# TYPE federation_request_failures_total counter");
    for (const [peer, s] of this.peers) {
      for (const [reason, n] of s.failures) out.push(`federation_request_failures_total{${label(peer)},reason="${reason}"} ${n}`);
    }
    out.push("# HELP federation_circuit_breaker_state Circuit breaker of a federated service: 0 closed, 1 open, 2 half_open.");
    out.push("# TYPE federation_circuit_breaker_state gauge");
    for (const [peer, s] of this.peers) out.push(`federation_circuit_breaker_state{${label(peer)}} ${BREAKER_GAUGE[s.state()]}`);
    return out;
  }
}
