/**
 * pki-ca's ACME next to Let's Encrypt's pebble (Debian `pebble`) on the same machine, same run,
 * same client driver and validation mode: complete orders per second at `--clients` concurrent
 * ACME clients. One complete order = newOrder → read the authorization → the http-01 key
 * authorization put on the bench's local responder → answer the challenge → poll until the
 * CA fetched it (real http-01 over loopback) → finalize with a CSR naming it → poll until valid →
 * download the certificate. Each client has its own ES256 account (its JWS signed with
 * node:crypto), keeps the Replay-Nonce of each answer for its next request and polls every
 * `--poll-ms`; the CSRs of a round are made before its window, so neither pace the clients. Names (`o<n>.bench.test`)
 * resolve through a DNS server of the bench that both CAs use.
 *
 * Like for like: pebble runs with PEBBLE_VA_NOSLEEP=1 (no random validation delay),
 * PEBBLE_WFE_NONCEREJECT=0 (no random badNonce) and PEBBLE_AUTHZREUSE=0 (a new authorization per
 * order, as pki-ca makes). Not alike: pebble keeps everything in memory and checks no CAA;
 * pki-ca stores accounts, orders, authorizations and certificates in its database (CAA is off in
 * this run, as pebble has none).
 *
 * Pinned by default (`npm run bench -- acme` sets BENCH_PIN=1; BENCH_PIN=0 turns it off): each
 * server runs on core 0 in its round, and this process (the clients, the http-01 responder and
 * the DNS server) on core 1, so each server has one core to itself and both are driven until
 * that core is busy; the orders/s of the two rows then compare like for like, and CPU per order
 * says the same per CPU second.
 *
 * Known: Debian's pebble 2.4 can stop answering every request under this concurrency: a
 * lock-order deadlock in its in-memory store (newOrder's FindValidAuthorization holds the store's
 * read lock and waits for an authorization's lock, which validation holds while it waits for the
 * store's write lock; seen in a SIGQUIT goroutine dump). A request that gets no answer in 20 s
 * fails its order (counted and shown), so the round ends and the pebble row shows what it
 * completed; the next round starts a fresh pebble. On one core (pinned) it has not stalled in
 * this bench; unpinned, it does within seconds in most rounds.
 *
 * Besides orders/s: each server process's CPU time (from /proc) per answered request over the
 * window, and per complete order: CPU per request × the requests a complete order took (its
 * polls and badNonce retries included, averaged over the orders completed in the window). The
 * machine's other load changes CPU time far less than it changes the wall clock, and counting by
 * answered requests leaves out neither the orders still running when the window closes nor
 * those a stalled pebble never finishes, which CPU / completed orders would charge to the
 * orders that did finish. A round counts for that comparison once the server answered at least
 * MIN_REQUESTS requests in it (a pebble that stalled at once does not). Each round's line also
 * gives the part on the main thread (JavaScript's event loop; the rest is the runtime's other
 * threads: disk syncs, garbage collection, the JIT).
 *
 * Steady state: pki-ca's one process serves every round, and before the first it serves
 * `--warmup` seconds of the same load unmeasured, so the JIT has compiled its hot paths (its
 * compiler thread's CPU falls from about a tenth of the process's in the first 10 s of load to
 * next to nothing after half a minute). pebble is compiled ahead of time and starts afresh each
 * round (see the stalls above); each round's warm-up order per client is all it gets, as before.
 *
 * Usage: npm run bench -- acme [--clients=32] [--seconds=10] [--rounds=5] [--warmup=20] [--poll-ms=10]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyObject, sign as signWith } from "node:crypto";
import { exportJWK, generateKeyPair, calculateJwkThumbprint, type JWK } from "jose";
import * as x509 from "../src/pki/x509.ts";
import { startTestIssuer } from "../test/support/issuer.ts";
import { TestDns } from "../test/support/dns-server.ts";
import { freePort } from "../test/support/server-process.ts";
import { cpuMsOf, mainThreadCpuMsOf, median, PIN, spawnTarget } from "./wrk.ts";

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1] ?? d);
const CLIENTS = arg("clients", 32);
const SECONDS = arg("seconds", 10);
const ROUNDS = arg("rounds", 5);
const WARMUP = arg("warmup", 20);
/** Answered requests a round needs to count for the CPU comparison. */
const MIN_REQUESTS = 2000;
const POLL_MS = arg("poll-ms", 10);

