/**
 * Opaque page tokens for keyset pagination over a per-tenant sequence column: the token
 * carries the last sequence number seen. Queries stay tenant-scoped, so a token moved to
 * another tenant only pages that tenant's rows.
 */
import type { Kysely } from "kysely";
import { AppError } from "../service/errors.ts";

export function encodePageToken(seq: number): string {
  return btoa(JSON.stringify({ s: seq })).replace(/=+$/, "");
}

/** The sequence number in a page token; `validation_failed` for anything else. */
export function decodePageToken(token: string): number {
  try {
    const { s } = JSON.parse(atob(token)) as { s: unknown };
    if (typeof s === "number" && Number.isSafeInteger(s) && s >= 0) return s;
  } catch {
    // fall through to the error below
  }
  throw new AppError("validation_failed", "page_token is not valid");
}

/**
 * The tenant's next sequence number (1 for its first row), as a subquery for the `seq` value
 * of an INSERT into `table`, so the number is taken in the statement that uses it. Run that
 * INSERT in a transaction: on PostgreSQL, transactions run one at a time (see postgres.ts),
 * so concurrent inserts of one tenant never get the same number.
 *
 * @example
 *   await db.transaction().execute((trx) =>
 *     trx.insertInto("pets").values({ ...row, seq: nextSeq(trx, "pets", row.tenant) }).execute());
 */
export function nextSeq(db: Kysely<any>, table: string, tenant: string) {
  return db
    .selectFrom(table)
    .select((eb) => eb(eb.fn.coalesce(eb.fn.max("seq"), eb.lit(0)), "+", eb.lit(1)).as("next_seq"))
    .where("tenant", "=", tenant);
}
