/**
 * jose-ja's audit log: one row per key operation (who, what, which key and version, result,
 * when). Rows hold identifiers and error codes only: never payloads, plaintexts, tokens or key
 * material. Every read is tenant-scoped; pages run newest first.
 */
import type { Kysely } from "kysely";
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

export class AuditLog {
  private readonly db: Kysely<AuditDb>;

  constructor(db: Kysely<any>) {
    this.db = db as Kysely<AuditDb>;
  }

  async record(e: AuditEntry): Promise<void> {
    await this.db.insertInto("jose_audit").values(e as AuditRow).execute();
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
