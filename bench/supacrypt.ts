/**
 * Supacrypt: ES256 signs per second through sm-kms's gRPC API (mutual TLS) and through its
 * HTTPS API (bearer token), and directly on SoftHSM2 (pkcs11js, CKM_ECDSA over the SHA-256
 * digest), in the same run. sm-kms keeps its keys in a SoftHSM2 token, so the rows differ only by
 * the path to the same kind of key. Every row is a closed loop with the same number of
 * operations in flight; rounds are interleaved (gRPC, HTTPS, direct, gRPC, ...) so machine load
 * hits all alike, and the medians are printed.
 *
 * The anchor comparison (gRPC against HTTPS, target >= 1) uses one client for both: curl-load
 * (bench/tools/curl-load.c, libcurl, compiled here), in its own process, with the same requests
 * in flight: gRPC over `--channels` HTTP/2 connections, HTTPS over HTTP/1.1 keep-alive
 * connections (one per request in flight, as fetch uses). Clients that differ by more than the
 * protocol are measured too, against the same HTTPS row of fetch: grpc-js in this process (its
 * JavaScript HTTP/2 client costs about twice fetch's CPU per call, on the same 2 cores as the
 * service) and Python's grpcio (gRPC's C core).
 *
 * The PKCS#11 module's row: `bench/supacrypt-pkcs11.ts`, when present, exports
 * `measurePkcs11Module(ctx: SupacryptBenchContext): Promise<number | undefined>` (signs/s) and is
 * measured in the same rounds; see "PKCS#11 module hook" below.
 *
 * Usage: npm run bench -- supacrypt [--seconds=4] [--rounds=3] [--concurrency=32] [--channels=4]
 *   [--rows=grpc-c,https-c,...] (only these rows, e.g. to profile the service under one protocol
 *   with BENCH_CPU_PROF; rows: grpc-c, https-c, grpc, grpcio, https, direct, module)
 * Needs SoftHSM2 (Debian softhsm2).
 */
import { pythonWith } from "../test/support/python.ts";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { startTestIssuer } from "../test/support/issuer.ts";
import { setupSoftHsm } from "../test/support/softhsm.ts";
import { clientCertificate } from "../test/support/tls.ts";
import { DirectoryStore, loadOrCreateSuiteCa, suiteCaSealerFromFiles } from "../src/pki/index.ts";
import { openPkcs11Provider } from "../src/crypto/index.ts";
import { PROTO_ROOT } from "../src/service/grpc-listener.ts";
import { cpuMsOf, mainThreadCpuMsOf, median, spawnTarget } from "./wrk.ts";
import { printTable, type Row } from "./lib.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 4);
const ROUNDS = arg("rounds", 3);
const CONCURRENCY = arg("concurrency", 32);
const ROWS = new Set(
  (process.argv.find((a) => a.startsWith("--rows="))?.slice("--rows=".length) ?? "grpc-c,https-c,grpc,grpcio,https,direct,module").split(","),
);
const CLIENT_URI = "spiffe://cryptoutil/bench/supacrypt";

/** What a further row (the PKCS#11 module) gets to measure the same operation on the same service. */
export interface SupacryptBenchContext {
  /** sm-kms's public URL and a bearer token of tenant `bench` with every kms scope. */
  restUrl: string;
  token: string;
  /** PEM that verifies sm-kms's server certificates. */
  ca: string;
  caFile: string;
  /** host:port of the gRPC API, and a client certificate mapped to tenant `bench`. */
  grpcAddress: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The ES256 key (in the HSM) every row signs with, and the payload. */
  keyId: string;
  payload: Uint8Array;
  seconds: number;
  concurrency: number;
}

