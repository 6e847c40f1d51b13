/**
 * jose-ja's audit log: one row per key operation (who, what, which key and version, result,
 * when). Rows hold identifiers and error codes only: never payloads, plaintexts, tokens or key
 * material. Every read is tenant-scoped; pages run newest first.
 */
import type { Kysely } from "kysely";
import { GroupCommit } from "../../src/storage/index.ts";
import { AppError } from "../../src/service/errors.ts";
import type { AuditQueryInput } from "../../schemas/jose-ja.ts";

export interface AuditRow {
  seq: number;
  tenant: string;
  at: string;
  subject: string;
  client_id: string | null;
  operation: string;
  key_id: string | null;
  version: number | null;
  result: string;
}

interface AuditDb {
  jose_audit: AuditRow;
}

export type AuditEntry = Omit<AuditRow, "seq">;

function encodeToken(seq: number): string {
  return btoa(JSON.stringify({ a: seq })).replace(/=+$/, "");
}

function decodeToken(token: string): number {
  try {
    const { a } = JSON.parse(atob(token)) as { a: unknown };
    if (typeof a === "number" && Number.isSafeInteger(a) && a > 0) return a;
  } catch {
    // fall through
  }
  throw new AppError("validation_failed", "page_token is not valid");
}

/** Audit rows per transaction (9 columns each, well under SQLite's bound-parameter limit). */
const MAX_BATCH = 200;

export class AuditLog {
  private readonly db: Kysely<AuditDb>;
  /** Concurrent operations' rows share one transaction and one WAL sync (see GroupCommit). */
  private readonly rows: GroupCommit<AuditDb, AuditEntry>;

  constructor(db: Kysely<any>) {
    this.db = db as Kysely<AuditDb>;
    this.rows = new GroupCommit(this.db, async (trx, items) => void (await trx.insertInto("jose_audit").values(items as AuditRow[]).execute()), {
      maxBatch: MAX_BATCH,
      gatherMs: 0,
    });
  }

  /** Records an operation; resolves once the row is on disk. */
  record(e: AuditEntry): Promise<void> {
    return this.rows.add(e);
  }

  async query(tenant: string, q: AuditQueryInput): Promise<{ items: AuditRow[]; next_page_token: string | null }> {
    const limit = q.limit ?? 100;
    let s = this.db.selectFrom("jose_audit").selectAll().where("tenant", "=", tenant);
    if (q.key) s = s.where("key_id", "=", q.key);
    if (q.operation) s = s.where("operation", "=", q.operation);
    // ISO-8601 UTC strings of one format compare like the times they name.
    if (q.from) s = s.where("at", ">=", new Date(q.from).toISOString());
    if (q.to) s = s.where("at", "<", new Date(q.to).toISOString());
    if (q.page_token) s = s.where("seq", "<", decodeToken(q.page_token));
    const rows = await s.orderBy("seq", "desc").limit(limit + 1).execute();
    const items = rows.slice(0, limit);
    return { items, next_page_token: rows.length > limit ? encodeToken(items[items.length - 1]!.seq) : null };
  }
}
