/**
 * Group commit with the WAL sync off the event loop.
 *
 * With `synchronous = FULL` (SQLite's default), a WAL-mode COMMIT writes its frames and then
 * fsyncs the -wal file before returning; bun:sqlite and libSQL's binding are synchronous, so
 * the whole process waits for the disk (about a quarter of pki-ca's event loop under its
 * issuance benchmark). `synchronous = NORMAL` differs from FULL in one thing only: the COMMIT
 * does not fsync the WAL. SQLite still syncs the WAL before every checkpoint, the database
 * file after it, and the WAL header before the file is reused, so a transaction is durable
 * once the -wal file has been synced after its COMMIT, and a crash can only lose commits
 * whose sync had not finished.
 *
 * `commitDeferred` runs one transaction that way: NORMAL for its COMMIT (restored to the
 * connection's own setting right after, before any other statement can run), then an fsync of
 * the -wal file on the runtime's thread pool. The caller answers its clients when `durable`
 * settles, which is the same guarantee FULL gives, while the event loop goes on serving.
 * Concurrent syncs are coalesced: a request waits for one fsync that started after it.
 *
 * Waiting for the write lock is asynchronous too. Both engines wait for a lock held by another
 * process in SQLite's busy handler, which sleeps on the calling thread: the whole event loop
 * stops for as long as the other writer holds the lock (up to the busy timeout). Here the busy
 * timeout is 0 for the transaction's BEGIN IMMEDIATE, and a busy lock is tried again after a
 * timer (retryWhileBusy) until the connection's own busy timeout has passed.
 */
import { closeSync, fsync, openSync } from "node:fs";
import { sql, type Kysely, type Transaction } from "kysely";
import { StorageLatency } from "./latency.ts";

/** The file operations a syncer uses (node:fs's, or a test's). */
export interface SyncIo {
  open(path: string): number;
  fsync(fd: number, done: (err: Error | null) => void): void;
  close(fd: number): void;
}

const nodeIo: SyncIo = { open: (p) => openSync(p, "r+"), fsync, close: closeSync };

/** fsyncs one file, coalescing overlapping requests. */
export class WalSyncer {
  private fd: number | undefined;
  /** The fsync running now, if any. */
  private running: Promise<void> | undefined;
  /** The fsync that starts when `running` ends, shared by every request made meanwhile. */
  private queued: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly io: SyncIo = nodeIo,
    /** Where each fsync's duration is recorded. */
    readonly latency = new StorageLatency(),
  ) {}

  /** Resolves once an fsync of the file that started after this call has completed. */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    const q = this.running.then(
      () => this.start(),
      () => this.start(),
    );
    this.queued = q;
    return q;
  }

  close(): void {
    this.closed = true;
    if (this.fd !== undefined) this.io.close(this.fd);
    this.fd = undefined;
  }

  private start(): Promise<void> {
    this.queued = undefined;
    const p = new Promise<void>((resolve, reject) => {
      if (this.closed) return reject(new Error("the database is closed"));
      // Opened on first use: the -wal file exists once a transaction has committed.
      this.fd ??= this.io.open(this.path);
      const started = performance.now();
      this.io.fsync(this.fd, (err) => {
        this.latency.walFsync.observe((performance.now() - started) / 1000);
        if (err) reject(err);
        else resolve();
      });
    });
    this.running = p;
    const clear = () => {
      if (this.running === p) this.running = undefined;
    };
    p.then(clear, clear);
    return p;
  }
}

/** What commitDeferred needs of a connection: its syncer and the settings it was opened with. */
interface WalConnection {
  syncer: WalSyncer;
  /** PRAGMA synchronous as opened (2 = FULL, SQLite's default). */
  synchronous: number;
  /** PRAGMA busy_timeout as opened, in ms. */
  busyTimeoutMs: number;
  /**
   * Runs a statement on the connection itself, synchronously (the engine's exec): the PRAGMAs
   * around each transaction skip Kysely's query path, a few microseconds instead of tens.
   * Without it they go through Kysely.
   */
  exec?: (sql: string) => void;
}

/** Embedded WAL-mode file databases, by their Kysely instance. */
const walConnections = new WeakMap<Kysely<any>, WalConnection>();

export function registerWalSyncer(db: Kysely<any>, connection: WalConnection): void {
  walConnections.set(db, connection);
}

/**
 * Runs `attempt` until it does not fail with SQLITE_BUSY, waiting on a timer between tries
 * (2, 4 ... 16 ms) rather than in SQLite's busy handler, which sleeps on the event loop;
 * the last SQLITE_BUSY is thrown once `timeoutMs` has passed.
 */
export async function retryWhileBusy<T>(attempt: () => Promise<T> | T, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 16)) {
    try {
      return await attempt();
    } catch (e) {
      if (!isBusy(e) || performance.now() >= deadline) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Runs `work` in one transaction and returns once it has committed; `durable` settles when
 * the commit is on disk (rejecting if the sync fails). On databases without a local WAL
 * (memory, remote, replica) the commit is synchronous as usual and `durable` is already
 * settled. Wrapped in an object so awaiting the commit does not also await the sync.
 * `work` may run more than once (again after a busy lock made its transaction fail to start),
 * so it must only issue statements on `trx`.
 */
export async function commitDeferred<DB>(db: Kysely<DB>, work: (trx: Transaction<DB>) => Promise<void>): Promise<{ durable: Promise<void> }> {
  const c = walConnections.get(db);
  if (!c) {
    await db.transaction().execute(work);
    return { durable: Promise.resolve() };
  }
  await db.connection().execute(async (conn) => {
    // OFF (0) stays OFF: it skips the checkpoint syncs too, and was somebody's choice.
    const relax = c.synchronous >= 1;
    // Only while this connection is held: no other statement runs between these and the restore.
    const pragma = c.exec ?? ((text: string) => sql.raw(text).execute(conn));
    if (relax) await pragma("PRAGMA synchronous = NORMAL");
    await pragma("PRAGMA busy_timeout = 0");
    try {
      await retryWhileBusy(async () => {
        const started = performance.now();
        await conn.transaction().execute(work);
        c.syncer.latency.writeTransaction.observe((performance.now() - started) / 1000);
      }, c.busyTimeoutMs);
    } finally {
      await pragma(`PRAGMA busy_timeout = ${c.busyTimeoutMs | 0}`);
      if (relax) await pragma(`PRAGMA synchronous = ${c.synchronous | 0}`);
    }
  });
  return { durable: c.syncer.sync() };
}

/** SQLITE_BUSY (and its extended codes) from either engine. */
function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

/** The disk latency histograms of `db`, if it is an embedded WAL-mode file database. */
export function storageLatencyOf(db: Kysely<any>): StorageLatency | undefined {
  return walConnections.get(db)?.syncer.latency;
}

/** The syncer registered for `db`, if it is an embedded WAL-mode file database (for tests). */
export function walSyncerOf(db: Kysely<any>): WalSyncer | undefined {
  return walConnections.get(db)?.syncer;
}
