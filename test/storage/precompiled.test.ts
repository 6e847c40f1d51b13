/** Precompiled queries: same results as Kysely, and never a peek into another caller's open transaction. */
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

test("returns what Kysely returns, blobs as Uint8Array", async () => {
  const get = byOwner();
  const rows = await get("o1", "a");
  expect(rows).toEqual(await d.db.selectFrom("items").selectAll().where("owner", "=", "o1").where("id", "=", "a").execute());
  expect(rows[0]!.data).toBeInstanceOf(Uint8Array);
  expect(await get("o2", "a")).toEqual([]);
});

test("refuses a builder whose parameters are not the arguments in order", () => {
  expect(() => precompile(d.db, (id: string, owner: string) => d.db.selectFrom("items").selectAll().where("owner", "=", owner).where("id", "=", id), ["i", "o"])).toThrow();
  expect(() => precompile(d.db, (id: string) => d.db.selectFrom("items").selectAll().where("id", "=", id).where("owner", "=", id), ["i"])).toThrow();
});

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

test("directWriterOf: refused outside a transaction; inside one it commits and rolls back with it", async () => {
  const { directWriterOf } = await import("../../src/storage/index.ts");
  const write = directWriterOf(d.db)!;
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
