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
import { engineOf } from "./dialect.ts";
import { commitDeferred } from "./wal-sync.ts";
import { statementRunner } from "./precompiled.ts";
import { mapStorageError } from "./errors.ts";

export interface GroupCommitOptions {
  /** Rows per transaction at most (mind SQLite's bound-parameter limit). */
  maxBatch: number;
  /** How long the first row of a batch waits for others; 0: until the next event-loop turn. */
  gatherMs: number;
  /**
   * The batch's write is one statement, atomic by itself: on PostgreSQL it then runs without
   * a transaction around it, one round trip per batch instead of three (BEGIN, it, COMMIT).
   * Embedded databases keep the transaction, which costs no round trip and defers the WAL sync.
   */
  singleStatement?: boolean;
  /**
   * Batches hold a power of two of rows (up to maxBatch; the rest form the next ones), so the
   * batch statements come in a few shapes, which PostgreSQL can keep prepared (see runPrepared).
   */
  powerOfTwoBatches?: boolean;
}

interface Pending<T> {
  item: T;
  done: (err?: unknown) => void;
}

export class GroupCommit<DB, T> {
  private pending: Pending<T>[] = [];
  private flushing = false;
  private readonly commit: (items: T[]) => Promise<{ durable: Promise<void> }>;

  constructor(
    db: Kysely<DB>,
    /** Writes a batch of rows on the handle it is given (a transaction, or with `singleStatement` maybe the database), and nothing else. */
    write: (on: Kysely<DB>, items: T[]) => Promise<void>,
    private readonly opts: GroupCommitOptions,
  ) {
    const durable = Promise.resolve();
    this.commit =
      opts.singleStatement && engineOf(db) === "postgres"
        ? async (items) => (await write(db, items), { durable })
        : (items) => commitDeferred(db, (trx) => write(trx, items));
  }

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
      const n = Math.min(this.pending.length, this.opts.maxBatch);
      const batch = this.pending.splice(0, this.opts.powerOfTwoBatches ? 2 ** Math.floor(Math.log2(n)) : n);
      try {
        settleOnDisk(await this.commit(batch.map((b) => b.item)), batch);
      } catch {
        for (const b of batch) {
          try {
            settleOnDisk(await this.commit([b.item]), [b]);
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

const SAVEPOINT = "SAVEPOINT group_unit";
const RELEASE = "RELEASE SAVEPOINT group_unit";
const ROLLBACK_TO = "ROLLBACK TO SAVEPOINT group_unit";

interface PendingWork<Q, R> {
  work: (q: Q) => Promise<R>;
  /** Settled at the commit rather than once it is on disk. */
  committedOnly: boolean;
  /** Run in a SAVEPOINT of its own (see GroupRunOptions.savepoint). */
  savepoint: boolean;
  done: (r: { ok: true; value: R } | { ok: false; error: unknown }) => void;
}

export interface GroupRunOptions {
  /**
   * false: the unit's promise settles once its batch has committed (visible to every reader),
   * not once it is on disk; for state whose loss in a crash only puts a step back (a claim, a
   * spent nonce, a derived state). Default true.
   */
  durable?: boolean;
  /**
   * false: the unit runs without a SAVEPOINT of its own (two statements fewer); if it throws,
   * the whole batch is rolled back and run again unit by unit. For a unit that is one
   * statement that only a broken database refuses. Default true.
   */
  savepoint?: boolean;
}

/**
 * Group commit of read-modify-write units (a check-and-set write, say): the units that
 * concurrent requests submit meanwhile run one after another in one transaction, each in its
 * own SAVEPOINT, so one that throws is rolled back alone and fails alone while the others
 * commit; each sees what the units before it wrote, as if the transactions had run in that
 * order. The commit's WAL sync runs off the event loop (commitDeferred) and every unit's
 * promise settles once its batch is durable (or, run with `durable: false`, once it has
 * committed). A batch whose transaction fails as a whole is
 * run again unit by unit.
 */
export class GroupTransaction<DB, Q> {
  private pending: PendingWork<Q, any>[] = [];
  private flushing = false;
  private readonly statement: ReturnType<typeof statementRunner<DB>>;

  constructor(
    private readonly db: Kysely<DB>,
    /** The queries a unit runs on, over the batch's transaction. */
    private readonly queries: (trx: Transaction<DB>) => Q,
    private readonly opts: GroupCommitOptions,
  ) {
    this.statement = statementRunner(db);
  }

  /** Runs `work` in a transaction shared with the units submitted meanwhile; resolves once durable (or committed, with `durable: false`). */
  run<R>(work: (q: Q) => Promise<R>, opts: GroupRunOptions = {}): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ work, committedOnly: opts.durable === false, savepoint: opts.savepoint !== false, done: (r) => (r.ok ? resolve(r.value) : reject(r.error)) });
      if (this.flushing) return;
      this.flushing = true;
      const go = () => void this.flush();
      if (this.opts.gatherMs > 0) setTimeout(go, this.opts.gatherMs);
      else setImmediate(go);
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
      try {
        await this.commit(batch);
      } catch {
        for (const unit of batch) {
          try {
            await this.commit([unit]);
          } catch (e) {
            unit.done({ ok: false, error: mapStorageError(e) });
          }
        }
      }
    }
    this.flushing = false;
  }

  /** One transaction for `batch`; each unit's outcome is settled once the commit is on disk. */
  private async commit(batch: PendingWork<Q, any>[]): Promise<void> {
    let outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    const committed = await commitDeferred(this.db, async (trx) => {
      // commitDeferred may run this again (a busy lock): outcomes start over with it.
      outcomes = [];
      const q = this.queries(trx);
      for (const unit of batch) {
        // Without a savepoint, a failure fails the batch (run again unit by unit, each with one).
        if (!unit.savepoint && batch.length > 1) {
          outcomes.push({ ok: true, value: await unit.work(q) });
          continue;
        }
        await this.statement(trx, SAVEPOINT, []);
        try {
          outcomes.push({ ok: true, value: await unit.work(q) });
          await this.statement(trx, RELEASE, []);
        } catch (error) {
          await this.statement(trx, ROLLBACK_TO, []);
          await this.statement(trx, RELEASE, []);
          outcomes.push({ ok: false, error: mapStorageError(error) });
        }
      }
    });
    const settled = outcomes;
    const onDisk: Array<[PendingWork<Q, any>, (typeof settled)[number]]> = [];
    batch.forEach((unit, i) => {
      if (unit.committedOnly) unit.done(settled[i]!);
      else onDisk.push([unit, settled[i]!]);
    });
    if (onDisk.length === 0) return void committed.durable.catch(() => undefined);
    committed.durable.then(
      () => onDisk.forEach(([unit, outcome]) => unit.done(outcome)),
      (error: unknown) => onDisk.forEach(([unit]) => unit.done({ ok: false, error: mapStorageError(error) })),
    );
  }
}
