/**
 * Storage on PostgreSQL (Debian package postgresql), one server for the file: the shared
 * storage suite (storage-suite.ts), and what only this engine has: the password file,
 * errors mapped by SQLSTATE without credentials, values as the embedded engine returns
 * them, the schema translation, and read-write transactions that run SERIALIZABLE and run
 * again after a conflict.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sql } from "kysely";
import {
  greatest,
  likeIgnoringCase,
  openDatabase,
  ping,
  precompile,
  runMigrations,
  withTransaction,
  type Database,
} from "../../src/storage/index.ts";
import { barrierMigrations } from "../../src/barrier/schema.ts";
import { openTestDatabase, startPostgresEngine } from "../support/engine.ts";
import { catchErr, expectAppError, storageSuite } from "./storage-suite.ts";

const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

describe("on PostgreSQL (Debian package postgresql)", () => {
  if (!engine) return;
  storageSuite(engine);

  let d: Database<any>;
  beforeAll(async () => {
    d = await openTestDatabase(engine, "pg-only");
  });
  afterAll(() => d?.close());
  const password = () => readFileSync(engine.server.passwordFile, "utf8").trim();

  test("opens with the password from its file, pings, and reports a location without it", async () => {
    expect(d.mode).toBe("postgres");
    expect(d.location).toStartWith(`postgres://${engine.server.user}@127.0.0.1:${engine.server.port}/`);
    expect(d.location).not.toContain(password());
    expect(await ping(d.db)).toMatchObject({ ok: true });
  });

  test("a wrong password, an unknown database and a closed port fail the open as unavailable, by code only", async () => {
    const url = await engine.server.createDatabase("refused");
    const wrong = expectAppError(await catchErr(openDatabase({ service: "t", url, password: "not-the-password" })), "unavailable");
    expect(wrong.details).toEqual({ storage: "PG_28P01" });
    expect(wrong.message).not.toContain("not-the-password");
    const none = expectAppError(await catchErr(openDatabase({ service: "t", url })), "unavailable");
    expect(none.details).toEqual({ storage: "PG_CLIENT_AUTH" });
    const unknown = expectAppError(await catchErr(openDatabase({ service: "t", url: `${url}_missing`, password: password() })), "unavailable");
    expect(unknown.details).toEqual({ storage: "PG_3D000" });
    const closed = expectAppError(await catchErr(openDatabase({ service: "t", url: "postgres://u@127.0.0.1:1/x", password: "p" })), "unavailable");
    expect(closed.details).toEqual({ storage: "ECONNREFUSED" });
  });

  test("values come back as the embedded engine returns them: numbers for int8 and counts, Uint8Array for bytea", async () => {
    await d.db.schema
      .createTable("vals")
      .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
      .addColumn("big", "integer", (c) => c.notNull())
      .addColumn("b", "blob")
      .execute();
    const ms = 4_102_444_800_000; // 2100-01-01 in ms: beyond 32 bits
    await d.db.insertInto("vals").values([{ big: ms, b: new Uint8Array([0, 1, 255]) }, { big: 1, b: null }]).execute();
    const rows = await d.db.selectFrom("vals").selectAll().orderBy("id").execute();
    expect(rows).toEqual([
      { id: 1, big: ms, b: new Uint8Array([0, 1, 255]) },
      { id: 2, big: 1, b: null },
    ]);
    expect(Object.getPrototypeOf(rows[0]!.b)).toBe(Uint8Array.prototype); // not a Buffer over a shared pool
    const agg = await d.db.selectFrom("vals").select((eb) => [eb.fn.countAll().as("n"), eb.fn.max("big").as("m"), eb.fn.sum("big").as("s")]).executeTakeFirstOrThrow();
    expect(agg).toEqual({ n: 2, m: ms, s: ms + 1 });
    const types = await sql<{ t: string }>`select data_type as t from information_schema.columns where table_name = 'vals' order by ordinal_position`.execute(d.db);
    expect(types.rows.map((r) => r.t)).toEqual(["bigint", "bigint", "bytea"]);
  });

  test("constraint violations are conflicts with the SQLSTATE; the dialect helpers compile for PostgreSQL", async () => {
    await sql`create table parent (id bigint primary key)`.execute(d.db);
    await sql`create table child (id bigint primary key, parent_id bigint not null references parent(id))`.execute(d.db);
    await d.db.insertInto("parent").values({ id: 1 }).execute();
    const dup = expectAppError(await catchErr(withTransaction(d.db, (t) => t.insertInto("parent").values({ id: 1 }).execute())), "conflict");
    expect(dup.details).toEqual({ storage: "PG_23505" });
    const orphan = expectAppError(await catchErr(withTransaction(d.db, (t) => t.insertInto("child").values({ id: 1, parent_id: 9 }).execute())), "conflict");
    expect(orphan.details).toEqual({ storage: "PG_23503" });
    const g = await d.db.selectNoFrom(greatest(d.db, sql<number>`3`, sql<number>`7`).as("g")).executeTakeFirstOrThrow();
    expect(Number(g.g)).toBe(7);
    await sql`create table words (w text)`.execute(d.db);
    await d.db.insertInto("words").values([{ w: "Alpha" }, { w: "beta" }]).execute();
    expect(await d.db.selectFrom("words").select("w").where("w", likeIgnoringCase(d.db), "%ALPH%").execute()).toEqual([{ w: "Alpha" }]);
  });

  test("read-write transactions run concurrently and serializably: one that read what another then changed runs again", async () => {
    await sql`create table serial_t (n bigint)`.execute(d.db);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inFirst = new Promise<void>((r) => (entered = r));
    let firstRuns = 0;
    // Each takes the next number after the largest stored (no unique index to catch a duplicate).
    const next = async (t: typeof d.db) => Number((await t.selectFrom("serial_t").select((eb) => eb.fn.max("n").as("m")).executeTakeFirst())?.m ?? 0) + 1;
    const first = withTransaction(d.db, async (t) => {
      firstRuns++;
      const n = await next(t);
      entered();
      await gate;
      await t.insertInto("serial_t").values({ n }).execute();
      return n;
    });
    await inFirst;
    // The second does not wait for the first (no lock between them) and commits first.
    const second = await withTransaction(d.db, async (t) => {
      const n = await next(t);
      await t.insertInto("serial_t").values({ n }).execute();
      return n;
    });
    expect(second).toBe(1);
    // A read-only transaction does not wait either.
    expect(await withTransaction(d.db, async (t) => (await t.selectFrom("serial_t").select("n").execute()).length, { readOnly: true })).toBe(1);
    const retriedBefore = (d.db as unknown as { conflicts: { retried: number } }).conflicts.retried;
    release();
    // The first read before the second wrote: PostgreSQL aborts it (40001) and it runs again.
    expect(await first).toBe(2);
    expect(firstRuns).toBe(2);
    expect((d.db as unknown as { conflicts: { retried: number } }).conflicts.retried).toBe(retriedBefore + 1);
    expect((await d.db.selectFrom("serial_t").select("n").orderBy("n").execute()).map((r) => r.n)).toEqual([1, 2]);
  });

  test("two instances taking the next number at once, 16 each: every one commits, no number twice", async () => {
    await sql`create table seq_t (n bigint)`.execute(d.db);
    // A second handle on the same database: another instance with a pool of its own.
    const other = await openDatabase<any>({ service: "t", url: d.location, password: password(), poolSize: 4 });
    try {
      const take = (db: typeof d.db) =>
        withTransaction(db, async (t) => {
          const m = await t.selectFrom("seq_t").select((eb) => eb.fn.max("n").as("m")).executeTakeFirst();
          const n = Number(m?.m ?? 0) + 1;
          await t.insertInto("seq_t").values({ n }).execute();
          return n;
        });
      const got = await Promise.all(Array.from({ length: 32 }, (_, i) => take(i % 2 === 0 ? d.db : other.db)));
      expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
      expect((await d.db.selectFrom("seq_t").select("n").orderBy("n").execute()).map((r) => r.n)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
    } finally {
      await other.close();
    }
  });

  test("a precompiled read is a prepared statement, and still answers after a migration changes its table's columns", async () => {
    await sql`create table prep_t (id text primary key, v text)`.execute(d.db);
    const ids = Array.from({ length: 8 }, (_, i) => `k${i}`);
    await d.db.insertInto("prep_t").values(ids.map((id) => ({ id, v: "one" }))).execute();
    const get = precompile(d.db, (id: string) => d.db.selectFrom("prep_t" as any).selectAll().where("id", "=", id), ["i"]);
    // Enough calls (each its own: concurrent reads of one row would share a query) that every pooled connection has prepared it.
    for (const [i, rows] of (await Promise.all(ids.map((id) => get(id)))).entries()) expect(rows).toEqual([{ id: ids[i], v: "one" }]);
    // Another instance's migration: SELECT * now has one more column (PostgreSQL refuses the cached plan, 0A000).
    await sql`alter table prep_t add column w bigint default 7`.execute(d.db);
    for (const [i, rows] of (await Promise.all(ids.map((id) => get(id)))).entries()) expect(rows).toEqual([{ id: ids[i], v: "one", w: 7 }]);
  });

  test("concurrent precompiled reads of one row share a query that starts after each call, never one already running", async () => {
    await sql`create table hot_t (id text primary key, v bigint not null)`.execute(d.db);
    await sql`create sequence hot_reads`.execute(d.db);
    await d.db.insertInto("hot_t" as any).values({ id: "k", v: 1 }).execute();
    // n: which query answered (one nextval per execution); the shared advisory lock holds a query
    // in flight, after its snapshot was taken, for as long as the test holds the lock exclusively.
    const get = precompile(
      d.db,
      (id: string) =>
        d.db
          .selectFrom("hot_t" as any)
          .select(["v", sql<number>`nextval('hot_reads')`.as("n"), sql`pg_advisory_xact_lock_shared(7007)`.as("held")])
          .where("id", "=", id),
      ["i"],
    );
    const first = await d.db.connection().execute(async (gate) => {
      await sql`select pg_advisory_lock(7007)`.execute(gate);
      const a = get("k");
      // A waits for the lock, its snapshot taken: then another connection commits a change.
      const waiting = async () => (await sql<{ n: number }>`select count(*) as n from pg_locks where locktype = 'advisory' and not granted`.execute(gate)).rows[0]!.n;
      while ((await waiting()) === 0) await Bun.sleep(5);
      await d.db.updateTable("hot_t" as any).set({ v: 2 }).where("id", "=", "k").execute();
      // Called while A runs: they must not take its answer, and share the next query.
      const later = Array.from({ length: 10 }, () => get("k"));
      await sql`select pg_advisory_unlock(7007)`.execute(gate);
      return { a: await a, later: await Promise.all(later) };
    });
    expect(first.a).toEqual([{ v: 1, n: expect.any(Number), held: expect.anything() }]);
    const n = first.later.map((rows) => {
      expect(rows).toEqual([{ v: 2, n: expect.any(Number), held: expect.anything() }]);
      return rows[0]!.n;
    });
    expect(new Set(n).size).toBe(1);
    expect(n[0]).not.toBe(first.a[0]!.n);
    // Each caller has rows of its own.
    expect(first.later[0]![0]).not.toBe(first.later[1]![0]);
  });

  test("a transaction that fails for another reason runs once, and its error is reported as before", async () => {
    await sql`create table once_t (id bigint primary key)`.execute(d.db);
    await d.db.insertInto("once_t").values({ id: 1 }).execute();
    let runs = 0;
    const err = await catchErr(
      withTransaction(d.db, async (t) => {
        runs++;
        await t.insertInto("once_t").values({ id: 1 }).execute();
      }),
    );
    expect(expectAppError(err, "conflict").details).toEqual({ storage: "PG_23505" });
    expect(runs).toBe(1);
  });

  test("the barrier's migration creates the same tables as on SQLite, with bytea and bigint columns", async () => {
    const db = await openTestDatabase(engine, "barrier");
    try {
      expect((await runMigrations(db.db, "barrier", barrierMigrations)).applied).toEqual([1]);
      const cols = await sql<{ c: string; t: string }>`select table_name || '.' || column_name as c, data_type as t from information_schema.columns
        where table_name in ('barrier_keys', 'barrier_unseal') order by table_name, ordinal_position`.execute(db.db);
      expect(Object.fromEntries(cols.rows.map((r) => [r.c, r.t]))).toEqual({
        "barrier_keys.layer": "text",
        "barrier_keys.version": "bigint",
        "barrier_keys.parent_version": "bigint",
        "barrier_keys.wrapped": "bytea",
        "barrier_keys.created_at": "text",
        "barrier_unseal.id": "bigint",
        "barrier_unseal.verifier": "bytea",
        "barrier_unseal.created_at": "text",
      });
      const bad = await catchErr(db.db.insertInto("barrier_keys").values({ layer: "other", version: 1, parent_version: 0, wrapped: new Uint8Array(1), created_at: "x" }).execute());
      expect((bad as { code?: string }).code).toBe("23514"); // the check constraints came along
    } finally {
      await db.close();
    }
  });
});