const softhsm = await setupSoftHsm();
if (!softhsm) {
  console.error("SoftHSM2 is required (Debian package 'softhsm2')");
  process.exit(2);
}
const serviceToken = softhsm.createToken("supacrypt-kms");
const directToken = softhsm.createToken("supacrypt-direct");

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-supacrypt-"));
const issuer = await startTestIssuer({ audience: "sm-kms" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "kms:admin kms:sign kms:verify" }, { expiresIn: "2h" });
const kms = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "sm-kms-grpc.ts"), join(dir, "sm-kms"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")], {
  SUPACRYPT_BENCH_CLIENT: CLIENT_URI,
  SUPACRYPT_BENCH_HSM_MODULE: softhsm.modulePath,
  SUPACRYPT_BENCH_HSM_TOKEN: serviceToken.label,
  SUPACRYPT_BENCH_HSM_PIN_FILE: serviceToken.pinFile,
  SOFTHSM2_CONF: softhsm.confPath,
});
const { url, trust, grpc: grpcAddress } = kms.info as { url: string; trust: string; grpc: string };
const ca = await Bun.file(trust).text();

// The client certificate, from the suite CA the target created beside its data dir.
const suiteCa = (await loadOrCreateSuiteCa({ store: new DirectoryStore(join(dir, "suite-ca")), sealer: await suiteCaSealerFromFiles([join(dir, "dev-unseal.secret")]) })).ca;
const client = await clientCertificate(suiteCa, dir, "supacrypt-bench", { uris: [CLIENT_URI] });

