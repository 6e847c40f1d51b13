/** src/storage on Deno: an embedded file through libSQL's native binding, with the direct read path (shared read transaction, row cache). */
import { expect, test } from "bun:test";
import { moduleUrl, runOnDeno } from "../support/deno.ts";

test("embedded storage, precompiled reads and their cache run unchanged on Deno", async () => {
  const result = (await runOnDeno(["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"], (dir) => `import { setImmediate } from "node:timers";
import { openDatabase, precompile } from ${moduleUrl("src/storage/index.ts")};
const nextTurn = () => new Promise((r) => setImmediate(r));
const url = "file:" + ${JSON.stringify(`${dir}/d.db`)};
const a = await openDatabase({ service: "deno", url });
const b = await openDatabase({ service: "deno", url });
await a.db.schema.createTable("kv").addColumn("k", "text", (c) => c.primaryKey()).addColumn("v", "blob").execute();
await a.db.insertInto("kv").values({ k: "x", v: new Uint8Array([1]) }).execute();
const get = precompile(a.db, (k) => a.db.selectFrom("kv").selectAll().where("k", "=", k), ["k"]);
await nextTurn();
const seen = [];
const first = await get("x");
first[0].v.fill(9);
seen.push(Array.from((await get("x"))[0].v));
await b.db.updateTable("kv").set({ v: new Uint8Array([2]) }).where("k", "=", "x").execute();
seen.push(Array.from((await get("x"))[0].v)); // same turn: the shared snapshot
await nextTurn();
seen.push(Array.from((await get("x"))[0].v)); // next turn: the other connection's commit
await a.db.updateTable("kv").set({ v: new Uint8Array([3]) }).where("k", "=", "x").execute();
seen.push(Array.from((await get("x"))[0].v)); // own write, same turn
await a.close();
await b.close();
await nextTurn();
console.log(JSON.stringify({ seen }));
`)) as { seen: number[][] };
  expect(result.seen).toEqual([[1], [1], [2], [3]]);
}, 30_000);
