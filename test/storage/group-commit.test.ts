import { afterAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupCommit, openDatabase } from "../../src/storage/index.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Db {
  log: { seq?: number; k: string };
}

async function fileDb() {
  const d = await mkdtemp(join(tmpdir(), "group-commit-test-"));
  dirs.push(d);
  const database = await openDatabase<Db>({ service: "t", url: `file:${join(d, "d.db")}` });
  await database.db.schema
    .createTable("log")
    .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
    .addColumn("k", "text", (c) => c.notNull().unique())
    .execute();
  return database;
}

test("the rows of one turn share a transaction, in batches of at most maxBatch, in call order", async () => {
  const { db, close } = await fileDb();
  try {
    const batches: number[] = [];
    const g = new GroupCommit<Db, string>(db, async (trx, ks) => {
      batches.push(ks.length);
      await trx.insertInto("log").values(ks.map((k) => ({ k }))).execute();
    }, { maxBatch: 20, gatherMs: 0 });
    const keys = Array.from({ length: 50 }, (_, i) => `k${String(i).padStart(2, "0")}`);
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

test("a failing batch is retried row by row: only the offending call fails", async () => {
  const { db, close } = await fileDb();
  try {
    await db.insertInto("log").values({ k: "taken" }).execute();
    const batches: number[] = [];
    const g = new GroupCommit<Db, string>(db, async (trx, ks) => {
      batches.push(ks.length);
      await trx.insertInto("log").values(ks.map((k) => ({ k }))).execute();
    }, { maxBatch: 100, gatherMs: 2 });
    const results = await Promise.allSettled(["a", "b", "taken", "c"].map((k) => g.add(k)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
    expect(String((results[2] as PromiseRejectedResult).reason)).toContain("UNIQUE");
    expect(batches).toEqual([4, 1, 1, 1, 1]);
    expect((await db.selectFrom("log").select("k").orderBy("seq").execute()).map((r) => r.k)).toEqual(["taken", "a", "b", "c"]);
  } finally {
    await close();
  }
});
