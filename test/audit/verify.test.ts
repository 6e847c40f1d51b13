/**
 * Offline verification with the CLI (`cryptoutil audit verify`, run as a process, no server in
 * its way): an export verifies against its signed checkpoint, and changing, deleting or
 * reordering one row in the database (raw SQL, after dropping the trigger that refuses it)
 * makes it fail naming the first bad entry. Then the service's checkpoints, inclusion and
 * consistency proofs are checked with an independent implementation: Go's sumdb note and
 * tlog packages (Debian golang-golang-x-mod-dev).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { event, startAudit, type Audit } from "./harness.ts";

const REPO = join(import.meta.dir, "..", "..");
let a: Audit;
let dir: string;
let vkey: string;

async function exportAs(tenant = "root", scope = "audit:read audit:admin"): Promise<string> {
  const r = await a.req("GET", "/export", undefined, { tenant, scope });
  expect(r.status).toBe(200);
  return r.text;
}

/** Runs `cryptoutil audit verify` on an export text against the checkpoint file. */
function cliVerify(exportText: string, checkpointFile: string): { code: number; out: string; err: string } {
  const file = join(dir, `export-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, exportText);
  const keyFile = join(dir, "audit.vkey");
  writeFileSync(keyFile, vkey + "\n");
  const p = spawnSync(process.execPath, [join(REPO, "cli/main.ts"), "audit", "verify", file, "--checkpoint", checkpointFile, "--key", keyFile], {
    env: { ...process.env, CRYPTOUTIL_HOME: dir },
    encoding: "utf8",
  });
  return { code: p.status ?? -1, out: p.stdout, err: p.stderr };
}

const db = () => a.svc.database.db;
const entryOf = async (seq: number) => (await sql<{ entry: string }>`select entry from audit_events where seq = ${seq}`.execute(db())).rows[0]!.entry;

let checkpoint10: string;
let checkpointFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "audit-verify-"));
  a = await startAudit();
  vkey = (await a.req("GET", "/log", undefined, { tenant: "root" })).body.verifier_key;
  // 30 events of three tenants, checkpoints at 10, 20 and 30.
  for (let k = 0; k < 3; k++) {
    await a.ingest(Array.from({ length: 10 }, (_, i) => event(["tenant-a", "tenant-b", "tenant-c"][(i + k) % 3]!, { sensitive: { user: `u${i}` } })));
    const c = await a.req("POST", "/checkpoints", undefined, { tenant: "root" });
    expect(c.status).toBe(201);
    if (k === 0) checkpoint10 = c.body.note;
  }
  checkpointFile = join(dir, "checkpoint.txt");
  writeFileSync(checkpointFile, (await a.req("GET", "/checkpoints/latest", undefined, { tenant: "root" })).body.note);
  // The test alters rows as an intruder would: with raw SQL, after dropping the triggers.
  await sql.raw("drop trigger audit_events_no_update").execute(db());
  await sql.raw("drop trigger audit_events_no_delete").execute(db());
}, 120_000);

afterAll(async () => {
  await a?.stop();
});

describe("cryptoutil audit verify", () => {
  test("an untouched export verifies, the administrator's and a tenant's (others' entries by leaf hash)", async () => {
    const full = cliVerify(await exportAs(), checkpointFile);
    expect(full.err).toBe("");
    expect(full.code).toBe(0);
    expect(full.out).toContain("ok: 30 entries");
    const mine = await exportAs("tenant-b", "audit:read");
    expect(mine.split("\n").filter((l) => l.includes('"entry"')).every((l) => l.includes('\\"tenant\\":\\"tenant-b\\"'))).toBe(true);
    const tenant = cliVerify(mine, checkpointFile);
    expect(tenant.code).toBe(0);
    expect(tenant.out).toContain("(10 checked by their text");
  });

  test("a changed row fails, naming it", async () => {
    const original = await entryOf(17);
    await sql`update audit_events set entry = ${original.replace('"result":"ok"', '"result":"denied"')} where seq = 17`.execute(db());
    const r = cliVerify(await exportAs(), checkpointFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain("entry 17 was changed");
    await sql`update audit_events set entry = ${original} where seq = 17`.execute(db());
    expect(cliVerify(await exportAs(), checkpointFile).code).toBe(0);
  });

  test("a deleted row fails, naming it", async () => {
    const row = (await sql<Record<string, unknown>>`select * from audit_events where seq = 6`.execute(db())).rows[0]!;
    await sql`delete from audit_events where seq = 6`.execute(db());
    const r = cliVerify(await exportAs(), checkpointFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain("entry 6 is missing");
    await db().insertInto("audit_events" as never).values(row as never).execute();
    expect(cliVerify(await exportAs(), checkpointFile).code).toBe(0);
  });

  test("two reordered rows fail, naming the first", async () => {
    const swap = async () => {
      await sql`update audit_events set seq = -1 where seq = 22`.execute(db());
      await sql`update audit_events set seq = 22 where seq = 23`.execute(db());
      await sql`update audit_events set seq = 23 where seq = -1`.execute(db());
    };
    await swap();
    const r = cliVerify(await exportAs(), checkpointFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain("position 22 is entry 23's text");
    await swap();
    expect(cliVerify(await exportAs(), checkpointFile).code).toBe(0);
  });

  test("a row changed with its recorded leaf hash too is bounded by the signed checkpoints", async () => {
    const original = (await sql<{ entry: string; leaf_hash: Uint8Array }>`select entry, leaf_hash from audit_events where seq = 13`.execute(db())).rows[0]!;
    const forged = original.entry.replace('"result":"ok"', '"result":"denied"');
    const { leafHash } = await import("../../src/audit/merkle.ts");
    await sql`update audit_events set entry = ${forged}, leaf_hash = ${leafHash(new TextEncoder().encode(forged))} where seq = 13`.execute(db());
    const r = cliVerify(await exportAs(), checkpointFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain("lies in 10..19");
    await sql`update audit_events set entry = ${original.entry}, leaf_hash = ${original.leaf_hash} where seq = 13`.execute(db());
    expect(cliVerify(await exportAs(), checkpointFile).code).toBe(0);
  });

  test("a checkpoint signed by another key, or an older checkpoint against a changed prefix, fails", async () => {
    const forged = checkpoint10.replace(/\n\d+\n/, "\n11\n");
    const f = join(dir, "forged.txt");
    writeFileSync(f, forged);
    const r = cliVerify(await exportAs(), f);
    expect(r.code).toBe(1);
    expect(r.err).toContain("does not verify");
    // The older checkpoint covers the first 10 entries of the same export.
    const old = join(dir, "cp10.txt");
    writeFileSync(old, checkpoint10);
    expect(cliVerify(await exportAs(), old).code).toBe(0);
  });
});

describe("an independent implementation agrees (Go sumdb/note and sumdb/tlog)", () => {
  const GOPATH = "/usr/share/gocode";
  const missing = spawnSync("go", ["version"]).status !== 0 ? "go (Debian golang-go)" : !existsSync(join(GOPATH, "src/golang.org/x/mod/sumdb/tlog")) ? "golang-golang-x-mod-dev" : undefined;

  test("checkpoints, every inclusion proof and the consistency proofs verify with Go's tlog", async () => {
    if (missing) {
      if (process.env.CI === "true") throw new Error(`${missing} is required under CI`);
      console.warn(`[skip] Go cross-check skipped: ${missing} is not installed`);
      return;
    }
    const env = { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(dir, "gocache"), GOFLAGS: "" };
    const bin = join(dir, "tlog-check");
    const build = spawnSync("go", ["build", "-o", bin, "."], { cwd: join(import.meta.dir, "tlog-check"), env, encoding: "utf8" });
    expect(build.stderr).toBe("");
    expect(build.status).toBe(0);

    const cps: Array<{ tree_size: number; note: string }> = [];
    for (const line of (await exportAs()).split("\n")) if (line.includes('"checkpoint"')) cps.push({ note: JSON.parse(line).checkpoint, tree_size: Number(JSON.parse(line).checkpoint.split("\n")[1]) });
    expect(cps.map((c) => c.tree_size)).toEqual([10, 20, 30]);
    const inclusion = [];
    for (const cp of cps) {
      for (let seq = 0; seq < cp.tree_size; seq++) {
        const p = (await a.req("GET", `/events/${seq}/proof?tree_size=${cp.tree_size}`, undefined, { tenant: "root" })).body;
        inclusion.push({ ...p, entry: await entryOf(seq) });
      }
    }
    const consistency = [];
    for (const [i, j] of [[0, 1], [0, 2], [1, 2]] as const) {
      consistency.push((await a.req("GET", `/proofs/consistency?first=${cps[i]!.tree_size}&second=${cps[j]!.tree_size}`, undefined, { tenant: "root" })).body);
    }
    const run = (req: unknown) => spawnSync(bin, [], { input: JSON.stringify(req), encoding: "utf8" });
    const ok = run({ verifier_key: vkey, checkpoints: cps.map((c) => c.note), inclusion, consistency });
    expect(ok.stdout).not.toContain("FAIL");
    expect(ok.status).toBe(0);
    expect(ok.stdout.split("\n").filter((l) => l.startsWith("ok inclusion")).length).toBe(60);
    expect(ok.stdout.split("\n").filter((l) => l.startsWith("ok consistency")).length).toBe(3);
    // And Go refuses what it should: a changed proof hash, a changed entry.
    const badProof = { ...consistency[0], hashes: [...consistency[0].hashes] };
    badProof.hashes[0] = Buffer.alloc(32, 1).toString("base64");
    expect(run({ verifier_key: vkey, checkpoints: [], inclusion: [], consistency: [badProof] }).status).toBe(1);
    const badEntry = { ...inclusion[3], entry: inclusion[3].entry.replace('"result":"ok"', '"result":"no"') };
    expect(run({ verifier_key: vkey, checkpoints: [], inclusion: [badEntry], consistency: [] }).status).toBe(1);
  }, 300_000);
});
