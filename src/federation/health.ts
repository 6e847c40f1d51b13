/**
 * Health polling of a federated service: a probe of its public health URL every interval,
 * through the client (and so through its breaker). It keeps the reachability in readiness
 * current without waiting for traffic, and it is what half-opens and closes the breaker
 * once the peer is back.
 *
 * What is polled: the peer's public `GET /livez` (every service of the suite serves it; it
 * answers 200 with no work behind it, 503 while sealed or draining). An answer below 500
 * counts as reachable, so a peer that lacks the route (404) still shows as up.
 */
import { systemClock, type Clock } from "./clock.ts";
import type { FederatedClient } from "./client.ts";

export class HealthPoller {
  private readonly stopper = new AbortController();
  private loop?: Promise<void>;

  constructor(
    private readonly client: FederatedClient,
    private readonly intervalMs: number,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Starts polling, first probe at once. An interval of 0 means no polling. */
  start(): void {
    if (this.loop || this.intervalMs <= 0) return;
    const signal = this.stopper.signal;
    this.loop = (async () => {
      while (!signal.aborted) {
        await this.client.probe(signal);
        try {
          await this.clock.sleep(this.intervalMs, signal);
        } catch {
          return;
        }
      }
    })();
  }

  /** Stops polling; resolves once the current probe, if any, has ended. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }
}
