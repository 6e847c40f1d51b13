/**
 * learn-ps over HTTPS: `GET /service/api/v1/pets/{id}` with a bearer token, keep-alive,
 * 64 connections, next to a bare Bun.serve TLS server answering the same JSON (the
 * framework ceiling). Both run in their own process and are measured by the same
 * load generator (wrk) in the same run, alternating, several rounds; medians reported.
 *
 * Usage: npm run bench -- learn-ps [--seconds=6] [--rounds=5] [--connections=64]   (BENCH_PIN=1: see wrk.ts)
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer } from "../test/support/issuer.ts";
import { createBenchPet, haveWrk, median, PIN, spawnTarget, wrk, type WrkResult } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 6);
const ROUNDS = arg("rounds", 5);
const CONNS = arg("connections", 64);

if (!haveWrk()) {
  console.error("wrk is required (Debian package 'wrk')");
  process.exit(2);
}

const target = (script: string, args: string[]) => spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", script), ...args]);

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-"));
const issuer = await startTestIssuer();
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "pets:read pets:write" }, { expiresIn: "1h" });

const learn = await target("learn-ps.ts", [join(dir, "learn-ps"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const ca = readFileSync(learn.info.trust, "utf8");
const pet = await createBenchPet(learn.info.url, token, ca);
const bare = await target("bare-tls.ts", [JSON.stringify(pet)]);
// Not an anchor of the target: shows how much of the gap the framework alone takes.
const elysia = await target("elysia-tls.ts", [JSON.stringify(pet)]);

const targets = {
  "learn-ps": { url: `${learn.info.url}/service/api/v1/pets/${pet.id}`, headers: { authorization: `Bearer ${token}` } },
  "bare Bun.serve TLS": { url: `${bare.info.url}/service/api/v1/pets/${pet.id}`, headers: { authorization: `Bearer ${token}` } },
  "Elysia alone, same TLS": { url: `${elysia.info.url}/service/api/v1/pets/${pet.id}`, headers: { authorization: `Bearer ${token}` } },
};
const results: Record<string, WrkResult[]> = { "learn-ps": [], "bare Bun.serve TLS": [], "Elysia alone, same TLS": [] };

try {
  for (const [, t] of Object.entries(targets)) await wrk(t.url, { connections: CONNS, seconds: 2, headers: t.headers }); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(targets)) {
      const res = await wrk(t.url, { connections: CONNS, seconds: SECONDS, headers: t.headers });
      if (res.errors) throw new Error(`${name}: ${res.errors} errors during the run (${res.detail})`);
      results[name]!.push(res);
    }
  }
} finally {
  learn.proc.kill("SIGTERM");
  bare.proc.kill("SIGTERM");
  elysia.proc.kill("SIGTERM");
  await issuer.stop();
}

const row = (name: string) => {
  const rs = results[name]!;
  return { name, rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50ms)), p99: median(rs.map((x) => x.p99ms)) };
};
const l = row("learn-ps");
const b = row("bare Bun.serve TLS");
// Load from other processes drifts between rounds: the ratio of each round's adjacent
// measurements is steadier than the ratio of the medians.
const roundRatios = results["learn-ps"]!.map((x, i) => x.rps / results["bare Bun.serve TLS"]![i]!.rps);
console.log(`\nlearn-ps GET /service/api/v1/pets/{id}, HTTPS keep-alive, ${CONNS} connections, wrk, median of ${ROUNDS} x ${SECONDS}s\n`);
console.log("| target | req/s | p50 ms | p99 ms | ratio to bare |");
console.log("|---|---:|---:|---:|---:|");
const e = row("Elysia alone, same TLS");
for (const x of [l, b, e]) {
  console.log(`| ${x.name} | ${x.rps.toFixed(0)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${(x.rps / b.rps).toFixed(2)} |`);
}
const ratio = median(roundRatios);
console.log(`\nper-round ratios learn-ps / bare: ${roundRatios.map((r) => r.toFixed(2)).join(", ")} (median ${ratio.toFixed(2)})${PIN ? "; servers pinned to core 0, wrk to core 1" : ""}`);
const pass = ratio >= 0.6 && l.p99 < 20;
console.log(`\ntarget: >= 0.60 of bare req/s and p99 < 20 ms -> ${pass ? "met" : "NOT met"}`);