for (const tool of ["pebble", "openssl"]) {
  if (!Bun.which(tool)) {
    console.error(`${tool} is required (Debian packages: pebble, openssl)`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-acme-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

// The environment both CAs validate in: names resolve to 127.0.0.1, http-01 answers come from here.
const dns = await TestDns.start();
dns.fallbackA = "127.0.0.1";
const tokens = new Map<string, string>();
const responder = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(new URL(req.url).pathname);
    const ka = m ? tokens.get(m[1]!) : undefined;
    return ka ? new Response(ka) : new Response("not found", { status: 404 });
  },
});

// pki-ca in its own process.
const issuer = await startTestIssuer({ audience: "pki-ca" });
writeFileSync(join(dir, "issuer-ca.pem"), issuer.caPem);
writeFileSync(join(dir, "acme.json"), JSON.stringify({ http01_port: responder.port, dns_resolvers: [dns.address] }));
const ca = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "pki-ca-acme.ts"), join(dir, "pki-ca"), issuer.issuer, issuer.jwksUrl, join(dir, "issuer-ca.pem")]);
const caTrust = readFileSync(ca.info.trust, "utf8");

// Under BENCH_PIN the servers share core 0 and this process (the clients, the responder, the DNS
// server) keeps to core 1, so neither server's CPU time is measured while it fights the clients for a core.
if (PIN) Bun.spawnSync(["taskset", "-a", "-p", "-c", "1", String(process.pid)], { stdout: "ignore" });

// pebble in its own process (on the server core too, under BENCH_PIN), with a TLS certificate made here.
const sh = (cmd: string[]) => {
  const p = Bun.spawnSync(cmd, { cwd: dir, stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${p.stderr.toString()}`);
};
sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "pebble-key.pem", "-out", "pebble.pem", "-subj", "/CN=127.0.0.1", "-days", "2", "-addext", "subjectAltName=IP:127.0.0.1"]);
/**
 * A fresh pebble for each round: a pebble that deadlocked in one round (see above) answers
 * nothing in the next, so each round measures a pebble from its start until it completes or stalls.
 */
async function startPebble(): Promise<{ dir: string; pid: number; stop: () => void }> {
  const port = await freePort();
  const config = join(dir, "pebble.json");
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${await freePort()}`,
        certificate: join(dir, "pebble.pem"),
        privateKey: join(dir, "pebble-key.pem"),
        httpPort: responder.port,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const proc = Bun.spawn([...(PIN ? ["taskset", "-c", "0"] : []), "pebble", "-config", config, "-dnsserver", dns.address, "-strict=false"], {
    cwd: dir,
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const stop = () => proc.kill("SIGTERM");
  process.on("exit", stop);
  const url = `https://127.0.0.1:${port}/dir`;
  // Generous: on a loaded machine a port freePort found can also be taken meanwhile (then pebble exits and says why).
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url, { tls: { ca: pebbleTrust } } as RequestInit)).ok) return { dir: url, pid: proc.pid, stop };
    } catch {
      // not listening yet
    }
    if (proc.exitCode !== null || i > 600) {
      stop();
      throw new Error(`pebble did not start: ${(await new Response(proc.stderr as ReadableStream).text()).slice(-500)}`);
    }
    await Bun.sleep(50);
  }
}
const pebbleTrust = readFileSync(join(dir, "pebble.pem"), "utf8");

/** One ACME client: its account key, the last Replay-Nonce it got, its request count. */
class Client {
  private nonce: string | undefined;
  kid: string | undefined;
  requests = 0;
  private constructor(
    private readonly dir: Record<string, string>,
    private readonly trust: string,
    private readonly key: KeyObject,
    private readonly jwk: JWK,
    readonly thumbprint: string,
  ) {}

