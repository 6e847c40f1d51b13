/**
 * The audit log over real HTTPS: append, positions, duplicates, HMACs of sensitive fields,
 * tenant isolation, queries and paging, checkpoints, inclusion and consistency proofs checked
 * with the verifier (src/audit/proofs.ts), and the database's refusal of UPDATE and DELETE.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "kysely";
import { leafHash } from "../../src/audit/merkle.ts";
import { openCheckpoint, parseVerifierKey } from "../../src/audit/note.ts";
import { verifyConsistency, verifyInclusion } from "../../src/audit/proofs.ts";
import { ADMIN, event, READ, startAudit, type Audit } from "./harness.ts";

let a: Audit;
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

beforeAll(async () => {
  a = await startAudit();
}, 120_000);
afterAll(async () => {
  await a?.stop();
});

describe("append", () => {
  test("events get consecutive positions; a resent event keeps its first one", async () => {
    const e1 = event("tenant-a");
    const e2 = event("tenant-b", { sensitive: { client_ip: "203.0.113.9" }, details: { alg: "ES256", bits: 256, exportable: false } });
    const r = await a.ingest([e1, e2]);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ seqs: [0, 1], duplicates: 0 });
    const again = await a.ingest([e1, event("tenant-a")]);
    expect(again.body).toEqual({ seqs: [0, 2], duplicates: 1 });
    // The same id from another sender is another event.
    const other = await a.ingest([{ ...e1 }], "pki-ca");
    expect(other.body.seqs).toEqual([3]);
  });

  test("sensitive fields are stored only as HMACs, and /hash finds them", async () => {
    const got = await a.req("GET", "/events/1", undefined, { tenant: "tenant-b", scope: READ });
    expect(got.status).toBe(200);
    expect(got.body.hmac.client_ip).toMatch(/^hmac-sha256:[A-Za-z0-9_-]{43}$/);
    expect(got.text).not.toContain("203.0.113.9");
    expect(got.body.details).toEqual({ alg: "ES256", bits: 256, exportable: false });
    expect(got.body.service).toBe("sm-kms");
    const h = await a.req("POST", "/hash", { value: "203.0.113.9" }, { tenant: "root" });
    expect(h.body.hmac).toBe(got.body.hmac.client_ip);
    const rows = await sql<{ entry: string }>`select entry from audit_events`.execute(a.svc.database.db);
    expect(rows.rows.some((r) => r.entry.includes("203.0.113.9"))).toBe(false);
  });

  test("audit:write appends only events of its own tenant; no scope, no append", async () => {
    const own = await a.req("POST", "/events", { events: [event("tenant-w")] }, { tenant: "tenant-w", scope: "audit:write", sub: "app-1" });
    expect(own.status).toBe(200);
    const entry = await a.req("GET", `/events/${own.body.seqs[0]}`, undefined, { tenant: "tenant-w", scope: READ });
    expect(entry.body.service).toBe("tenant-w/app-1");
    const foreign = await a.req("POST", "/events", { events: [event("tenant-a")] }, { tenant: "tenant-w", scope: "audit:write" });
    expect(foreign.status).toBe(403);
    const none = await a.req("POST", "/events", { events: [event("tenant-w")] }, { tenant: "tenant-w", scope: READ });
    expect(none.status).toBe(403);
  });

  test("malformed events are 400 with the field named", async () => {
    const r = await a.ingest([{ ...event("tenant-a"), action: "Key Create" }]);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("validation_failed");
    expect((await a.ingest([])).status).toBe(400);
  });
});

describe("reads are tenant-scoped", () => {
  test("another tenant's entry is 404; the suite administrator reads all", async () => {
    expect((await a.req("GET", "/events/0", undefined, { tenant: "tenant-b", scope: READ })).status).toBe(404);
    expect((await a.req("GET", "/events/0", undefined, { tenant: "tenant-a", scope: READ })).status).toBe(200);
    expect((await a.req("GET", "/events/1", undefined, { tenant: "root", scope: ADMIN })).status).toBe(200);
    // audit:admin outside tenant root is not the suite administrator.
    expect((await a.req("GET", "/events/1", undefined, { tenant: "tenant-a", scope: ADMIN })).status).toBe(404);
    const q = await a.req("GET", "/events?tenant=tenant-b", undefined, { tenant: "tenant-a", scope: READ });
    expect(q.status).toBe(403);
  });

  test("query by service, actor, action and time, with paging", async () => {
    const batch = Array.from({ length: 25 }, (_, i) =>
      event("tenant-q", { actor: i % 2 ? "alice" : "bob", action: i % 3 ? "key.encrypt" : "key.rotate", time: new Date(Date.UTC(2030, 0, 1, 0, i)).toISOString() }),
    );
    expect((await a.ingest(batch)).status).toBe(200);
    const all: number[] = [];
    let token: string | null = null;
    do {
      const r: { body: any } = await a.req("GET", `/events?limit=7${token ? `&page_token=${token}` : ""}`, undefined, { tenant: "tenant-q", scope: READ });
      all.push(...r.body.items.map((x: { seq: number }) => x.seq));
      token = r.body.next_page_token;
    } while (token);
    expect(all.length).toBe(25);
    expect([...all].sort((x, y) => y - x)).toEqual(all); // newest first
    const alice = await a.req("GET", "/events?actor=alice&action=key.rotate&limit=100", undefined, { tenant: "tenant-q", scope: READ });
    expect(alice.body.items.every((x: any) => x.actor === "alice" && x.action === "key.rotate")).toBe(true);
    expect(alice.body.items.length).toBe(batch.filter((e) => e.actor === "alice" && e.action === "key.rotate").length);
    const window = await a.req("GET", `/events?from=${encodeURIComponent("2030-01-01T00:05:00Z")}&to=${encodeURIComponent("2030-01-01T00:10:00Z")}&service=sm-kms`, undefined, { tenant: "tenant-q", scope: READ });
    expect(window.body.items.length).toBe(5);
    const tail = await a.req("GET", `/events?after=${all[all.length - 1]! + 2}&limit=3`, undefined, { tenant: "tenant-q", scope: READ });
    expect(tail.body.items.map((x: any) => x.seq)).toEqual([...all].reverse().slice(3, 6));
  });
});

describe("checkpoints and proofs", () => {
  test("every entry has an inclusion proof in a signed checkpoint; checkpoints are consistent", async () => {
    const info = await a.req("GET", "/log", undefined, { tenant: "root" });
    const verifier = parseVerifierKey(info.body.verifier_key);
    const c1 = await a.req("POST", "/checkpoints", undefined, { tenant: "root" });
    expect(c1.status).toBe(201);
    const first = openCheckpoint(c1.body.note, verifier);
    expect(first.size).toBe(info.body.tree_size);
    expect(first.origin).toBe("cryptoutil.local/audit");

    // A new entry is not proved until a checkpoint covers it.
    const more = await a.ingest(Array.from({ length: 13 }, () => event("tenant-a")));
    const lastSeq = more.body.seqs[12];
    expect((await a.req("GET", `/events/${lastSeq}/proof`, undefined, { tenant: "tenant-a", scope: READ })).status).toBe(409);
    const c2 = await a.req("POST", "/checkpoints", undefined, { tenant: "root" });
    const second = openCheckpoint(c2.body.note, verifier);
    expect(second.size).toBe(first.size + 13);

    for (let seq = 0; seq < second.size; seq++) {
      const p = await a.req("GET", `/events/${seq}/proof`, undefined, { tenant: "root" });
      expect(p.status).toBe(200);
      const entry = await a.req("GET", `/events/${seq}`, undefined, { tenant: "root" });
      // The leaf is the hash of the entry's own JSON text.
      const { leaf_hash, ...stored } = entry.body;
      const text = (await sql<{ entry: string }>`select entry from audit_events where seq = ${seq}`.execute(a.svc.database.db)).rows[0]!.entry;
      expect(JSON.parse(text)).toEqual(stored);
      expect(Buffer.from(leafHash(new TextEncoder().encode(text))).toString("base64")).toBe(leaf_hash);
      const cp = openCheckpoint(p.body.checkpoint, verifier);
      expect(verifyInclusion(seq, cp.size, unb64(p.body.leaf_hash), p.body.hashes.map(unb64), cp.root)).toBe(true);
    }
    const proof = await a.req("GET", `/proofs/consistency?first=${first.size}&second=${second.size}`, undefined, { tenant: "tenant-a", scope: READ });
    expect(proof.status).toBe(200);
    expect(verifyConsistency(first.size, second.size, first.root, second.root, proof.body.hashes.map(unb64))).toBe(true);
    expect(verifyConsistency(first.size, second.size, second.root, first.root, proof.body.hashes.map(unb64))).toBe(false);
    // From a size no checkpoint has: the proof alone, for a verifier holding its own older root.
    const fromOne = await a.req("GET", `/proofs/consistency?first=1&second=${second.size}`, undefined, { tenant: "tenant-a", scope: READ });
    expect(fromOne.body.first_checkpoint).toBeNull();
    // The tree of one leaf has that leaf's hash as its root.
    const rootOfOne = unb64((await a.req("GET", "/events/0", undefined, { tenant: "root" })).body.leaf_hash);
    expect(verifyConsistency(1, second.size, rootOfOne, second.root, fromOne.body.hashes.map(unb64))).toBe(true);
    // Beyond the second checkpoint: 400; no checkpoint of that second size: 404.
    expect((await a.req("GET", `/proofs/consistency?first=${second.size + 1}&second=${second.size}`, undefined, { tenant: "tenant-a", scope: READ })).status).toBe(400);
    expect((await a.req("GET", `/proofs/consistency?first=1&second=${second.size - 1}`, undefined, { tenant: "tenant-a", scope: READ })).status).toBe(404);
  });

  test("periodic checkpoints follow new entries", async () => {
    const b = await startAudit({ overrides: (c) => void (c.app = { checkpoint_interval_ms: 50 }) });
    try {
      await b.ingest([event("tenant-a"), event("tenant-a")]);
      let size = 0;
      for (let i = 0; i < 400 && size < 2; i++) {
        const r = await b.req("GET", "/checkpoints/latest", undefined, { tenant: "tenant-a", scope: READ });
        size = r.status === 200 ? r.body.tree_size : 0;
        if (size < 2) await Bun.sleep(50);
      }
      expect(size).toBe(2);
    } finally {
      await b.stop();
    }
  }, 60_000);
});

describe("append-only in the database", () => {
  test("UPDATE and DELETE of entries, checkpoints and keys are refused by triggers", async () => {
    const db = a.svc.database.db;
    for (const stmt of [
      sql`update audit_events set actor = 'mallory' where seq = 0`,
      sql`delete from audit_events where seq = 0`,
      sql`delete from audit_events`,
      sql`update audit_checkpoints set note = 'x'`,
      sql`delete from audit_checkpoints`,
      sql`delete from audit_keys`,
    ]) {
      await expect(stmt.execute(db)).rejects.toThrow(/append-only/);
    }
    const row = (await sql<{ actor: string }>`select actor from audit_events where seq = 0`.execute(db)).rows[0];
    expect(row?.actor).toBe("client-1");
  });
});
