/**
 * The storage layer's behaviour on either engine: transactions, migrations (including several
 * processes migrating one new database at once), group commit and precompiled reads. Run
 * embedded by storage.test.ts and on PostgreSQL by postgres.test.ts; what only one engine
 * has (WAL, busy timeouts, the shared read transaction and row cache) is tested on its own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql, type Kysely } from "kysely";
import { AppError } from "../../src/service/errors.ts";
import { engineOf, GroupCommit, GroupTransaction, openDatabase, precompile, precompileStatement, runMigrations, shapedStatements, withTransaction, type Database, type GroupCommitOptions, type Migration } from "../../src/storage/index.ts";
import { openRaceTarget } from "./fixtures/migrate-race-target.ts";
import { openTestDatabase, type TestEngine } from "../support/engine.ts";

export function expectAppError(err: unknown, code: string): AppError {
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

export async function catchErr(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

/** The user tables of a database, sorted. */
async function tableNames(db: Kysely<any>): Promise<string[]> {
  const q =
    engineOf(db) === "postgres"
      ? sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema() order by 1`
      : sql<{ name: string }>`select name from sqlite_master where type = 'table' order by name`;
  return (await q.execute(db)).rows.map((r) => r.name);
}

/** Registers the storage tests on fresh databases of `engine`. */
export function storageSuite(engine: TestEngine): void {
  const dirs: string[] = [];
  const tempDir = async () => {
    const d = await mkdtemp(join(tmpdir(), "storage-test-"));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const open = () => openTestDatabase(engine, "t");

  describe("transactions", () => {
    test("roll back every statement when the callback throws, and rethrow", async () => {
      const store = await open();
      try {
        await sql`create table t (id integer primary key, v text)`.execute(store.db);
        const boom = new AppError("bad_request", "boom");
        const err = await catchErr(
          withTransaction(store.db, async (trx) => {
            await trx.insertInto("t").values({ id: 1, v: "x" }).execute();
            await trx.insertInto("t").values({ id: 2, v: "y" }).execute();
            throw boom;
          }),
        );
        expect(err).toBe(boom);
        const n = await store.db.selectFrom("t").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
        expect(n.n).toBe(0);

        // a constraint failure in the middle also undoes the earlier insert
        await store.db.insertInto("t").values({ id: 5, v: "kept" }).execute();
        const err2 = await catchErr(
          withTransaction(store.db, async (trx) => {
            await trx.insertInto("t").values({ id: 6, v: "new" }).execute();
            await trx.insertInto("t").values({ id: 5, v: "dup" }).execute();
          }),
        );
        expectAppError(err2, "conflict");
        const rows = await store.db.selectFrom("t").select(["id", "v"]).orderBy("id").execute();
        expect(rows).toEqual([{ id: 5, v: "kept" }]);

        // commit path returns the callback's value
        const got = await withTransaction(store.db, async (trx) => {
          await trx.insertInto("t").values({ id: 7, v: "c" }).execute();
          return "done";
        });
        expect(got).toBe("done");
        expect((await store.db.selectFrom("t").select("id").execute()).length).toBe(2);
      } finally {
        await store.close();
      }
    });

    test("a query outside an open transaction never sees half of it (embedded: it waits for the commit)", async () => {
      const store = await open();
      try {
        await sql`create table t (id integer primary key)`.execute(store.db);
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const tx = withTransaction(store.db, async (trx) => {
          await trx.insertInto("t").values({ id: 1 }).execute();
          await gate;
          await trx.insertInto("t").values({ id: 2 }).execute();
        });
        const outside = store.db.selectFrom("t").select("id").execute();
        await new Promise((r) => setTimeout(r, 20));
        release();
        await tx;
        const seen = await outside;
        if (engine.kind === "embedded") {
          // one connection: the outside read ran after the commit, so it sees both rows
          expect(seen.map((r) => r.id)).toEqual([1, 2]);
        } else {
          // a connection of its own: it read before or after the commit, never in between
          expect([[], [1, 2]]).toContainEqual(seen.map((r) => r.id));
        }
      } finally {
        await store.close();
      }
    });

    test("nested savepoints roll back only the inner part", async () => {
      const store = await open();
      try {
        await sql`create table t (id integer primary key)`.execute(store.db);
        const trx = await store.db.startTransaction().execute();
        await trx.insertInto("t").values({ id: 1 }).execute();
        const sp = await trx.savepoint("inner").execute();
        await sp.insertInto("t").values({ id: 2 }).execute();
        await sp.rollbackToSavepoint("inner").execute();
        await trx.commit().execute();
        expect((await store.db.selectFrom("t").select("id").execute()).map((r) => r.id)).toEqual([1]);
      } finally {
        await store.close();
      }
    });
  });

  describe("runMigrations", () => {
    function recorder(log: string[]): Migration[] {
      // deliberately out of order: they must run sorted by version
      return [
        {
          version: 3,
          name: "add-index",
          up: async (db) => {
            log.push("3");
            await db.schema.createIndex("pets_name").on("pets").column("name").execute();
          },
        },
        {
          version: 1,
          name: "pets",
          up: async (db) => {
            log.push("1");
            await db.schema.createTable("pets").addColumn("id", "integer", (c) => c.primaryKey()).execute();
          },
        },
        {
          version: 2,
          name: "pet-name",
          up: async (db) => {
            log.push("2");
            await db.schema.alterTable("pets").addColumn("name", "text").execute();
          },
        },
      ];
    }

    test("apply in version order, once, and record (app, version)", async () => {
      const store = await open();
      try {
        const log: string[] = [];
        const first = await runMigrations(store.db, "learn-ps", recorder(log));
        expect(first).toEqual({ app: "learn-ps", applied: [1, 2, 3], current: 3 });
        expect(log).toEqual(["1", "2", "3"]);
        const second = await runMigrations(store.db, "learn-ps", recorder(log));
        expect(second).toEqual({ app: "learn-ps", applied: [], current: 3 });
        expect(log).toEqual(["1", "2", "3"]);

        // another app has its own history in the same table
        const other = await runMigrations(store.db, "other-app", [
          { version: 1, name: "x", up: async (db) => void (await sql`create table x (a int)`.execute(db)) },
        ]);
        expect(other.applied).toEqual([1]);
        const rows = await store.db
          .selectFrom("schema_migrations")
          .select(["app", "version", "name"])
          .orderBy("app")
          .orderBy("version")
          .execute();
        expect(rows).toEqual([
          { app: "learn-ps", version: 1, name: "pets" },
          { app: "learn-ps", version: 2, name: "pet-name" },
          { app: "learn-ps", version: 3, name: "add-index" },
          { app: "other-app", version: 1, name: "x" },
        ]);

        // a later build adds version 4 only
        const more = [
          ...recorder(log),
          { version: 4, name: "v4", up: async (db: Kysely<any>) => void (await sql`create table v4 (a int)`.execute(db)) },
        ];
        expect((await runMigrations(store.db, "learn-ps", more)).applied).toEqual([4]);
      } finally {
        await store.close();
      }
    });

    test("a failing migration leaves no table and no record, and stops the run", async () => {
      const store = await open();
      try {
        const migrations: Migration[] = [
          { version: 1, name: "ok", up: async (db) => void (await sql`create table ok1 (a int)`.execute(db)) },
          {
            version: 2,
            name: "broken",
            up: async (db) => {
              await sql`create table half (a int)`.execute(db);
              await sql`this is not sql`.execute(db);
            },
          },
          { version: 3, name: "never", up: async (db) => void (await sql`create table never3 (a int)`.execute(db)) },
        ];
        const err = await catchErr(runMigrations(store.db, "app", migrations));
        const e = expectAppError(err, "migration_failed");
        expect(e.status).toBe(500);
        expect(await tableNames(store.db)).toEqual(["ok1", "schema_migrations"]);
        const recorded = await store.db.selectFrom("schema_migrations").select("version").execute();
        expect(recorded.map((r) => r.version)).toEqual([1]);
      } finally {
        await store.close();
      }
    });

    test("refuses duplicate, invalid, renamed, unknown and out-of-order versions", async () => {
      const store = await open();
      const noop = async () => {};
      try {
        for (const bad of [
          [
            { version: 1, name: "a", up: noop },
            { version: 1, name: "b", up: noop },
          ],
          [{ version: 0, name: "a", up: noop }],
          [{ version: 1.5, name: "a", up: noop }],
          [{ version: 1, name: " ", up: noop }],
        ]) {
          expectAppError(await catchErr(runMigrations(store.db, "app", bad)), "migration_failed");
        }
        expectAppError(await catchErr(runMigrations(store.db, "Bad App", [])), "migration_failed");

        await runMigrations(store.db, "app", [
          { version: 1, name: "one", up: noop },
          { version: 3, name: "three", up: noop },
        ]);
        // renamed
        expectAppError(
          await catchErr(
            runMigrations(store.db, "app", [
              { version: 1, name: "renamed", up: noop },
              { version: 3, name: "three", up: noop },
            ]),
          ),
          "migration_failed",
        );
        // database knows a version this build does not
        expectAppError(await catchErr(runMigrations(store.db, "app", [{ version: 1, name: "one", up: noop }])), "migration_failed");
        // a new version 2 inserted below the applied 3
        expectAppError(
          await catchErr(
            runMigrations(store.db, "app", [
              { version: 1, name: "one", up: noop },
              { version: 2, name: "two", up: noop },
              { version: 3, name: "three", up: noop },
            ]),
          ),
          "migration_failed",
        );
      } finally {
        await store.close();
      }
    });

    test("six processes racing to create one new database apply each migration once", async () => {
      // Separate processes: local libSQL calls block the thread, so in one process a second
      // handle on the same file would wait on the busy timeout for a lock it can never get.
      // Six, so that two of them switching the new file to WAL at once (SQLITE_BUSY without a
      // busy wait, retried by openDatabase) happens often enough to be seen. On PostgreSQL,
      // they meet at the migration lock.
      const target =
        engine.kind === "embedded"
          ? { service: "race", dataDir: await tempDir() }
          : { service: "race", url: await engine.server.createDatabase("race"), passwordFile: engine.server.passwordFile };
      const script = new URL("./fixtures/migrate-race.ts", import.meta.url).pathname;
      const run = () => Bun.spawn([process.execPath, script, JSON.stringify(target)], { stdout: "pipe", stderr: "pipe" });
      const procs = Array.from({ length: 6 }, run);
      const outs = await Promise.all(
        procs.map(async (p) => {
          const [out, errText, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
          expect(errText).toBe("");
          expect(code).toBe(0);
          return JSON.parse(out) as { applied: number[]; current: number };
        }),
      );
      expect(outs.flatMap((o) => o.applied).sort()).toEqual([1, 2]);
      expect(outs.every((o) => o.current === 2)).toBe(true);
      const store = await openRaceTarget(target);
      try {
        const n = await store.db.selectFrom("counter").select("n").executeTakeFirstOrThrow();
        expect(n.n).toBe(1); // the data migration ran exactly once
      } finally {
        await store.close();
      }
    });
  });

  describe("group commit", () => {
    interface Db {
      log: { seq?: number; k: string };
    }
    // Embedded: a file, so commits go through the deferred WAL sync.
    async function fileDb() {
      const database =
        engine.kind === "embedded" ? await openDatabase<Db>({ service: "t", url: `file:${join(await tempDir(), "d.db")}` }) : await openTestDatabase<Db>(engine, "gc");
      await database.db.schema
        .createTable("log")
        .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("k", "text", (c) => c.notNull().unique())
        .execute();
      return database;
    }

    /** A group commit of keys into `log` (at most 20 a batch) that records each batch's size. */
    function loggingGroupCommit(db: Kysely<Db>, opts: Partial<GroupCommitOptions>) {
      const batches: number[] = [];
      const g = new GroupCommit<Db, string>(db, async (on, ks) => {
        batches.push(ks.length);
        await on.insertInto("log").values(ks.map((k) => ({ k }))).execute();
      }, { maxBatch: 20, gatherMs: 0, ...opts });
      return { g, batches };
    }
    const logKeys = (n: number) => Array.from({ length: n }, (_, i) => `k${String(i).padStart(2, "0")}`);

    test("the rows of one turn share a transaction, in batches of at most maxBatch, in call order", async () => {
      const { db, close } = await fileDb();
      try {
        const { g, batches } = loggingGroupCommit(db, {});
        const keys = logKeys(50);
        await Promise.all(keys.map((k) => g.add(k)));
        expect(batches).toEqual([20, 20, 10]);
        // Rows that arrive while a batch commits form the next one.
        const late = g.add("late");
        await Promise.all([late, g.add("later")]);
        expect(batches).toEqual([20, 20, 10, 2]);
        const rows = await db.selectFrom("log").select("k").orderBy("seq").execute();
        expect(rows.map((r) => r.k)).toEqual([...keys, "late", "later"]);
      } finally {
        await close();
      }
    });

    test("with powerOfTwoBatches, each batch holds a power of two of rows, the rest forming the next ones, in call order", async () => {
      const { db, close } = await fileDb();
      try {
        const { g, batches } = loggingGroupCommit(db, { powerOfTwoBatches: true, singleStatement: true });
        const keys = logKeys(51);
        await Promise.all(keys.map((k) => g.add(k)));
        expect(batches).toEqual([16, 16, 16, 2, 1]);
        expect((await db.selectFrom("log").select("k").orderBy("seq").execute()).map((r) => r.k)).toEqual(keys);
      } finally {
        await close();
      }
    });

    test.each([false, true])("a failing batch is retried row by row: only the offending call fails (single statement: %p)", async (singleStatement) => {
      const { db, close } = await fileDb();
      try {
        await db.insertInto("log").values({ k: "taken" }).execute();
        const batches: number[] = [];
        const inTransaction: boolean[] = [];
        const g = new GroupCommit<Db, string>(db, async (on, ks) => {
          batches.push(ks.length);
          inTransaction.push(on.isTransaction);
          await on.insertInto("log").values(ks.map((k) => ({ k }))).execute();
        }, { maxBatch: 100, gatherMs: 2, singleStatement });
        const results = await Promise.allSettled(["a", "b", "taken", "c"].map((k) => g.add(k)));
        expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
        expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/unique/i);
        expect(batches).toEqual([4, 1, 1, 1, 1]);
        // One statement needs no transaction on PostgreSQL; embedded keeps it (it defers the WAL sync).
        expect(inTransaction).toEqual(batches.map(() => !(singleStatement && engine.kind === "postgres")));
        expect((await db.selectFrom("log").select("k").orderBy("seq").execute()).map((r) => r.k)).toEqual(["taken", "a", "b", "c"]);
      } finally {
        await close();
      }
    });
  });

  describe("group transactions", () => {
    interface Db {
      counters: { name: string; value: number };
    }
    async function fileDb() {
      const database =
        engine.kind === "embedded" ? await openDatabase<Db>({ service: "t", url: `file:${join(await tempDir(), "g.db")}` }) : await openTestDatabase<Db>(engine, "gt");
      await database.db.schema.createTable("counters").addColumn("name", "text", (c) => c.primaryKey()).addColumn("value", "integer", (c) => c.notNull()).execute();
      await database.db.insertInto("counters").values({ name: "n", value: 0 }).execute();
      return database;
    }

    test("units share a transaction, each sees the ones before it, and one that throws is undone alone", async () => {
      const { db, close } = await fileDb();
      try {
        const g = new GroupTransaction<Db, Kysely<Db>>(db, (trx) => trx, { maxBatch: 100, gatherMs: 2 });
        // A check-and-set increment: refused when the value is not the one the caller read.
        const cas = (expected: number, fail = false) =>
          g.run(async (q) => {
            const { value } = await q.selectFrom("counters").select("value").where("name", "=", "n").executeTakeFirstOrThrow();
            if (value !== expected) throw new AppError("conflict", `value is ${value}, not ${expected}`);
            await q.updateTable("counters").set({ value: value + 1 }).where("name", "=", "n").execute();
            if (fail) throw new AppError("bad_request", "refused after writing");
            return value + 1;
          });
        const results = await Promise.allSettled([cas(0), cas(0), cas(1), cas(2, true), cas(2)]);
        expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as AppError).code))).toEqual([1, "conflict", 2, "bad_request", 3]);
        expect((await db.selectFrom("counters").select("value").executeTakeFirstOrThrow()).value).toBe(3);
      } finally {
        await close();
      }
    });

    test("units without a savepoint share the batch; one that throws fails it, and the batch runs again unit by unit, so only that one fails", async () => {
      const { db, close } = await fileDb();
      try {
        const g = new GroupTransaction<Db, Kysely<Db>>(db, (trx) => trx, { maxBatch: 100, gatherMs: 2 });
        const runs = { a: 0, dup: 0, c: 0 };
        const increment = (name: "a" | "c", durable: boolean) =>
          g.run(
            async (q) => {
              runs[name]++;
              await q.updateTable("counters").set((eb) => ({ value: eb("value", "+", 1) })).where("name", "=", "n").execute();
              return (await q.selectFrom("counters").select("value").where("name", "=", "n").executeTakeFirstOrThrow()).value;
            },
            { savepoint: false, durable },
          );
        const results = await Promise.allSettled([
          increment("a", true),
          g.run(
            async (q) => {
              runs.dup++;
              await q.insertInto("counters").values({ name: "n", value: 9 }).execute();
            },
            { savepoint: false },
          ),
          increment("c", false),
        ]);
        expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
        expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(AppError);
        expect([(results[0] as PromiseFulfilledResult<number>).value, (results[2] as PromiseFulfilledResult<number>).value]).toEqual([1, 2]);
        // a and dup ran in the shared batch (rolled back at dup's failure), then each unit alone.
        expect(runs).toEqual({ a: 2, dup: 2, c: 1 });
        expect((await db.selectFrom("counters").select("value").executeTakeFirstOrThrow()).value).toBe(2);
      } finally {
        await close();
      }
    });
  });

  describe("precompiled reads", () => {
    let d: Database<any>;
    beforeAll(async () => {
      d = await open();
      await d.db.schema.createTable("items").addColumn("id", "text", (c) => c.primaryKey()).addColumn("owner", "text").addColumn("data", "blob").execute();
      await d.db.insertInto("items").values([{ id: "a", owner: "o1", data: new Uint8Array([1, 2]) }, { id: "b", owner: "o2", data: null }]).execute();
    });
    afterAll(() => d.close());

    const byOwner = () => precompile(d.db, (owner: string, id: string) => d.db.selectFrom("items").selectAll().where("owner", "=", owner).where("id", "=", id), ["x", "y"]);

    test("returns what Kysely returns, blobs as Uint8Array", async () => {
      const get = byOwner();
      const rows = await get("o1", "a");
      expect(rows).toEqual(await d.db.selectFrom("items").selectAll().where("owner", "=", "o1").where("id", "=", "a").execute());
      expect(rows[0]!.data).toBeInstanceOf(Uint8Array);
      expect(await get("o2", "a")).toEqual([]);
    });

    test("shapedStatements: each shape is built once, later calls only bind; the same rows as the query builder", async () => {
      const shaped = shapedStatements(d.db);
      let builds = 0;
      const insert = (on: Kysely<any>, rows: Array<{ id: string; owner: string }>) =>
        shaped(on, `items|${rows.length}`, rows.flatMap((r) => [r.id, r.owner]), (q, p) => {
          builds++;
          return q.insertInto("items").values(rows.map((_, i) => ({ id: p[2 * i], owner: p[2 * i + 1] })) as never);
        });
      const move = (on: Kysely<any>, owner: string, from: string[]) =>
        shaped(on, `move|${from.length}`, [owner, ...from], (q, p) => {
          builds++;
          return q.updateTable("items").set({ owner: p[0] } as never).where("owner", "in", p.slice(1) as never);
        });
      await withTransaction(d.db, async (trx) => {
        await insert(trx, [{ id: "s1", owner: "x1" }, { id: "s2", owner: "x2" }]);
        await insert(trx, [{ id: "s3", owner: "x3" }, { id: "s4", owner: "x1" }]);
        expect((await move(trx, "y", ["x1", "x2"])).changes).toBe(3);
        expect((await move(trx, "z", ["x3", "nobody"])).changes).toBe(1);
      });
      expect(await insert(d.db, [{ id: "s5", owner: "x5" }]).then((r) => r.changes)).toBe(1);
      // Three shapes: two rows, two IN values, one row.
      expect(builds).toBe(3);
      const owners = await d.db.selectFrom("items").select(["id", "owner"]).where("id", "like", "s%").orderBy("id").execute();
      expect(owners).toEqual([
        { id: "s1", owner: "y" },
        { id: "s2", owner: "y" },
        { id: "s3", owner: "z" },
        { id: "s4", owner: "y" },
        { id: "s5", owner: "x5" },
      ]);
    });

    test("precompileStatement: the same results on the database and in a transaction, writes counted, rolled back with it", async () => {
      const get = precompileStatement(d.db, (id: string) => d.db.selectFrom("items").selectAll().where("id", "=", id), ["i"]);
      const rename = precompileStatement(d.db, (owner: string, id: string) => d.db.updateTable("items").set({ owner }).where("id", "=", id), ["o", "i"]);
      const outside = await get(d.db, "a");
      expect(outside).toEqual({ rows: await d.db.selectFrom("items").selectAll().where("id", "=", "a").execute(), changes: 0 });
      await withTransaction(d.db, async (trx) => {
        expect(await get(trx, "a")).toEqual(outside);
        expect((await rename(trx, "o1-renamed", "a")).changes).toBe(1);
        expect((await rename(trx, "nobody", "missing")).changes).toBe(0);
        // The transaction sees its own write.
        expect((await get(trx, "a")).rows[0]).toMatchObject({ owner: "o1-renamed" });
      });
      expect((await get(d.db, "a")).rows[0]).toMatchObject({ owner: "o1-renamed" });
      await expect(
        withTransaction(d.db, async (trx) => {
          await rename(trx, "lost", "a");
          throw new AppError("conflict", "roll back");
        }),
      ).rejects.toThrow("roll back");
      expect((await get(d.db, "a")).rows[0]).toMatchObject({ owner: "o1-renamed" });
      expect((await rename(d.db, "o1", "a")).changes).toBe(1);
      expect((await get<{ data: unknown }>(d.db, "a")).rows[0]!.data).toBeInstanceOf(Uint8Array);
    });

    test("refuses a builder whose parameters are not the arguments in order", () => {
      expect(() => precompile(d.db, (id: string, owner: string) => d.db.selectFrom("items").selectAll().where("owner", "=", owner).where("id", "=", id), ["i", "o"])).toThrow();
      expect(() => precompile(d.db, (id: string) => d.db.selectFrom("items").selectAll().where("id", "=", id).where("owner", "=", id), ["i"])).toThrow();
    });
  });
}
