/**
 * A circuit breaker for one federated service.
 *
 *   closed --N consecutive failures--> open --cool-down elapsed--> half_open
 *   half_open --the one trial succeeds--> closed
 *   half_open --the trial fails--> open (a new cool-down)
 *
 * While open, calls fail at once without touching the network; in half_open exactly one
 * trial call is let through and every other call is refused until it settles.
 */
import type { Clock } from "./clock.ts";

export type BreakerState = "closed" | "open" | "half_open";

/** The `federation_circuit_breaker_state` gauge value of each state. */
export const BREAKER_GAUGE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  failures: number;
  /** How long the breaker stays open before it lets one trial through. */
  cooldownMs: number;
  clock: Clock;
  /** Called on every state change (logs). */
  onChange?(from: BreakerState, to: BreakerState): void;
}

export class CircuitBreaker {
  private current: BreakerState = "closed";
  private consecutiveFailures = 0;
  private openedAt = 0;
  private trialInFlight = false;

  constructor(private readonly opts: BreakerOptions) {}

  /** The state now; an open breaker whose cool-down has elapsed reads as half_open. */
  get state(): BreakerState {
    if (this.current === "open" && this.opts.clock.now() - this.openedAt >= this.opts.cooldownMs) this.move("half_open");
    return this.current;
  }

  /**
   * Asks to make one call. True: go ahead, then report `success()` or `failure()`.
   * False: the breaker refuses (open, or half_open with its trial already in flight).
   */
  tryAcquire(): boolean {
    const s = this.state;
    if (s === "closed") return true;
    if (s === "open" || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  success(): void {
    this.consecutiveFailures = 0;
    this.trialInFlight = false;
    if (this.current !== "closed") this.move("closed");
  }

  failure(): void {
    this.consecutiveFailures++;
    const wasTrial = this.current === "half_open";
    this.trialInFlight = false;
    if (wasTrial || (this.current === "closed" && this.consecutiveFailures >= this.opts.failures)) {
      this.openedAt = this.opts.clock.now();
      this.move("open");
    }
  }

  /** A call that was let through but ended without a verdict on the peer (cancelled by its caller). */
  release(): void {
    this.trialInFlight = false;
  }

  private move(to: BreakerState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.opts.onChange?.(from, to);
  }
}
