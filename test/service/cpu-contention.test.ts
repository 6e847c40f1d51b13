import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { LoopContention, readOwnLoop } from "../../src/service/cpu-contention.ts";

/** A loop thread whose waiting time the test sets, on a clock the test moves. */
function fakeLoop() {
  let now = 0;
  let waitNs = 0;
  const c = new LoopContention({ read: () => [0, waitNs], now: () => now, intervalMs: 1000, high: 0.2, low: 0.05 });
  /** One second passes, of which the loop waited `share`; then the caller asks. */
  const second = (share: number) => {
    now += 1000;
    waitNs += share * 1e9;
    return c.crowded();
  };
  return { c, second, advance: (ms: number, share: number) => ((now += ms), (waitNs += share * ms * 1e6), c.crowded()) };
}

describe("LoopContention", () => {
  test("not crowded before a first interval, nor while the loop seldom waits", () => {
    const { c, second } = fakeLoop();
    expect(c.crowded()).toBe(false);
    expect([second(0), second(0.04), second(0.19)]).toEqual([false, false, false]);
  });

  test("crowded above the high share, and stays so until the waiting falls below the low one", () => {
    const { second } = fakeLoop();
    second(0);
    expect([second(0.3), second(0.15), second(0.06), second(0.04), second(0.15), second(0.21)]).toEqual([true, true, true, false, false, true]);
  });

  test("judged once an interval: calls in between answer the last judgement", () => {
    const { c, second, advance } = fakeLoop();
    second(0);
    // Half a second of waiting all the time: not judged until the interval is over.
    expect(advance(500, 1)).toBe(false);
    expect(advance(499, 1)).toBe(false);
    // The interval ends: the whole 1.999 s since the last judgement counts (about 50% waiting).
    expect(advance(1000, 0)).toBe(true);
    expect(c.crowded()).toBe(true);
  });

  test("never crowded where the scheduler statistics cannot be read", () => {
    let now = 0;
    const c = new LoopContention({ read: () => undefined, now: () => now });
    for (let i = 0; i < 3; i++) {
      now += 5000;
      expect(c.crowded()).toBe(false);
    }
  });

  test("reads this process's own loop thread on Linux (its running time grows with work), and nothing elsewhere", () => {
    const before = readOwnLoop();
    if (process.platform !== "linux") {
      // No scheduler statistics to read: never crowded (the test above).
      expect(before).toBeUndefined();
      return;
    }
    expect(before).toBeDefined();
    // Some CPU work on this thread (a hash chain), whatever the machine's load.
    let h = new Uint8Array(32);
    for (let i = 0; i < 20_000; i++) h = new Uint8Array(createHash("sha256").update(h).digest());
    const after = readOwnLoop()!;
    expect(after[0]).toBeGreaterThan(before![0]);
    expect(after[1]).toBeGreaterThanOrEqual(before![1]);
  });
});
