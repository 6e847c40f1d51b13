/**
 * What the mutual-TLS listener costs: learn-ps `GET /service/api/v1/pets/{id}` over the
 * public port (Bun.serve, bearer token) and over the mTLS port (node:http2 with allowHTTP1,
 * client certificate), HTTP/1.1 keep-alive, same service process, same run, alternating
 * rounds. wrk cannot present a client certificate, so the load generator is this process:
 * `--connections` loops of Bun fetch, each waiting for its answer before the next request;
 * wrk's figure for the public port is printed beside it when wrk is installed.
 *
 * Usage: npm run bench -- mtls [--seconds=5] [--rounds=3] [--connections=32]
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tlsFetch } from "../src/federation/index.ts";
import { startTestIssuer } from "../test/support/issuer.ts";
import { createBenchPet, haveWrk, median, spawnTarget, wrk } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 3);
const CONNS = arg("connections", 32);

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-"));
const issuer = await startTestIssuer();
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "pets:read pets:write" }, { expiresIn: "1h" });
const dataDir = join(dir, "learn-ps");
const learn = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "learn-ps-mtls.ts"), dataDir, issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const ca = readFileSync(learn.info.trust, "utf8");
const client = { cert: readFileSync(join(dataDir, "client.crt"), "utf8"), key: readFileSync(join(dataDir, "client.key"), "utf8") };
const pet = await createBenchPet(learn.info.url, token, ca);
const path = `/service/api/v1/pets/${pet.id}`;

const viaPublic = tlsFetch({ ca });
const viaMtls = tlsFetch({ ca, clientTls: () => client });
const targets = {
  "public port (Bun.serve), bearer token": () => viaPublic(learn.info.url + path, { headers: { authorization: `Bearer ${token}` } }),
  "mTLS port (node:http2, HTTP/1.1), client certificate": () => viaMtls(learn.info.mtls + path, {}),
};

/** `CONNS` request loops for `seconds`: requests per second and latency percentiles. */
async function load(call: () => Promise<Response>, seconds: number) {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONNS }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        const res = await call();
        await res.arrayBuffer();
        if (res.status !== 200) errors++;
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  return { rps: latencies.length / seconds, p50: q(0.5), p99: q(0.99), errors };
}

const results: Record<string, Array<{ rps: number; p50: number; p99: number }>> = {};
let wrkPublic: { rps: number; p99ms: number } | undefined;
try {
  for (const call of Object.values(targets)) await load(call, 1); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, call] of Object.entries(targets)) {
      const res = await load(call, SECONDS);
      if (res.errors) throw new Error(`${name}: ${res.errors} answers were not 200`);
      (results[name] ??= []).push(res);
    }
  }
  if (haveWrk()) wrkPublic = await wrk(learn.info.url + path, { connections: CONNS, seconds: SECONDS, headers: { authorization: `Bearer ${token}` } });
} finally {
  learn.proc.kill("SIGTERM");
  await issuer.stop();
}

console.log(`\nlearn-ps GET /service/api/v1/pets/{id}, HTTPS keep-alive, ${CONNS} connections, Bun fetch, median of ${ROUNDS} x ${SECONDS}s\n`);
console.log("| listener | req/s | p50 ms | p99 ms |");
console.log("|---|---:|---:|---:|");
for (const [name, rs] of Object.entries(results)) {
  console.log(`| ${name} | ${Math.round(median(rs.map((x) => x.rps)))} | ${median(rs.map((x) => x.p50)).toFixed(2)} | ${median(rs.map((x) => x.p99)).toFixed(2)} |`);
}
const [pub, mtls] = Object.values(results).map((rs) => median(rs.map((x) => x.rps)));
console.log(`\nmTLS port / public port: ${(mtls! / pub!).toFixed(2)}`);
if (wrkPublic) console.log(`(wrk on the public port, same connections: ${Math.round(wrkPublic.rps)} req/s, p99 ${wrkPublic.p99ms} ms)`);
