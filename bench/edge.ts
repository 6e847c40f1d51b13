/**
 * OCSP at the edge: responses per second from pki-ca's edge module in workerd next to pki-ca's
 * own responder on Bun, same machine, same run. Both answer `GET /pki/ocsp/{base64}` (RFC 6960
 * A.1) over plain HTTP for one P-256 certificate, without nonce, so both serve a response signed
 * once: pki-ca from its read-only revocation listener and its answer cache, workerd from its
 * copy (fetched from that listener, refresh interval 60 s). wrk, keep-alive, alternating rounds,
 * medians; the ratio is workerd / pki-ca.
 *
 * Usage: npm run bench -- edge [--seconds=5] [--rounds=3] [--connections=64]
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer } from "../test/support/issuer.ts";
import { freePort } from "../test/support/server-process.ts";
import { startEdge } from "../edge/workerd.ts";
import { haveWrk, median, spawnTarget, wrk, type WrkResult } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 3);
const CONNS = arg("connections", 64);

if (!haveWrk() || !Bun.which("openssl")) {
  console.error("wrk and openssl are required (Debian packages 'wrk' and 'openssl')");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-edge-"));
const sh = (cmd: string[]) => {
  const p = Bun.spawnSync(cmd, { cwd: dir, stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
};

const issuer = await startTestIssuer({ audience: "pki-ca" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "pki:request" }, { expiresIn: "1h" });
const httpPort = await freePort();
process.env.BENCH_HTTP_REVOCATION_PORT = String(httpPort);
const ca = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "pki-ca.ts"), join(dir, "pki-ca"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const trust = readFileSync(ca.info.trust, "utf8");

sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=www.bench.test", "-addext", "subjectAltName=DNS:www.bench.test"]);
const issued = await fetch(`${ca.info.url}/service/api/v1/certificates`, {
  method: "POST",
  headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  body: JSON.stringify({ csr: readFileSync(join(dir, "leaf.csr"), "utf8"), profile: "bench" }),
  tls: { ca: trust },
} as RequestInit);
if (issued.status !== 201) throw new Error(`pki-ca issuance failed: ${issued.status} ${await issued.text()}`);
const cert = ((await issued.json()) as any).certificate;
writeFileSync(join(dir, "leaf.pem"), cert.certificate_pem);
writeFileSync(join(dir, "issuing.pem"), cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
sh(["openssl", "ocsp", "-issuer", "issuing.pem", "-cert", "leaf.pem", "-no_nonce", "-reqout", "ocsp.der"]);
const path = `/pki/ocsp/${encodeURIComponent(readFileSync(join(dir, "ocsp.der")).toString("base64"))}`;

const edge = await startEdge({ module: "pki-ca", port: await freePort(), origin: { address: `127.0.0.1:${httpPort}` }, vars: { REFRESH_S: "60" } });
process.on("exit", () => edge.process.kill("SIGTERM"));

const targets: Record<string, string> = {
  "pki-ca on Bun (its own responder)": `http://127.0.0.1:${httpPort}${path}`,
  "workerd edge module": `${edge.url}${path}`,
};
// Both answer "good", with the same signed response.
const answers = new Set<string>();
for (const [name, url] of Object.entries(targets)) {
  const r = await fetch(url);
  const body = new Uint8Array(await r.arrayBuffer());
  writeFileSync(join(dir, "check.der"), body);
  const out = sh(["openssl", "ocsp", "-respin", "check.der", "-issuer", "issuing.pem", "-cert", "leaf.pem", "-noverify"]);
  if (r.status !== 200 || !out.includes(": good")) throw new Error(`${name}: not a good OCSP answer (${r.status})`);
  answers.add(Buffer.from(body).toString("hex"));
}
if (answers.size !== 1) console.log("(the two answers differ: the origin re-signed between the checks)");

const results: Record<string, WrkResult[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
for (const url of Object.values(targets)) await wrk(url, { connections: CONNS, seconds: 2 }); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, url] of Object.entries(targets)) results[name]!.push(await wrk(url, { connections: CONNS, seconds: SECONDS }));
}

const rps = (name: string) => median(results[name]!.map((x) => x.rps));
const base = rps("pki-ca on Bun (its own responder)");
console.log(`\nOCSP GET /pki/ocsp/{req}, plain HTTP keep-alive, ${CONNS} connections, wrk, median of ${ROUNDS} x ${SECONDS}s\n`);
console.log("| target | responses/s | p50 ms | p99 ms | ratio to pki-ca |");
console.log("|---|---:|---:|---:|---:|");
for (const name of Object.keys(targets)) {
  const p50 = median(results[name]!.map((x) => x.p50ms));
  const p99 = median(results[name]!.map((x) => x.p99ms));
  console.log(`| ${name} | ${Math.round(rps(name))} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${(rps(name) / base).toFixed(2)} |`);
}
console.log(`\nworkerd / pki-ca on Bun: ${(rps("workerd edge module") / base).toFixed(2)}`);
await edge.stop();
await issuer.stop();
ca.proc.kill("SIGTERM");
process.exit(0);
