/**
 * Malformed input on every endpoint of the audit service: mutated JSON bodies for the two that
 * take one (`POST /events`, `POST /hash`; 10,000 each, FUZZ_JSON_N overrides) and mutated
 * query strings and path positions for the reads (10,000 each, FUZZ_QUERY_N). No answer is a
 * 5xx, the log stays a gap-free sequence, and every endpoint still answers normally afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fuzz, mutateJson, rng, type Rng } from "../support/fuzz.ts";
import { API, event, startAudit, type Audit } from "./harness.ts";

const N = Number(process.env.FUZZ_JSON_N ?? 10_000);
const Q = Number(process.env.FUZZ_QUERY_N ?? 10_000);
let a: Audit;
let ingest: string;
let admin: string;

beforeAll(async () => {
  a = await startAudit();
  ingest = await a.token("root", "audit:ingest", "fuzz-sender");
  admin = await a.token("root", "audit:read audit:admin");
  expect((await a.ingest([event("tenant-a"), event("tenant-b")])).status).toBe(200);
  expect((await a.req("POST", "/checkpoints", undefined, { tenant: "root" })).status).toBe(201);
}, 120_000);

afterAll(async () => {
  await a?.stop();
});

const SEED = {
  events: [
    {
      id: "evt-00000001",
      time: "2030-01-01T00:00:00.000Z",
      tenant: "tenant-a",
      actor: "client-1",
      action: "key.create",
      resource: "key-1",
      result: "ok",
      request_id: "req-1",
      details: { alg: "ES256", bits: 256, exportable: false },
      sensitive: { client_ip: "203.0.113.7" },
    },
  ],
};

const PIECES = ["", "0", "-1", "1e3", "99999999999999999999", "abc", "%00", "%ff%fe", "..%2f", "2030-01-01T00:00:00Z", "not-a-time", "asc", "desc", "tenant-a", "a".repeat(300), "<script>", "'; drop table x; --", "\u00e9", "null", "[]"];
const KEYS = ["tenant", "service", "actor", "action", "result", "from", "to", "after", "order", "limit", "page_token", "tree_size", "first", "second", "x", ""];

function query(r: Rng): string {
  const parts: string[] = [];
  for (let i = r(5); i > 0; i--) {
    const k = KEYS[r(KEYS.length)]!;
    const raw = PIECES[r(PIECES.length)]!;
    parts.push(r(6) === 0 ? `${k}${raw}` : `${k}=${r(3) === 0 ? raw : encodeURIComponent(raw)}`);
  }
  return parts.join("&");
}

const pathPiece = (r: Rng) => [String(r(10)), "0", "-1", "99999999999999999", "x", "%00", "1e2", "9007199254740993", "..", ""][r(10)]!;

describe("JSON bodies", () => {
  for (const [name, path, seed, who] of [
    ["POST /events", "/events", SEED, () => ingest],
    ["POST /hash", "/hash", { value: "203.0.113.7" }, () => admin],
  ] as const) {
    test(`${name}: ${N} mutated bodies, no 5xx`, async () => {
      const r = rng(name.length * 7919);
      const cases = Array.from({ length: N }, () => mutateJson(seed, r));
      const send = (body: string) => a.svc.call(API + path, { method: "POST", headers: { authorization: `Bearer ${who()}`, "content-type": "application/json" }, body });
      const { statuses } = await fuzz(cases, send, { describe: (b) => `${name} ${b}`, concurrency: 8, maxMs: 120_000 });
      expect([...statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
      expect(statuses.has(429)).toBe(false);
    }, 900_000);
  }
});

describe("query strings and path positions", () => {
  const reads: Array<[string, (r: Rng) => string]> = [
    ["GET /events", (r) => `/events?${query(r)}`],
    ["GET /events/{seq}", (r) => `/events/${pathPiece(r)}?${query(r)}`],
    ["GET /events/{seq}/proof", (r) => `/events/${pathPiece(r)}/proof?${query(r)}`],
    ["GET /proofs/consistency", (r) => `/proofs/consistency?${query(r)}`],
    ["GET /checkpoints/latest", (r) => `/checkpoints/latest?${query(r)}`],
    ["POST /checkpoints", (r) => `/checkpoints?${query(r)}`],
    ["GET /log", (r) => `/log?${query(r)}`],
    ["GET /export", (r) => `/export?${query(r)}`],
  ];
  for (const [name, make] of reads) {
    test(`${name}: ${Q} mutated requests, no 5xx`, async () => {
      const r = rng(name.length * 104729);
      const cases = Array.from({ length: Q }, () => make(r));
      const method = name.startsWith("POST") ? "POST" : "GET";
      const send = (p: string) => a.svc.call(API + p, { method, headers: { authorization: `Bearer ${admin}` } });
      await fuzz(cases, send, { describe: (p) => `${name} ${p}`, concurrency: 8, maxMs: 120_000 });
    }, 600_000);
  }
});

test("afterwards: the log is a gap-free sequence and still verifies", async () => {
  const log = await a.req("GET", "/log", undefined, { tenant: "root" });
  expect(log.status).toBe(200);
  const cp = await a.req("POST", "/checkpoints", undefined, { tenant: "root" });
  expect(cp.status).toBe(201);
  const exp = await a.req("GET", "/export", undefined, { tenant: "root" });
  const seqs = exp.text.split("\n").filter((l) => l.includes('"seq"')).map((l) => JSON.parse(l).seq);
  expect(seqs).toEqual(seqs.map((_, i) => i));
  expect(seqs.length).toBe(cp.body.tree_size);
  expect((await a.ingest([event("tenant-a")])).status).toBe(200);
}, 120_000);
