/**
 * Lockout with exponential backoff after repeated login failures, kept per username and per
 * client IP. A key reaching its threshold is locked for `base` seconds, doubling with each
 * further failure up to `max`. Unknown usernames are counted exactly like known ones, so the
 * lockout reveals nothing about which accounts exist. Counters fade after a day without failures.
 */
import type { Kysely } from "kysely";
import type { IdpDb } from "../store.ts";

export interface ThrottleRules {
  userThreshold: number;
  ipThreshold: number;
  baseS: number;
  maxS: number;
}

const FORGET_AFTER_S = 86_400;

export class LoginThrottle {
  constructor(
    private readonly db: Kysely<IdpDb>,
    private readonly rules: ThrottleRules,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  static userKey(tenant: string, username: string) {
    return `u:${tenant}:${username.toLowerCase()}`;
  }
  static ipKey(ip: string | undefined) {
    return `ip:${ip ?? "unknown"}`;
  }

  /** Seconds until every given key is unlocked (0: none is locked). */
  async lockedFor(keys: string[]): Promise<number> {
    const rows = await this.db.selectFrom("login_throttle").selectAll().where("key", "in", keys).execute();
    const t = this.now();
    return Math.max(0, ...rows.map((r) => r.locked_until - t));
  }

  /** Records a failure; returns how long the key is now locked for (0: not yet). */
  async fail(key: string): Promise<number> {
    await this.sweep();
    const t = this.now();
    const threshold = key.startsWith("ip:") ? this.rules.ipThreshold : this.rules.userThreshold;
    const row = await this.db.selectFrom("login_throttle").selectAll().where("key", "=", key).executeTakeFirst();
    const failures = (row && t - row.updated_at < FORGET_AFTER_S ? row.failures : 0) + 1;
    const over = failures - threshold;
    const lock = over < 0 ? 0 : Math.min(this.rules.maxS, this.rules.baseS * 2 ** Math.min(over, 30));
    const locked_until = lock ? t + lock : 0;
    await this.db
      .insertInto("login_throttle")
      .values({ key, failures, locked_until, updated_at: t })
      .onConflict((oc) => oc.column("key").doUpdateSet({ failures, locked_until, updated_at: t }))
      .execute();
    return lock;
  }

  private lastSweep = 0;

  /** Deletes counters that have faded (no failure for a day, no lock), at most hourly. */
  async sweep(): Promise<void> {
    const t = this.now();
    if (t - this.lastSweep < 3600) return;
    this.lastSweep = t;
    await this.db.deleteFrom("login_throttle").where("updated_at", "<", t - FORGET_AFTER_S).where("locked_until", "<", t).execute();
  }

  async reset(key: string): Promise<void> {
    await this.db.deleteFrom("login_throttle").where("key", "=", key).execute();
  }
}

/**
 * A fixed-window send limit (mails per address, per IP), in the same table as the lockouts
 * under its own key prefix. Addresses are counted whether or not an account has them, so
 * being limited reveals nothing.
 */
export class SendLimit {
  constructor(
    private readonly db: Kysely<IdpDb>,
    private readonly windowS: number,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  /** Counts one send against `key`; false (and nothing counted) when `max` is already reached in this window. */
  async take(key: string, max: number): Promise<boolean> {
    const t = this.now();
    const row = await this.db.selectFrom("login_throttle").selectAll().where("key", "=", key).executeTakeFirst();
    const fresh = !row || t - row.updated_at >= this.windowS;
    const count = fresh ? 1 : row.failures + 1;
    if (count > max) return false;
    const updated_at = fresh ? t : row.updated_at;
    await this.db
      .insertInto("login_throttle")
      .values({ key, failures: count, locked_until: 0, updated_at })
      .onConflict((oc) => oc.column("key").doUpdateSet({ failures: count, updated_at }))
      .execute();
    return true;
  }
}
