/**
 * The audit service: events appended per second over HTTPS while it signs a checkpoint every
 * second, as the suite's services send them (batches, here of --batch events, default 100)
 * and one event per request; `--workers` requests in flight (default 16). Target: 5,000
 * events/s. Afterwards the latest checkpoint must cover what was appended up to a second
 * before the end, and its signature and a consistency proof from the first checkpoint verify.
 * The anchor, in the same run once the service has stopped (no transparency log service can be
 * installed here): the same event documents stored with nothing else, in-process SQLite (WAL,
 * synchronous FULL, as durable as the service's group commit), one transaction per batch — the
 * floor of storing them at all, without HTTPS, tokens, hashing, a tree or signatures.
 *
 * Usage: npm run bench -- audit [--seconds=10] [--batch=100] [--workers=16]
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer } from "../test/support/issuer.ts";
import { openCheckpoint, parseVerifierKey } from "../src/audit/note.ts";
import { verifyConsistency } from "../src/audit/proofs.ts";
import { percentile } from "./lib.ts";
import { spawnTarget } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 10);
const BATCH = arg("batch", 100);
const WORKERS = arg("workers", 16);
const TARGET = 5_000;

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-audit-"));
const issuer = await startTestIssuer({ audience: "audit" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "root", sub: "bench", scope: "audit:ingest audit:read audit:admin" }, { expiresIn: "2h" });
const target = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "audit.ts"), join(dir, "audit"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const ca = readFileSync(target.info.trust, "utf8");
const api = `${target.info.url}/service/api/v1`;

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(api + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { ca },
  } as RequestInit);
  const j = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(j)}`);
  return j;
}

let n = 0;
const event = () => ({
  id: `bench-${++n}-${process.pid}`,
  time: new Date().toISOString(),
  tenant: `tenant-${n % 8}`,
  actor: `client-${n % 50}`,
  action: n % 3 ? "key.encrypt" : "token.issue",
  resource: `key-${n % 200}`,
  result: "ok",
  request_id: crypto.randomUUID(),
  details: { alg: "A256GCM", bytes: 1024 },
  sensitive: { client_ip: `10.0.${n % 250}.${n % 200}` },
});

async function run(batch: number, seconds: number): Promise<{ events: number; perSec: number; p99ms: number }> {
  const end = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  let events = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (performance.now() < end) {
        const body = { events: Array.from({ length: batch }, event) };
        const t0 = performance.now();
        await call("POST", "/events", body);
        latencies.push(performance.now() - t0);
        events += batch;
      }
    }),
  );
  return { events, perSec: events / seconds, p99ms: percentile(latencies, 99) };
}

const info = await call("GET", "/log");
await run(BATCH, 1); // warm-up
const first = await call("POST", "/checkpoints");
const batched = await run(BATCH, SECONDS);
const before = (await call("GET", "/log")).tree_size;
await Bun.sleep(1500);
const latest = await call("GET", "/checkpoints/latest");
const single = await run(1, Math.max(3, Math.round(SECONDS / 2)));

const verifier = parseVerifierKey(info.verifier_key);
const a = openCheckpoint(first.note, verifier);
const b = openCheckpoint(latest.note, verifier);
const proof = await call("GET", `/proofs/consistency?first=${a.size}&second=${b.size}`);
const consistent = verifyConsistency(a.size, b.size, a.root, b.root, proof.hashes.map((h: string) => new Uint8Array(Buffer.from(h, "base64"))));

console.log(`\naudit: appends over HTTPS, ${WORKERS} requests in flight, a checkpoint every second`);
console.log(`  batches of ${BATCH}: ${Math.round(batched.perSec).toLocaleString("en")} events/s (${batched.events.toLocaleString("en")} in ${SECONDS} s), p99 ${batched.p99ms.toFixed(1)} ms per request   target ${TARGET.toLocaleString("en")}/s: ${batched.perSec >= TARGET ? "met" : "MISSED"}`);
console.log(`  one event per request: ${Math.round(single.perSec).toLocaleString("en")} events/s, p99 ${single.p99ms.toFixed(1)} ms`);
console.log(`  checkpoint after the run covers ${b.size.toLocaleString("en")} of ${before.toLocaleString("en")} entries: ${b.size >= before ? "yes" : "NO"}; consistency proof ${a.size} -> ${b.size}: ${consistent ? "verifies" : "FAILS"}`);

target.proc.kill("SIGTERM");
await target.proc.exited;
await issuer.stop();

/** The anchor: the same batches of events into a plain SQLite table, one durable transaction each. */
async function plainStore(batch: number, seconds: number): Promise<number> {
  const { Database } = await import("bun:sqlite");
  const db = new Database(join(dir, "anchor.db"), { create: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, tenant TEXT NOT NULL, doc TEXT NOT NULL)");
  const insert = db.prepare("INSERT INTO events (id, tenant, doc) VALUES (?, ?, ?)");
  const append = db.transaction((events: ReturnType<typeof event>[]) => {
    for (const e of events) insert.run(e.id, e.tenant, JSON.stringify(e));
  });
  const end = performance.now() + seconds * 1000;
  let events = 0;
  while (performance.now() < end) {
    append(Array.from({ length: batch }, event));
    events += batch;
  }
  db.close();
  return events / seconds;
}
const anchor = await plainStore(BATCH, SECONDS);
console.log(`  anchor, same run: the same batches of ${BATCH} into a plain SQLite table in-process (WAL, synchronous FULL, a transaction per batch): ${Math.round(anchor).toLocaleString("en")} events/s; ratio ${(batched.perSec / anchor).toFixed(2)}`);
process.exit(b.size >= before && consistent ? 0 : 1);
