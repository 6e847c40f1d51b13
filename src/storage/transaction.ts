/**
 * Transactions: all-or-nothing units of work.
 *
 * A write transaction is `BEGIN IMMEDIATE` on local databases (the write lock is taken up
 * front, so two writers wait on the busy timeout instead of failing on lock upgrade).
 * Any error thrown by `fn` rolls everything back and is rethrown as an `AppError`
 * (storage errors mapped by `mapStorageError`).
 */
import type { Kysely, Transaction } from "kysely";
import { mapStorageError } from "./database.ts";

export interface TransactionOptions {
  /** A read-only transaction (`BEGIN DEFERRED` / read stream on remote). */
  readOnly?: boolean;
}

/**
 * Runs `fn` in a transaction and returns its result.
 *
 * @example
 *   await withTransaction(db, async (trx) => {
 *     await trx.insertInto("pets").values({ id, name }).execute();
 *     await trx.insertInto("audit").values({ what: "pet_created", id }).execute();
 *   });
 */
export async function withTransaction<DB, T>(
  db: Kysely<DB>,
  fn: (trx: Transaction<DB>) => Promise<T>,
  opts: TransactionOptions = {},
): Promise<T> {
  try {
    let builder = db.transaction();
    if (opts.readOnly) builder = builder.setAccessMode("read only");
    return await builder.execute(fn);
  } catch (err) {
    throw mapStorageError(err);
  }
}
