/**
 * sm-secrets over HTTPS: reads (`GET /secrets/data/<path>`, the current version, decrypted
 * from the barrier) and writes (`PUT`, a new barrier-encrypted version, old ones pruned at
 * max_versions) of 256 secrets chosen at random per request, bearer token, keep-alive, 64
 * connections, measured by wrk. The anchor, in the same run and by the same wrk: learn-ps's
 * `GET /pets/{id}`, the template's hottest read (Vault, the product anchor, cannot be
 * installed here). Medians of several rounds. Each row also gives the server's CPU time per
 * request (from /proc), a figure a loaded machine skews far less than requests per second.
 *
 * Usage: npm run bench -- secrets [--seconds=6] [--rounds=2] [--connections=64]   (BENCH_PIN=1: see wrk.ts)
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer } from "../test/support/issuer.ts";
import { createBenchPet, haveWrk, median, PIN, cpuMsOf, spawnTarget, wrk, type WrkResult } from "./wrk.ts";
import { histogramBuckets, histogramQuantile } from "./lib.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 6);
const ROUNDS = arg("rounds", 2);
const CONNS = arg("connections", 64);
const PATHS = 256;
const TARGETS = { reads: 10_000, writes: 2_000, p99ms: 20 };

if (!haveWrk()) {
  console.error("wrk is required (Debian package 'wrk')");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-secrets-"));
const issuer = await startTestIssuer();
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const target = (script: string, name: string) => spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", script), join(dir, name), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const secretsToken = await issuer.mint({ tenant: "bench", scope: "secrets:read secrets:write", aud: "sm-secrets" }, { expiresIn: "2h" });
const petsToken = await issuer.mint({ tenant: "bench", scope: "pets:read pets:write", aud: "learn-ps" }, { expiresIn: "2h" });

const secrets = await target("sm-secrets.ts", "sm-secrets");
const learn = await target("learn-ps.ts", "learn-ps");
const api = `${secrets.info.url}/service/api/v1/secrets`;
const value = { user: "app", password: "x".repeat(24), url: "postgres://db.internal:5432/orders" };
const tls = { ca: readFileSync(secrets.info.trust, "utf8") };
for (let i = 1; i <= PATHS; i++) {
  const r = await fetch(`${api}/data/bench/k${i}`, { method: "PUT", headers: { authorization: `Bearer ${secretsToken}`, "content-type": "application/json" }, body: JSON.stringify({ data: value }), tls } as RequestInit);
  if (r.status !== 200) throw new Error(`seeding: ${r.status} ${await r.text()}`);
}
const pet = await createBenchPet(learn.info.url, petsToken, readFileSync(learn.info.trust, "utf8"));

/** A wrk script sending `method` to a random one of the secrets' paths (with `body` for writes). */
function randomPathScript(name: string, method: "GET" | "PUT"): string {
  const file = join(dir, `${name}.lua`);
  const body = method === "PUT" ? `[[${JSON.stringify({ data: value })}]]` : "nil";
  writeFileSync(
    file,
    [
      `wrk.headers["Authorization"] = "Bearer ${secretsToken}"`,
      `wrk.headers["Content-Type"] = "application/json"`,
      `request = function() return wrk.format("${method}", "/service/api/v1/secrets/data/bench/k" .. math.random(1, ${PATHS}), nil, ${body}) end`,
      "",
    ].join("\n"),
  );
  return file;
}