  static async create(directoryUrl: string, trust: string): Promise<Client> {
    const keys = (await generateKeyPair("ES256", { extractable: true })) as CryptoKeyPair;
    const jwk = await exportJWK(keys.publicKey);
    const dir = (await (await fetch(directoryUrl, { tls: { ca: trust } } as RequestInit)).json()) as Record<string, string>;
    const c = new Client(dir, trust, KeyObject.from(keys.privateKey), jwk, await calculateJwkThumbprint(jwk, "sha256"));
    const r = await c.post(dir.newAccount!, { termsOfServiceAgreed: true }, true);
    if (r.status !== 201 && r.status !== 200) throw new Error(`newAccount ${r.status}: ${await r.text()}`);
    c.kid = r.headers.get("location")!;
    return c;
  }

  async post(url: string, payload: unknown, useJwk = false): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      if (!this.nonce) {
        const h = await fetch(this.dir.newNonce!, { method: "HEAD", tls: { ca: this.trust } } as RequestInit);
        this.requests++;
        this.nonce = h.headers.get("replay-nonce")!;
      }
      const header = { alg: "ES256", nonce: this.nonce, url, ...(useJwk ? { jwk: this.jwk } : { kid: this.kid }) };
      // A flattened JWS in ES256, signed here synchronously (the clients' CPU is not what is measured, but it paces them).
      const prot = Buffer.from(JSON.stringify(header)).toString("base64url");
      const body = payload === "" ? "" : Buffer.from(JSON.stringify(payload)).toString("base64url");
      const signed = { protected: prot, payload: body, signature: signWith("sha256", Buffer.from(`${prot}.${body}`), { key: this.key, dsaEncoding: "ieee-p1363" }).toString("base64url") };
      const t0 = performance.now();
      const r = await fetch(url, { method: "POST", headers: { "content-type": "application/jose+json" }, body: JSON.stringify(signed), tls: { ca: this.trust }, signal: AbortSignal.timeout(20_000) } as RequestInit).catch((e) => {
        throw new Error(`POST ${url.replace(/^https:\/\/[^/]+/, "")} after ${(performance.now() - t0).toFixed(0)} ms: ${(e as Error).message ?? e}`);
      });
      this.requests++;
      this.nonce = r.headers.get("replay-nonce") ?? undefined;
      if (r.status === 400 && attempt < 3 && r.headers.get("content-type")?.includes("problem")) {
        const p = (await r.clone().json()) as { type?: string };
        if (p.type === "urn:ietf:params:acme:error:badNonce") continue;
      }
      return r;
    }
  }

  forgetNonce() {
    this.nonce = undefined;
  }

  /** POST-as-GET every POLL_MS until `until`; an order that does not move for 30 s fails. */
  private async poll(url: string, until: (status: string) => boolean): Promise<any> {
    const deadline = performance.now() + 30_000;
    for (;;) {
      const o = (await (await this.post(url, "")).json()) as any;
      if (until(o.status)) return o;
      if (performance.now() > deadline) throw new Error(`stuck: ${JSON.stringify(o).slice(0, 300)}`);
      await Bun.sleep(POLL_MS);
    }
  }

  /** One complete order for `name`; returns the certificate PEM. */
  async order(name: string, csr: string): Promise<string> {
    const r = await this.post(this.dir.newOrder!, { identifiers: [{ type: "dns", value: name }] });
    if (r.status !== 201) throw new Error(`newOrder ${r.status}: ${await r.text()}`);
    const orderUrl = r.headers.get("location")!;
    const order = (await r.json()) as any;
    const authz = (await (await this.post(order.authorizations[0], "")).json()) as any;
    const ch = authz.challenges.find((c: any) => c.type === "http-01");
    tokens.set(ch.token, `${ch.token}.${this.thumbprint}`);
    const cr = await this.post(ch.url, {});
    if (cr.status !== 200) throw new Error(`challenge ${cr.status}: ${await cr.text()}`);
    const ready = await this.poll(orderUrl, (s) => s !== "pending");
    tokens.delete(ch.token);
    if (ready.status !== "ready") throw new Error(`order ${ready.status}: ${JSON.stringify(ready.error)}`);
    const fr = await this.post(order.finalize, { csr });
    if (fr.status !== 200) throw new Error(`finalize ${fr.status}: ${await fr.text()}`);
    const done = await this.poll(orderUrl, (s) => s === "valid" || s === "invalid");
    if (done.status !== "valid") throw new Error(`order ${done.status}`);
    const cert = await this.post(done.certificate, "");
    if (cert.status !== 200) throw new Error(`certificate ${cert.status}`);
    return cert.text();
  }
}

