import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { AppError } from "../../src/service/errors.ts";
import { describeStorage, openDatabase, ping, resolveStorageConfig, withTransaction } from "../../src/storage/index.ts";
import { EMBEDDED } from "../support/engine.ts";
import { catchErr, expectAppError, storageSuite } from "./storage-suite.ts";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "storage-test-"));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

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
      [{ service: "a", url: "postgres://svc:s3cret-pw@db/x" }, "storage.url"],
      [{ service: "a", url: "postgres://svc@db/x?password=s3cret-pw" }, "storage.url"],
      [{ service: "a", url: "postgres://svc@db/" }, "storage.url"],
      [{ service: "a", url: "postgres://svc@db/x", poolSize: 0 }, "storage.poolSize"],
      [{ service: "a", url: "postgres://svc@db/x", password: "" }, "storage.password"],
      [{ service: "a", url: "postgres://svc@db/x", authToken: "t" }, "storage.authToken"],
      [{ service: "a", url: "postgres://svc@db/x", syncUrl: "libsql://y" }, "storage.syncUrl"],
      [{ service: "a", url: ":memory:", password: "pw" }, "storage.password"],
      [{ service: "a", url: "libsql://x", poolSize: 2 }, "storage.poolSize"],
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
      expect(e.message).not.toContain("s3cret-pw"); // a password in a url is refused, not echoed
    }
  });

  test("postgres:// and postgresql:// select PostgreSQL; pool size defaults to 10; the location keeps the user only", () => {
    const r = resolveStorageConfig({ service: "a", url: "postgres://svc@db.example.test:5432/cryptoutil?sslmode=require", password: "pw" });
    expect(r).toMatchObject({ mode: "postgres", poolSize: 10, password: "pw" });
    expect(describeStorage(r)).toBe("postgres://svc@db.example.test:5432/cryptoutil");
    expect(resolveStorageConfig({ service: "a", url: "postgresql://svc@db/x", poolSize: 3 })).toMatchObject({ mode: "postgres", poolSize: 3 });
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

storageSuite(EMBEDDED);
