/**
 * Whether this process's event loop is competing for the CPUs: the share of the last moment
 * (about a second) that the loop's thread was runnable but waiting for a CPU, from its
 * scheduler statistics (/proc/self/task/<pid>/schedstat on Linux).
 *
 * Work handed to the runtime's worker threads (WebCrypto) is faster for the event loop only
 * while a core is otherwise idle: the worker runs beside the loop. When every core is busy
 * (more instances than cores on one host, or other load) the worker takes its CPU from the
 * loop's own share, and the hand-over itself costs CPU and a wake-up. Callers that choose
 * between a worker thread and a synchronous call ask `crowded()`.
 *
 * The decision has hysteresis, since moving work onto the loop lowers the contention it is
 * judged by: crowded from a waiting share above `high`, not crowded again below `low`. Where
 * the statistics cannot be read (not Linux), never crowded.
 */
import { readFileSync } from "node:fs";

export interface ContentionOptions {
  /** Reads the loop thread's cumulative [running, waiting] nanoseconds; undefined when unavailable. */
  read?: () => [number, number] | undefined;
  /** The clock, in ms. */
  now?: () => number;
  /** How long one measurement spans, in ms. */
  intervalMs?: number;
  /** Crowded from a waiting share above this. */
  high?: number;
  /** Not crowded again below this. */
  low?: number;
}

/** This process's main thread (its event loop): cumulative [running, waiting for a CPU] nanoseconds; undefined where unreadable. */
export function readOwnLoop(): [number, number] | undefined {
  try {
    const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ").map(Number);
    return Number.isFinite(run) && Number.isFinite(wait) ? [run!, wait!] : undefined;
  } catch {
    return undefined;
  }
}

export class LoopContention {
  private readonly read: () => [number, number] | undefined;
  private readonly now: () => number;
  private readonly intervalMs: number;
  private readonly high: number;
  private readonly low: number;
  private last: { at: number; wait: number } | undefined;
  private unavailable = false;
  private state = false;

  constructor(o: ContentionOptions = {}) {
    this.read = o.read ?? readOwnLoop;
    this.now = o.now ?? (() => performance.now());
    this.intervalMs = o.intervalMs ?? 1000;
    this.high = o.high ?? 0.2;
    this.low = o.low ?? 0.05;
  }

  /** Whether the loop waited for a CPU for much of the last interval (re-judged at most once an interval). */
  crowded(): boolean {
    if (this.unavailable) return false;
    const at = this.now();
    if (this.last && at - this.last.at < this.intervalMs) return this.state;
    const stat = this.read();
    if (!stat) {
      this.unavailable = true;
      return (this.state = false);
    }
    const wait = stat[1] / 1e6;
    if (this.last) {
      const share = (wait - this.last.wait) / (at - this.last.at);
      this.state = this.state ? share > this.low : share > this.high;
    }
    this.last = { at, wait };
    return this.state;
  }
}
