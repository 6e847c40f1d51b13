import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql, type Kysely } from "kysely";
import { commitDeferred, openDatabase } from "../../src/storage/index.ts";
import { directReaderOf } from "../../src/storage/database.ts";
import { WalSyncer, walSyncerOf, type SyncIo } from "../../src/storage/wal-sync.ts";
import { moduleUrl, runOnDeno } from "../support/deno.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "wal-sync-test-"));
  dirs.push(d);
  return d;
}

/** File operations whose fsync calls the test completes by hand. */
function manualIo() {
  const calls: Array<(err: Error | null) => void> = [];
  const opened: string[] = [];
  const closed: number[] = [];
  const io: SyncIo = {
    open: (p) => (opened.push(p), 1000 + opened.length),
    fsync: (_fd, done) => void calls.push(done),
    close: (fd) => void closed.push(fd),
  };
  return { calls, opened, closed, io };
}
const settled = async (p: Promise<unknown>) => {
  let state = "pending";
  p.then(() => (state = "resolved"), () => (state = "rejected"));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return state;
};

describe("WalSyncer", () => {
  test("a request waits for an fsync that started after it; overlapping requests share one", async () => {
    const f = manualIo();
    const opened = f.opened;
    const s = new WalSyncer("x-wal", f.io);
    const a = s.sync();
    expect(f.calls.length).toBe(1);
    expect(opened).toEqual(["x-wal"]);
    const b = s.sync();
    const c = s.sync();
    expect(b).toBe(c);
    expect(f.calls.length).toBe(1); // b and c wait: the running fsync may predate their commit
    f.calls[0]!(null);
    expect(await settled(a)).toBe("resolved");
    expect(await settled(b)).toBe("pending");
    expect(f.calls.length).toBe(2);
    f.calls[1]!(null);
    expect(await settled(b)).toBe("resolved");
    // Idle again: the next request starts at once; the file stays open.
    const d = s.sync();
    expect(f.calls.length).toBe(3);
    expect(opened.length).toBe(1);
    f.calls[2]!(null);
    await d;
  });

  test("a failed fsync fails its waiters, and the next request tries again", async () => {
    const f = manualIo();
    const s = new WalSyncer("x-wal", f.io);
    const a = s.sync();
    const b = s.sync();
    f.calls[0]!(new Error("EIO"));
    expect(await settled(a)).toBe("rejected");
    await Promise.resolve();
    f.calls[1]!(new Error("EIO"));
    expect(await settled(b)).toBe("rejected");
    const c = s.sync();
    expect(f.calls.length).toBe(3);
    f.calls[2]!(null);
    await c;
    s.close();
    expect(f.closed).toEqual([1001]);
    expect(await settled(s.sync())).toBe("rejected");
  });
});

