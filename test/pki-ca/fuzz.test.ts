/**
 * Mutation fuzzing of the endpoints that parse attacker-supplied DER: the CSR
 * submission, the OCSP responder (POST and GET) and the time-stamping authority. Every mutated request must get
 * a 2xx/4xx answer, never a 5xx, and the service must still work afterwards.
 * FUZZ_N overrides the number of mutations per endpoint (10,000 by default, the target; about 10 s).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";

const ok = haveOpenssl();
const N = Number(process.env.FUZZ_N ?? 10_000);
const CONCURRENCY = 16;
let f: CaFixture;
let tok: string;
let csrDer: Uint8Array;
let ocspDer: Uint8Array;
let tsqDer: Uint8Array;

/** A small deterministic PRNG (xorshift32) so a failing seed can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return (n: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

/** One to four mutations: bit flips, byte sets (favouring DER length/tag values), inserts, deletes, truncation, duplication. */
function mutate(input: Uint8Array, r: (n: number) => number): Uint8Array {
  let b = Array.from(input);
  const rounds = 1 + r(4);
  const special = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0x02, 0x03, 0x04, 0x05, 0x06, 0xa0, 0xa1];
  for (let k = 0; k < rounds && b.length > 0; k++) {
    const i = r(b.length);
    switch (r(7)) {
      case 0: b[i] = b[i]! ^ (1 << r(8)); break;
      case 1: b[i] = special[r(special.length)]!; break;
      case 2: b.splice(i, 0, r(256)); break;
      case 3: b.splice(i, 1 + r(4)); break;
      case 4: b = b.slice(0, i); break;
      case 5: b.splice(i, 0, ...b.slice(r(b.length), r(b.length) + 1 + r(16))); break;
      default: b[i] = r(256);
    }
  }
  return new Uint8Array(b);
}

async function pool<T>(items: T[], fn: (t: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

beforeAll(async () => {
  f = await startCa();
  tok = await f.token("fuzz", "pki:request");
  // The fuzzed CSR names every SAN type the DER-walk parser reads, so mutations reach each branch.
  const rich = makeCsr(f.dir, "fuzz-rich", { subj: "/CN=fuzz.example.com/O=Fuzz", san: "DNS:fuzz.example.com,IP:10.1.2.3,IP:fd00::1,email:a@example.com,URI:https://x.example.com/a" }).csr;
  csrDer = new Uint8Array(Buffer.from(rich.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
  const { csr } = makeCsr(f.dir, "fuzz", { subj: "/CN=fuzz.example.com", san: "DNS:fuzz.example.com" });
  const issued = (await (await f.api("/certificates", tok, { body: { csr, profile: "server" } })).json()) as any;
  const leaf = write(f.dir, "leaf.pem", issued.certificate.certificate_pem);
  const issuing = write(f.dir, "issuing.pem", issued.certificate.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
  const reqFile = join(f.dir, "req.der");
  expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-reqout", reqFile]).code).toBe(0);
  ocspDer = new Uint8Array(readFileSync(reqFile));
  const tsq = join(f.dir, "q.tsq");
  expect(openssl(["ts", "-query", "-data", leaf, "-sha256", "-cert", "-out", tsq]).code).toBe(0);
  tsqDer = new Uint8Array(readFileSync(tsq));
});
afterAll(async () => {
  await f?.stop();
});

describe.skipIf(!ok)(`mutation fuzz (${N} per endpoint) [needs Debian openssl]`, () => {
  test("CSR submission never answers 5xx", async () => {
    const r = rng(0xc5a);
    const statuses = new Map<number, number>();
    const cases = Array.from({ length: N }, () => mutate(csrDer, r));
    await pool(cases, async (der) => {
      const res = await f.api("/certificates", tok, { body: { csr: Buffer.from(der).toString("base64"), profile: "server" } });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`5xx for CSR ${Buffer.from(der).toString("hex")}`);
    });
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
    // Most mutations break the DER or the signature: 400 dominates.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(N / 2);
  }, 60_000);

  test("OCSP POST and GET never answer 5xx", async () => {
    const r = rng(0x0c5);
    const statuses = new Map<number, number>();
    const cases = Array.from({ length: N }, (_, i) => ({ der: mutate(ocspDer, r), get: i % 4 === 0 }));
    await pool(cases, async ({ der, get }) => {
      const res = get
        ? await f.svc.call(`/pki/ocsp/${encodeURIComponent(Buffer.from(der).toString("base64"))}`)
        : await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: der.slice().buffer as ArrayBuffer });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`5xx for OCSP request ${Buffer.from(der).toString("hex")}`);
    });
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  }, 60_000);

  test("time-stamp requests never answer 5xx", async () => {
    const r = rng(0x3161);
    const statuses = new Map<number, number>();
    const cases = Array.from({ length: N }, () => mutate(tsqDer, r));
    await pool(cases, async (der) => {
      const res = await f.svc.call("/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: der.slice().buffer as ArrayBuffer });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) throw new Error(`5xx for time-stamp request ${Buffer.from(der).toString("hex")}`);
    });
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  }, 60_000);

  test("the service still issues and answers after fuzzing", async () => {
    const { csr } = makeCsr(f.dir, "after", { subj: "/CN=after.example.com", san: "DNS:after.example.com" });
    expect((await f.api("/certificates", tok, { body: { csr, profile: "server" } })).status).toBe(201);
    const res = await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: ocspDer.slice().buffer as ArrayBuffer });
    expect(res.status).toBe(200);
    const ts = await f.svc.call("/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: tsqDer.slice().buffer as ArrayBuffer });
    expect(ts.status).toBe(200);
  });
});
