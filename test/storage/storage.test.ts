import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql, type Kysely } from "kysely";
import { AppError } from "../../src/service/errors.ts";
import {
  openDatabase,
  ping,
  resolveStorageConfig,
  runMigrations,
  withTransaction,
  type Migration,
} from "../../src/storage/index.ts";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "storage-test-"));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function expectAppError(err: unknown, code: string): AppError {
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

async function catchErr(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

describe("resolveStorageConfig", () => {
  test("defaults to an embedded file under dataDir named after the service", () => {
    const r = resolveStorageConfig({ service: "sm-kms", dataDir: "data/" });
    expect(r).toMatchObject({ mode: "file", url: "file:data/sm-kms.db", filePath: "data/sm-kms.db", busyTimeoutMs: 5000 });
    const abs = resolveStorageConfig({ service: "pki-ca", dataDir: "/var/lib/x" });
    expect(abs.filePath).toBe("/var/lib/x/pki-ca.db");
  });

  test("memory, remote and replica modes", () => {
    expect(resolveStorageConfig({ service: "a", url: ":memory:" }).mode).toBe("memory");
    const remote = resolveStorageConfig({ service: "a", url: "libsql://db.example.test", authToken: "tok" });
    expect(remote).toMatchObject({ mode: "remote", authToken: "tok" });
    expect(resolveStorageConfig({ service: "a", url: "https://db.example.test" }).mode).toBe("remote");
    const replica = resolveStorageConfig({
      service: "a",
      url: "file:///srv/a.db",
      syncUrl: "libsql://primary.example.test",
      authToken: "tok",
      syncInterval: 30,
    });
    expect(replica).toMatchObject({ mode: "replica", filePath: "/srv/a.db", syncInterval: 30 });
  });

  test("bad combinations name the offending key", () => {
    const cases: Array<[Parameters<typeof resolveStorageConfig>[0], string]> = [
      [{ service: "../etc", dataDir: "d" }, "storage.service"],
      [{ service: "Svc", dataDir: "d" }, "storage.service"],
      [{ service: "a" }, "storage.dataDir"],
      [{ service: "a", url: ":memory:", syncUrl: "libsql://x" }, "storage.syncUrl"],
      [{ service: "a", url: "libsql://x", syncUrl: "libsql://y" }, "storage.syncUrl"],
      [{ service: "a", url: "file:a.db", syncUrl: "ftp://y" }, "storage.syncUrl"],
      [{ service: "a", url: "file:a.db", syncInterval: 5 }, "storage.syncInterval"],
      [{ service: "a", url: "file:a.db", syncUrl: "libsql://y", syncInterval: -1 }, "storage.syncInterval"],
      [{ service: "a", url: "mysql://x" }, "storage.url"],
      [{ service: "a", url: "file:" }, "storage.url"],
      [{ service: "a", url: ":memory:", busyTimeoutMs: 1.5 }, "storage.busyTimeoutMs"],
      [{ service: "a", url: "libsql://x", authToken: "" }, "storage.authToken"],
    ];
    for (const [cfg, key] of cases) {
      let err: unknown;
      try {
        resolveStorageConfig(cfg);
      } catch (e) {
        err = e;
      }
      const e = expectAppError(err, "validation_failed");
      expect(e.message.startsWith(key)).toBe(true);
    }
  });
});

describe("openDatabase", () => {
  test(":memory: opens, pings, enforces foreign keys", async () => {
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
    try {
      expect(store.mode).toBe("memory");
      const p = await ping(store.db);
      expect(p.ok).toBe(true);
      await sql`create table parent (id integer primary key)`.execute(store.db);
      await sql`create table child (id integer primary key, parent_id integer not null references parent(id))`.execute(
        store.db,
      );
      const err = await catchErr(
        withTransaction(store.db, async (trx) => {
          await sql`insert into child (id, parent_id) values (1, 42)`.execute(trx);
        }),
      );
      expectAppError(err, "conflict");
    } finally {
      await store.close();
    }
    // after close the database is gone and ping reports it without throwing
    const after = await ping(store.db);
    expect(after.ok).toBe(false);
  });

  test("file database: WAL, busy timeout, persists across reopen, directory created", async () => {
    const dir = join(await tempDir(), "nested", "data");
    const cfg = { service: "learn-ps", dataDir: dir, busyTimeoutMs: 1234 };
    const first = await openDatabase<any>(cfg);
    expect(first.mode).toBe("file");
    expect(first.journalMode).toBe("wal");
    expect(first.filePath).toBe(join(dir, "learn-ps.db"));
    const timeout = await sql<{ timeout: number }>`pragma busy_timeout`.execute(first.db);
    expect(Object.values(timeout.rows[0]!)[0]).toBe(1234);
    await sql`create table kv (k text primary key, v blob not null)`.execute(first.db);
    await first.db.insertInto("kv").values({ k: "a", v: new Uint8Array([1, 2, 3, 255]) }).execute();
    expect((await stat(join(dir, "learn-ps.db-wal"))).mode & 0o777).toBe(0o600);
    await first.close();
    await first.close(); // idempotent

    const dirStat = await stat(dir);
    expect(dirStat.mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, "learn-ps.db"))).mode & 0o777).toBe(0o600);

    const second = await openDatabase<any>(cfg);
    try {
      const row = await second.db.selectFrom("kv").selectAll().where("k", "=", "a").executeTakeFirstOrThrow();
      expect(row.v).toBeInstanceOf(Uint8Array);
      expect([...row.v]).toEqual([1, 2, 3, 255]);
      const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(second.db);
      expect(Object.values(fk.rows[0]!)[0]).toBe(1);
    } finally {
      await second.close();
    }
  });

  test("remote mode: an unreachable server is reported by ping and refused by queries, typed", async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const store = await openDatabase<any>({ service: "t", url: "http://127.0.0.1:1", authToken: "secret-token" });
    try {
      expect(store.mode).toBe("remote");
      expect(store.location).not.toContain("secret-token");
      const p = await ping(store.db, 5000);
      expect(p.ok).toBe(false);
      const err = await catchErr(withTransaction(store.db, async (trx) => sql`select 1`.execute(trx)));
      expectAppError(err, "unavailable");
      expect(JSON.stringify((err as AppError).details ?? {})).not.toContain("secret-token");
      expect((err as AppError).message).not.toContain("secret-token");
    } finally {
      await store.close();
    }
  });
});

