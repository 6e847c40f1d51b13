/**
 * `cryptoutil secrets ...` against identity-authz and sm-secrets over real HTTPS, run as a
 * subprocess: put from KEY=VALUE, KEY=@FILE, @FILE.json and stdin; get (whole, --field,
 * --at, --json); patch; list; delete, undelete, destroy; history; check-and-set; and the
 * refusals: one line on stderr, exit 1 (the service refused) or 2 (usage), never a stack.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { oneErrorLine, startCliSuite, type CliSuite } from "./support/suite.ts";

// Real HTTPS services and a subprocess per command: slow on a loaded machine.
setDefaultTimeout(60_000);
let s: CliSuite;
let home: string;

beforeAll(async () => {
  s = await startCliSuite(["sm-secrets"]);
  home = await s.loggedInHome();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const run = (args: string[], opts?: Parameters<CliSuite["cli"]>[2]) => s.cli(home, args, opts);
const ok = async (args: string[], opts?: Parameters<CliSuite["cli"]>[2]) => {
  const r = await run(args, opts);
  if (r.code !== 0) throw new Error(`cryptoutil ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r;
};

describe("secrets", () => {
  test("put KEY=VALUE and KEY=@FILE, get it back whole, by field and as JSON", async () => {
    writeFileSync(join(home, "pw.txt"), "from-a-file\n");
    const put = await ok(["secrets", "put", "app/db", "user=alice", "password=@pw.txt"]);
    expect(put.stdout).toBe("app/db: version 1\n");
    expect(JSON.parse((await ok(["secrets", "get", "app/db"])).stdout)).toEqual({ user: "alice", password: "from-a-file\n" });
    expect((await ok(["secrets", "get", "app/db", "--field", "user"])).stdout).toBe("alice\n");
    const full = JSON.parse((await ok(["secrets", "get", "app/db", "--json"])).stdout);
    expect(full).toMatchObject({ path: "app/db", data: { user: "alice" }, metadata: { version: 1, destroyed: false } });
  });

  test("put from @FILE.json and from stdin; --at reads an older one; patch merges", async () => {
    writeFileSync(join(home, "db.json"), JSON.stringify({ user: "bob", port: 5432 }));
    expect((await ok(["secrets", "put", "app/db", "@db.json"])).stdout).toBe("app/db: version 2\n");
    expect((await ok(["secrets", "put", "app/db"], { stdin: '{"user":"carol","nested":{"a":1}}' })).stdout).toBe("app/db: version 3\n");
    expect(JSON.parse((await ok(["secrets", "get", "app/db", "--at", "2"])).stdout)).toEqual({ user: "bob", port: 5432 });
    const w = JSON.parse((await ok(["secrets", "patch", "app/db", "role=admin", "--json"])).stdout);
    expect(w.version).toBe(4);
    expect(JSON.parse((await ok(["secrets", "get", "app/db"])).stdout)).toEqual({ user: "carol", nested: { a: 1 }, role: "admin" });
    await ok(["secrets", "patch", "app/db", "-"], { stdin: '{"nested":null}' });
    expect(JSON.parse((await ok(["secrets", "get", "app/db"])).stdout)).toEqual({ user: "carol", role: "admin" });
  });

  test("check-and-set: --cas 0 creates only, a stale --cas is refused with exit 1", async () => {
    await ok(["secrets", "put", "cas/k", "v=1", "--cas", "0"]);
    const again = await run(["secrets", "put", "cas/k", "v=2", "--cas", "0"]);
    expect(again.code).toBe(1);
    expect(oneErrorLine(again.stderr)).toContain("cas_mismatch");
    await ok(["secrets", "put", "cas/k", "v=2", "--cas", "1"]);
  });

  test("list one level under a prefix", async () => {
    await ok(["secrets", "put", "app/api", "k=v"]);
    await ok(["secrets", "put", "app/sub/x", "k=v"]);
    expect((await ok(["secrets", "list"])).stdout).toBe("app/\ncas/\n");
    expect((await ok(["secrets", "list", "app/"])).stdout).toBe("api\ndb\nsub/\n");
    expect(JSON.parse((await ok(["secrets", "list", "app", "--json"])).stdout)).toEqual({ prefix: "app/", keys: ["api", "db", "sub/"] });
    expect((await ok(["secrets", "list", "nothing/"])).stdout).toBe("nothing under 'nothing/'\n");
  });

  test("delete, undelete, destroy and history", async () => {
    await ok(["secrets", "put", "life/k", "n=1"]);
    await ok(["secrets", "put", "life/k", "n=2"]);
    expect((await ok(["secrets", "delete", "life/k"])).stdout).toBe("life/k: current version deleted\n");
    const gone = await run(["secrets", "get", "life/k"]);
    expect(gone.code).toBe(1);
    expect(oneErrorLine(gone.stderr)).toContain("version_deleted");
    await ok(["secrets", "undelete", "life/k", "--versions", "2"]);
    expect(JSON.parse((await ok(["secrets", "get", "life/k"])).stdout)).toEqual({ n: "2" });
    await ok(["secrets", "delete", "life/k", "--versions", "1"]);
    expect((await ok(["secrets", "destroy", "life/k", "--versions", "1"])).stdout).toBe("life/k: versions 1 destroyed\n");
    const h = await ok(["secrets", "history", "life/k"]);
    expect(h.stdout).toContain("current version:");
    expect(h.stdout).toMatch(/VERSION\s+CREATED\s+DELETED\s+DESTROYED/);
    const rows = h.stdout.trimEnd().split("\n").slice(-2);
    expect(rows[0]).toMatch(/^1\s.*\syes$/);
    expect(rows[1]).toMatch(/^2\s.*\s-\s+no$/);
    const json = JSON.parse((await ok(["secrets", "history", "life/k", "--json"])).stdout);
    expect(json.versions.map((v: { destroyed: boolean }) => v.destroyed)).toEqual([true, false]);
  });

  test("usage errors are exit 2 and one line; a missing secret is exit 1", async () => {
    for (const args of [
      ["secrets", "put", "app/db", "novalue"],
      ["secrets", "put", "a//b", "k=v"],
      ["secrets", "put", "app/db", "@missing.json"],
      ["secrets", "undelete", "app/db"],
      ["secrets", "destroy", "app/db", "--versions", "one"],
      ["secrets", "get", "app/db", "--field", "nope"],
    ]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      oneErrorLine(r.stderr);
    }
    const notJson = await run(["secrets", "put", "app/db"], { stdin: "not json" });
    expect(notJson.code).toBe(2);
    expect(oneErrorLine(notJson.stderr)).toContain("stdin is not JSON");
    const missing = await run(["secrets", "get", "no/such"]);
    expect(missing.code).toBe(1);
    expect(oneErrorLine(missing.stderr)).toContain("not_found");
  });
});
