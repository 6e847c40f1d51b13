/**
 * Time as the federation clients see it: `now` for the breaker's cool-down and the JWKS
 * cache's age, `sleep` for backoff, per-attempt timeouts and health polling. Injected, so
 * tests drive the schedule without waiting and without timing assertions.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock; its timers are unref'd so a pending sleep never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      (timer as { unref?: () => void }).unref?.();
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};