const runs = {
  reads: () => wrk(`${api}/data/bench/k1`, { connections: CONNS, seconds: SECONDS, script: randomPathScript("reads", "GET") }),
  writes: () => wrk(`${api}/data/bench/k1`, { connections: CONNS, seconds: SECONDS, script: randomPathScript("writes", "PUT") }),
  anchor: () => wrk(`${learn.info.url}/service/api/v1/pets/${pet.id}`, { connections: CONNS, seconds: SECONDS, headers: { authorization: `Bearer ${petsToken}` } }),
};
const results: Record<keyof typeof runs, WrkResult[]> = { reads: [], writes: [], anchor: [] };
/** Server CPU µs per request, per run. */
const cpuPerReq: Record<keyof typeof runs, number[]> = { reads: [], writes: [], anchor: [] };
const pidOf = { reads: secrets.proc.pid, writes: secrets.proc.pid, anchor: learn.proc.pid };
/** sm-secrets's own record of its disk waits (storage_* histograms on /admin/v1/metrics), around each write round. */
const scrapeMetrics = async () => (await fetch(`${secrets.info.admin}/admin/v1/metrics`, { tls } as RequestInit)).text();
const DISK = ["storage_wal_fsync_duration_seconds", "storage_write_transaction_duration_seconds"] as const;
const disk: Record<(typeof DISK)[number], string[]> = { storage_wal_fsync_duration_seconds: [], storage_write_transaction_duration_seconds: [] };
const ms = (bound: string) => (bound === "+Inf" ? "> 2,500" : `<= ${Number(bound) * 1000}`);
try {
  await runs.reads(); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run] of Object.entries(runs) as Array<[keyof typeof runs, () => Promise<WrkResult>]>) {
      const m0 = name === "writes" ? await scrapeMetrics() : "";
      const c0 = cpuMsOf(pidOf[name]);
      const t0 = performance.now();
      const res = await run();
      if (name === "writes") {
        const m1 = await scrapeMetrics();
        for (const h of DISK) {
          const [a, b] = [histogramBuckets(m0, h), histogramBuckets(m1, h)];
          const [p50, p99] = [histogramQuantile(a, b, 0.5), histogramQuantile(a, b, 0.99)];
          disk[h].push(p50 && p99 ? `p50 ${ms(p50.bound)} ms, p99 ${ms(p99.bound)} ms (${p99.count})` : "none");
        }
      }
      const requests = res.rps * ((performance.now() - t0) / 1000);
      if (res.errors) throw new Error(`${name}: ${res.errors} errors during the run`);
      results[name].push(res);
      cpuPerReq[name].push(((cpuMsOf(pidOf[name]) - c0) * 1000) / requests);
      console.error(`round ${r + 1} ${name}: ${res.rps.toFixed(0)} req/s, p99 ${res.p99ms.toFixed(2)} ms, server CPU ${cpuPerReq[name].at(-1)!.toFixed(0)} µs/req`);
    }
  }
} finally {
  secrets.proc.kill("SIGTERM");
  learn.proc.kill("SIGTERM");
  await issuer.stop();
}

const m = (k: keyof typeof runs) => ({ rps: median(results[k].map((x) => x.rps)), p50: median(results[k].map((x) => x.p50ms)), p99: median(results[k].map((x) => x.p99ms)), cpu: median(cpuPerReq[k]) });
const [reads, writes, anchor] = [m("reads"), m("writes"), m("anchor")];
console.log(`\nsm-secrets, ${PATHS} secrets chosen at random per request, HTTPS keep-alive, ${CONNS} connections, wrk, median of ${ROUNDS} x ${SECONDS}s; embedded database${PIN ? "; server pinned to core 0, wrk to core 1" : ""}\n`);
console.log("| operation | req/s | p50 ms | p99 ms | server CPU µs/req | anchor: learn-ps GET /pets/{id}, same run | ratio |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
console.log(`| read (current version) | ${reads.rps.toFixed(0)} | ${reads.p50.toFixed(2)} | ${reads.p99.toFixed(2)} | ${reads.cpu.toFixed(0)} | ${anchor.rps.toFixed(0)} (p99 ${anchor.p99.toFixed(2)} ms, ${anchor.cpu.toFixed(0)} µs/req) | ${(reads.rps / anchor.rps).toFixed(2)} |`);
console.log(`| write (new version) | ${writes.rps.toFixed(0)} | ${writes.p50.toFixed(2)} | ${writes.p99.toFixed(2)} | ${writes.cpu.toFixed(0)} | | ${(writes.rps / anchor.rps).toFixed(2)} |`);
console.log(`\nthe disk during each write round, from sm-secrets's histograms (bucket bounds): WAL fsync (every write waits for one that starts after its commit): ${disk.storage_wal_fsync_duration_seconds.join("; ")}; write transaction on the event loop (BEGIN to COMMIT, checkpoints included): ${disk.storage_write_transaction_duration_seconds.join("; ")}`);
const met = (ok: boolean) => (ok ? "met" : "NOT met");
console.log(`\ntargets: reads >= ${TARGETS.reads}/s -> ${met(reads.rps >= TARGETS.reads)}; writes >= ${TARGETS.writes}/s -> ${met(writes.rps >= TARGETS.writes)}; p99 < ${TARGETS.p99ms} ms -> ${met(reads.p99 < TARGETS.p99ms && writes.p99 < TARGETS.p99ms)}`);
process.exit(0);
