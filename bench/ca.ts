/**
 * pki-ca next to Cloudflare's CFSSL (Debian `golang-cfssl`) on the same machine, same run:
 *  - issuance: POST of an auto-approved P-256 CSR (pki-ca: /service/api/v1/certificates with a
 *    bearer token, over HTTPS; CFSSL: `cfssl serve` /api/v1/cfssl/sign, over HTTPS with -tls-cert);
 *  - OCSP: POST of a DER request without nonce (pki-ca: /pki/ocsp over HTTPS, cached answer;
 *    CFSSL: `cfssl ocspserve` from a pre-signed responses file, plain HTTP, which is all it offers).
 * wrk, keep-alive, 64 connections, alternating rounds; medians reported.
 *
 * Usage: npm run bench -- ca [--seconds=5] [--rounds=3] [--connections=64]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestIssuer } from "../test/support/issuer.ts";
import { median, parseWrk, PIN, spawnTarget, type WrkResult } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const SECONDS = arg("seconds", 5);
const ROUNDS = arg("rounds", 3);
const CONNS = arg("connections", 64);

for (const tool of ["wrk", "cfssl", "openssl"]) {
  if (!Bun.which(tool)) {
    console.error(`${tool} is required (Debian packages: wrk, golang-cfssl, openssl)`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-ca-"));
const sh = (cmd: string[], stdin?: string) => {
  const p = Bun.spawnSync(cmd, { cwd: dir, stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${p.stderr.toString()}`);
  return p.stdout.toString();
};
const freePort = () => {
  const s = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = s.port;
  s.stop(true);
  return port!;
};

// One P-256 CSR, submitted over and over (each submission is a new certificate with a new serial).
sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=www.bench.test", "-addext", "subjectAltName=DNS:www.bench.test"]);
const csr = readFileSync(join(dir, "leaf.csr"), "utf8");

// CFSSL: a P-256 CA, an OCSP responder certificate, TLS for `cfssl serve`.
const ext = (name: string, body: string) => writeFileSync(join(dir, name), body);
ext("ca.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
ext("resp.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\n");
ext("tls.ext", "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=CFSSL bench CA", "-days", "365", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
for (const [name, extFile] of [["resp", "resp.ext"], ["tls", "tls.ext"]] as const) {
  sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", `/CN=CFSSL bench ${name}`]);
  sh(["openssl", "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "30", "-out", `${name}.pem`, "-extfile", extFile]);
}
ext("cfssl.json", JSON.stringify({ signing: { default: { expiry: "720h", usages: ["digital signature", "server auth"] } } }));
const cfsslPort = freePort();
const cfssl = Bun.spawn(["cfssl", "serve", "-address", "127.0.0.1", "-port", String(cfsslPort), "-ca", "ca.pem", "-ca-key", "ca-key.pem", "-config", "cfssl.json", "-tls-cert", "tls.pem", "-tls-key", "tls-key.pem", "-loglevel", "5"], { cwd: dir, stdout: "ignore", stderr: "ignore" });
process.on("exit", () => cfssl.kill("SIGTERM"));

// pki-ca in its own process, with a token issuer here.
const issuer = await startTestIssuer({ audience: "pki-ca" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
const token = await issuer.mint({ tenant: "bench", scope: "pki:request" }, { expiresIn: "1h" });
const ca = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "pki-ca.ts"), join(dir, "pki-ca"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const trust = readFileSync(ca.info.trust, "utf8");

// One pki-ca certificate and its OCSP request (no nonce, so the cached answer serves).
const issued = await fetch(`${ca.info.url}/service/api/v1/certificates`, {
  method: "POST",
  headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  body: JSON.stringify({ csr, profile: "bench" }),
  tls: { ca: trust },
} as RequestInit);
if (issued.status !== 201) throw new Error(`pki-ca issuance failed: ${issued.status} ${await issued.text()}`);
const cert = ((await issued.json()) as any).certificate;
writeFileSync(join(dir, "pki-leaf.pem"), cert.certificate_pem);
writeFileSync(join(dir, "pki-issuing.pem"), cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
sh(["openssl", "ocsp", "-issuer", "pki-issuing.pem", "-cert", "pki-leaf.pem", "-no_nonce", "-reqout", "pki-ocsp.der"]);
const pkiOcspDer = new Uint8Array(readFileSync(join(dir, "pki-ocsp.der")));

// A CFSSL certificate, its pre-signed OCSP response, and `cfssl ocspserve` serving it.
await waitFor(async () => (await fetch(`https://127.0.0.1:${cfsslPort}/api/v1/cfssl/sign`, { method: "POST", body: JSON.stringify({ certificate_request: csr }), tls: { rejectUnauthorized: false } } as RequestInit)).ok);
const signed = (await (await fetch(`https://127.0.0.1:${cfsslPort}/api/v1/cfssl/sign`, { method: "POST", body: JSON.stringify({ certificate_request: csr }), tls: { rejectUnauthorized: false } } as RequestInit)).json()) as any;
writeFileSync(join(dir, "cfssl-leaf.pem"), signed.result.certificate);
// ocspsign prints JSON; ocspserve wants one base64 response per line.
const ocspSigned = JSON.parse(sh(["cfssl", "ocspsign", "-ca", "ca.pem", "-responder", "resp.pem", "-responder-key", "resp-key.pem", "-cert", "cfssl-leaf.pem", "-loglevel", "5"])) as { ocspResponse: string };
writeFileSync(join(dir, "responses"), ocspSigned.ocspResponse + "\n");
const ocspPort = freePort();
const ocspserve = Bun.spawn(["cfssl", "ocspserve", "-address", "127.0.0.1", "-port", String(ocspPort), "-responses", "responses", "-loglevel", "5"], { cwd: dir, stdout: "ignore", stderr: "ignore" });
process.on("exit", () => ocspserve.kill("SIGTERM"));
sh(["openssl", "ocsp", "-issuer", "ca.pem", "-cert", "cfssl-leaf.pem", "-no_nonce", "-reqout", "cfssl-ocsp.der"]);
const cfsslOcspDer = new Uint8Array(readFileSync(join(dir, "cfssl-ocsp.der")));
const cfsslOcspUrl = `http://127.0.0.1:${ocspPort}/`;
const ocspPost = (der: Uint8Array) => ({ method: "POST", headers: { "content-type": "application/ocsp-request" }, body: der.slice().buffer as ArrayBuffer });
await waitFor(async () => (await fetch(cfsslOcspUrl, ocspPost(cfsslOcspDer))).ok);
for (const [name, url, init] of [
  ["pki-ca OCSP", `${ca.info.url}/pki/ocsp`, { ...ocspPost(pkiOcspDer), tls: { ca: trust } }],
  ["CFSSL OCSP", cfsslOcspUrl, ocspPost(cfsslOcspDer)],
] as const) {
  const r = await fetch(url, init as RequestInit);
  writeFileSync(join(dir, "check.der"), new Uint8Array(await r.arrayBuffer()));
  const issuerFile = name.startsWith("pki") ? "pki-issuing.pem" : "ca.pem";
  const out = sh(["openssl", "ocsp", "-respin", "check.der", "-issuer", issuerFile, "-cert", name.startsWith("pki") ? "pki-leaf.pem" : "cfssl-leaf.pem", "-noverify"]);
  if (!out.includes(": good")) throw new Error(`${name} did not answer good: ${out}`);
}

function lua(name: string, method: string, body: string | Uint8Array, headers: Record<string, string>): string {
  const file = join(dir, `${name}.lua`);
  const h = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join("\n");
  // Lua decimal escapes carry any bytes, binary DER included.
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  writeFileSync(file, `wrk.method = "${method}"\nwrk.body = "${Array.from(bytes, (b) => `\\${b}`).join("")}"\n${h}\n`);
  return file;
}

const targets: Record<string, { url: string; script?: string }> = {
  "pki-ca issuance": {
    url: `${ca.info.url}/service/api/v1/certificates`,
    script: lua("pki-issue", "POST", JSON.stringify({ csr, profile: "bench" }), { "content-type": "application/json", authorization: `Bearer ${token}` }),
  },
  "CFSSL issuance": { url: `https://127.0.0.1:${cfsslPort}/api/v1/cfssl/sign`, script: lua("cfssl-issue", "POST", JSON.stringify({ certificate_request: csr }), { "content-type": "application/json" }) },
  "pki-ca OCSP": { url: `${ca.info.url}/pki/ocsp`, script: lua("pki-ocsp", "POST", pkiOcspDer, { "content-type": "application/ocsp-request" }) },
  "CFSSL OCSP": { url: cfsslOcspUrl, script: lua("cfssl-ocsp", "POST", cfsslOcspDer, { "content-type": "application/ocsp-request" }) },
};

async function runWrk(url: string, script?: string, seconds = SECONDS): Promise<WrkResult> {
  const args = [...(PIN ? ["taskset", "-c", "1"] : []), "wrk", "-t1", `-c${CONNS}`, `-d${seconds}s`, "--latency", ...(script ? ["-s", script] : []), url];
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`wrk failed: ${await new Response(p.stderr).text()}`);
  return parseWrk(out);
}

async function waitFor(check: () => Promise<boolean>) {
  for (let i = 0; i < 100; i++) {
    try {
      if (await check()) return;
    } catch {}
    await Bun.sleep(100);
  }
  throw new Error("a CFSSL process did not come up");
}

const results: Record<string, WrkResult[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
try {
  for (const t of Object.values(targets)) await runWrk(t.url, t.script, 1); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(targets)) {
      const res = await runWrk(t.url, t.script);
      if (res.errors) throw new Error(`${name}: ${res.errors} errors during the run (${res.detail})`);
      results[name]!.push(res);
    }
  }
} finally {
  ca.proc.kill("SIGTERM");
  cfssl.kill("SIGTERM");
  ocspserve.kill("SIGTERM");
  await issuer.stop();
  await ca.proc.exited;
  rmSync(dir, { recursive: true, force: true });
}

const row = (name: string) => {
  const rs = results[name]!;
  return { name, rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50ms)), p99: median(rs.map((x) => x.p99ms)) };
};
console.log(`\npki-ca vs CFSSL ${"1.2.0 (Debian golang-cfssl)"}, wrk keep-alive, ${CONNS} connections, median of ${ROUNDS} x ${SECONDS}s${PIN ? ", servers on core 0, wrk on core 1" : ""}\n`);
console.log("| target | req/s | p50 ms | p99 ms |");
console.log("|---|---:|---:|---:|");
for (const name of Object.keys(targets)) {
  const x = row(name);
  console.log(`| ${x.name} | ${x.rps.toFixed(0)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} |`);
}
const issueRatio = row("pki-ca issuance").rps / row("CFSSL issuance").rps;
const ocspRatio = row("pki-ca OCSP").rps / row("CFSSL OCSP").rps;
console.log(`\nissuance: ${row("pki-ca issuance").rps.toFixed(0)}/s, ${issueRatio.toFixed(2)}x CFSSL; target >= 1,000/s and >= 2x -> ${row("pki-ca issuance").rps >= 1000 && issueRatio >= 2 ? "met" : "NOT met"}`);
console.log(`OCSP: ${row("pki-ca OCSP").rps.toFixed(0)}/s, ${ocspRatio.toFixed(2)}x CFSSL; target >= 10,000/s and >= 2x -> ${row("pki-ca OCSP").rps >= 10000 && ocspRatio >= 2 ? "met" : "NOT met"}`);
process.exit(0);
