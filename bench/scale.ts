/**
 * Scale-out: sm-kms 1 KiB encrypt (dir+A256GCM) and pki-ca P-256 issuance (auto-approved CSR),
 * HTTPS keep-alive, 64 connections, measured by wrk, in one run on three deployments:
 *   - the embedded database (SQLite file), one instance;
 *   - PostgreSQL, one instance;
 *   - PostgreSQL, two instances of the service on one database, each behind its own port. The
 *     load is split round-robin by connection: two wrk processes of 32 connections each, one
 *     per instance, run at the same time; req/s is their sum and p99 the larger of the two.
 * PostgreSQL is a throwaway server from the Debian package `postgresql` (started as
 * test/support/postgres.ts does), with its durable defaults (fsync on), as the embedded database
 * syncs every commit. Every deployment is started before the first measurement and the rounds
 * alternate between them, so load from elsewhere on the machine hits them alike; medians reported.
 * Next to the wall-clock figures (noisy on a shared machine), CPU time per request from /proc:
 * the service instances' processes, and the PostgreSQL server's (postmaster and backends); and
 * per request the database's commits and rollbacks (pg_stat_database, so a transaction that
 * PostgreSQL aborted for a conflict and that ran again shows as a rollback). And for the instance
 * whose event loop waited most, from its main thread's /proc schedstat, the share of the round
 * that thread ran and the share it was runnable but waiting for a CPU: every request that
 * instance holds waits with its loop, so that share is where a p99 above the embedded one comes
 * from when the cores are oversubscribed.
 * Each service instance and each wrk runs in a session of its own, as separate containers or
 * hosts would be scheduled apart: under the kernel's autogroup scheduling every PostgreSQL
 * backend is a scheduling group of its own (the postmaster's children call setsid), and with both
 * instances and both wrk processes in the bench's one group, PostgreSQL's backends sat runnable
 * but unscheduled for 0.5-1 s at a time (/proc/<pid>/schedstat), all of them at once, which
 * stalled the queries of both instances together (p99 of 0.6-1.2 s in some rounds).
 *
 * Usage: npm run bench -- scale [--seconds=6] [--rounds=2] [--connections=64] [--pool=10] [--only=sm-kms|pki-ca]   (--pool: PostgreSQL connections per instance)
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer, type TestIssuer } from "../test/support/issuer.ts";
import { postgresMissing, startPostgres, type PostgresServer } from "../test/support/postgres.ts";
import pgLib from "pg";
import { cpuMsOf, haveWrk, mainThreadSchedMs, median, spawnTarget, treeCpuMs, wrk, wrkScript, type WrkResult } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 6);
const ROUNDS = arg("rounds", 2);
const CONNS = arg("connections", 64);
const POOL = arg("pool", 10);
const TARGET_P99_MS = 50;
/** A share of the wall-clock time, as a percentage. */
const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
/** --only=sm-kms or --only=pki-ca: one operation. */
const ONLY = process.argv.find((a) => a.startsWith("--only="))?.split("=")[1]?.split(",");

