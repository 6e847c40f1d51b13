/**
 * Where a service keeps its dead-lettered notifications: a table of the service's own database
 * (template migration "notification dead letters"), so the list survives a restart and every
 * instance on one database sees, retries and discards the same letters. A notification carries
 * identifiers only (never secret contents), so rows are stored as JSON, not sealed.
 *
 * `MemoryDeadLetters` keeps them in the process instead (a notifier without a database: tests,
 * tools), newest `limit` kept.
 */
import type { Kysely } from "kysely";
import type { DeadLetter } from "./notifier.ts";

export interface DeadLetterStore {
  add(letter: DeadLetter): Promise<void>;
  /** Oldest first, of one tenant when given, after the letter `after` (from the start when it is gone). */
  list(q: { tenant?: string; limit: number; after?: string }): Promise<{ letters: DeadLetter[]; more: boolean }>;
  get(id: string): Promise<DeadLetter | undefined>;
  /** Records one more failed attempt. */
  update(letter: DeadLetter): Promise<void>;
  /** False when there was no such letter (another instance may have removed it). */
  remove(id: string): Promise<boolean>;
}

interface DeadLetterRow {
  seq?: number;
  id: string;
  tenant: string;
  letter: string;
}

interface DeadLetterDb {
  notify_dead_letters: DeadLetterRow;
}

/** The template migration that makes the table (every service has one). */
export async function createDeadLetterTable(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("notify_dead_letters")
    .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
    .addColumn("id", "text", (c) => c.notNull().unique())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("letter", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("notify_dead_letters_tenant").on("notify_dead_letters").columns(["tenant", "seq"]).execute();
}

export class DatabaseDeadLetters implements DeadLetterStore {
  private readonly db: Kysely<DeadLetterDb>;

  constructor(
    db: Kysely<any>,
    /** Most letters kept; the oldest go first. */
    private readonly limit = 10_000,
  ) {
    this.db = db as Kysely<DeadLetterDb>;
  }

  async add(letter: DeadLetter): Promise<void> {
    await this.db.insertInto("notify_dead_letters").values({ id: letter.id, tenant: letter.notification.tenant, letter: JSON.stringify(letter) }).execute();
    const edge = await this.db.selectFrom("notify_dead_letters").select("seq").orderBy("seq", "desc").offset(this.limit).limit(1).executeTakeFirst();
    if (edge) await this.db.deleteFrom("notify_dead_letters").where("seq", "<=", edge.seq!).execute();
  }

  async list(q: { tenant?: string; limit: number; after?: string }) {
    const from = q.after === undefined ? undefined : await this.db.selectFrom("notify_dead_letters").select("seq").where("id", "=", q.after).executeTakeFirst();
    let query = this.db.selectFrom("notify_dead_letters").select("letter").orderBy("seq").limit(q.limit + 1);
    if (q.tenant !== undefined) query = query.where("tenant", "=", q.tenant);
    if (from) query = query.where("seq", ">", from.seq!);
    const rows = await query.execute();
    return { letters: rows.slice(0, q.limit).map((r) => JSON.parse(r.letter) as DeadLetter), more: rows.length > q.limit };
  }

  async get(id: string): Promise<DeadLetter | undefined> {
    const row = await this.db.selectFrom("notify_dead_letters").select("letter").where("id", "=", id).executeTakeFirst();
    return row ? (JSON.parse(row.letter) as DeadLetter) : undefined;
  }

  async update(letter: DeadLetter): Promise<void> {
    await this.db.updateTable("notify_dead_letters").set({ letter: JSON.stringify(letter) }).where("id", "=", letter.id).execute();
  }

  async remove(id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("notify_dead_letters").where("id", "=", id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }
}

export class MemoryDeadLetters implements DeadLetterStore {
  /** By id, in the order they died (a Map keeps insertion order). */
  private readonly letters = new Map<string, DeadLetter>();

  constructor(private readonly limit = 1000) {}

  async add(letter: DeadLetter): Promise<void> {
    this.letters.set(letter.id, letter);
    for (const id of this.letters.keys()) {
      if (this.letters.size <= this.limit) break;
      this.letters.delete(id);
    }
  }

  async list(q: { tenant?: string; limit: number; after?: string }) {
    const all = [...this.letters.values()].filter((d) => q.tenant === undefined || d.notification.tenant === q.tenant);
    const i = q.after === undefined ? -1 : all.findIndex((d) => d.id === q.after);
    const rest = all.slice(i + 1);
    return { letters: rest.slice(0, q.limit), more: rest.length > q.limit };
  }

  async get(id: string): Promise<DeadLetter | undefined> {
    return this.letters.get(id);
  }

  async update(letter: DeadLetter): Promise<void> {
    if (this.letters.has(letter.id)) this.letters.set(letter.id, letter);
  }

  async remove(id: string): Promise<boolean> {
    return this.letters.delete(id);
  }
}
