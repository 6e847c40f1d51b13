/**
 * Precompiled queries on the embedded engine: never a peek into another caller's open
 * transaction, the direct write path, the shared read transaction and the row cache. What
 * holds on both engines (same results as Kysely) is in storage-suite.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { openDatabase, precompile, type Database } from "../../src/storage/index.ts";

let d: Database<any>;
beforeAll(async () => {
  d = await openDatabase<any>({ service: "pre", url: ":memory:" });
  await d.db.schema.createTable("items").addColumn("id", "text", (c) => c.primaryKey()).addColumn("owner", "text").addColumn("data", "blob").execute();
  await d.db.insertInto("items").values([{ id: "a", owner: "o1", data: new Uint8Array([1, 2]) }, { id: "b", owner: "o2", data: null }]).execute();
});
afterAll(() => d.close());

const byOwner = () => precompile(d.db, (owner: string, id: string) => d.db.selectFrom("items").selectAll().where("owner", "=", owner).where("id", "=", id), ["x", "y"]);

test("a read during another caller's open transaction waits and does not see its uncommitted row", async () => {
  const get = byOwner();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let inserted!: () => void;
  const didInsert = new Promise<void>((r) => (inserted = r));
  const trx = d.db.transaction().execute(async (t) => {
    await t.insertInto("items").values({ id: "c", owner: "o3", data: null }).execute();
    inserted();
    await gate;
    throw new Error("roll back");
  });
  await didInsert;
  const read = get("o3", "c");
  let settled = false;
  void read.then(() => (settled = true));
  await Bun.sleep(20);
  expect(settled).toBe(false); // waiting for the transaction, not reading through it
  release();
  await expect(trx).rejects.toThrow("roll back");
  expect(await read).toEqual([]);
});

test("directStatementOf: refused outside a transaction; inside one it commits and rolls back with it", async () => {
  const { directStatementOf } = await import("../../src/storage/index.ts");
  const write = directStatementOf(d.db)!;
  expect(write).toBeFunction();
  expect(() => write("insert into items (id, owner, data) values (?, ?, ?)", ["w0", "o9", null])).toThrow(/transaction/);
  await d.db.transaction().execute(async () => {
    write("insert into items (id, owner, data) values (?, ?, ?), (?, ?, ?)", ["w1", "o9", null, "w2", "o9", new Uint8Array([7])]);
  });
  await expect(
    d.db.transaction().execute(async () => {
      write("insert into items (id, owner, data) values (?, ?, ?)", ["w3", "o9", null]);
      throw new Error("roll back");
    }),
  ).rejects.toThrow("roll back");
  const rows = await d.db.selectFrom("items").select(["id", "data"]).where("owner", "=", "o9").orderBy("id").execute();
  expect(rows).toEqual([
    { id: "w1", data: null },
    { id: "w2", data: new Uint8Array([7]) },
  ]);
});

test("the reads of one turn share a read transaction that never holds back a write or a later turn", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { setImmediate } = await import("node:timers");
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));
  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-shared-read-"));
  // Two connections to one WAL file, as two processes sharing it would have.
  const a = await openDatabase<any>({ service: "shared-read", url: `file:${join(dir, "s.db")}` });
  const b = await openDatabase<any>({ service: "shared-read", url: `file:${join(dir, "s.db")}` });
  try {
    await a.db.schema.createTable("kv").addColumn("k", "text", (c) => c.primaryKey()).addColumn("v", "text").execute();
    await a.db.insertInto("kv").values({ k: "x", v: "1" }).execute();
    const get = precompile(a.db, (k: string) => a.db.selectFrom("kv").selectAll().where("k", "=", k), ["k"]);
    await nextTurn();

    // Within a turn, reads share a snapshot: the other connection's commit is not seen yet ...
    expect(await get("x")).toEqual([{ k: "x", v: "1" }]);
    await b.db.updateTable("kv").set({ v: "2" }).where("k", "=", "x").execute();
    expect(await get("x")).toEqual([{ k: "x", v: "1" }]);
    // ... and the next turn reads a fresh one.
    await nextTurn();
    expect(await get("x")).toEqual([{ k: "x", v: "2" }]);

    // A write through Kysely in the same turn ends the shared read first: it commits at once
    // (the other connection sees it in the same turn) and later reads of the turn see it.
    await a.db.updateTable("kv").set({ v: "3" }).where("k", "=", "x").execute();
    expect(await b.db.selectFrom("kv").select("v").where("k", "=", "x").executeTakeFirst()).toEqual({ v: "3" });
    expect(await get("x")).toEqual([{ k: "x", v: "3" }]);

    // Kysely transactions start while a shared read is open, and reads inside them go
    // through the transaction.
    expect(await get("x")).toHaveLength(1);
    await a.db.transaction().execute(async (t) => {
      await t.updateTable("kv").set({ v: "4" }).where("k", "=", "x").execute();
      expect(await t.selectFrom("kv").select("v").where("k", "=", "x").executeTakeFirst()).toEqual({ v: "4" });
    });
    expect(await get("x")).toEqual([{ k: "x", v: "4" }]);

    // The other connection can still write while a shared read is open (WAL readers do not
    // block the writer), and closing with one open is clean.
    await b.db.insertInto("kv").values({ k: "y", v: "5" }).execute();
    expect(await get("y")).toEqual([]);
  } finally {
    await a.close();
    await b.close();
    await nextTurn(); // the shared read's scheduled commit finds nothing to do
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cached reads hand out copies and never outlive a schema change", async () => {
  const { setImmediate } = await import("node:timers");
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));
  const m = await openDatabase<any>({ service: "row-cache", url: ":memory:" });
  try {
    const create = () => m.db.schema.createTable("t").addColumn("id", "text", (c) => c.primaryKey()).addColumn("b", "blob").execute();
    await create();
    await m.db.insertInto("t").values({ id: "k", b: new Uint8Array([1, 2, 3]) }).execute();
    const get = precompile(m.db, (id: string) => m.db.selectFrom("t").selectAll().where("id", "=", id), ["i"]);
    await nextTurn();
    const [first] = await get("k");
    first!.b.fill(0); // a caller wiping what it read
    first!.id = "changed";
    for (const turn of [0, 1]) {
      if (turn) await nextTurn();
      const again = await get("k");
      expect(again).toEqual([{ id: "k", b: new Uint8Array([1, 2, 3]) }]);
      expect(again[0]).not.toBe(first);
    }
    // A write that returns rows (a statement Kysely runs as a read) is seen at once too.
    await m.db.updateTable("t").set({ b: new Uint8Array([4]) }).where("id", "=", "k").returning("id").execute();
    expect(await get("k")).toEqual([{ id: "k", b: new Uint8Array([4]) }]);
    // A table dropped and created again, without a row change in between, reads empty.
    await m.db.schema.dropTable("t").execute();
    await create();
    expect(await get("k")).toEqual([]);
    await nextTurn();
    expect(await get("k")).toEqual([]);
    // Parameters that are not strings or numbers are read, not cached, and still right.
    const byBlob = precompile(m.db, (b: Uint8Array) => m.db.selectFrom("t").select("id").where("b", "=", b), [new Uint8Array([9])]);
    await m.db.insertInto("t").values({ id: "z", b: new Uint8Array([9]) }).execute();
    expect(await byBlob(new Uint8Array([9]))).toEqual([{ id: "z" }]);
    await m.db.deleteFrom("t").execute();
    expect(await byBlob(new Uint8Array([9]))).toEqual([]);
  } finally {
    await m.close();
  }
});
