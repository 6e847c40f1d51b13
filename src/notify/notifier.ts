/**
 * Notifications of a service's events to the people and systems that act on them, over three
 * kinds of channel (channels.ts): signed webhooks, e-mail over SMTP, and Slack-compatible
 * incoming webhooks. Every service has one (`ServiceContext.notifier`, from the template's
 * `notifications` config section); pki-ca adds its own channels to it.
 *
 * `emit()` returns at once: each subscribed channel gets the event in the background, retried
 * after each delay of the channel's `retryDelaysMs` or the notifier's (default 1 s, 4 s, 16 s:
 * backoff by four); an event a channel still refuses after the last retry goes to the
 * dead-letter list (the service's database under the template, dead-letters.ts; in memory
 * without one, newest `deadLetterLimit` kept) and is logged, never lost silently, and never
 * fails the operation that emitted it. An operator lists, inspects, retries and
 * discards dead letters through the admin API (`/admin/v1/notifications/dead-letters`).
 */
import type { Logger } from "../service/log.ts";
import type { Channel, Notification } from "./channels.ts";
import { MemoryDeadLetters, type DeadLetterStore } from "./dead-letters.ts";

/** An event no channel attempt could deliver. */
export interface DeadLetter {
  /** The dead letter's own id (one per event and channel). */
  id: string;
  channel: string;
  notification: Notification;
  attempts: number;
  error: string;
  at: string;
}

export interface NotifierOptions {
  logger?: Logger;
  retryDelaysMs?: number[];
  deadLetterLimit?: number;
  /** Where dead letters are kept; in memory when unset. */
  deadLetters?: DeadLetterStore;
  sleep?: (ms: number) => Promise<void>;
}

/** A page of dead letters, oldest first; `next` is the cursor of the following page. */
export interface DeadLetterPage {
  dead_letters: DeadLetter[];
  next: string | null;
}

/** The outcome of retrying one dead letter now. */
export type RetryOutcome = { id: string; delivered: true } | { id: string; delivered: false; attempts: number; error: string };

export class Notifier {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly dead: DeadLetterStore;
  private stopped = false;
  private readonly retryDelaysMs: number[];
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly channels: Channel[];

  constructor(
    channels: Channel[],
    private readonly opts: NotifierOptions = {},
  ) {
    this.channels = [...channels];
    this.retryDelaysMs = opts.retryDelaysMs ?? [1000, 4000, 16000];
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.dead = opts.deadLetters ?? new MemoryDeadLetters(opts.deadLetterLimit ?? 1000);
  }

  /** Adds channels (an app's own, next to the template's). */
  addChannels(channels: Channel[]): void {
    this.channels.push(...channels);
  }

  /** Whether any channel takes broadcast events (an app may skip work whose only use is a notice). */
  get active(): boolean {
    return this.channels.some((c) => !c.direct);
  }

  /**
   * Queues `type` for every channel subscribed to it; returns at once. With `to`, for that one
   * channel only: an app's own delivery (identity-authz's back-channel logout) whose data is for
   * its recipient, not for the operators' channels, yet gets the same retries and dead letters.
   */
  emit(type: string, tenant: string, data: Record<string, unknown>, to?: string): void {
    if (this.stopped) return;
    const n: Notification = { id: crypto.randomUUID(), type, created_at: new Date().toISOString(), tenant, data };
    for (const c of this.channels) {
      if (to !== undefined ? c.name !== to : (c.direct || (c.events && !c.events.includes(type)))) continue;
      this.track(this.deliver(c, n));
    }
  }

  private track(p: Promise<void>): void {
    const t = p.finally(() => this.inFlight.delete(t));
    this.inFlight.add(t);
  }

  private async deliver(c: Channel, n: Notification): Promise<void> {
    const delays = c.retryDelaysMs ?? this.retryDelaysMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await c.send(n);
        return;
      } catch (e) {
        const error = errorText(e);
        if (this.stopped || attempt >= delays.length) {
          await this.bury({ id: crypto.randomUUID(), channel: c.name, notification: n, attempts: attempt + 1, error, at: new Date().toISOString() });
          return;
        }
        await this.sleep(delays[attempt]!);
      }
    }
  }

  private async bury(letter: DeadLetter): Promise<void> {
    this.opts.logger?.warn("notification dead-lettered", { channel: letter.channel, type: letter.notification.type, dead_letter: letter.id, attempts: letter.attempts, error: letter.error });
    try {
      await this.dead.add(letter);
    } catch (e) {
      // The database is down or closing: the log line above is then the only record.
      this.opts.logger?.error("dead letter not stored", { dead_letter: letter.id, error: errorText(e) });
    }
  }

  /** The notifications no channel attempt could deliver, oldest first (at most 10,000). */
  async deadLetters(): Promise<DeadLetter[]> {
    return (await this.dead.list({ limit: 10_000 })).letters;
  }

  /** A page of dead letters, oldest first, of one tenant when given, after the cursor `after` (a dead letter's id). */
  async listDeadLetters(q: { tenant?: string; limit?: number; after?: string } = {}): Promise<DeadLetterPage> {
    // A cursor whose letter was retried or discarded since starts over.
    const { letters, more } = await this.dead.list({ tenant: q.tenant, limit: q.limit ?? 50, after: q.after });
    return { dead_letters: letters, next: more ? letters[letters.length - 1]!.id : null };
  }

  deadLetter(id: string): Promise<DeadLetter | undefined> {
    return this.dead.get(id);
  }

  /**
   * Tries one dead letter again now, once, over the channel that refused it: delivered, it
   * leaves the list; refused again, it stays with the attempt counted and the new error.
   * Undefined when there is no such dead letter.
   */
  async retryDeadLetter(id: string): Promise<RetryOutcome | undefined> {
    const letter = await this.dead.get(id);
    if (!letter) return undefined;
    const channel = this.channels.find((c) => c.name === letter.channel);
    try {
      if (!channel) throw new Error(`channel ${letter.channel} is no longer configured`);
      await channel.send(letter.notification);
    } catch (e) {
      letter.attempts++;
      letter.error = errorText(e);
      letter.at = new Date().toISOString();
      await this.dead.update(letter);
      return { id, delivered: false, attempts: letter.attempts, error: letter.error };
    }
    await this.dead.remove(id);
    this.opts.logger?.info("dead-lettered notification delivered on retry", { channel: letter.channel, type: letter.notification.type, dead_letter: id });
    return { id, delivered: true };
  }

  /** Drops a dead letter; false when there is none of that id. */
  async discardDeadLetter(id: string): Promise<boolean> {
    const removed = await this.dead.remove(id);
    if (removed) this.opts.logger?.info("dead-lettered notification discarded", { dead_letter: id });
    return removed;
  }

  /** Waits for deliveries in flight (tests, graceful stop). */
  async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  /** No new deliveries; those in flight stop retrying (what fails goes to the dead letters). */
  stop(): void {
    this.stopped = true;
  }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e)).slice(0, 500);
