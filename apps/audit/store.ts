/**
 * Kysely queries of the audit service. Inserts and selects only: the log has no update or
 * delete query, and its tables refuse both (see migrations.ts).
 */
import type { Kysely, Transaction } from "kysely";
import { withTransaction } from "../../src/storage/index.ts";

export interface EventRow {
  seq: number;
  service: string;
  event_id: string;
  tenant: string;
  actor: string;
  action: string;
  result: string;
  time: string;
  entry: string;
  leaf_hash: Uint8Array;
}

export interface CheckpointRow {
  tree_size: number;
  root_hash: Uint8Array;
  note: string;
  created: string;
}

export interface KeyRow {
  name: string;
  sealed: Uint8Array;
  public_key: Uint8Array | null;
  created: string;
}

export interface AuditDb {
  audit_events: EventRow;
  audit_checkpoints: CheckpointRow;
  audit_keys: KeyRow;
}

type Db = Kysely<AuditDb> | Transaction<AuditDb>;

/** Rows per INSERT statement (10 columns each, well under SQLite's bound-parameter limit). */
const INSERT_CHUNK = 200;

export interface EventFilter {
  tenant?: string;
  service?: string;
  actor?: string;
  action?: string;
  result?: string;
  from?: string;
  to?: string;
  /** Entries with seq above this. */
  after?: number;
  /** Entries with seq below this. */
  before?: number;
}

const bytes = (x: Uint8Array | ArrayBuffer) => (x instanceof Uint8Array ? x : new Uint8Array(x));

export class AuditQueries {
  constructor(protected readonly db: Db) {}

  /** The number of entries: the next seq. */
  async size(): Promise<number> {
    const r = await this.db.selectFrom("audit_events").select((eb) => eb.fn.max("seq").as("top")).executeTakeFirst();
    return r?.top == null ? 0 : Number(r.top) + 1;
  }

  /** The seqs of events already stored by `service` under these ids. */
  async existing(service: string, ids: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db
        .selectFrom("audit_events")
        .select(["event_id", "seq"])
        .where("service", "=", service)
        .where("event_id", "in", ids.slice(i, i + 500))
        .execute();
      for (const r of rows) out.set(r.event_id, Number(r.seq));
    }
    return out;
  }

  async insertEvents(rows: EventRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) await this.db.insertInto("audit_events").values(rows.slice(i, i + INSERT_CHUNK)).execute();
  }

  /** Leaf hashes from `from` on, in order, at most `limit`. */
  async leafHashes(from: number, limit: number): Promise<Array<{ seq: number; leaf_hash: Uint8Array }>> {
    const rows = await this.db.selectFrom("audit_events").select(["seq", "leaf_hash"]).where("seq", ">=", from).orderBy("seq").limit(limit).execute();
    return rows.map((r) => ({ seq: Number(r.seq), leaf_hash: bytes(r.leaf_hash) }));
  }

  event(seq: number): Promise<EventRow | undefined> {
    return this.db.selectFrom("audit_events").selectAll().where("seq", "=", seq).executeTakeFirst();
  }

  /** A page of entries matching `f`, by seq ascending or descending. */
  events(f: EventFilter, order: "asc" | "desc", limit: number): Promise<EventRow[]> {
    let q = this.db.selectFrom("audit_events").selectAll();
    if (f.tenant !== undefined) q = q.where("tenant", "=", f.tenant);
    if (f.service !== undefined) q = q.where("service", "=", f.service);
    if (f.actor !== undefined) q = q.where("actor", "=", f.actor);
    if (f.action !== undefined) q = q.where("action", "=", f.action);
    if (f.result !== undefined) q = q.where("result", "=", f.result);
    // ISO-8601 UTC strings of one format compare like the times they name.
    if (f.from !== undefined) q = q.where("time", ">=", f.from);
    if (f.to !== undefined) q = q.where("time", "<", f.to);
    if (f.after !== undefined) q = q.where("seq", ">", f.after);
    if (f.before !== undefined) q = q.where("seq", "<", f.before);
    return q.orderBy("seq", order).limit(limit).execute();
  }

  /** Entries [from, to) in order, for export. */
  range(from: number, to: number): Promise<EventRow[]> {
    return this.db.selectFrom("audit_events").selectAll().where("seq", ">=", from).where("seq", "<", to).orderBy("seq").execute();
  }

  latestCheckpoint(): Promise<CheckpointRow | undefined> {
    return this.db.selectFrom("audit_checkpoints").selectAll().orderBy("tree_size", "desc").limit(1).executeTakeFirst();
  }

  checkpoint(size: number): Promise<CheckpointRow | undefined> {
    return this.db.selectFrom("audit_checkpoints").selectAll().where("tree_size", "=", size).executeTakeFirst();
  }

  /** Checkpoints of sizes up to `size`, oldest first. */
  checkpointsUpTo(size: number): Promise<CheckpointRow[]> {
    return this.db.selectFrom("audit_checkpoints").selectAll().where("tree_size", "<=", size).orderBy("tree_size").execute();
  }

  /** Stores a checkpoint unless one of that size exists (another instance may have made it). */
  async insertCheckpoint(row: CheckpointRow): Promise<void> {
    await this.db.insertInto("audit_checkpoints").values(row).onConflict((oc) => oc.column("tree_size").doNothing()).execute();
  }

  key(name: string): Promise<KeyRow | undefined> {
    return this.db.selectFrom("audit_keys").selectAll().where("name", "=", name).executeTakeFirst();
  }

  async insertKey(row: KeyRow): Promise<void> {
    await this.db.insertInto("audit_keys").values(row).onConflict((oc) => oc.column("name").doNothing()).execute();
  }
}

export class AuditStore extends AuditQueries {
  constructor(private readonly root: Kysely<AuditDb>) {
    super(root);
  }

  /** One read-write transaction: positions are assigned inside (one at a time, on every engine). */
  transaction<T>(fn: (q: AuditQueries) => Promise<T>): Promise<T> {
    return withTransaction(this.root, (trx) => fn(new AuditQueries(trx)));
  }
}