describe("openDatabase (replica)", () => {
  test("replica mode: an unreachable primary fails the open fast with a typed error, no token leaked", async () => {
    const dir = await tempDir();
    const start = performance.now();
    let err: unknown;
    try {
      await openDatabase<any>({
        service: "t",
        url: `file:${dir}/replica.db`,
        syncUrl: "http://127.0.0.1:1",
        authToken: "secret-token",
      });
    } catch (e) {
      err = e;
    }
    expectAppError(err, "unavailable");
    expect((err as AppError).message).not.toContain("secret-token");
    expect(performance.now() - start).toBeLessThan(5000);
  });
});

describe("transactions", () => {
  test("roll back every statement when the callback throws, and rethrow", async () => {
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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

  test("queries issued while a transaction is open wait for it instead of failing", async () => {
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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
      // the outside read ran after commit, so it sees both rows (never a half transaction)
      expect(seen.map((r) => r.id)).toEqual([1, 2]);
    } finally {
      await store.close();
    }
  });

  test("nested savepoints roll back only the inner part", async () => {
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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
      const tables = await sql<{ name: string }>`select name from sqlite_master where type = 'table' order by name`.execute(
        store.db,
      );
      expect(tables.rows.map((r) => r.name)).toEqual(["ok1", "schema_migrations"]);
      const recorded = await store.db.selectFrom("schema_migrations").select("version").execute();
      expect(recorded.map((r) => r.version)).toEqual([1]);
    } finally {
      await store.close();
    }
  });

  test("refuses duplicate, invalid, renamed, unknown and out-of-order versions", async () => {
    const store = await openDatabase<any>({ service: "t", url: ":memory:" });
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

  test("six processes racing to create one database file apply each migration once", async () => {
    // Separate processes: local libSQL calls block the thread, so in one process a second
    // handle on the same file would wait on the busy timeout for a lock it can never get.
    // Six, so that two of them switching the new file to WAL at once (SQLITE_BUSY without a
    // busy wait, retried by openDatabase) happens often enough to be seen.
    const dir = await tempDir();
    const script = new URL("./fixtures/migrate-race.ts", import.meta.url).pathname;
    const run = () =>
      Bun.spawn([process.execPath, script, dir], { stdout: "pipe", stderr: "pipe" });
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
    const store = await openDatabase<any>({ service: "race", dataDir: dir });
    try {
      const n = await store.db.selectFrom("counter").select("n").executeTakeFirstOrThrow();
      expect(n.n).toBe(1); // the data migration ran exactly once
    } finally {
      await store.close();
    }
  });
});
