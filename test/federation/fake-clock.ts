/**
 * A clock for the federation tests: time moves only when the test advances it, and every
 * sleep asked for is recorded, so a schedule is checked as a list of durations.
 */
import type { Clock } from "../../src/federation/clock.ts";

interface Timer {
  at: number;
  resolve(): void;
}

export class FakeClock implements Clock {
  t = 1_000_000;
  /** Every sleep requested, in order, in milliseconds. */
  readonly sleeps: number[] = [];
  private timers: Timer[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer: Timer = { at: this.t + ms, resolve };
      this.timers.push(timer);
      signal?.addEventListener(
        "abort",
        () => {
          this.timers = this.timers.filter((x) => x !== timer);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Moves time forward by `ms`, firing due timers in order and letting their callbacks run. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.resolve();
    }
    this.t = end;
    await settle();
  }

  /** Runs `p` to its end, jumping time to each next timer while it waits. */
  async run<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const watched = p.finally(() => (done = true));
    watched.catch(() => undefined);
    for (let i = 0; i < 1000 && !done; i++) {
      await settle();
      if (done) break;
      const next = this.timers.map((x) => x.at).sort((a, b) => a - b)[0];
      if (next === undefined) continue;
      await this.advance(next - this.t);
    }
    return watched;
  }
}

/** Lets pending promise callbacks run (a few macrotask turns). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