async function rest(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/service/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { ca },
  } as RequestInit);
  const j = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(j)}`);
  return j;
}

const payload = crypto.getRandomValues(new Uint8Array(64));
const payloadB64u = Buffer.from(payload).toString("base64url");
const key = await rest("POST", "/keys", { name: "supacrypt-bench", algorithm: "ES256" });
const held = (await rest("GET", `/keys/${key.id}`)).versions?.[0]?.origin;
console.log(`sm-kms key ${key.id} (ES256, ${held}, in the service's HSM: a SoftHSM2 token); ${CONCURRENCY} in flight, ${ROUNDS} rounds of ${SECONDS} s`);

// --- gRPC ------------------------------------------------------------------------------------
const definition = protoLoader.loadSync("supacrypt/v1/keys.proto", { keepCase: true, includeDirs: [PROTO_ROOT] });
const KeyService = (grpc.loadPackageDefinition(definition) as any).supacrypt.v1.KeyService as grpc.ServiceClientConstructor;
// Several channels (HTTP/2 connections), as the HTTPS client has several keep-alive connections;
// each channel is its own connection (grpc.channel_id keeps grpc-js from sharing one).
const CHANNELS = arg("channels", 4);
const grpcClients = Array.from(
  { length: CHANNELS },
  (_, i) =>
    new KeyService(grpcAddress, grpc.credentials.createSsl(Buffer.from(ca), Buffer.from(client.key), Buffer.from(client.cert)), {
      "grpc.ssl_target_name_override": "localhost",
      "grpc.channel_id": i,
    }) as any,
);
let next = 0;
const grpcSign = () =>
  new Promise<void>((resolve, reject) =>
    grpcClients[next++ % CHANNELS].Sign({ key_id: key.id, payload: Buffer.from(payload) }, (err: Error | null, r: { jws: string }) => (err ? reject(err) : r.jws ? resolve() : reject(new Error("no jws")))),
  );

// --- gRPC with the grpcio client (gRPC's C core, Python) ---------------------------------------
// The same calls from a client whose HTTP/2 and TLS are native, to tell the server's rate from the
// grpc-js client's: bench/supacrypt-grpcio.py, run per round; skipped where python3-grpcio is absent.
const signRequestHex = (definition["supacrypt.v1.KeyService"] as protoLoader.ServiceDefinition).Sign!.requestSerialize({ key_id: key.id, payload: Buffer.from(payload) }).toString("hex");
// The first python3 on PATH with Debian's python3-grpcio (see test/support/python.ts).
const python = pythonWith("grpc");
const hasGrpcio = python !== undefined;
async function grpcioRate(): Promise<number> {
  const proc = Bun.spawn([python!, join(import.meta.dir, "supacrypt-grpcio.py")], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  proc.stdin.write(
    JSON.stringify({ address: grpcAddress, ca_file: trust, cert_file: client.certFile, key_file: client.keyFile, request_hex: signRequestHex, seconds: SECONDS, concurrency: CONCURRENCY, channels: CHANNELS }),
  );
  proc.stdin.end();
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error("the grpcio client failed");
  return Number(out.trim());
}

// --- gRPC and HTTPS with one C client (curl-load) ------------------------------------------------
const curlLoad = join(dir, "curl-load");
const built = spawnSync("cc", ["-O2", "-o", curlLoad, join(import.meta.dir, "tools", "curl-load.c"), "-lcurl", "-lpthread"], { encoding: "utf8" });
const hasCurlLoad = built.status === 0;
if (!hasCurlLoad) console.error(`curl-load not built (a C compiler and libcurl4-openssl-dev are needed): ${built.error?.message ?? built.stderr}`);
/** The last run's calls, warm-up included, and its own CPU per call. */
const curlRuns: Record<string, { total: number; clientUs: number[] }> = { "grpc-c": { total: 0, clientUs: [] }, "https-c": { total: 0, clientUs: [] } };
async function curlRate(row: "grpc-c" | "https-c"): Promise<number> {
  const args =
    row === "grpc-c"
      ? ["grpc", `https://${grpcAddress}/supacrypt.v1.KeyService/Sign`, String(SECONDS), String(CONCURRENCY), String(CHANNELS), signRequestHex, trust, client.certFile, client.keyFile]
      : ["https", `${url}/service/api/v1/keys/${key.id}/sign`, String(SECONDS), String(CONCURRENCY), String(CHANNELS), Buffer.from(JSON.stringify({ payload: payloadB64u })).toString("hex"), trust, "-", "-", `authorization: Bearer ${token}`];
  const proc = Bun.spawn([curlLoad, ...args], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  const m = /^ops (\d+) seconds ([\d.]+) errors (\d+) cpu_us_per_op ([\d.]+) total (\d+)/.exec(out);
  if ((await proc.exited) !== 0 || !m || Number(m[3]) > 0) throw new Error(`curl-load ${row}: ${out.trim()}`);
  curlRuns[row]!.total = Number(m[5]);
  curlRuns[row]!.clientUs.push(Number(m[4]));
  return Number(m[1]) / Number(m[2]);
}

// --- HTTPS -----------------------------------------------------------------------------------
const restSign = async () => {
  const j = await rest("POST", `/keys/${key.id}/sign`, { payload: payloadB64u });
  if (!j.jws) throw new Error("no jws");
};

// --- SoftHSM2 directly ----------------------------------------------------------------------
const hsm = await openPkcs11Provider({ modulePath: softhsm.modulePath, tokenLabel: directToken.label, pinFile: directToken.pinFile });
const pair = await hsm.generateEcKeyPair("P-256", { location: "token", label: "supacrypt-direct", persistent: false });
const directSign = async () => {
  const sig = await hsm.sign(pair.privateKey, "SHA-256", payload);
  if (sig.length !== 64) throw new Error("bad signature");
};

// --- PKCS#11 module hook ----------------------------------------------------------------------
// The PKCS#11 module (providers/pkcs11, libcryptoutil-pkcs11.so) is measured by
// bench/supacrypt-pkcs11.ts when that file exists: it gets this run's service, key and client
// certificate, and returns signs/s for the same ES256 operation through the module.
const moduleFile = join(import.meta.dir, "supacrypt-pkcs11.ts");
const context: SupacryptBenchContext = {
  restUrl: url,
  token,
  ca,
  caFile: trust,
  grpcAddress,
  clientCertFile: client.certFile,
  clientKeyFile: client.keyFile,
  keyId: key.id,
  payload,
  seconds: SECONDS,
  concurrency: CONCURRENCY,
};
const pkcs11Module: ((ctx: SupacryptBenchContext) => Promise<number | undefined>) | undefined = existsSync(moduleFile)
  ? (await import(moduleFile)).measurePkcs11Module
  : undefined;

/** CPU time (user + system, ms) sm-kms's process has used so far; NaN where /proc is not there. */
const serviceCpuMs = () => cpuMsOf(kms.proc.pid);
/** sm-kms's CPU time per operation (µs) while `measure` ran `ops/s` for about SECONDS. */
const cpu: Record<string, number[]> = { grpc: [], grpcio: [], https: [], "grpc-c": [], "https-c": [] };
/** The same for sm-kms's main thread (its event loop) alone. */
const mainCpu: Record<string, number[]> = { grpc: [], grpcio: [], https: [], "grpc-c": [], "https-c": [] };
/** This process's CPU time per operation (µs): the in-process clients' cost (grpc-js, fetch). */
const clientCpu: Record<string, number[]> = { grpc: [], https: [] };
async function withServiceCpu(row: string, measure: () => Promise<number>): Promise<number> {
  const c0 = serviceCpuMs();
  const m0 = mainThreadCpuMsOf(kms.proc.pid);
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const rate = await measure();
  // curl-load reports every call it made (warm-up included); elsewhere the rate stands for the whole run.
  const ops = curlRuns[row] ? curlRuns[row].total : rate * ((performance.now() - t0) / 1000);
  cpu[row]!.push(((serviceCpuMs() - c0) * 1000) / ops);
  mainCpu[row]!.push(((mainThreadCpuMsOf(kms.proc.pid) - m0) * 1000) / ops);
  const u = process.cpuUsage(u0);
  clientCpu[row]?.push((u.user + u.system) / ops);
  return rate;
}

/** Operations completed per second by `concurrency` closed-loop workers over `seconds`. */
async function closedLoop(op: () => Promise<void>): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await op();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - t0);
}

// Warm-up: connections, sessions and the service's key cache, and each path's code through the
// JIT's tiers (in a 4 s round right after start, sm-kms's JIT threads still take up to a sixth of
// its CPU on the gRPC path's JavaScript), so that every round measures the steady state.
for (const [row, op] of [["grpc", grpcSign], ["https", restSign], ["direct", directSign]] as const) if (ROWS.has(row)) await closedLoop(op).catch((e) => Promise.reject(new Error(`warm-up failed: ${e}`)));
if (hasCurlLoad) for (const row of ["grpc-c", "https-c"] as const) if (ROWS.has(row)) await curlRate(row);
for (const run of Object.values(curlRuns)) run.clientUs.length = 0;

const rates: Record<string, number[]> = { grpc: [], grpcio: [], https: [], direct: [], module: [], "grpc-c": [], "https-c": [] };
for (let r = 0; r < ROUNDS; r++) {
  if (hasCurlLoad) {
    // The anchor pair, in alternating order from round to round.
    const pair = r % 2 === 0 ? (["grpc-c", "https-c"] as const) : (["https-c", "grpc-c"] as const);
    for (const row of pair) if (ROWS.has(row)) rates[row]!.push(await withServiceCpu(row, () => curlRate(row)));
  }
  if (ROWS.has("grpc")) rates.grpc!.push(await withServiceCpu("grpc", () => closedLoop(grpcSign)));
  if (hasGrpcio && ROWS.has("grpcio")) rates.grpcio!.push(await withServiceCpu("grpcio", grpcioRate));
  if (ROWS.has("https")) rates.https!.push(await withServiceCpu("https", () => closedLoop(restSign)));
  if (ROWS.has("direct")) rates.direct!.push(await closedLoop(directSign));
  if (pkcs11Module && ROWS.has("module")) {
    const m = await pkcs11Module(context);
    if (m !== undefined) rates.module!.push(m);
  }
}

const g = median(rates.grpc!);
const h = median(rates.https!);
const d = median(rates.direct!);
const gc = hasCurlLoad ? median(rates["grpc-c"]!) : NaN;
const hc = hasCurlLoad ? median(rates["https-c"]!) : NaN;
const rows: Row[] = [
  { group: "ES256 sign", name: "sm-kms gRPC (mTLS, C client: libcurl, HTTP/2)", opsPerSec: gc, anchor: "of HTTPS, same client (target >= 1)", ratio: gc / hc },
  { group: "ES256 sign", name: "sm-kms HTTPS API (bearer, C client: libcurl, HTTP/1.1)", opsPerSec: hc },
  { group: "ES256 sign", name: "sm-kms gRPC (mTLS, grpc-js client)", opsPerSec: g, anchor: "of HTTPS (fetch)", ratio: g / h },
  hasGrpcio
    ? { group: "ES256 sign", name: "sm-kms gRPC (mTLS, grpcio client)", opsPerSec: median(rates.grpcio!), anchor: "of HTTPS (fetch)", ratio: median(rates.grpcio!) / h }
    : { group: "ES256 sign", name: "sm-kms gRPC (mTLS, grpcio client: python3-grpcio absent)", opsPerSec: NaN },
  { group: "ES256 sign", name: "sm-kms HTTPS API (bearer, fetch)", opsPerSec: h },
  { group: "ES256 sign", name: "SoftHSM2 directly (pkcs11js)", opsPerSec: d },
];
if (rates.module!.length > 0) {
  const m = median(rates.module!);
  rows.push({ group: "ES256 sign", name: "PKCS#11 module -> sm-kms", opsPerSec: m, anchor: "of 1,000/s target", ratio: m / 1000 });
} else {
  rows.push({ group: "ES256 sign", name: "PKCS#11 module -> sm-kms (no measurePkcs11Module hook: see bench supacrypt-pkcs11)", opsPerSec: NaN });
}
printTable(`Supacrypt: ES256 signs/s, ${CONCURRENCY} in flight, median of ${ROUNDS} rounds of ${SECONDS} s`, rows);
console.log(`\ngRPC / HTTPS, same C client: ${(gc / hc).toFixed(2)}x (per round: ${rates["grpc-c"]!.map((x, i) => (x / rates["https-c"]![i]!).toFixed(2)).join(", ")})`);
console.log(`gRPC (grpc-js) / HTTPS (fetch): ${(g / h).toFixed(2)}x; gRPC (grpc-js) / SoftHSM2 direct: ${(g / d).toFixed(2)}x`);
const us = (row: string) => (cpu[row]!.length > 0 ? `${median(cpu[row]!).toFixed(0)} µs` : "-");
console.log(
  `sm-kms CPU per sign (median): gRPC ${us("grpc-c")} / HTTPS ${us("https-c")} with the C client; gRPC ${us("grpc")} (grpc-js client), ${us("grpcio")} (grpcio client; includes its 1 s warm-up), HTTPS ${us("https")} (fetch)`,
);
const mu = (row: string) => (mainCpu[row]!.length > 0 ? `${median(mainCpu[row]!).toFixed(0)} µs` : "-");
const perRound = (a: number[], b: number[]) => a.map((x, i) => (x / b[i]!).toFixed(2)).join(", ");
console.log(`  gRPC / HTTPS per round: ${perRound(cpu["grpc-c"]!, cpu["https-c"]!)} (process), ${perRound(mainCpu["grpc-c"]!, mainCpu["https-c"]!)} (main thread)`);
console.log(`  of which its main thread (event loop): gRPC ${mu("grpc-c")} / HTTPS ${mu("https-c")} with the C client`);
const cu = (rs: number[]) => (rs.length > 0 ? `${median(rs).toFixed(0)} µs` : "-");
console.log(`client CPU per sign (median): curl-load gRPC ${cu(curlRuns["grpc-c"]!.clientUs)}, HTTPS ${cu(curlRuns["https-c"]!.clientUs)}; grpc-js ${cu(clientCpu.grpc!)}, fetch ${cu(clientCpu.https!)}`);

for (const c of grpcClients) c.close();
await hsm.close();
kms.proc.kill("SIGTERM");
await kms.proc.exited;
await issuer.stop();
softhsm.cleanup();
process.exit(0);
