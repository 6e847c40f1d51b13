/**
 * Two audit instances on one PostgreSQL database (Debian package postgresql), as a scaled-out
 * deployment runs: events appended through both at once get unique, gap-free positions (one
 * transaction per append, run one at a time on the database), each instance's checkpoints and
 * proofs cover the other's entries, they share one checkpoint key, and the database's triggers
 * refuse UPDATE, DELETE and TRUNCATE of the log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import { createAuditService } from "../../apps/audit/service.ts";
import { openCheckpoint, parseVerifierKey } from "../../src/audit/note.ts";
import { verifyConsistency, verifyInclusion } from "../../src/audit/proofs.ts";
import { startPostgresEngine } from "../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, tempDir, type TestService } from "../support/service.ts";
import { event } from "./harness.ts";

const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

describe("two audit instances on one PostgreSQL database", () => {
  if (!engine) return;
  const root = tempDir("cryptoutil-audit-pg-");
  let issuer: TestIssuer;
  let a: TestService;
  let b: TestService;
  let token: string;

  const call = async (svc: TestService, method: string, path: string, body?: unknown) => {
    const res = await svc.call(`/service/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

  beforeAll(async () => {
    issuer = await startTestIssuer({ audience: "audit" });
    token = await issuer.mint({ tenant: "root", sub: "sender", scope: "audit:ingest audit:read audit:admin" }, { expiresIn: "1h" });
    const url = await engine.server.createDatabase("audit_two");
    const unseal = join(root, "unseal.secret");
    writeFileSync(unseal, Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"), { mode: 0o600 });
    const start = (name: string) =>
      startTestService(createAuditService(), {
        issuer,
        root: join(root, name),
        overrides: (c) => {
          quiet(c);
          c.database.url = url;
          c.database.password_file = engine.server.passwordFile;
          c.database.pool_size = 4;
          c.barrier.unseal_files = [unseal];
          c.app = { checkpoint_interval_ms: 0 };
        },
      });
    [a, b] = await Promise.all([start("a"), start("b")]);
  }, 180_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await issuer?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test("concurrent appends through both get unique, gap-free positions; proofs and checkpoints span both", async () => {
    expect(a.database.mode).toBe("postgres");
    const keyA = (await call(a, "GET", "/log")).body.verifier_key;
    expect((await call(b, "GET", "/log")).body.verifier_key).toBe(keyA);
    const first = await call(a, "POST", "/events", { events: [event("tenant-a")] });
    expect(first.status).toBe(200);
    const cp1 = await call(b, "POST", "/checkpoints");
    expect(cp1.status).toBe(201);

    const batches = Array.from({ length: 40 }, (_, i) => Array.from({ length: 25 }, () => event(`tenant-${i % 3}`)));
    const sends = batches.map((events, i) => call(i % 2 ? a : b, "POST", "/events", { events }));
    const results = await Promise.all(sends);
    expect(results.every((r) => r.status === 200)).toBe(true);
    const seqs = results.flatMap((r) => r.body.seqs as number[]).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));

    const cp2 = await call(a, "POST", "/checkpoints");
    expect(cp2.status).toBe(201);
    const verifier = parseVerifierKey(keyA);
    const c1 = openCheckpoint(cp1.body.note, verifier);
    const c2 = openCheckpoint(cp2.body.note, verifier);
    expect(c2.size).toBe(1001);
    // Instance b proves entries instance a appended, against a's checkpoint, and the other way round.
    for (const [svc, seq] of [[b, results[1]!.body.seqs[0]], [a, results[0]!.body.seqs[3]], [b, 1000]] as const) {
      const p = await call(svc, "GET", `/events/${seq}/proof?tree_size=${c2.size}`);
      expect(p.status).toBe(200);
      expect(verifyInclusion(seq, c2.size, unb64(p.body.leaf_hash), p.body.hashes.map(unb64), c2.root)).toBe(true);
    }
    const proof = await call(b, "GET", `/proofs/consistency?first=${c1.size}&second=${c2.size}`);
    expect(verifyConsistency(c1.size, c2.size, c1.root, c2.root, proof.body.hashes.map(unb64))).toBe(true);
    // A batch resent through the other instance is stored once, at its first positions.
    const again = await call(b, "POST", "/events", { events: batches[1] });
    expect(again.body).toEqual({ seqs: results[1]!.body.seqs, duplicates: 25 });
  }, 120_000);

  test("the database refuses UPDATE, DELETE and TRUNCATE of the log", async () => {
    const db = a.database.db;
    for (const stmt of [
      sql`update audit_events set actor = 'mallory' where seq = 0`,
      sql`delete from audit_events where seq = 0`,
      sql`truncate audit_events`,
      sql`update audit_checkpoints set note = 'x'`,
      sql`delete from audit_checkpoints`,
      sql`truncate audit_keys`,
    ]) {
      await expect(stmt.execute(db)).rejects.toThrow();
    }
    const n = await sql<{ n: number }>`select count(*)::int as n from audit_events`.execute(db);
    expect(n.rows[0]!.n).toBe(1001);
    const actor = await sql<{ actor: string }>`select actor from audit_events where seq = 0`.execute(db);
    expect(actor.rows[0]!.actor).toBe("client-1");
  }, 60_000);
});
