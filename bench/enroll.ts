/**
 * Enrollment throughput of pki-ca: EST simpleenroll and SCEP PKCSReq answered per second at
 * `--clients` concurrent clients, and Debian's micromdm `scepserver` (package `scep`) for SCEP
 * in the same run, the same client driver and the same messages' shape. One EST request = a
 * base64 P-256 CSR with HTTP Basic, answered with a certs-only PKCS#7 (a certificate issued and
 * stored). One SCEP request = a PKCSReq pkiMessage (RSA-2048 signer, CSR with the challenge,
 * enveloped to the CA's RA certificate with AES-256-CBC) answered with a signed CertRep
 * carrying the enveloped certificate. pki-ca's SCEP runs three times: with its default RA (one
 * RSA-3072 certificate that opens the envelope and signs the CertRep: two RSA-3072 private-key
 * operations an answer), with `ra_key: RSA-2048` (the same layout with an RSA-2048 key: two
 * RSA-2048 operations, each about 7 times cheaper) and with `ra_signing_key: P-256` (the CertRep
 * signed by a P-256 certificate of its own: one RSA-3072 operation). Messages are built before
 * each measured window (a fresh transactionId each, so none is answered from a transaction seen
 * before).
 *
 * Not alike: pki-ca answers over HTTPS (TLS 1.3) and stores every certificate in its database
 * with the RA path's policy and lint; scepserver answers over plain HTTP and writes each
 * certificate to its file depot. The rounds alternate targets (pki-ca SCEP, pki-ca SCEP with the
 * RSA-2048 RA, pki-ca SCEP with the P-256 signer, scepserver, pki-ca EST) so a load change on
 * the shared machine hits each.
 *
 * Each round prints, per target, the CPU time per answer of the server process (from /proc) and
 * of this driver: the server's is the figure to compare on a shared, loaded machine, and the
 * driver's shows it is not the bottleneck.
 *
 * Usage: npm run bench -- enroll [--clients=32] [--seconds=5] [--rounds=3] [--scep-rate=800]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "../src/pki/x509.ts";
import { MESSAGE_TYPE, parsePkiMessage } from "../apps/pki-ca/scep/cms.ts";
import { certsOf, TestScepClient } from "../test/pki-ca/scep-helpers.ts";
import { startTestIssuer } from "../test/support/issuer.ts";
import { freePort } from "../test/support/server-process.ts";
import { median, spawnTarget } from "./wrk.ts";
import { printTable, type Row } from "./lib.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const CLIENTS = arg("clients", 32);
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 3);
const CHALLENGE = "bench-challenge";

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-enroll-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

// pki-ca in its own process.
const issuer = await startTestIssuer({ audience: "pki-ca" });
await Bun.write(join(dir, "issuer-ca.pem"), issuer.caPem);
const ca = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "pki-ca-enroll.ts"), join(dir, "pki-ca"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const trust = readFileSync(ca.info.trust, "utf8");
const caUrl: string = ca.info.url;
const tls = { ca: trust };

// scepserver (Debian package scep) on its own depot, with the same static challenge.
let scepserver: { url: string; proc: ReturnType<typeof Bun.spawn> } | undefined;
if (Bun.which("scepserver")) {
  const depot = join(dir, "depot");
  const init = Bun.spawnSync(["scepserver", "ca", "-init", "-depot", depot], { stderr: "pipe", stdout: "pipe" });
  if (init.exitCode !== 0) throw new Error(`scepserver ca -init failed: ${init.stderr.toString()}`);
  const port = await freePort();
  const proc = Bun.spawn(["scepserver", "-depot", depot, "-port", String(port), "-challenge", CHALLENGE, "-allowrenew", "0"], { stdout: "ignore", stderr: "ignore" });
  const url = `http://127.0.0.1:${port}/scep`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}?operation=GetCACaps`).then((r) => r.ok, () => false)) break;
    await Bun.sleep(100);
  }
  scepserver = { url, proc };
  process.on("exit", () => proc.kill());
} else {
  console.warn("scepserver not installed (apt-get install -y scep): the SCEP anchor row is left out");
}

// An EST credential from the admin API.
const admin = await issuer.mint({ tenant: "bench", scope: "pki:admin" });
const cred = (await (await fetch(`${caUrl}/service/api/v1/est/credentials`, { method: "POST", tls, headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ profile: "bench" }) })).json()) as { username: string; password: string };
const basic = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;

// EST CSRs: a pool of P-256 requests, each sent many times (each issues a new certificate).
const estCsrs: string[] = [];
for (let i = 0; i < 64; i++) {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=e${i}.bench.test`, keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: `e${i}.bench.test` }])] });
  estCsrs.push(Buffer.from(csr.rawData).toString("base64"));
}

// SCEP clients (one RSA-2048 key each) and the RA certificate of each server.
const scepClients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => TestScepClient.create(`s${i}.bench.test`)));
const scepCsrs = await Promise.all(scepClients.map((c, i) => c.csr(`s${i}.bench.test`, CHALLENGE)));
const raOf = async (url: string, init: RequestInit = {}) => {
  const r = await fetch(`${url}?operation=GetCACert`, init);
  const body = new Uint8Array(await r.arrayBuffer());
  // One CA and no RA: a bare certificate (application/x-x509-ca-cert), as scepserver answers.
  if (/x-x509-ca-cert/.test(r.headers.get("content-type") ?? "")) return new x509.X509Certificate(body.slice().buffer as ArrayBuffer);
  const certs = certsOf(body);
  // The certificate with keyEncipherment (pki-ca's RA), or the only one (scepserver's CA).
  return certs.find((c) => ((c.getExtension("2.5.29.15") as x509.KeyUsagesExtension | null)?.usages ?? 0) & x509.KeyUsageFlags.keyEncipherment) ?? certs[0]!;
};
/** pki-ca's SCEP targets: the key of each one's figures, its labels (round line, table rows), its path and its RA's encryption certificate. */
const caTargets = await Promise.all(
  [
    { key: "scep", label: "pki-ca SCEP", path: "bench", row: "pki-ca (HTTPS)", perCoreRow: "pki-ca, per core-second of CPU" },
    { key: "scep-2048", label: "pki-ca SCEP (RSA-2048 RA)", path: "bench-2048", row: "pki-ca (HTTPS), RSA-2048 RA", perCoreRow: "pki-ca, RSA-2048 RA, per core-second" },
    { key: "scep-ec", label: "pki-ca SCEP (P-256 signer)", path: "bench-ec", row: "pki-ca (HTTPS), P-256 RA signer", perCoreRow: "pki-ca, P-256 RA signer, per core-second" },
  ].map(async (t) => {
    const url = `${caUrl}/scep/bench/${t.path}`;
    return { ...t, url, ra: await raOf(url, { tls } as RequestInit) };
  }),
);
const serverRa = scepserver ? await raOf(scepserver.url) : undefined;

