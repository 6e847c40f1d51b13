/**
 * Storage on PostgreSQL (Debian package postgresql), one server for the file: the shared
 * storage suite (storage-suite.ts), and what only this engine has: the password file,
 * errors mapped by SQLSTATE without credentials, values as the embedded engine returns
 * them, the schema translation, and read-write transactions that run one at a time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sql } from "kysely";
import {
  greatest,
  likeIgnoringCase,
  openDatabase,
  ping,
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

  test("read-write transactions of different connections run one at a time; read-only ones do not wait", async () => {
    await sql`create table serial_t (id bigint primary key)`.execute(d.db);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inFirst = new Promise<void>((r) => (entered = r));
    let secondRan = false;
    const first = withTransaction(d.db, async (t) => {
      await t.insertInto("serial_t").values({ id: 1 }).execute();
      entered();
      await gate;
    });
    await inFirst;
    const second = withTransaction(d.db, async (t) => {
      secondRan = true;
      return (await t.selectFrom("serial_t").select("id").execute()).map((r) => r.id);
    });
    // A read-only transaction finishes while the first still holds the lock (it would hang otherwise).
    const seen = await withTransaction(d.db, async (t) => (await t.selectFrom("serial_t").select("id").execute()).length, { readOnly: true });
    expect(seen).toBe(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(secondRan).toBe(false);
    release();
    await first;
    expect(await second).toEqual([1]); // it started after the first committed
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
