/**
 * Notifications of a service's events to the people and systems that act on them, over three
 * kinds of channel (channels.ts): signed webhooks, e-mail over SMTP, and Slack-compatible
 * incoming webhooks. Generalized from pki-ca's signed webhooks, which now run on it.
 *
 * `emit()` returns at once: each subscribed channel gets the event in the background, retried
 * after each delay of `retryDelaysMs` (default 1 s, 4 s, 16 s: backoff by four); an event a
 * channel still refuses after the last retry goes to the dead-letter list (newest kept, up to
 * `deadLetterLimit`) and is logged, never lost silently, and never fails the operation that
 * emitted it.
 */
import type { Logger } from "../service/log.ts";
import type { Channel, Notification } from "./channels.ts";

/** An event no channel attempt could deliver. */
export interface DeadLetter {
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
  sleep?: (ms: number) => Promise<void>;
}

export class Notifier {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly dead: DeadLetter[] = [];
  private stopped = false;
  private readonly retryDelaysMs: number[];
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly channels: Channel[],
    private readonly opts: NotifierOptions = {},
  ) {
    this.retryDelaysMs = opts.retryDelaysMs ?? [1000, 4000, 16000];
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Queues `type` for every channel subscribed to it; returns at once. */
  emit(type: string, tenant: string, data: Record<string, unknown>): void {
    if (this.stopped) return;
    const n: Notification = { id: crypto.randomUUID(), type, created_at: new Date().toISOString(), tenant, data };
    for (const c of this.channels) {
      if (c.events && !c.events.includes(type)) continue;
      const p = this.deliver(c, n).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async deliver(c: Channel, n: Notification): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await c.send(n);
        return;
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        if (this.stopped || attempt >= this.retryDelaysMs.length) {
          this.dead.push({ channel: c.name, notification: n, attempts: attempt + 1, error, at: new Date().toISOString() });
          if (this.dead.length > (this.opts.deadLetterLimit ?? 1000)) this.dead.shift();
          this.opts.logger?.warn("notification dead-lettered", { channel: c.name, type: n.type, attempts: attempt + 1, error });
          return;
        }
        await this.sleep(this.retryDelaysMs[attempt]!);
      }
    }
  }

  /** The notifications no channel attempt could deliver, oldest first. */
  deadLetters(): readonly DeadLetter[] {
    return this.dead;
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
