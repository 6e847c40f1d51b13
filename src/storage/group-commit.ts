/**
 * Group commit: rows that many concurrent requests each must store before they answer are
 * written together, one transaction per batch instead of one commit (and one WAL sync) per
 * row. `add` resolves once its row is durable (see commitDeferred: the sync runs off the
 * event loop, so the next batch can commit meanwhile).
 *
 * A batch that fails (a constraint one row breaks, say) is retried row by row, so only the
 * offending `add` fails. Rows keep the order of their `add` calls within and across batches.
 */
import { setImmediate } from "node:timers";
import type { Kysely, Transaction } from "kysely";
import { commitDeferred } from "./wal-sync.ts";

export interface GroupCommitOptions {
  /** Rows per transaction at most (mind SQLite's bound-parameter limit). */
  maxBatch: number;
  /** How long the first row of a batch waits for others; 0: until the next event-loop turn. */
  gatherMs: number;
}

interface Pending<T> {
  item: T;
  done: (err?: unknown) => void;
}

export class GroupCommit<DB, T> {
  private pending: Pending<T>[] = [];
  private flushing = false;

  constructor(
    private readonly db: Kysely<DB>,
    /** Writes a batch of rows in the transaction it is given (and nothing else). */
    private readonly write: (trx: Transaction<DB>, items: T[]) => Promise<void>,
    private readonly opts: GroupCommitOptions,
  ) {}

  /** Stores `item` with whatever else arrives meanwhile; resolves once it is on disk. */
  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (this.flushing) return;
      this.flushing = true;
      const run = () => void this.flush();
      if (this.opts.gatherMs > 0) setTimeout(run, this.opts.gatherMs);
      else setImmediate(run);
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
      try {
        settleOnDisk(await commitDeferred(this.db, (trx) => this.write(trx, batch.map((b) => b.item))), batch);
      } catch {
        for (const b of batch) {
          try {
            settleOnDisk(await commitDeferred(this.db, (trx) => this.write(trx, [b.item])), [b]);
          } catch (e) {
            b.done(e);
          }
        }
      }
    }
    this.flushing = false;
  }
}

/** Answers the calls of a committed batch once it is durable (or its sync has failed). */
function settleOnDisk<T>(committed: { durable: Promise<void> }, batch: Pending<T>[]): void {
  committed.durable.then(
    () => {
      for (const b of batch) b.done();
    },
    (e: unknown) => {
      for (const b of batch) b.done(e);
    },
  );
}
