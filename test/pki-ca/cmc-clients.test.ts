/**
 * CMC (RFC 5272-5274) against pki-ca: requests built with pkijs (test/pki-ca/cmc-helpers.ts),
 * sent over HTTPS with curl, and answers checked with `openssl cms -verify` (the Full PKI
 * Response's signature and chain to the root), `openssl pkcs7` (the Simple PKI Response) and
 * `openssl verify` (every issued chain). No CMC client is packaged for Debian, hence pkijs.
 * Covered: Simple PKI Request with HTTP Basic; Full PKI Request with identification +
 * identityProofV2, and signed by a certificate this CA issued; a queued request approved and
 * collected by sending it again; refusals (bad signature, wrong identity proof, replayed
 * senderNonce, reused transactionId, a CSR the profile forbids), each a signed failed response
 * with its CMCFailInfo and nothing issued; the senderNonce log swept by age at a restart.
 * Needs curl and openssl; skips with a printed reason
 * when one is missing (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Kysely } from "kysely";
import { join } from "node:path";
import { haveOpenssl, startCa, write, type CaFixture, haveTool, shIn, expectOrigin } from "./helpers.ts";
import { fullRequest, nonce, pkiData, pkijsCsr, spkiOf } from "./cmc-helpers.ts";
import { CMC, CMC_FAIL, CMC_STATUS, readStatusInfoV2 } from "../../apps/pki-ca/cmc/cms.ts";

const have = haveTool;
const ok = haveOpenssl() && have("curl", "curl");

let f: CaFixture;
let trust: string;
let root: string;
let seq = 0;

const APP = { cmc: { tenants: { t1: { profiles: ["server", "manual"] } } } };

beforeAll(async () => {
  if (!ok) return;
  f = await startCa(APP);
  trust = write(f.dir, "trust.pem", f.svc.ca);
  root = write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

const sh = (script: string) => shIn(f.dir, script);

async function credential(profile: string): Promise<{ identification: string; secret: string }> {
  const r = await f.api("/cmc/credentials", await f.token("t1", "pki:admin"), { body: { profile } });
  const body = (await r.json()) as { identification: string; secret: string };
  expect(r.status, JSON.stringify(body)).toBe(201);
  return body;
}

async function certificateCount(): Promise<number> {
  const r = await f.api("/certificates?limit=200", await f.token("t1", "pki:read"));
  return ((await r.json()) as { items: unknown[] }).items.length;
}

/** POSTs a DER body with curl; returns the HTTP status, the content type, and the answer's file. */
async function post(body: Uint8Array, type: string, auth?: string): Promise<{ status: number; type: string; file: string }> {
  const n = ++seq;
  write(f.dir, `req${n}.der`, body);
  const r = await sh(`curl -sS --cacert ${trust} ${auth ? `-u '${auth}'` : ""} -H 'Content-Type: ${type}' --data-binary @req${n}.der -o resp${n}.der -w '%{http_code} %{content_type}' ${f.svc.publicUrl}/cmc`);
  const [status, ...ct] = r.out.trim().split(" ");
  return { status: Number(status), type: ct.join(" "), file: `resp${n}.der` };
}

const FULL = "application/pkcs7-mime; smime-type=CMC-request";

/**
 * Checks a Full PKI Response with `openssl cms -verify` against the root; returns its
 * statusInfoV2 and, when a certificate of `cn` came with it, whether openssl verifies its chain.
 */
