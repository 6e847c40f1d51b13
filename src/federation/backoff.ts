/**
 * The retry schedule of a federated call: exponential backoff with bounded jitter between
 * attempts, and a per-attempt timeout that grows (escalates) with each retry, so a peer
 * that is slow rather than down gets more time on the next try.
 *
 * Pure functions of the policy and the attempt number; `random` is injectable for tests.
 */

export interface RetryPolicy {
  /** Retries after the first attempt (0: one attempt only). Only idempotent requests retry. */
  retries: number;
  /** Timeout of the first attempt. */
  timeoutMs: number;
  /** Each retry's timeout is the previous one times this factor (1: no escalation)... */
  timeoutEscalation: number;
  /** ...up to this ceiling. */
  maxTimeoutMs: number;
  /** Delay before the first retry; doubles with each further retry... */
  backoffBaseMs: number;
  /** ...up to this ceiling. */
  backoffMaxMs: number;
  /**
   * Jitter as a fraction in [0, 1]: the delay is drawn uniformly from
   * [d * (1 - jitter), d], so retries of many clients spread out but never exceed the schedule.
   */
  jitter: number;
}

/** Timeout of attempt `attempt` (0 = the first attempt). */
export function attemptTimeoutMs(p: RetryPolicy, attempt: number): number {
  return Math.min(p.maxTimeoutMs, Math.round(p.timeoutMs * p.timeoutEscalation ** attempt));
}

/** The un-jittered delay before retry `retry` (1 = the first retry). */
export function backoffCeilingMs(p: RetryPolicy, retry: number): number {
  return Math.min(p.backoffMaxMs, p.backoffBaseMs * 2 ** (retry - 1));
}

/** The delay before retry `retry` (1 = the first retry), jittered within its bounds. */
export function backoffDelayMs(p: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const ceiling = backoffCeilingMs(p, retry);
  return Math.round(ceiling * (1 - p.jitter * random()));
}
