/**
 * Mutation fuzz of pki-ca's EST, SCEP, CMP and CMC endpoints: per endpoint, FUZZ_N (default 1,000)
 * requests. EST simpleenroll and simplereenroll get mutated CSRs as base64 and as binary DER
 * (authenticated, so the CSR handling runs); SCEP PKIOperation gets mutated whole pkiMessages
 * by POST (DER) and GET (base64), and correctly signed and enveloped messages around mutated
 * CSRs (so decryption, challenge and RA checks run). CMP gets mutated whole PKIMessages (DER)
 * and correctly PBM-protected messages with fresh transaction ids around mutated CertReqMessages
 * (so the CRMF, POPO and RA checks run). CMC gets mutated Full PKI Requests (DER and base64),
 * mutated PKIData signed correctly (so the PKIData reader runs behind a good signature), and
 * mutated Simple PKI Requests (DER and base64). Every answer must be a 2xx/4xx (the shared runner
 * in test/support/fuzz.ts fails on any 5xx), and every front end must still issue afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { fuzz, mutateDer, rng } from "../support/fuzz.ts";
import * as x509 from "../../src/pki/x509.ts";
import { MESSAGE_TYPE } from "../../apps/pki-ca/scep/cms.ts";
import { ed25519Csr, startCa, type CaFixture } from "./helpers.ts";
import { certsOf, TestScepClient } from "./scep-helpers.ts";
import { buildIr, certificateOf, irBodyOf, pbmMessage } from "./cmp-helpers.ts";
import { BODY } from "../../apps/pki-ca/cmp/message.ts";
import { fullRequest, nonce, pkiData, pkijsCsr, spkiOf } from "./cmc-helpers.ts";

const N = Number(process.env.FUZZ_N ?? 1000);
const STATIC = "fuzz-static";
let f: CaFixture;
let basic: string;
let csrDer: Uint8Array;
let ra: x509.X509Certificate;
let client: TestScepClient;
let scepCsr: Uint8Array;
let scepMessage: Uint8Array;
let cmpCred: { kid: string; secret: string };
let cmpIr: Uint8Array;
let cmcBasic: string;
let cmcCsr: { keys: CryptoKeyPair; der: Uint8Array };
let cmcCred: { identification: string; secret: string };
let cmcFull: Uint8Array;

beforeAll(async () => {
  f = await startCa({
    est: { tenants: { t1: { profiles: ["server"] } } },
    scep: { tenants: { t1: { profiles: { server: { challenge_sha256: createHash("sha256").update(STATIC).digest("hex") } } } } },
    cmp: { tenants: { t1: { profiles: ["server"] } } },
    cmc: { tenants: { t1: { profiles: ["server"] } } },
  });
  cmpCred = (await (await f.api("/cmp/credentials", await f.token("t1", "pki:admin"), { body: { profile: "server" } })).json()) as { kid: string; secret: string };
  cmpIr = buildIr(cmpCred.kid, cmpCred.secret, "cmp-fuzz.example.com").der;
  const cred = (await (await f.api("/est/credentials", await f.token("t1", "pki:admin"), { body: { profile: "server" } })).json()) as { username: string; password: string };
  basic = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
  csrDer = new Uint8Array(Buffer.from((await ed25519Csr("fuzz.example.com")).pem.split("-----")[2]!.replace(/\s+/g, ""), "base64"));
  ra = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/server?operation=GetCACert")).arrayBuffer()))[0]!;
  client = await TestScepClient.create("scep-fuzz.example.com");
  scepCsr = await client.csr("scep-fuzz.example.com", STATIC);
  scepMessage = await client.message(MESSAGE_TYPE.PKCSReq, scepCsr, ra, "fuzz-template");
  cmcCred = (await (await f.api("/cmc/credentials", await f.token("t1", "pki:admin"), { body: { profile: "server" } })).json()) as { identification: string; secret: string };
  cmcBasic = `Basic ${Buffer.from(`${cmcCred.identification}:${cmcCred.secret}`).toString("base64")}`;
  cmcCsr = await pkijsCsr("cmc-fuzz.example.com");
  cmcFull = await fullRequest(pkiData({ csr: cmcCsr.der, transactionId: 7, senderNonce: nonce(), identity: cmcCred }), cmcCsr.keys.privateKey, { spki: spkiOf(cmcCsr.der) });
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

const estPost = (op: string, body: Uint8Array | string) =>
  f.svc.call(`/.well-known/est/${op}`, { method: "POST", body: typeof body === "string" ? body : (body.slice().buffer as ArrayBuffer), headers: { authorization: basic, "content-type": "application/pkcs10" } });
const scepPost = (der: Uint8Array) => f.svc.call("/scep/t1/server?operation=PKIOperation", { method: "POST", body: der.slice().buffer as ArrayBuffer, headers: { "content-type": "application/x-pki-message" } });
const cmpPost = (der: Uint8Array) => f.svc.call("/.well-known/cmp/p/server", { method: "POST", body: der.slice().buffer as ArrayBuffer, headers: { "content-type": "application/pkixcmp" } });
const cmcPost = (body: Uint8Array | string, simple = false) =>
  f.svc.call("/cmc", {
    method: "POST",
    body: typeof body === "string" ? body : (body.slice().buffer as ArrayBuffer),
    headers: simple ? { authorization: cmcBasic, "content-type": "application/pkcs10" } : { "content-type": "application/pkcs7-mime; smime-type=CMC-request" },
  });
const hex = (b: Uint8Array | string) => (typeof b === "string" ? b : Buffer.from(b).toString("hex"));
const opts = (maxMs = 5000) => ({ describe: hex, maxMs, concurrency: 8 });

describe(`EST, SCEP, CMP and CMC mutation fuzz (${N} per endpoint)`, () => {
  for (const op of ["simpleenroll", "simplereenroll"]) {
    test(`EST ${op}: mutated CSRs as base64 and as DER`, async () => {
      const r = rng(op.length * 7919);
      const cases = Array.from({ length: N }, (_, i) => {
        const der = mutateDer(csrDer, r);
        return i % 2 === 0 ? Buffer.from(der).toString("base64") : der;
      });
      const out = await fuzz(cases, (c) => estPost(op, c), opts());
      expect([...out.statuses.keys()].every((s) => s < 500)).toBe(true);
    }, 300_000);
  }

  test("SCEP PKIOperation (POST): mutated pkiMessages", async () => {
    const r = rng(4242);
    const out = await fuzz(Array.from({ length: N }, () => mutateDer(scepMessage, r)), scepPost, opts());
    expect(out.statuses.get(200) ?? 0).toBeGreaterThan(0);
  }, 300_000);

  test("SCEP PKIOperation (GET): mutated pkiMessages in base64", async () => {
    const r = rng(777);
    const cases = Array.from({ length: N }, () => Buffer.from(mutateDer(scepMessage, r)).toString("base64"));
    await fuzz(cases, (m) => f.svc.call(`/scep/t1/server?operation=PKIOperation&message=${encodeURIComponent(m)}`), opts());
  }, 300_000);

  test("SCEP PKCSReq: signed and enveloped around mutated CSRs", async () => {
    const r = rng(31337);
    const cases = await Promise.all(Array.from({ length: N }, (_, i) => client.message(MESSAGE_TYPE.PKCSReq, mutateDer(scepCsr, r), ra, `fuzz-${i}`)));
    const out = await fuzz(cases, scepPost, opts());
    expect(out.statuses.get(200)).toBe(N);
  }, 300_000);

  test("CMP (POST): mutated PKIMessages", async () => {
    const r = rng(9810);
    const out = await fuzz(Array.from({ length: N }, () => mutateDer(cmpIr, r)), cmpPost, opts());
    expect(out.statuses.get(200) ?? 0).toBeGreaterThan(0);
  }, 300_000);

  test("CMP ir: PBM-protected around mutated CertReqMessages", async () => {
    const r = rng(4211);
    const body = irBodyOf(cmpIr);
    const cases = Array.from({ length: N }, () => pbmMessage(cmpCred.kid, cmpCred.secret, BODY.ir, mutateDer(body, r)));
    const out = await fuzz(cases, cmpPost, opts());
    // 200: a CMP answer (ip, or error); 400: a body that no longer fills its [0] (not a PKIMessage), answered badDataFormat.
    expect([...out.statuses.keys()].every((s) => s === 200 || s === 400)).toBe(true);
    expect(out.statuses.get(200) ?? 0).toBeGreaterThan(N / 10);
  }, 300_000);

  test("CMC Full PKI Request: mutated messages as DER and base64", async () => {
    const r = rng(5272);
    const cases = Array.from({ length: N }, (_, i) => {
      const der = mutateDer(cmcFull, r);
      return i % 2 === 0 ? Buffer.from(der).toString("base64") : der;
    });
    const out = await fuzz(cases, (c) => cmcPost(c), opts());
    expect(out.statuses.get(200) ?? 0).toBeGreaterThan(0);
  }, 300_000);

  test("CMC Full PKI Request: mutated PKIData behind a good signature", async () => {
    const r = rng(5273);
    const template = pkiData({ csr: cmcCsr.der, transactionId: 8, senderNonce: nonce(), identity: cmcCred });
    const cases = await Promise.all(Array.from({ length: N }, () => fullRequest(mutateDer(template, r), cmcCsr.keys.privateKey, { spki: spkiOf(cmcCsr.der) })));
    const out = await fuzz(cases, (c) => cmcPost(c), opts());
    expect(out.statuses.get(200)).toBe(N);
  }, 300_000);

  test("CMC Simple PKI Request: mutated CSRs as DER and base64", async () => {
    const r = rng(5274);
    const cases = Array.from({ length: N }, (_, i) => {
      const der = mutateDer(cmcCsr.der, r);
      return i % 2 === 0 ? Buffer.from(der).toString("base64") : der;
    });
    await fuzz(cases, (c) => cmcPost(c, true), opts());
  }, 300_000);

  test("afterwards every front end still issues", async () => {
    const cmp = await cmpPost(buildIr(cmpCred.kid, cmpCred.secret, "cmp-final.example.com").der);
    expect(certificateOf(new Uint8Array(await cmp.arrayBuffer()))).toBeDefined();
    const est = await estPost("simpleenroll", Buffer.from(csrDer).toString("base64"));
    expect(est.status).toBe(200);
    const rep = await client.reply(new Uint8Array(await (await scepPost(await client.message(MESSAGE_TYPE.PKCSReq, scepCsr, ra, "fuzz-final"))).arrayBuffer()));
    expect(rep.msg.pkiStatus).toBe("0");
    const fresh = await pkijsCsr("cmc-after.example.com");
    const cmc = await cmcPost(fresh.der, true);
    expect(cmc.status).toBe(200);
    expect(cmc.headers.get("content-type")).toBe("application/pkcs7-mime; smime-type=certs-only");
  }, 60_000);
});
