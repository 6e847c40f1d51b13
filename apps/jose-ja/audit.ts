/**
 * jose-ja's audit log: one row per key operation (who, what, which key and version, result,
 * when). Rows hold identifiers and error codes only: never payloads, plaintexts, tokens or key
 * material. Every read is tenant-scoped; pages run newest first.
 *
 * This table is jose-ja's local view for its own API (`GET /audit`). When the suite's audit
 * service is configured (`federation.audit.url`), each row also feeds it, and the audit
 * service's signed, append-only log is the record; this table only ever feeds it, never
 * reads from it.
 */
import type { Kysely } from "kysely";
import { GroupCommit } from "../../src/storage/index.ts";
import { AppError } from "../../src/service/errors.ts";
import type { AuditQueryInput } from "../../schemas/jose-ja.ts";
import type { Principal } from "../../src/auth/bearer.ts";
import { parseKid } from "../../src/keyring/index.ts";
import type { AuditSender } from "../../src/audit/sender.ts";

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

/** The version a result names (`version` of data operations, `current_version` of key views, a JWK's kid). */
function versionOf(r: unknown): number | null {
  const o = r as { version?: unknown; current_version?: unknown; kid?: unknown } | null;
  if (typeof o?.version === "number") return o.version;
  if (typeof o?.current_version === "number") return o.current_version;
  return parseKid(o?.kid)?.version ?? null;
}

/** Audit rows per transaction (9 columns each, well under SQLite's bound-parameter limit). */
const MAX_BATCH = 200;

export class AuditLog {
  private readonly db: Kysely<AuditDb>;
  /** Concurrent operations' rows share one transaction and one WAL sync (see GroupCommit). */
  private readonly rows: GroupCommit<AuditDb, AuditEntry>;

  constructor(
    db: Kysely<any>,
    private readonly sender?: AuditSender,
  ) {
    this.db = db as Kysely<AuditDb>;
    this.rows = new GroupCommit(this.db, async (trx, items) => void (await trx.insertInto("jose_audit").values(items as AuditRow[]).execute()), {
      maxBatch: MAX_BATCH,
      gatherMs: 0,
    });
  }

  /** Runs a key operation of `p` and records it: ok with the version used, or the error's code. */
  async around<T>(p: Principal, operation: string, keyId: string | null, fn: (tenant: string) => Promise<T>, requestId?: string): Promise<T> {
    const entry = { tenant: p.tenant, subject: p.subject, client_id: p.clientId ?? null, operation, at: new Date().toISOString() };
    try {
      const r = await fn(p.tenant);
      const id = keyId ?? ((r as { id?: unknown })?.id as string | undefined) ?? null;
      await this.record({ ...entry, key_id: id, version: versionOf(r), result: "ok" }, requestId);
      return r;
    } catch (e) {
      await this.record({ ...entry, key_id: keyId, version: null, result: e instanceof AppError ? e.code : "internal" }, requestId);
      throw e;
    }
  }

  /** Records an operation (and spools it for the audit service); resolves once both are on disk. */
  async record(e: AuditEntry, requestId?: string): Promise<void> {
    await Promise.all([
      this.rows.add(e),
      this.sender?.record({
        tenant: e.tenant,
        actor: e.client_id ?? e.subject,
        action: `jwk.${e.operation}`,
        resource: e.key_id ?? "",
        result: /^[a-z0-9_.-]{1,64}$/.test(e.result) ? e.result : "error",
        ...(requestId ? { request_id: requestId } : {}),
        details: e.version === null ? {} : { version: e.version },
      }),
    ]);
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
