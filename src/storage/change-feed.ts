/**
 * Change notices between the instances of a service that share one database, so that what an
 * instance keeps in memory (client registrations, signing keys, signed OCSP answers) is
 * dropped when another instance changes the rows it was made from.
 *
 * On PostgreSQL (`PostgresChangeFeed` in postgres.ts) a notice is a `pg_notify`, delivered to
 * every instance listening on the channel, this one included. Delivery is asynchronous: another
 * instance learns of a change within the notice's trip (milliseconds), not before the writer
 * has answered; and a notice sent while an instance's listening connection is down is lost, so
 * after that connection comes back every subscriber's `onResync` runs (drop everything).
 * Callers keep a time bound on what they cache for the time the listener is down.
 *
 * On an embedded database notices reach this process's subscribers only (`LocalChangeFeed`):
 * processes sharing one database file keep their own polls and time bounds.
 */

export interface ChangeFeed {
  /** True when notices reach the other instances (PostgreSQL), false when only this process. */
  readonly shared: boolean;
  /**
   * Calls `onChange` with the payload of each notice published on `channel` by any instance,
   * and `onResync` when notices may have been missed. Returns the unsubscribe function.
   */
  subscribe(channel: string, onChange: (payload: string) => void, onResync?: () => void): () => void;
  /**
   * Publishes a notice (payload up to a few kB); call it after the change has committed. Never
   * throws: a notice that cannot be sent is lost like one sent while a listener was down.
   */
  publish(channel: string, payload?: string): Promise<void>;
  /** Stops listening; idempotent. */
  close(): Promise<void>;
}

export interface ChangeSubscriber {
  onChange: (payload: string) => void;
  onResync?: () => void;
}

/** The subscribers of each channel, shared by both feeds. */
export class ChangeSubscribers {
  readonly byChannel = new Map<string, Set<ChangeSubscriber>>();

  /** Adds a subscriber; `isNew` says whether it is the channel's first. */
  add(channel: string, sub: ChangeSubscriber): { isNew: boolean; remove: () => void } {
    let set = this.byChannel.get(channel);
    const isNew = !set;
    if (!set) this.byChannel.set(channel, (set = new Set()));
    set.add(sub);
    return { isNew, remove: () => void set.delete(sub) };
  }

  /** Runs each subscriber of `channel`; one that throws does not stop the others. */
  deliver(channel: string, payload: string): void {
    for (const s of this.byChannel.get(channel) ?? []) {
      try {
        s.onChange(payload);
      } catch {
        // a subscriber's own failure; the others still hear of the change
      }
    }
  }

  /** Runs `onResync` of the subscribers of `channels` (default: every channel). */
  resync(channels: Iterable<string> = this.byChannel.keys()): void {
    for (const c of channels) {
      for (const s of this.byChannel.get(c) ?? []) {
        try {
          s.onResync?.();
        } catch {
          // as in deliver
        }
      }
    }
  }
}

/** The feed of an embedded database: notices reach this process's subscribers only. */
export class LocalChangeFeed implements ChangeFeed {
  readonly shared = false;
  readonly #subs = new ChangeSubscribers();

  subscribe(channel: string, onChange: (payload: string) => void, onResync?: () => void): () => void {
    return this.#subs.add(channel, { onChange, onResync }).remove;
  }

  async publish(channel: string, payload = ""): Promise<void> {
    this.#subs.deliver(channel, payload);
  }

  async close(): Promise<void> {}
}
