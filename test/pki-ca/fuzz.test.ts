/**
 * Mutation fuzzing of the endpoints that parse attacker-supplied DER: the CSR
 * submission, the OCSP responder (POST and GET) and the time-stamping authority. Every mutated request must get
 * a 2xx/4xx answer, never a 5xx, and the service must still work afterwards.
 * FUZZ_N overrides the number of mutations per endpoint (10,000 by default, the target; about 10 s).
 * The mutators and the runner (no 5xx, no hang) are the shared test/support/fuzz.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { fuzz, mutateDer as mutate, rng } from "../support/fuzz.ts";

const ok = haveOpenssl();
const N = Number(process.env.FUZZ_N ?? 10_000);
let f: CaFixture;
let tok: string;
let csrDer: Uint8Array;
let ocspDer: Uint8Array;
let tsqDer: Uint8Array;

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
    const cases = Array.from({ length: N }, () => mutate(csrDer, r));
    const { statuses } = await fuzz(cases, (der) => f.api("/certificates", tok, { body: { csr: Buffer.from(der).toString("base64"), profile: "server" } }), {
      describe: (der) => `CSR ${Buffer.from(der).toString("hex")}`,
    });
    // Most mutations break the DER or the signature: 400 dominates.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(N / 2);
  }, 60_000);

  test("OCSP POST and GET never answer 5xx", async () => {
    const r = rng(0x0c5);
    const cases = Array.from({ length: N }, (_, i) => ({ der: mutate(ocspDer, r), get: i % 4 === 0 }));
    const { statuses } = await fuzz(
      cases,
      ({ der, get }) =>
        get
          ? f.svc.call(`/pki/ocsp/${encodeURIComponent(Buffer.from(der).toString("base64"))}`)
          : f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: der.slice().buffer as ArrayBuffer }),
      { describe: ({ der }) => `OCSP request ${Buffer.from(der).toString("hex")}` },
    );
    expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  }, 60_000);

  test("time-stamp requests never answer 5xx", async () => {
    const r = rng(0x3161);
    const cases = Array.from({ length: N }, () => mutate(tsqDer, r));
    const { statuses } = await fuzz(cases, (der) => f.svc.call("/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: der.slice().buffer as ArrayBuffer }), {
      describe: (der) => `time-stamp request ${Buffer.from(der).toString("hex")}`,
    });
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
