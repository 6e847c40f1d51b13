/**
 * sm-kms over HTTPS: 1 KiB encrypt and decrypt (JWE dir + A256GCM) and ES256 sign and
 * verify (JWS), bearer token, keep-alive, 64 connections, measured by wrk (a Lua script
 * sends the POST bodies); next to the same operation done in-process with `jose` (the
 * no-network ceiling, 64 operations in flight) in the same run. Medians of several rounds.
 *
 * Usage: npm run bench -- kms [--seconds=8] [--rounds=2] [--connections=64]   (BENCH_PIN=1: see wrk.ts)
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactEncrypt, CompactSign, compactDecrypt, compactVerify, generateKeyPair, generateSecret } from "jose";
import { startTestIssuer } from "../test/support/issuer.ts";
import { haveWrk, median, parseWrk, PIN, spawnTarget, type WrkResult } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 8);
const ROUNDS = arg("rounds", 2);
const CONNS = arg("connections", 64);
const TARGETS = { encrypt: 10_000, sign: 5_000, p99ms: 15 };

if (!haveWrk()) {
  console.error("wrk is required (Debian package 'wrk')");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-kms-"));
const issuer = await startTestIssuer({ audience: "sm-kms" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "kms:admin kms:encrypt kms:decrypt kms:sign kms:verify" }, { expiresIn: "2h" });
const kms = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "sm-kms.ts"), join(dir, "sm-kms"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const ca = readFileSync(kms.info.trust, "utf8");
const api = `${kms.info.url}/service/api/v1`;

async function post(path: string, body: unknown): Promise<any> {
  const res = await fetch(api + path, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    tls: { ca },
  } as RequestInit);
  const j = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(j)}`);
  return j;
}

const plaintext = crypto.getRandomValues(new Uint8Array(1024));
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const encKey = (await post("/keys", { name: "bench-enc", algorithm: "A256GCM" })).id as string;
const sigKey = (await post("/keys", { name: "bench-sig", algorithm: "ES256" })).id as string;
const { jwe } = await post(`/keys/${encKey}/encrypt`, { plaintext: b64u(plaintext) });
const { jws } = await post(`/keys/${sigKey}/sign`, { payload: b64u(plaintext) });

const ops: Record<string, { path: string; body: unknown }> = {
  encrypt: { path: `/keys/${encKey}/encrypt`, body: { plaintext: b64u(plaintext) } },
  decrypt: { path: `/keys/${encKey}/decrypt`, body: { jwe } },
  sign: { path: `/keys/${sigKey}/sign`, body: { payload: b64u(plaintext) } },
  verify: { path: `/keys/${sigKey}/verify`, body: { jws } },
};
for (const [name, op] of Object.entries(ops)) await post(op.path, op.body).catch((e) => Promise.reject(new Error(`${name} check failed: ${e}`)));

async function load(op: { path: string; body: unknown }, seconds: number): Promise<WrkResult> {
  const script = join(dir, `post-${crypto.randomUUID()}.lua`);
  // Lua long brackets: the JSON body needs no escaping (it never contains "]]").
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = [[${JSON.stringify(op.body)}]]\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer ${token}"\n`,
  );
  const cmd = ["wrk", "-t1", `-c${CONNS}`, `-d${seconds}s`, "--latency", "-s", script, api + op.path];
  // Same placement as wrk.ts: the target on core 0, the load generator on core 1.
  const p = Bun.spawn(PIN ? ["taskset", "-c", "1", ...cmd] : cmd, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  const err = await new Response(p.stderr).text();
  if ((await p.exited) !== 0) throw new Error(`wrk failed: ${err || out}`);
  return parseWrk(out);
}

// In-process ceiling: the same JOSE operation with `jose`, CONNS operations in flight.
const cek = (await generateSecret("A256GCM", { extractable: false })) as CryptoKey;
const es = await generateKeyPair("ES256");
const localJwe = await new CompactEncrypt(plaintext).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(cek);
const localJws = await new CompactSign(plaintext).setProtectedHeader({ alg: "ES256" }).sign(es.privateKey);
const local: Record<string, () => Promise<unknown>> = {
  encrypt: () => new CompactEncrypt(plaintext).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: "k" }).encrypt(cek),
  decrypt: () => compactDecrypt(localJwe, cek),
  sign: () => new CompactSign(plaintext).setProtectedHeader({ alg: "ES256", kid: "k" }).sign(es.privateKey),
  verify: () => compactVerify(localJws, es.publicKey),
};

async function inProcess(fn: () => Promise<unknown>, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await fn();
      n++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONNS }, worker));
  return n / ((performance.now() - start) / 1000);
}

const http: Record<string, WrkResult[]> = Object.fromEntries(Object.keys(ops).map((k) => [k, []]));
const inproc: Record<string, number[]> = Object.fromEntries(Object.keys(ops).map((k) => [k, []]));
try {
  for (const op of Object.values(ops)) await load(op, 2); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, op] of Object.entries(ops)) {
      const res = await load(op, SECONDS);
      if (res.errors) throw new Error(`${name}: ${res.errors} errors during the run`);
      http[name]!.push(res);
      const ops_s = await inProcess(local[name]!, Math.max(2, SECONDS / 2));
      inproc[name]!.push(ops_s);
      console.error(`round ${r + 1} ${name}: ${res.rps.toFixed(0)} req/s, p99 ${res.p99ms.toFixed(2)} ms; in-process jose ${ops_s.toFixed(0)} ops/s`);
    }
  }
} finally {
  kms.proc.kill("SIGTERM");
  await issuer.stop();
}

console.log(`\nsm-kms, 1 KiB payloads, HTTPS keep-alive, ${CONNS} connections, wrk, median of ${ROUNDS} x ${SECONDS}s; in-process = jose in this process, ${CONNS} in flight${PIN ? "; server pinned to core 0, wrk to core 1" : ""}\n`);
console.log("| operation | sm-kms req/s | p50 ms | p99 ms | in-process jose ops/s | sm-kms / in-process |");
console.log("|---|---:|---:|---:|---:|---:|");
const rows: Record<string, { rps: number; p99: number }> = {};
for (const name of Object.keys(ops)) {
  const rs = http[name]!;
  const rps = median(rs.map((x) => x.rps));
  const p50 = median(rs.map((x) => x.p50ms));
  const p99 = median(rs.map((x) => x.p99ms));
  const ip = median(inproc[name]!);
  rows[name] = { rps, p99 };
  const label = name === "encrypt" || name === "decrypt" ? `${name} (dir+A256GCM)` : `${name} (ES256)`;
  console.log(`| ${label} | ${rps.toFixed(0)} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${ip.toFixed(0)} | ${(rps / ip).toFixed(2)} |`);
}
const met = (ok: boolean) => (ok ? "met" : "NOT met");
console.log(`\ntargets: encrypt >= ${TARGETS.encrypt}/s -> ${met(rows.encrypt!.rps >= TARGETS.encrypt)}; ES256 sign >= ${TARGETS.sign}/s -> ${met(rows.sign!.rps >= TARGETS.sign)}; p99 < ${TARGETS.p99ms} ms on every operation -> ${met(Object.values(rows).every((r) => r.p99 < TARGETS.p99ms))}`);
process.exit(0);
