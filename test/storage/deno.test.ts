/** src/storage on Deno: an embedded file through libSQL's native binding, with the direct read path (shared read transaction, row cache). */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

test("embedded storage, precompiled reads and their cache run unchanged on Deno", async () => {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  expect(await Bun.file(deno).exists()).toBe(true); // a dev dependency, so never optional
  const dir = mkdtempSync(join(tmpdir(), "storage-deno-"));
  try {
    const src = JSON.stringify(new URL("../../src/storage/index.ts", import.meta.url).href);
    const script = join(dir, "check.ts");
    writeFileSync(
      script,
      `import { setImmediate } from "node:timers";
import { openDatabase, precompile } from ${src};
const nextTurn = () => new Promise((r) => setImmediate(r));
const url = "file:" + ${JSON.stringify(join(dir, "d.db"))};
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
`,
    );
    const p = Bun.spawn([deno, "run", "--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys", "--node-modules-dir=manual", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).not.toContain("error");
    expect(code).toBe(0);
    expect(JSON.parse(out.trim().split("\n").pop()!).seen).toEqual([[1], [1], [2], [3]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
