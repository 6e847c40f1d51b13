/**
 * sm-secrets's KV v2 behaviours over real HTTPS on /service/api/v1/secrets: versions,
 * max_versions pruning, check-and-set (cas, cas 0, cas_required per key and per tenant), two
 * and ten concurrent CAS writers (exactly one wins), concurrent writes and patches of one key
 * without cas (consecutive versions, none lost), soft delete, undelete, destroy, metadata
 * and custom_metadata, delete_version_after with an injected clock, merge patch, list by
 * prefix, subkeys, scopes restricted by path, tenant isolation (404), and a raw scan of the
 * database files and logs for a secret value.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startSecrets, type Secrets } from "./harness.ts";

setDefaultTimeout(60_000);
let s: Secrets;

beforeAll(async () => {
  // Every log line the service can write, so the scan for a secret value sees them all.
  s = await startSecrets((c) => {
    c.log.level = "debug";
    c.log.access = true;
  });
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const put = (path: string, data: unknown, cas?: number, opts?: Parameters<Secrets["req"]>[3]) => s.req("PUT", `/secrets/data/${path}`, { data, ...(cas === undefined ? {} : { cas }) }, opts);
const get = (path: string, query = "", opts?: Parameters<Secrets["req"]>[3]) => s.req("GET", `/secrets/data/${path}${query}`, undefined, opts);
const meta = (path: string, opts?: Parameters<Secrets["req"]>[3]) => s.req("GET", `/secrets/metadata/${path}`, undefined, opts);

describe("versions", () => {
  test("each write is a new version; the current one is read unless ?version= asks", async () => {
    const w1 = await put("app/db", { user: "alice", password: "one" });
    expect(w1.status).toBe(200);
    expect(w1.body).toMatchObject({ path: "app/db", version: 1, deletion_time: null, destroyed: false });
    const w2 = await put("app/db", { user: "alice", password: "two" });
    expect(w2.body.version).toBe(2);
    const cur = await get("app/db");
    expect(cur.status).toBe(200);
    expect(cur.body.data).toEqual({ user: "alice", password: "two" });
    expect(cur.body.metadata).toMatchObject({ version: 2, destroyed: false, deletion_time: null, custom_metadata: null });
    expect((await get("app/db", "?version=1")).body.data).toEqual({ user: "alice", password: "one" });
    expect((await get("app/db", "?version=9")).status).toBe(404);
    expect((await get("app/nope")).body.error.code).toBe("not_found");
    const m = await meta("app/db");
    expect(m.body).toMatchObject({ path: "app/db", current_version: 2, oldest_version: 1, max_versions: 0, cas_required: false });
    expect(m.body.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
  });

  test("max_versions prunes the oldest versions, from the key's setting or the tenant's", async () => {
    expect((await s.req("PUT", "/secrets/metadata/prune/k", { max_versions: 3 })).status).toBe(200);
    for (let i = 1; i <= 5; i++) expect((await put("prune/k", { n: i })).body.version).toBe(i);
    const m = await meta("prune/k");
    expect(m.body.versions.map((v: { version: number }) => v.version)).toEqual([3, 4, 5]);
    expect(m.body.oldest_version).toBe(3);
    expect((await get("prune/k", "?version=2")).status).toBe(404);
    expect((await get("prune/k", "?version=3")).body.data).toEqual({ n: 3 });
    // Lowering it prunes at once.
    await s.req("PATCH", "/secrets/metadata/prune/k", { max_versions: 1 });
    expect((await meta("prune/k")).body.versions.map((v: { version: number }) => v.version)).toEqual([5]);

    // The tenant's default (own tenant, so other tests are not affected); 0 means Vault's 10.
    const t = { tenant: "tenant-prune" };
    expect((await s.req("GET", "/secrets/config", undefined, t)).body).toEqual({ max_versions: 0, cas_required: false, delete_version_after_s: 0 });
    for (let i = 1; i <= 12; i++) await put("k", { n: i }, undefined, t);
    expect((await meta("k", t)).body.versions.length).toBe(10);
    expect((await s.req("PUT", "/secrets/config", { max_versions: 2 }, t)).body.max_versions).toBe(2);
    await put("k", { n: 13 }, undefined, t);
    expect((await meta("k", t)).body.versions.map((v: { version: number }) => v.version)).toEqual([12, 13]);
  });
});

describe("check-and-set", () => {
  test("cas 0 creates only; cas N writes only over version N", async () => {
    expect((await put("cas/a", { v: 1 }, 0)).status).toBe(200);
    const again = await put("cas/a", { v: "x" }, 0);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("cas_mismatch");
    expect((await put("cas/a", { v: 2 }, 1)).body.version).toBe(2);
    expect((await put("cas/a", { v: "stale" }, 1)).status).toBe(409);
    expect((await get("cas/a")).body.data).toEqual({ v: 2 });
  });

  test("cas_required on the key, then on the tenant, refuses a write without cas", async () => {
    await put("cas/req", { v: 1 });
    await s.req("PATCH", "/secrets/metadata/cas/req", { cas_required: true });
    const r = await put("cas/req", { v: 2 });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("cas_required");
    expect((await put("cas/req", { v: 2 }, 1)).status).toBe(200);

    const t = { tenant: "tenant-cas" };
    expect((await put("free", { v: 1 }, undefined, t)).status).toBe(200);
    expect((await s.req("PUT", "/secrets/config", { cas_required: true }, t)).body.cas_required).toBe(true);
    expect((await put("free", { v: 2 }, undefined, t)).body.error.code).toBe("cas_required");
    expect((await put("free", { v: 2 }, 1, t)).status).toBe(200);
    // Merge patch is a write: the same rule.
    expect((await s.req("PATCH", "/secrets/data/free", { data: { w: 1 } }, t)).body.error.code).toBe("cas_required");
  });

  test("two concurrent writers with the same cas: exactly one wins", async () => {
    await put("race/two", { who: "start" });
    const [a, b] = await Promise.all([put("race/two", { who: "a" }, 1), put("race/two", { who: "b" }, 1)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const winner = a.status === 200 ? "a" : "b";
    const cur = await get("race/two");
    expect(cur.body.metadata.version).toBe(2);
    expect(cur.body.data).toEqual({ who: winner });
  });

  test("ten concurrent writers with the same cas, over several rounds: one wins each round", async () => {
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => put("race/ten", { round, i }, round)));
      expect(results.filter((r) => r.status === 200).length).toBe(1);
      expect(results.filter((r) => r.status === 409).length).toBe(9);
      const won = results.findIndex((r) => r.status === 200);
      const cur = await get("race/ten");
      expect(cur.body.metadata.version).toBe(round + 1);
      expect(cur.body.data).toEqual({ round, i: won });
    }
  });
});

describe("concurrent writes without cas", () => {
  // Writes that share a group transaction take consecutive versions of one key: each must be
  // sealed for the version it got, and each patch merged into the version before it.
  test("eight concurrent writers of one key: eight versions, each holding one writer's value", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => put("burst/put", { i })));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(results.map((r) => r.body.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const r of results) expect((await get("burst/put", `?version=${r.body.version}`)).body.data).toEqual({ i: results.indexOf(r) });
  });

  test("eight concurrent patches of one key: each merged into the one before, none lost", async () => {
    expect((await put("burst/patch", { base: true })).status).toBe(200);
    const patch = (i: number) => s.req("PATCH", "/secrets/data/burst/patch", { data: { [`m${i}`]: i } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => patch(i)));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
    const cur = await get("burst/patch");
    expect(cur.body.metadata.version).toBe(9);
    expect(cur.body.data).toEqual({ base: true, ...Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`m${i}`, i])) });
  });
});

describe("delete, undelete, destroy", () => {
  test("soft delete hides a version, undelete brings it back, destroy removes it for good", async () => {
    for (const n of [1, 2, 3]) await put("life/k", { n });
    expect((await s.req("DELETE", "/secrets/data/life/k")).status).toBe(204);
    const gone = await get("life/k");
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("version_deleted");
    expect(gone.body.error.details).toMatchObject({ version: 3, destroyed: false });
    expect((await get("life/k", "?version=2")).body.data).toEqual({ n: 2 });

    expect((await s.req("POST", "/secrets/undelete/life/k", { versions: [3] })).status).toBe(204);
    expect((await get("life/k")).body.data).toEqual({ n: 3 });

    expect((await s.req("POST", "/secrets/delete/life/k", { versions: [1, 2] })).status).toBe(204);
    expect((await get("life/k", "?version=1")).body.error.code).toBe("version_deleted");
    expect((await s.req("POST", "/secrets/destroy/life/k", { versions: [2] })).status).toBe(204);
    const destroyed = await get("life/k", "?version=2");
    expect(destroyed.status).toBe(404);
    expect(destroyed.body.error.code).toBe("version_destroyed");
    // A destroyed version does not come back.
    await s.req("POST", "/secrets/undelete/life/k", { versions: [1, 2] });
    expect((await get("life/k", "?version=1")).body.data).toEqual({ n: 1 });
    expect((await get("life/k", "?version=2")).body.error.code).toBe("version_destroyed");

    const m = await meta("life/k");
    expect(m.body.versions.map((v: { version: number; destroyed: boolean; deletion_time: string | null }) => [v.version, v.destroyed, v.deletion_time !== null])).toEqual([
      [1, false, false],
      [2, true, true],
      [3, false, false],
    ]);
    // A write after a deleted current version still numbers on.
    await s.req("DELETE", "/secrets/data/life/k");
    expect((await put("life/k", { n: 4 })).body.version).toBe(4);
  });

  test("deleting the metadata removes the key and every version; numbering starts again", async () => {
    await put("life/all", { n: 1 });
    await put("life/all", { n: 2 });
    expect((await s.req("DELETE", "/secrets/metadata/life/all")).status).toBe(204);
    expect((await meta("life/all")).status).toBe(404);
    expect((await get("life/all", "?version=1")).status).toBe(404);
    expect((await put("life/all", { n: 1 })).body.version).toBe(1);
  });

  test("empty or bad version lists are refused", async () => {
    expect((await s.req("POST", "/secrets/delete/life/k", { versions: [] })).status).toBe(400);
    expect((await s.req("POST", "/secrets/destroy/life/k", { versions: [0] })).status).toBe(400);
  });
});

describe("metadata", () => {
  test("custom_metadata: PUT replaces, PATCH merges (null removes); reads carry it", async () => {
    const created = await s.req("PUT", "/secrets/metadata/meta/k", { custom_metadata: { owner: "alice", env: "prod" } });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({ current_version: 0, custom_metadata: { owner: "alice", env: "prod" } });
    await put("meta/k", { v: 1 });
    const patched = await s.req("PATCH", "/secrets/metadata/meta/k", { custom_metadata: { owner: null, team: "red" } });
    expect(patched.body.custom_metadata).toEqual({ env: "prod", team: "red" });
    expect((await get("meta/k")).body.metadata.custom_metadata).toEqual({ env: "prod", team: "red" });
    const replaced = await s.req("PUT", "/secrets/metadata/meta/k", { custom_metadata: { only: "this" } });
    expect(replaced.body.custom_metadata).toEqual({ only: "this" });
    // Settings untouched by a PUT that does not name them.
    await s.req("PUT", "/secrets/metadata/meta/k", { max_versions: 4, cas_required: true });
    const m = await meta("meta/k");
    expect(m.body).toMatchObject({ max_versions: 4, cas_required: true, custom_metadata: { only: "this" }, current_version: 1 });
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    expect((await s.req("PUT", "/secrets/metadata/meta/k", { custom_metadata: tooMany })).status).toBe(400);
  });
});

describe("delete_version_after (injected clock)", () => {
  test("a version written under delete_version_after is readable until then, deleted after, and can be undeleted", async () => {
    await s.req("PUT", "/secrets/metadata/ttl/k", { delete_version_after_s: 60 });
    const w = await put("ttl/k", { v: "short-lived" });
    expect(Date.parse(w.body.deletion_time) - Date.parse(w.body.created_time)).toBe(60_000);
    expect((await get("ttl/k")).status).toBe(200);
    s.clock.advance(59);
    expect((await get("ttl/k")).status).toBe(200);
    s.clock.advance(2);
    const gone = await get("ttl/k");
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("version_deleted");
    // A merge patch needs a live current version.
    expect((await s.req("PATCH", "/secrets/data/ttl/k", { data: { x: 1 } })).status).toBe(404);
    await s.req("POST", "/secrets/undelete/ttl/k", { versions: [1] });
    expect((await get("ttl/k")).body.data).toEqual({ v: "short-lived" });
    s.clock.advance(3600);
    expect((await get("ttl/k")).status).toBe(200);
  });

  test("the tenant's delete_version_after applies, and caps a longer one on the key", async () => {
    const t = { tenant: "tenant-ttl" };
    await s.req("PUT", "/secrets/config", { delete_version_after_s: 30 }, t);
    await s.req("PUT", "/secrets/metadata/long", { delete_version_after_s: 3600 }, t);
    const a = await put("plain", { v: 1 }, undefined, t);
    const b = await put("long", { v: 1 }, undefined, t);
    expect(Date.parse(a.body.deletion_time) - Date.parse(a.body.created_time)).toBe(30_000);
    expect(Date.parse(b.body.deletion_time) - Date.parse(b.body.created_time)).toBe(30_000);
    s.clock.advance(31);
    expect((await get("plain", "", t)).status).toBe(404);
    expect((await get("long", "", t)).status).toBe(404);
  });
});

describe("patch, list, subkeys", () => {
  test("PATCH is a JSON merge patch of the current version into a new one", async () => {
    await put("patch/k", { a: 1, b: { c: 2, d: 3 }, keep: [1, 2] });
    const r = await s.req("PATCH", "/secrets/data/patch/k", { data: { b: { c: null, e: 4 }, f: "x" } });
    expect(r.status).toBe(200);
    expect(r.body.version).toBe(2);
    expect((await get("patch/k")).body.data).toEqual({ a: 1, b: { d: 3, e: 4 }, keep: [1, 2], f: "x" });
    expect((await s.req("PATCH", "/secrets/data/patch/k", { data: { a: 2 }, cas: 1 })).status).toBe(409);
    expect((await s.req("PATCH", "/secrets/data/patch/k", { data: { a: 2 }, cas: 2 })).body.version).toBe(3);
    expect((await s.req("PATCH", "/secrets/data/patch/none", { data: { a: 1 } })).status).toBe(404);
    // "__proto__" stays a member, not a prototype.
    await s.req("PATCH", "/secrets/data/patch/k", { data: JSON.parse('{"__proto__":{"polluted":true}}') });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("list shows one level under a prefix: keys, and folders ending in /", async () => {
    const t = { tenant: "tenant-list" };
    for (const p of ["a", "team-a/db", "team-a/api", "team-a/sub/x", "team-b/y"]) await put(p, { v: 1 }, undefined, t);
    await s.req("PUT", "/secrets/metadata/team-a/meta-only", { custom_metadata: { x: "y" } }, t);
    expect((await s.req("GET", "/secrets/list", undefined, t)).body).toEqual({ prefix: "", keys: ["a", "team-a/", "team-b/"] });
    expect((await s.req("GET", "/secrets/list?prefix=team-a/", undefined, t)).body.keys).toEqual(["api", "db", "meta-only", "sub/"]);
    expect((await s.req("GET", "/secrets/list?prefix=team-a/sub/", undefined, t)).body.keys).toEqual(["x"]);
    expect((await s.req("GET", "/secrets/list?prefix=nope/", undefined, t)).body.keys).toEqual([]);
    expect((await s.req("GET", "/secrets/list?prefix=team-a", undefined, t)).status).toBe(400);
  });

  test("subkeys: the value's shape with null leaves, to a depth", async () => {
    await put("sub/k", { a: 1, b: { c: { d: "x" }, e: [1] } });
    expect((await s.req("GET", "/secrets/subkeys/sub/k")).body).toMatchObject({ path: "sub/k", subkeys: { a: null, b: { c: { d: null }, e: null } }, metadata: { version: 1 } });
    expect((await s.req("GET", "/secrets/subkeys/sub/k?depth=1")).body.subkeys).toEqual({ a: null, b: null });
    expect((await s.req("GET", "/secrets/subkeys/sub/k?depth=2")).body.subkeys).toEqual({ a: null, b: { c: null, e: null } });
  });
});

describe("access", () => {
  test("a scope restricted to a prefix reads there only; list shows only what it covers", async () => {
    const t = "tenant-scoped";
    for (const p of ["team-a/db", "team-a/api", "team-b/y", "top"]) await put(p, { v: p }, undefined, { tenant: t });
    const reader = await s.token(t, "secrets:read:team-a/* secrets:write:team-b/y");
    expect((await get("team-a/db", "", { token: reader })).body.data).toEqual({ v: "team-a/db" });
    const denied = await get("team-b/y", "", { token: reader });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe("insufficient_scope");
    expect((await get("top", "", { token: reader })).status).toBe(403);
    expect((await s.req("GET", "/secrets/list", undefined, { token: reader })).body.keys).toEqual(["team-a/"]);
    expect((await s.req("GET", "/secrets/list?prefix=team-a/", undefined, { token: reader })).body.keys).toEqual(["api", "db"]);
    expect((await s.req("GET", "/secrets/list?prefix=team-b/", undefined, { token: reader })).status).toBe(403);
    // The exact-path write grant: that path only, and no read there.
    expect((await put("team-b/y", { v: 2 }, undefined, { token: reader })).status).toBe(200);
    expect((await put("team-b/z", { v: 2 }, undefined, { token: reader })).status).toBe(403);
    expect((await put("team-a/db", { v: 2 }, undefined, { token: reader })).status).toBe(403);
    expect((await s.req("DELETE", "/secrets/data/team-a/db", undefined, { token: reader })).status).toBe(403);
    expect((await s.req("PUT", "/secrets/config", { max_versions: 1 }, { token: reader })).status).toBe(403);
    const scopedAdmin = await s.token(t, "secrets:admin:team-a/*");
    expect((await s.req("PUT", "/secrets/config", { max_versions: 1 }, { token: scopedAdmin })).status).toBe(403);
  });

  test("another tenant's path is 404, its list empty, and deletes there change nothing", async () => {
    await put("shared/name", { owner: "a" });
    const b = { tenant: "tenant-b" };
    expect((await get("shared/name", "", b)).status).toBe(404);
    expect((await meta("shared/name", b)).status).toBe(404);
    expect((await s.req("GET", "/secrets/subkeys/shared/name", undefined, b)).status).toBe(404);
    expect((await s.req("GET", "/secrets/list?prefix=shared/", undefined, b)).body.keys).toEqual([]);
    await s.req("DELETE", "/secrets/metadata/shared/name", undefined, b);
    await s.req("POST", "/secrets/destroy/shared/name", { versions: [1] }, b);
    expect((await get("shared/name")).body.data).toEqual({ owner: "a" });
    // The same path in tenant-b is its own key, numbered from 1.
    expect((await put("shared/name", { owner: "b" }, undefined, b)).body.version).toBe(1);
    expect((await get("shared/name")).body.data).toEqual({ owner: "a" });
  });

  test("no token is 401; bad paths are 400", async () => {
    const r = await s.svc.call("/service/api/v1/secrets/data/app/db");
    expect(r.status).toBe(401);
    for (const p of ["a//b", ".hidden", "a/b/", "a%20b", "a/%2e%2e"]) expect((await get(p)).status).toBe(400);
  });
});

describe("values stay secret", () => {
  test("a raw scan of the database files and the logs finds no secret value", async () => {
    const value = `distinctive-secret-${crypto.randomUUID()}`;
    await put("scan/k", { password: value, nested: { again: value } });
    await s.req("PATCH", "/secrets/data/scan/k", { data: { more: value } });
    expect((await get("scan/k")).body.data.password).toBe(value);
    // Refusals do not echo it either.
    for (const body of [{ data: value }, value, { data: { p: value }, cas: value }, [value]]) {
      const refused = await s.req("PUT", "/secrets/data/scan/k", body);
      expect(refused.status).toBe(400);
      expect(JSON.stringify(refused.body)).not.toContain(value);
    }
    const casFail = await put("scan/k", { password: value }, 1);
    expect(JSON.stringify(casFail.body)).not.toContain(value);

    const needle = Buffer.from(value);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(s.svc.dataDir);
    expect(files.some((f) => f.endsWith(".db"))).toBe(true);
    for (const f of files) expect(readFileSync(f).includes(needle)).toBe(false);
    expect(s.svc.logs.length).toBeGreaterThan(0);
    expect(s.svc.logs.join("\n")).not.toContain(value);
    const metrics = await (await s.svc.admin("/admin/v1/metrics")).text();
    expect(metrics).not.toContain(value);
    expect(metrics).not.toContain("scan/k");
    // The disk's latency for the writes above: each WAL fsync and each write transaction.
    const count = (name: string) => Number(new RegExp(`^${name}_count\\{service="sm-secrets"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? -1);
    expect(count("storage_wal_fsync_duration_seconds")).toBeGreaterThan(0);
    expect(count("storage_write_transaction_duration_seconds")).toBeGreaterThan(0);
    expect(metrics).toContain('storage_wal_fsync_duration_seconds_bucket{service="sm-secrets",le="+Inf"}');
  });
});