// CSRs: one P-256 key, a CSR per order naming its name, made before each round's window (so
// making them does not pace the clients).
const csrKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
const csrFor = async (name: string) => {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${name}`,
    keys: csrKeys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }])],
  });
  return Buffer.from(csr.rawData).toString("base64url");
};

let serial = 0;
/** Names with their CSRs, made ahead: enough for `n` orders (more are made as needed). */
async function csrPool(n: number): Promise<{ next: () => Promise<{ name: string; csr: string }> }> {
  const made = await Promise.all(Array.from({ length: n }, async () => {
    const name = `o${serial++}.bench.test`;
    return { name, csr: await csrFor(name) };
  }));
  return {
    next: async () => {
      const m = made.pop();
      if (m) return m;
      const name = `o${serial++}.bench.test`;
      return { name, csr: await csrFor(name) };
    },
  };
}
/** Orders per second a round prepares CSRs for (beyond it, CSRs are made during the round). */
const CSR_RATE = 700;
/**
 * Runs CLIENTS clients for SECONDS; orders completed in the window, requests made, per-order
 * latencies, and the CA process's CPU time over the window (ms; robust to the machine's other
 * load, which mostly stretches the wall clock).
 */
async function round(directoryUrl: string, trust: string, pid: number, seconds = SECONDS): Promise<{ orders: number; failures: number; requests: number; requestsPerOrder: number; latencies: number[]; cpuMs: number; mainCpuMs: number }> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => Client.create(directoryUrl, trust)));
  const pool = await csrPool(Math.ceil(seconds * CSR_RATE));
  // A warm-up order each (connections, caches) outside the window; one that fails (a stalled
  // pebble) shows in the window's failures.
  await Promise.all(clients.map(async (c) => { const w = await pool.next(); await c.order(w.name, w.csr).catch(() => c.forgetNonce()); }));
  for (const c of clients) c.requests = 0;
  const cpu0 = cpuMsOf(pid);
  const main0 = mainThreadCpuMsOf(pid);
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  let orders = 0;
  let failures = 0;
  let orderRequests = 0;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        const t = performance.now();
        const before = c.requests;
        try {
          const { name, csr } = await pool.next();
          await c.order(name, csr);
        } catch (e) {
          // A failed order is not counted; the first few are shown.
          if (failures++ < 3) console.error(`an order failed: ${(e as Error).message ?? e}`);
          c.forgetNonce();
          continue;
        }
        const done = performance.now();
        if (done <= end) {
          orders++;
          orderRequests += c.requests - before;
          latencies.push(done - t);
        }
      }
    }),
  );
  return { orders, failures, requests: clients.reduce((n, c) => n + c.requests, 0), requestsPerOrder: orderRequests / Math.max(orders, 1), latencies, cpuMs: cpuMsOf(pid) - cpu0, mainCpuMs: mainThreadCpuMsOf(pid) - main0 };
}

const targets = [
  { name: "pki-ca ACME (HTTPS, TLS 1.3, database)", trust: caTrust, start: async () => ({ dir: `${ca.info.url}/acme/bench/directory`, pid: ca.proc.pid!, stop: () => undefined }), warm: true },
  { name: "pebble 2.4 (HTTPS, in memory)", trust: pebbleTrust, start: startPebble, warm: false },
];
for (const t of targets.filter((t) => t.warm && WARMUP > 0)) {
  const server = await t.start();
  const out = await round(server.dir, t.trust, server.pid, WARMUP);
  console.error(`warm-up ${t.name}: ${WARMUP} s, ${(out.orders / WARMUP).toFixed(1)} orders/s (not counted)`);
}
const results = targets.map(() => ({ rates: [] as number[], reqRates: [] as number[], p50: [] as number[], requestsPerOrder: [] as number[], cpuPerOrder: [] as number[], cpuPerRequest: [] as number[], failures: 0 }));
for (let r = 0; r < ROUNDS; r++) {
  for (const [i, t] of targets.entries()) {
    const server = await t.start();
    const out = await round(server.dir, t.trust, server.pid);
    server.stop();
    const m = results[i]!;
    m.rates.push(out.orders / SECONDS);
    m.reqRates.push(out.requests / SECONDS);
    m.p50.push(median(out.latencies));
    m.failures += out.failures;
    const perRequest = out.cpuMs / Math.max(out.requests, 1);
    const perOrder = perRequest * out.requestsPerOrder;
    const counts = out.requests >= MIN_REQUESTS && out.orders > 0;
    if (counts) {
      m.requestsPerOrder.push(out.requestsPerOrder);
      m.cpuPerRequest.push(perRequest);
      m.cpuPerOrder.push(perOrder);
    }
    const main = (out.mainCpuMs / Math.max(out.requests, 1)) * out.requestsPerOrder;
    console.error(
      `round ${r + 1}/${ROUNDS} ${t.name}: ${(out.orders / SECONDS).toFixed(1)} orders/s, ${(out.requests / SECONDS).toFixed(0)} requests/s, ${out.requestsPerOrder.toFixed(2)} requests an order, ` +
        `${(perRequest * 1000).toFixed(0)} µs CPU per request, ${perOrder.toFixed(2)} ms per order (${main.toFixed(2)} on the main thread)` +
        `${out.failures ? `, ${out.failures} failed orders` : ""}${counts ? "" : ` (not counted: under ${MIN_REQUESTS} requests answered)`}`,
    );
  }
}

console.log(`\nACME complete orders (new order → http-01 → finalize → download), ${CLIENTS} concurrent clients, ${SECONDS} s × ${ROUNDS} rounds, medians${PIN ? ", servers pinned to core 0" : ""}\n`);
console.log("| server | orders/s | requests/s | order latency p50 (ms) | requests an order | server CPU per request (µs) | server CPU per order (ms) | rounds counted |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const [i, t] of targets.entries()) {
  const m = results[i]!;
  const counted = m.cpuPerOrder.length;
  const cpu = (xs: number[], f: (x: number) => string) => (counted ? f(median(xs)) : "—");
  console.log(
    `| ${t.name} | ${median(m.rates).toFixed(1)} | ${median(m.reqRates).toFixed(0)} | ${median(m.p50).toFixed(0)} | ${cpu(m.requestsPerOrder, (x) => x.toFixed(2))} | ${cpu(m.cpuPerRequest, (x) => (x * 1000).toFixed(0))} | ${cpu(m.cpuPerOrder, (x) => x.toFixed(2))} | ${counted} of ${ROUNDS} |`,
  );
}
const ratio = median(results[0]!.rates) / median(results[1]!.rates);
// A pebble that stalled in most rounds has a median of 0: no ratio then, only its best round.
const ratioText = Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : `no ratio (pebble stalled in most rounds; its best round: ${Math.max(...results[1]!.rates).toFixed(1)} orders/s)`;
const stalls = results[1]!.failures ? ` (pebble failed ${results[1]!.failures} orders: its stalls lower its rate, see above)` : "";
console.log(`\npki-ca / pebble: ${ratioText} complete orders per second${stalls}; pki-ca answers ${median(results[0]!.reqRates).toFixed(0)} ACME requests/s (GigVault enrollment target: 500 requests/s)`);
if (results[0]!.cpuPerOrder.length && results[1]!.cpuPerOrder.length) {
  const cpuRatio = median(results[0]!.cpuPerOrder) / median(results[1]!.cpuPerOrder);
  console.log(
    `server CPU per complete order, pki-ca / pebble: ${cpuRatio.toFixed(2)} (medians of the rounds counted): pki-ca completes ${(1 / cpuRatio).toFixed(2)}x the orders pebble does per second of CPU (target: at least 2x)`,
  );
}

ca.proc.kill("SIGTERM");
responder.stop(true);
dns.stop();
await issuer.stop();
process.exit(0);