let tx = 0;
async function scepMessages(ra: x509.X509Certificate, n: number): Promise<Uint8Array[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => scepClients[i % CLIENTS]!.message(MESSAGE_TYPE.PKCSReq, scepCsrs[i % CLIENTS]!, ra, `bench-${++tx}`)));
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux); NaN elsewhere. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return NaN;
  }
}

/**
 * Runs `send(i)` from CLIENTS workers for SECONDS (or until `limit` requests): answers per
 * second, failures, the server process's CPU milliseconds per answer (robust to the machine's
 * other load, which only stretches the wall clock) and this driver's own, which must stay well
 * below the server's for the rate to be the server's. CPU is divided over every request answered,
 * refusals included (scepserver's file depot refuses some concurrent requests: its serial file
 * is read while another request rewrites it), so a refusing server's figure is not inflated.
 */
async function drive(send: (i: number) => Promise<boolean>, limit = Infinity, pid?: number): Promise<{ rate: number; failed: number; cpuPerOp: number; clientCpuPerOp: number }> {
  let next = 0;
  let done = 0;
  let failed = 0;
  let refused = 0;
  const cpu0 = pid ? cpuMs(pid) : NaN;
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end && next < limit) {
        const i = next++;
        const ok = await send(i).then(
          (answered) => answered,
          () => undefined,
        );
        if (ok) done++;
        else failed++;
        if (ok === false) refused++;
      }
    }),
  );
  const client = process.cpuUsage(client0);
  return { rate: done / ((performance.now() - t0) / 1000), failed, cpuPerOp: pid ? (cpuMs(pid) - cpu0) / Math.max(1, done + refused) : NaN, clientCpuPerOp: (client.user + client.system) / 1000 / Math.max(1, done + refused) };
}

const estSend = async (i: number) => {
  const r = await fetch(`${caUrl}/.well-known/est/simpleenroll`, { method: "POST", tls, headers: { authorization: basic, "content-type": "application/pkcs10" }, body: estCsrs[i % estCsrs.length] } as RequestInit);
  await r.arrayBuffer();
  return r.status === 200;
};