async function verifyFull(file: string, cn?: string) {
  const v = await sh(`openssl cms -verify -inform DER -in ${file} -CAfile ${root} -out ${file}.content -certsout ${file}.certs.pem`);
  expect(v.out).toContain("Verification successful");
  expect(v.code).toBe(0);
  const content = new Uint8Array(readFileSync(join(f.dir, `${file}.content`)));
  const info = readStatusInfoV2(content);
  let chainOk = false;
  if (cn) {
    const pems = readFileSync(join(f.dir, `${file}.certs.pem`), "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    for (const [i, pem] of pems.entries()) {
      write(f.dir, `${file}.${i}.pem`, pem + "\n");
      const subj = await sh(`openssl x509 -in ${file}.${i}.pem -noout -subject`);
      if (!subj.out.includes(`CN = ${cn}`)) continue;
      const ver = await sh(`openssl verify -CAfile ${root} -untrusted ${file}.certs.pem ${file}.${i}.pem`);
      chainOk = ver.code === 0 && ver.out.includes(": OK");
      write(f.dir, `${cn}.pem`, pem + "\n");
    }
  }
  return { ...info, chainOk, content };
}

describe.skipIf(!ok)("CMC with pkijs requests, curl, and openssl cms -verify", () => {
  let issuedKey: CryptoKeyPair;
  let issuedCert: Uint8Array;

  test("Simple PKI Request (application/pkcs10, HTTP Basic): a certs-only answer whose chain openssl verifies", async () => {
    const cred = await credential("server");
    const { der } = await pkijsCsr("simple.example.com");
    const r = await post(der, "application/pkcs10", `${cred.identification}:${cred.secret}`);
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/pkcs7-mime; smime-type=certs-only");
    const v = await sh(`openssl pkcs7 -inform DER -in ${r.file} -print_certs -out simple.pem && openssl verify -CAfile ${root} -untrusted simple.pem simple.pem`);
    expect(v.out).toContain("simple.pem: OK");
    const wrong = await post(der, "application/pkcs10", `${cred.identification}:wrong`);
    expect(wrong.status).toBe(401);
    const none = await post(der, "application/pkcs10");
    expect(none.status).toBe(401);
  }, 60_000);

  test("Full PKI Request with identification + identityProofV2: a signed success response with the certificate", async () => {
    const cred = await credential("server");
    const { keys, der } = await pkijsCsr("full.example.com");
    const sn = nonce();
    const body = await fullRequest(pkiData({ csr: der, transactionId: 1001, senderNonce: sn, identity: cred }), keys.privateKey, { spki: spkiOf(der) });
    const r = await post(body, FULL);
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/pkcs7-mime; smime-type=CMC-response");
    const info = await verifyFull(r.file, "full.example.com");
    expect(info.status, info.statusString).toBe(CMC_STATUS.success);
    expect(info.bodyList).toEqual([1]);
    expect(info.chainOk).toBe(true);
    const recipientNonce = info.controls.find((c) => c.type === CMC.recipientNonce)!.values[0]!;
    expect(Buffer.from(recipientNonce.bytes.subarray(recipientNonce.body, recipientNonce.end)).equals(Buffer.from(sn))).toBe(true);
    issuedKey = keys;
    issuedCert = new Uint8Array(Buffer.from(readFileSync(join(f.dir, "full.example.com.pem"), "utf8").split("-----")[2]!.replace(/\s+/g, ""), "base64"));
  }, 60_000);

  test("Full PKI Request signed by a certificate this CA issued: re-enrollment for its own identity", async () => {
    const next = await pkijsCsr("full.example.com");
    const body = await fullRequest(pkiData({ csr: next.der, transactionId: 1002, senderNonce: nonce() }), issuedKey.privateKey, { cert: issuedCert });
    const info = await verifyFull((await post(body, FULL)).file, "full.example.com");
    expect(info.status).toBe(CMC_STATUS.success);
    expect(info.chainOk).toBe(true);
    // Another identity is refused.
    const other = await pkijsCsr("other.example.com");
    const before = await certificateCount();
    const refused = await verifyFull((await post(await fullRequest(pkiData({ csr: other.der, transactionId: 1003, senderNonce: nonce() }), issuedKey.privateKey, { cert: issuedCert }), FULL)).file);
    expect(refused.status).toBe(CMC_STATUS.failed);
    expect(refused.failInfo).toBe(CMC_FAIL.badIdentity);
    expect(await certificateCount()).toBe(before);
  }, 60_000);

  test("queued for approval: pending, approved through the REST API, collected by sending it again", async () => {
    const cred = await credential("manual");
    const { keys, der } = await pkijsCsr("queued.example.com");
    const send = async () => post(await fullRequest(pkiData({ csr: der, transactionId: 2001, senderNonce: nonce(), identity: cred }), keys.privateKey, { spki: spkiOf(der) }), FULL);
    const first = await verifyFull((await send()).file);
    expect(first.status).toBe(CMC_STATUS.pending);
    const again = await verifyFull((await send()).file);
    expect(again.status).toBe(CMC_STATUS.pending);
    const approver = await f.token("t1", "pki:approve");
    const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
    const req = pending.items.find((i) => i.subject.includes("queued.example.com"))!;
    expect((await f.api(`/requests/${req.id}/approve`, approver, { method: "POST" })).status).toBe(201);
    const done = await verifyFull((await send()).file, "queued.example.com");
    expect(done.status).toBe(CMC_STATUS.success);
    expect(done.chainOk).toBe(true);
  }, 60_000);

  test("refusals: bad signature, wrong identity proof, replay, reused transactionId, a forbidden CSR; nothing issued", async () => {
    const cred = await credential("server");
    const before = await certificateCount();
    const expectFailed = async (body: Uint8Array, failInfo: number, text?: string) => {
      const r = await post(body, FULL);
      expect(r.status).toBe(200);
      const info = await verifyFull(r.file);
      expect(info.status).toBe(CMC_STATUS.failed);
      expect(info.failInfo).toBe(failInfo);
      if (text) expect(info.statusString).toContain(text);
    };
    const a = await pkijsCsr("refused.example.com");
    // Bad signature: the last byte of the signature flipped.
    const good = await fullRequest(pkiData({ csr: a.der, transactionId: 3001, senderNonce: nonce(), identity: cred }), a.keys.privateKey, { spki: spkiOf(a.der) });
    const bad = good.slice();
    bad[bad.length - 1]! ^= 0x01;
    await expectFailed(bad, CMC_FAIL.badMessageCheck);
    // Wrong identity proof: a secret that is not the identification's.
    await expectFailed(await fullRequest(pkiData({ csr: a.der, transactionId: 3002, senderNonce: nonce(), identity: { ...cred, secret: `${cred.secret}x` } }), a.keys.privateKey, { spki: spkiOf(a.der) }), CMC_FAIL.badIdentity);
    // An unknown identification.
    await expectFailed(await fullRequest(pkiData({ csr: a.der, transactionId: 3003, senderNonce: nonce(), identity: { identification: "cmc_nobody", secret: cred.secret } }), a.keys.privateKey, { spki: spkiOf(a.der) }), CMC_FAIL.badIdentity);
    // A CSR the profile forbids (a name outside its allow list).
    const forbidden = await pkijsCsr("host.not-allowed.test");
    await expectFailed(await fullRequest(pkiData({ csr: forbidden.der, transactionId: 3004, senderNonce: nonce(), identity: cred }), forbidden.keys.privateKey, { spki: spkiOf(forbidden.der) }), CMC_FAIL.badRequest, "policy");
    expect(await certificateCount()).toBe(before);
    // Accepted once ...
    const first = await verifyFull((await post(good, FULL)).file);
    expect(first.status).toBe(CMC_STATUS.success);
    // ... then the same message again is a replay (its senderNonce was used).
    await expectFailed(good, CMC_FAIL.badRequest, "replayed");
    // The same transactionId for another CSR, with a fresh nonce, is refused too.
    const b = await pkijsCsr("refused2.example.com");
    await expectFailed(await fullRequest(pkiData({ csr: b.der, transactionId: 3001, senderNonce: nonce(), identity: cred }), b.keys.privateKey, { spki: spkiOf(b.der) }), CMC_FAIL.badRequest, "transactionId");
    // Without transactionId and senderNonce.
    await expectFailed(await fullRequest(pkiData({ csr: b.der, identity: cred }), b.keys.privateKey, { spki: spkiOf(b.der) }), CMC_FAIL.badRequest);
    expect(await certificateCount()).toBe(before + 1);
  }, 120_000);

  test("HTTP-level refusals: wrong media type 415, garbage as a failed Full PKI Response", async () => {
    expect((await post(new Uint8Array([0x30, 0x00]), "text/plain")).status).toBe(415);
    const r = await post(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x05]), FULL);
    expect(r.status).toBe(200);
    const info = await verifyFull(r.file);
    expect(info.status).toBe(CMC_STATUS.failed);
    expect(info.failInfo).toBe(CMC_FAIL.badRequest);
  }, 60_000);

  test("the certificates say they came through CMC (the dashboard's origin)", async () => {
    await expectOrigin(f, "t1", "cmc");
  });

  test("the senderNonce log is swept by age (at load, then hourly): an old nonce goes, recent ones stay; its request sent again answers its transaction, nothing new issued", async () => {
    const cred = await credential("server");
    const c = await pkijsCsr("swept.example.com");
    const n = nonce();
    const request = await fullRequest(pkiData({ csr: c.der, transactionId: 4001, senderNonce: n, identity: cred }), c.keys.privateKey, { spki: spkiOf(c.der) });
    const first = await verifyFull((await post(request, FULL)).file, "swept.example.com");
    expect(first.status).toBe(CMC_STATUS.success);
    const issuedPem = readFileSync(join(f.dir, "swept.example.com.pem"), "utf8");
    // A second request, whose nonce is recent.
    const d = await pkijsCsr("kept.example.com");
    expect((await verifyFull((await post(await fullRequest(pkiData({ csr: d.der, transactionId: 4002, senderNonce: nonce(), identity: cred }), d.keys.privateKey, { spki: spkiOf(d.der) }), FULL)).file)).status).toBe(CMC_STATUS.success);
    const before = await certificateCount();

    // This nonce was accepted longer ago than app.cmc.nonce_retention_hours (7 days by default).
    const hash = createHash("sha256").update(n).digest("hex");
    const db = () => f.svc.ctx.db as Kysely<any>;
    const nonces = async () => (await db().selectFrom("cmc_nonces").select("nonce_sha256").execute()).map((r) => r.nonce_sha256 as string);
    await db().updateTable("cmc_nonces").set({ created_at: new Date(Date.now() - 8 * 24 * 3_600_000).toISOString() }).where("nonce_sha256", "=", hash).execute();
    const recent = (await nonces()).filter((h) => h !== hash);
    expect(recent.length).toBeGreaterThan(0);

    // A restart runs the sweep as the CA loads (the first request loads it).
    await f.stop({ keep: true });
    f = await startCa(APP, f.dir);
    expect((await f.svc.call("/pki/ca/root.pem")).status).toBe(200);
    for (let i = 0; i < 300 && (await nonces()).includes(hash); i++) await Bun.sleep(100);
    expect((await nonces()).sort()).toEqual(recent.sort());

    // The same request again: its nonce is forgotten, but its transaction is not, so it answers
    // that transaction's certificate and issues nothing new.
    const again = await verifyFull((await post(request, FULL)).file, "swept.example.com");
    expect(again.status).toBe(CMC_STATUS.success);
    expect(readFileSync(join(f.dir, "swept.example.com.pem"), "utf8")).toBe(issuedPem);
    expect(await certificateCount()).toBe(before);
    // ... and its nonce is remembered again: a third time is a replay.
    const third = await verifyFull((await post(request, FULL)).file);
    expect(third.status).toBe(CMC_STATUS.failed);
    expect(third.statusString).toContain("replayed");
  }, 120_000);
});