const missing = [!haveWrk() && "wrk (Debian package wrk)", !Bun.which("openssl") && "openssl (Debian package openssl)", postgresMissing()].filter(Boolean);
if (missing.length) {
  console.error(`required: ${missing.join("; ")}`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-scale-"));

/** One deployment of one service: its instances' public URLs (wrk does not verify certificates). */
interface Deployment {
  label: string;
  urls: string[];
  procs: Array<ReturnType<typeof Bun.spawn>>;
}

interface Operation {
  name: string;
  service: "sm-kms" | "pki-ca";
  scope: string;
  /** Prepares the operation on a fresh deployment (through its first instance); returns the path and JSON body to send. */
  prepare(url: string, trust: string, token: string): Promise<{ path: string; body: string }>;
}

async function post(url: string, trust: string, token: string, body: unknown, want: number): Promise<any> {
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    tls: { ca: trust },
  } as RequestInit);
  const text = await res.text();
  if (res.status !== want) throw new Error(`${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const csrRun = Bun.spawnSync(
  ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "leaf.key"), "-subj", "/CN=www.bench.test", "-addext", "subjectAltName=DNS:www.bench.test"],
  { stdout: "pipe", stderr: "pipe" },
);
if (csrRun.exitCode !== 0) throw new Error(`openssl req failed: ${csrRun.stderr.toString()}`);
const csr = csrRun.stdout.toString();
const plaintext = Buffer.from(crypto.getRandomValues(new Uint8Array(1024))).toString("base64url");

const OPERATIONS: Operation[] = [
  {
    name: "sm-kms encrypt 1 KiB",
    service: "sm-kms",
    scope: "kms:admin kms:encrypt",
    async prepare(url, trust, token) {
      const key = await post(`${url}/service/api/v1/keys`, trust, token, { name: "bench-enc", algorithm: "A256GCM" }, 201);
      const path = `/service/api/v1/keys/${key.id}/encrypt`;
      const body = { plaintext };
      await post(url + path, trust, token, body, 200);
      return { path, body: JSON.stringify(body) };
    },
  },
  {
    name: "pki-ca P-256 issuance",
    service: "pki-ca",
    scope: "pki:request",
    async prepare(url, trust, token) {
      const path = "/service/api/v1/certificates";
      const body = { csr, profile: "bench" };
      await post(url + path, trust, token, body, 201);
      return { path, body: JSON.stringify(body) };
    },
  },
];

const issuers: TestIssuer[] = [];
let pg: PostgresServer | undefined;
/** One measured load: wrk's results, and per request CPU ms (service, PostgreSQL) and transactions. */
interface Sample {
  wrk: WrkResult[];
  serviceCpu: number;
  pgCpu: number;
  commits: number;
  rollbacks: number;
  /** Of the instance whose event loop waited most: the share of the round its loop thread ran, and waited runnable for a CPU. */
  loopRun: number;
  loopWait: number;
}
const deployments: Array<{ op: Operation; dep: Deployment; database?: string; script: string; path: string; results: Sample[] }> = [];
let admin: InstanceType<typeof pgLib.Client> | undefined;
let postmaster = NaN;

try {
  pg = await startPostgres({ durable: true });
  if (!pg) throw new Error("PostgreSQL did not start");
  const server = pg;
  const kinds = [
    { label: "embedded SQLite, 1 instance", instances: 1, postgres: false },
    { label: "PostgreSQL, 1 instance", instances: 1, postgres: true },
    { label: `PostgreSQL, 2 instances (${CONNS / 2} connections each)`, instances: 2, postgres: true },
  ];
  for (const op of OPERATIONS.filter((o) => !ONLY || ONLY.includes(o.service))) {
    const issuer = await startTestIssuer({ audience: op.service });
    issuers.push(issuer);
    const issuerCa = join(dir, `issuer-${op.service}.pem`);
    await Bun.write(issuerCa, issuer.caPem);
    const token = await issuer.mint({ tenant: "bench", scope: op.scope }, { expiresIn: "2h" });
    for (const [k, kind] of kinds.entries()) {
      // Instances of one deployment share a data root: the development unseal secret and the suite CA.
      const root = join(dir, `${op.service}-${k}`);
      const database = kind.postgres ? [await server.createDatabase(op.service.replace("-", "_")), server.passwordFile, String(POOL)] : [];
      const dep: Deployment = { label: kind.label, urls: [], procs: [] };
      let trust = "";
      for (let i = 0; i < kind.instances; i++) {
        const t = await spawnTarget([
          process.execPath, "run", join(import.meta.dir, "targets", `${op.service}.ts`),
          join(root, `${op.service}-${i}`), issuer.issuer, issuer.jwksUrl, issuerCa, ...database,
        ], undefined, { ownSession: true });
        dep.urls.push(t.info.url);
        dep.procs.push(t.proc);
        trust = readFileSync(t.info.trust, "utf8");
      }
      const { path, body } = await op.prepare(dep.urls[0]!, trust, token);
      const script = wrkScript(join(dir, `${op.service}-${k}.lua`), "POST", body, { "content-type": "application/json", authorization: `Bearer ${token}` });
      deployments.push({ op, dep, database: kind.postgres ? new URL(database[0]!).pathname.slice(1) : undefined, script, path, results: [] });
    }
  }

  // The server's own connection: which process is the postmaster, and its per-database counters.
  // Fields, not `connectionString`: pg lets the url's (empty) password override the given one.
  const adminUrl = new URL(await server.createDatabase("bench_admin"));
  admin = new pgLib.Client({ host: adminUrl.hostname, port: Number(adminUrl.port), user: decodeURIComponent(adminUrl.username), database: adminUrl.pathname.slice(1), password: readFileSync(server.passwordFile, "utf8").trim() });
  await admin.connect();
  const backend = Number((await admin.query("select pg_backend_pid() as pid")).rows[0].pid);
  postmaster = Number(readFileSync(`/proc/${backend}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
  const xacts = async (db?: string) => {
    if (!db) return { commits: 0, rollbacks: 0 };
    const row = (await admin!.query("select xact_commit, xact_rollback from pg_stat_database where datname = $1", [db])).rows[0];
    return { commits: Number(row?.xact_commit ?? 0), rollbacks: Number(row?.xact_rollback ?? 0) };
  };

  /** 64 connections on one instance, or split evenly over the instances by concurrent wrk processes. */
  const load = async (d: (typeof deployments)[number], seconds: number): Promise<Sample> => {
    const per = Math.floor(CONNS / d.dep.urls.length);
    const serviceCpu = () => d.dep.procs.reduce((a, p) => a + cpuMsOf(p.pid), 0);
    const loops = () => d.dep.procs.map((p) => mainThreadSchedMs(p.pid));
    const [s0, p0, x0, l0] = [serviceCpu(), treeCpuMs(postmaster), await xacts(d.database), loops()];
    const res = await Promise.all(d.dep.urls.map((u) => wrk(u + d.path, { connections: per, seconds, script: d.script, ownSession: true })));
    // Before the pause below: the loops' scheduling during the load only.
    const l1 = loops();
    const loop = l1.map((l, i) => ({ run: (l.run - l0[i]!.run) / (seconds * 1000), wait: (l.wait - l0[i]!.wait) / (seconds * 1000) })).reduce((a, b) => (b.wait > a.wait ? b : a));
    // Statistics reach pg_stat_database when a backend goes idle, within a second or so.
    await Bun.sleep(1000);
    const [s1, p1, x1] = [serviceCpu(), treeCpuMs(postmaster), await xacts(d.database)];
    const n = res.reduce((a, x) => a + x.rps, 0) * seconds;
    return { wrk: res, serviceCpu: (s1 - s0) / n, pgCpu: d.database ? (p1 - p0) / n : 0, commits: (x1.commits - x0.commits) / n, rollbacks: (x1.rollbacks - x0.rollbacks) / n, loopRun: loop.run, loopWait: loop.wait };
  };
  for (const d of deployments) await load(d, 2); // warm-up: JIT, pools, caches
  for (let r = 0; r < ROUNDS; r++) {
    for (const d of deployments) {
      const sample = await load(d, SECONDS);
      d.results.push(sample);
      const res = sample.wrk;
      const rps = res.reduce((a, x) => a + x.rps, 0);
      const p99 = Math.max(...res.map((x) => x.p99ms));
      const errors = res.reduce((a, x) => a + x.errors, 0);
      console.error(
        `round ${r + 1} ${d.op.name}, ${d.dep.label}: ${rps.toFixed(0)} req/s, p99 ${p99.toFixed(1)} ms${res.length > 1 ? ` (per instance: ${res.map((x) => `${x.rps.toFixed(0)} req/s, p99 ${x.p99ms.toFixed(1)} ms`).join("; ")})` : ""}, CPU ms/req service ${sample.serviceCpu.toFixed(3)} PostgreSQL ${sample.pgCpu.toFixed(3)}, commits/req ${sample.commits.toFixed(2)} rollbacks/req ${sample.rollbacks.toFixed(3)}, event loop ran ${pct(sample.loopRun)} waited for a CPU ${pct(sample.loopWait)}${errors ? `, ${errors} errors (${res.map((x) => x.detail).join("; ")})` : ""}`,
      );
    }
  }
} finally {
  for (const d of deployments) for (const p of d.dep.procs) p.kill("SIGTERM");
  await Promise.all(deployments.flatMap((d) => d.dep.procs.map((p) => p.exited)));
  for (const i of issuers) await i.stop();
  await admin?.end().catch(() => undefined);
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
}

console.log(
  `\nscale-out, HTTPS keep-alive, ${CONNS} connections in all, wrk, median of ${ROUNDS} x ${SECONDS}s; PostgreSQL: a pool of ${POOL} connections per instance${POOL === 10 ? " (the default)" : ""}, fsync on; ${navigator.hardwareConcurrency} cores shared by servers, database and wrk\n`,
);
console.log("| operation | deployment | req/s | p50 ms | p99 ms | errors | p99 < 50 ms | CPU ms/req: service | CPU ms/req: PostgreSQL | commits/req | rollbacks/req | event loop: ran | event loop: waited for a CPU |");
console.log("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
for (const d of deployments) {
  const rps = median(d.results.map((s) => s.wrk.reduce((a, x) => a + x.rps, 0)));
  const p50 = median(d.results.map((s) => Math.max(...s.wrk.map((x) => x.p50ms))));
  const p99 = median(d.results.map((s) => Math.max(...s.wrk.map((x) => x.p99ms))));
  const errors = d.results.reduce((a, s) => a + s.wrk.reduce((b, x) => b + x.errors, 0), 0);
  const m = (f: (s: Sample) => number, digits: number) => (d.database ? median(d.results.map(f)).toFixed(digits) : "-");
  console.log(
    `| ${d.op.name} | ${d.dep.label} | ${rps.toFixed(0)} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${errors} | ${p99 < TARGET_P99_MS ? "met" : "NOT met"} | ${median(d.results.map((s) => s.serviceCpu)).toFixed(3)} | ${m((s) => s.pgCpu, 3)} | ${m((s) => s.commits, 2)} | ${m((s) => s.rollbacks, 3)} | ${pct(median(d.results.map((s) => s.loopRun)))} | ${pct(median(d.results.map((s) => s.loopWait)))} |`,
  );
}
process.exit(0);