/** A PKCSReq answered SUCCESS (a CertRep with pkiStatus 0), checked on every answer. */
const scepSend = (url: string, messages: Uint8Array[], init: RequestInit) => async (i: number) => {
  const r = await fetch(`${url}?operation=PKIOperation`, { ...init, method: "POST", headers: { "content-type": "application/x-pki-message" }, body: messages[i]!.slice().buffer as ArrayBuffer });
  const body = new Uint8Array(await r.arrayBuffer());
  if (r.status !== 200) return false;
  return (await parsePkiMessage(body)).pkiStatus === "0";
};

// Messages per window (building them costs an RSA signature each): enough for `--scep-rate` answers/s
// over the window; a server that answers faster ends its window early, and its rate is over the time used.
const PER_WINDOW = Math.min(20_000, arg("scep-rate", 800) * SECONDS);
const KEYS = [...caTargets.map((t) => t.key), "scepserver", "est"];
const results: Record<string, number[]> = Object.fromEntries(KEYS.map((k) => [k, []]));
const cpu: Record<string, number[]> = Object.fromEntries(KEYS.map((k) => [k, []]));
const failures: Record<string, number> = Object.fromEntries(KEYS.map((k) => [k, 0]));
type Drive = Awaited<ReturnType<typeof drive>>;
const record = (key: string, r: Drive) => {
  results[key]!.push(r.rate);
  cpu[key]!.push(r.cpuPerOp);
  failures[key]! += r.failed;
};
const ms = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(1));
const line = (name: string, r: Drive | undefined) => (r ? `${name} ${r.rate.toFixed(0)}/s (CPU per answer: server ${ms(r.cpuPerOp)} ms, client ${ms(r.clientCpuPerOp)} ms)` : `${name} -`);
await drive(estSend, CLIENTS * 4); // warm-up: TLS sessions, the issuing path, the RA keys
for (let round = 0; round < ROUNDS; round++) {
  const parts: string[] = [];
  for (const t of caTargets) {
    const messages = await scepMessages(t.ra, PER_WINDOW);
    const r = await drive(scepSend(t.url, messages, { tls } as RequestInit), messages.length, ca.proc.pid);
    record(t.key, r);
    parts.push(line(t.label, r));
  }
  let m: Drive | undefined;
  if (scepserver && serverRa) {
    const serverMessages = await scepMessages(serverRa, PER_WINDOW);
    m = await drive(scepSend(scepserver.url, serverMessages, {}), serverMessages.length, scepserver.proc.pid);
    record("scepserver", m);
  }
  const e = await drive(estSend, Infinity, ca.proc.pid);
  record("est", e);
  console.log(`round ${round + 1}: ${[...parts, line("scepserver", m), line("pki-ca EST", e)].join(", ")}`);
}

const rows: Row[] = caTargets.map((t) => ({ group: "SCEP PKCSReq", name: t.row, opsPerSec: median(results[t.key]!), anchor: "target 500/s", ratio: median(results[t.key]!) / 500 }));
const haveServer = results.scepserver!.length > 0;
if (haveServer) rows.push({ group: "SCEP PKCSReq", name: "scepserver (HTTP)", opsPerSec: median(results.scepserver!), anchor: "pki-ca / scepserver (target 2x)", ratio: median(results.scep!) / median(results.scepserver!) });
const est = median(results.est!);
rows.push({ group: "EST simpleenroll", name: "pki-ca (HTTPS)", opsPerSec: est, anchor: "target 500/s", ratio: est / 500 });
// Server CPU per answer: what one core would answer per second with the machine to itself.
const perCore = (k: string) => 1000 / median(cpu[k]!);
for (const t of caTargets) rows.push({ group: "SCEP PKCSReq", name: t.perCoreRow, opsPerSec: perCore(t.key), ...(haveServer ? { anchor: "vs scepserver per core-second (target 2x)", ratio: perCore(t.key) / perCore("scepserver") } : {}) });
if (haveServer) rows.push({ group: "SCEP PKCSReq", name: "scepserver, per core-second of CPU", opsPerSec: perCore("scepserver") });
rows.push({ group: "EST simpleenroll", name: "pki-ca, per core-second of CPU", opsPerSec: perCore("est") });
printTable(`Enrollment: answers/s at ${CLIENTS} clients, median of ${ROUNDS} rounds of ${SECONDS} s (failures: ${JSON.stringify(failures)})`, rows);

ca.proc.kill();
scepserver?.proc.kill();
await issuer.stop();
process.exit(0);