describe("commitDeferred", () => {
  const synchronous = async (db: Kysely<any>) => Number((await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(db)).rows[0]!.synchronous);

  test("on a WAL file: commits, restores the connection's setting, and is durable after a real fsync of the -wal file", async () => {
    const dir = await tempDir();
    const file = join(dir, "d.db");
    const a = await openDatabase<any>({ service: "t", url: `file:${file}` });
    const b = await openDatabase<any>({ service: "t", url: `file:${file}` });
    try {
      expect(a.journalMode).toBe("wal");
      expect(walSyncerOf(a.db)?.path).toBe(`${file}-wal`);
      await a.db.schema.createTable("kv").addColumn("k", "text", (c) => c.primaryKey()).execute();
      const before = await synchronous(a.db);
      expect(before).toBeGreaterThanOrEqual(1);
      const { durable } = await commitDeferred(a.db, async (trx) => {
        await trx.insertInto("kv").values([{ k: "1" }, { k: "2" }]).execute();
      });
      expect(await synchronous(a.db)).toBe(before);
      await durable;
      expect((await b.db.selectFrom("kv").selectAll().orderBy("k").execute()).map((r) => r.k)).toEqual(["1", "2"]);

      // A failing transaction rolls back, reports its error and still restores the setting.
      const err = await commitDeferred(a.db, async (trx) => {
        await trx.insertInto("kv").values({ k: "3" }).execute();
        await trx.insertInto("kv").values({ k: "1" }).execute();
      }).catch((e: unknown) => e);
      expect(String(err)).toContain("UNIQUE");
      expect(await synchronous(a.db)).toBe(before);
      expect((await b.db.selectFrom("kv").selectAll().execute()).length).toBe(2);

      // Concurrent batches each get their own durable promise; all land.
      const results = await Promise.all([0, 1, 2, 3].map((i) => commitDeferred(a.db, async (trx) => void (await trx.insertInto("kv").values({ k: `c${i}` }).execute()))));
      await Promise.all(results.map((r) => r.durable));
      expect((await b.db.selectFrom("kv").selectAll().execute()).length).toBe(6);
    } finally {
      await a.close();
      await b.close();
    }
    // Closed: the syncer refuses rather than syncing a stale descriptor.
    expect(await settled(walSyncerOf(a.db)!.sync())).toBe("rejected");
  });

  test("waits for a write lock another connection holds without stopping the event loop, up to the busy timeout", async () => {
    const dir = await tempDir();
    const url = `file:${join(dir, "d.db")}`;
    const a = await openDatabase<any>({ service: "t", url, busyTimeoutMs: 2000 });
    const b = await openDatabase<any>({ service: "t", url });
    const quick = await openDatabase<any>({ service: "t", url, busyTimeoutMs: 60 });
    try {
      await a.db.schema.createTable("kv").addColumn("k", "text", (c) => c.primaryKey()).execute();
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      // b takes the write lock and keeps it for 150 ms of timers.
      let locked!: () => void;
      const lockTaken = new Promise<void>((r) => (locked = r));
      let released = 0;
      const holder = b.db.transaction().execute(async (trx) => {
        await trx.insertInto("kv").values({ k: "b" }).execute();
        locked();
        await sleep(150);
        released = performance.now();
      });
      await lockTaken;
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      const start = performance.now();
      const { durable } = await commitDeferred(a.db, async (trx) => void (await trx.insertInto("kv").values({ k: "a" }).execute()));
      const committed = performance.now();
      clearInterval(ticker);
      await holder;
      await durable;
      // a committed only after b released the lock, and timers ran meanwhile.
      expect(committed).toBeGreaterThanOrEqual(released);
      expect(committed - start).toBeLessThan(1500);
      expect(ticks).toBeGreaterThanOrEqual(2);
      expect((await b.db.selectFrom("kv").selectAll().orderBy("k").execute()).map((r) => r.k)).toEqual(["a", "b"]);
      expect(Number((await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(a.db)).rows[0]!.timeout)).toBe(2000);

      // Held past the busy timeout: SQLITE_BUSY, the settings restored, the next commit works.
      const holder2 = b.db.transaction().execute(async (trx) => {
        await trx.insertInto("kv").values({ k: "b2" }).execute();
        await sleep(300);
      });
      await sleep(20);
      const t0 = performance.now();
      const err = await commitDeferred(quick.db, async (trx) => void (await trx.insertInto("kv").values({ k: "q" }).execute())).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toStartWith("SQLITE_BUSY");
      expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
      expect(performance.now() - t0).toBeLessThan(290);
      // The refused BEGIN opened no transaction: the direct read path still serves.
      expect(directReaderOf(quick.db)!("select count(*) as n from kv", [])).toEqual([{ n: 2 }]);
      await holder2;
      expect(Number((await sql<{ timeout: number }>`PRAGMA busy_timeout`.execute(quick.db)).rows[0]!.timeout)).toBe(60);
      await (await commitDeferred(quick.db, async (trx) => void (await trx.insertInto("kv").values({ k: "q" }).execute()))).durable;
      expect((await a.db.selectFrom("kv").selectAll().execute()).length).toBe(4);
    } finally {
      await a.close();
      await b.close();
      await quick.close();
    }
  });

  test("in memory: a plain transaction, durable at once", async () => {
    const m = await openDatabase<any>({ service: "t", url: ":memory:" });
    try {
      expect(walSyncerOf(m.db)).toBeUndefined();
      await m.db.schema.createTable("kv").addColumn("k", "text").execute();
      const { durable } = await commitDeferred(m.db, async (trx) => void (await trx.insertInto("kv").values({ k: "1" }).execute()));
      await durable;
      expect((await m.db.selectFrom("kv").selectAll().execute()).length).toBe(1);
    } finally {
      await m.close();
    }
  });

  test("runs unchanged on Deno (libSQL's binding)", async () => {
    const result = (await runOnDeno(["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"], (dir) => `import { sql } from ${moduleUrl("node_modules/kysely/dist/esm/index.js")};
import { commitDeferred, openDatabase } from ${moduleUrl("src/storage/index.ts")};
const a = await openDatabase({ service: "deno", url: "file:" + ${JSON.stringify(`${dir}/d.db`)} });
await a.db.schema.createTable("kv").addColumn("k", "text").execute();
const sync = async () => Number((await sql\`PRAGMA synchronous\`.execute(a.db)).rows[0].synchronous);
const before = await sync();
const { durable } = await commitDeferred(a.db, async (trx) => { await trx.insertInto("kv").values({ k: "1" }).execute(); });
await durable;
const rows = (await a.db.selectFrom("kv").selectAll().execute()).length;
const after = await sync();
await a.close();
console.log(JSON.stringify({ before, after, rows }));
`)) as { before: number; after: number; rows: number };
    expect(result.rows).toBe(1);
    expect(result.after).toBe(result.before);
    expect(result.before).toBeGreaterThanOrEqual(1);
  }, 30_000);
});
