/** The circuit breaker's state machine, on an injected clock. */
import { describe, expect, test } from "bun:test";
import { CircuitBreaker, type BreakerState } from "../../src/federation/breaker.ts";
import { FakeClock } from "./fake-clock.ts";

function breaker(failures = 3, cooldownMs = 1000) {
  const clock = new FakeClock();
  const changes: string[] = [];
  const b = new CircuitBreaker({ failures, cooldownMs, clock, onChange: (from: BreakerState, to: BreakerState) => changes.push(`${from}->${to}`) });
  return { b, clock, changes };
}

describe("circuit breaker", () => {
  test("opens after N consecutive failures, not before", () => {
    const { b, changes } = breaker(3);
    b.failure();
    b.failure();
    expect(b.state).toBe("closed");
    expect(b.tryAcquire()).toBe(true);
    b.failure();
    expect(b.state).toBe("open");
    expect(b.tryAcquire()).toBe(false);
    expect(changes).toEqual(["closed->open"]);
  });

  test("a success resets the count of consecutive failures", () => {
    const { b } = breaker(3);
    b.failure();
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe("closed");
  });

  test("half-opens after the cool-down and lets exactly one trial through", async () => {
    const { b, clock } = breaker(2, 1000);
    b.failure();
    b.failure();
    await clock.advance(999);
    expect(b.state).toBe("open");
    expect(b.tryAcquire()).toBe(false);
    await clock.advance(1);
    expect(b.state).toBe("half_open");
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false); // the trial is in flight
  });

  test("a successful trial closes it", async () => {
    const { b, clock, changes } = breaker(1, 500);
    b.failure();
    await clock.advance(500);
    expect(b.tryAcquire()).toBe(true);
    b.success();
    expect(b.state).toBe("closed");
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(true);
    expect(changes).toEqual(["closed->open", "open->half_open", "half_open->closed"]);
  });

  test("a failed trial opens it again for a full cool-down", async () => {
    const { b, clock } = breaker(1, 500);
    b.failure();
    await clock.advance(500);
    expect(b.tryAcquire()).toBe(true);
    b.failure();
    expect(b.state).toBe("open");
    await clock.advance(499);
    expect(b.state).toBe("open");
    await clock.advance(1);
    expect(b.state).toBe("half_open");
  });

  test("a released trial (cancelled by its caller) frees the slot without a verdict", async () => {
    const { b, clock } = breaker(1, 100);
    b.failure();
    await clock.advance(100);
    expect(b.tryAcquire()).toBe(true);
    b.release();
    expect(b.state).toBe("half_open");
    expect(b.tryAcquire()).toBe(true);
  });
});
