/**
 * SCEP (RFC 8894) against pki-ca with certmonger's SCEP submitter `scep-submit` (Debian package
 * certmonger), run directly with the arguments and CERTMONGER_* variables the certmonger daemon
 * gives it: GetCACaps (`-c`), GetCACert (`-C`), then SUBMIT of a PKCSReq with a challenge and
 * POLL of a queued request (certmonger 0.79 resends the PKCSReq) until an approver approves it
 * through the REST API, and a CertPoll (GetCertInitial) in `-g` mode. The daemon builds those
 * pkiMessages itself from its key and CSR; here the test builds them (test/pki-ca/scep-helpers.ts)
 * and `openssl cms` opens the envelope scep-submit hands back. Everything on the wire is sent and
 * checked by scep-submit itself: it verifies the RA's signature on each CertRep up to the root,
 * the transactionID and the nonces.
 *
 * Why the plain-HTTP port: scep-submit (certmonger 0.79) passes its CA file (`-R`) to its first
 * request only (GetCACaps); the PKIOperation request that follows trusts only the system's CA
 * store, so over https to a private CA it fails with curl error 60 (the first test shows it).
 * pki-ca therefore serves SCEP on its plain-HTTP listener when `app.http_revocation.scep` is
 * set; SCEP protects its messages itself (signed, the CSR and challenge enveloped to the RA,
 * the certificate to the client). Over https, scep-submit works once the CA is in the system
 * store (`update-ca-certificates`), which a test must not change.
 *
 * Then the certmonger daemon itself (`certmonger -s` on a private D-Bus session bus from
 * dbus-run-session, its CAs, requests and lock under the test's directory through the
 * CERTMONGER_*_DIR variables): `getcert add-scep-ca` and `getcert request` with a one-time
 * challenge (the daemon makes key, CSR and pkiMessage), and a queued request that stays
 * CA_WORKING until approved and is then collected by `getcert refresh`.
 *
 * Both also against a profile whose RA signs with a P-256 certificate of its own
 * (`ra_signing_key: P-256`): scep-submit takes the RSA certificate as the one to encrypt to and
 * verifies the ECDSA-signed CertRep; and against profiles whose RA key is RSA-2048 (`ra_key:
 * RSA-2048`), alone (one certificate that decrypts and signs) and with the P-256 signer.
 *
 * Needs the Debian packages certmonger, openssl and dbus-daemon; skips with a printed reason
 * when one is missing (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { toPem } from "../../src/pki/keys.ts";
import { KeyUsageFlags, KeyUsagesExtension, type X509Certificate } from "../../src/pki/x509.ts";
import { MESSAGE_TYPE, parsePkiMessage } from "../../apps/pki-ca/scep/cms.ts";
import { haveOpenssl, haveTool, PROFILES, shIn, startCa, write, expectOrigin, type CaFixture } from "./helpers.ts";
import { certificateCount, certsOf, scepChallenge, TestScepClient } from "./scep-helpers.ts";
import { freePort } from "../identity/support/authz.ts";
import { enrollmentEndpoints } from "../../apps/pki-ca/endpoints.ts";

/** Where Debian puts scep-submit (Fedora: /usr/libexec/certmonger). */
const SCEP_SUBMIT = ["/usr/lib/certmonger/scep-submit", "/usr/libexec/certmonger/scep-submit"].find((p) => existsSync(p));
const ok = haveOpenssl() && (SCEP_SUBMIT !== undefined || haveTool("scep-submit", "certmonger"));

/** scep-submit's exit codes (certmonger's submit-e.h). */
const ISSUED = 0;
const WAIT = 1;
const REJECTED = 2;
const UNREACHABLE = 3;

let f: CaFixture;
let http: string;
let trust: string;
let root: string;
let rootPem: string;
let issuingFile: string;
let ra: X509Certificate;
let issuing: X509Certificate;

beforeAll(async () => {
  if (!ok) return;
  const port = await freePort();
  http = `http://127.0.0.1:${port}`;
  f = await startCa({
    profiles: { ...PROFILES, "scep-manual": { ...PROFILES.manual, key_types: ["RSA-2048"] }, "server-ec": PROFILES.server, "server-2048": PROFILES.server, "server-ec-2048": PROFILES.server },
    scep: { tenants: { t1: { profiles: { server: {}, "scep-manual": {}, "server-ec": { ra_signing_key: "P-256" }, "server-2048": { ra_key: "RSA-2048" }, "server-ec-2048": { ra_signing_key: "P-256", ra_key: "RSA-2048" } } } } },
    http_revocation: { bind: "127.0.0.1", port, scep: true },
  });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  rootPem = await (await f.svc.call("/pki/ca/root.pem")).text();
  root = write(f.dir, "root.pem", rootPem);
  [ra, issuing] = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/server?operation=GetCACert")).arrayBuffer())) as [X509Certificate, X509Certificate];
  issuingFile = write(f.dir, "issuing.pem", toPem("CERTIFICATE", issuing.rawData));
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

/** scep-submit with `args`, and the variables certmonger sets for `operation` (none: interactive use). */
async function scepSubmit(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([SCEP_SUBMIT ?? "scep-submit", ...args], { cwd: f.dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out, err };
}

/** The variables certmonger gives scep-submit for a SUBMIT or POLL: the certificates it learned by `-C` (RA, CA, others), and the message. */
function daemonEnv(operation: "SUBMIT" | "POLL", message: Uint8Array, raCert = ra, cookie?: string): Record<string, string> {
  return {
    CERTMONGER_OPERATION: operation,
    // certmonger 0.79's scep-submit reads the PKCSReq for both operations (it polls by resending it).
    CERTMONGER_PKCSREQ: toPem("PKCS7", message),
    CERTMONGER_SCEP_RA_CERTIFICATE: toPem("CERTIFICATE", raCert.rawData),
    CERTMONGER_SCEP_CA_CERTIFICATE: rootPem,
    CERTMONGER_SCEP_CERTIFICATES: toPem("CERTIFICATE", issuing.rawData),
    ...(cookie ? { CERTMONGER_CA_COOKIE: cookie } : {}),
  };
}

const challenge = (profile: string) => scepChallenge(f, "t1", profile);

/** The PEM certificates scep-submit printed (-C), in its order. */
const pemsOf = (out: string) => out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];

/**
 * Opens the pkcsPKIEnvelope scep-submit printed (PEM) with openssl and the client's key, then
 * checks the certificate inside with `openssl verify`; returns openssl's subject line.
 */
async function openAndVerify(name: string, c: TestScepClient, envelopePem: string): Promise<string> {
  write(f.dir, `${name}.env.pem`, envelopePem);
  write(f.dir, `${name}.self.pem`, toPem("CERTIFICATE", c.self.rawData));
  write(f.dir, `${name}.key`, c.nodeKey.export({ type: "pkcs8", format: "pem" }) as string);
  const r = await shIn(
    f.dir,
    `openssl cms -decrypt -inform PEM -in ${name}.env.pem -recip ${name}.self.pem -inkey ${name}.key -binary -out ${name}.p7 && ` +
      `openssl pkcs7 -inform DER -in ${name}.p7 -print_certs -out ${name}.pem && ` +
      `openssl verify -CAfile root.pem -untrusted issuing.pem ${name}.pem && openssl x509 -in ${name}.pem -noout -subject -ext subjectAltName`,
  );
  expect(r.code, r.out).toBe(0);
  expect(r.out).toContain(`${name}.pem: OK`);
  return r.out;
}

describe.skipIf(!ok)("SCEP with certmonger's scep-submit (Debian packages certmonger, openssl)", () => {
  test("over https: -c and -C use the CA file, PKIOperation does not (curl error 60, exit 3): why SCEP is on the plain-HTTP port too", async () => {
    const url = `${f.svc.publicUrl}/scep/t1/server`;
    const caps = await scepSubmit(["-u", url, "-R", trust, "-c"]);
    expect(caps.code, caps.out + caps.err).toBe(ISSUED);
    const c = await TestScepClient.create("https.example.com");
    const msg = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("https.example.com", await challenge("server")), ra);
    const r = await scepSubmit(["-u", url, "-R", trust], daemonEnv("SUBMIT", msg));
    expect(r.code, r.out + r.err).toBe(UNREACHABLE);
    expect(r.out).toContain("Error 60");
  }, 60_000);

  test("-c: GetCACaps lists AES, POSTPKIOperation, Renewal, SHA-256, SCEPStandard", async () => {
    const r = await scepSubmit(["-u", `${http}/scep/t1/server`, "-c"]);
    expect(r.code, r.out + r.err).toBe(ISSUED);
    expect(r.out.split("\n").filter(Boolean).sort()).toEqual(["AES", "POSTPKIOperation", "Renewal", "SCEPStandard", "SHA-256"]);
  }, 60_000);

  test("-C: GetCACert gives the RA certificate, the root and the issuing CA; openssl verifies the RA's chain", async () => {
    const r = await scepSubmit(["-u", `${http}/scep/t1/server`, "-C"]);
    expect(r.code, r.out + r.err).toBe(ISSUED);
    const pems = pemsOf(r.out);
    // scep-submit's order: the RA certificate (the one that can encrypt), the CA certificate it
    // settles on (the self-signed root), then the others (the issuing CA).
    expect(pems).toEqual([toPem("CERTIFICATE", ra.rawData), rootPem, toPem("CERTIFICATE", issuing.rawData)]);
    write(f.dir, "ra-from-submit.pem", pems[0]!);
    const v = await shIn(f.dir, "openssl verify -CAfile root.pem -untrusted issuing.pem ra-from-submit.pem");
    expect(v.out).toContain("ra-from-submit.pem: OK");
  }, 60_000);

  test("SUBMIT: a PKCSReq with a one-time challenge is issued (exit 0); openssl opens the envelope and verifies the certificate", async () => {
    const c = await TestScepClient.create("cm1.example.com");
    const msg = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("cm1.example.com", await challenge("server")), ra);
    const r = await scepSubmit(["-u", `${http}/scep/t1/server`], daemonEnv("SUBMIT", msg));
    expect(r.code, r.out + r.err).toBe(ISSUED);
    expect(r.out).toContain("-----BEGIN PKCS7-----");
    const text = await openAndVerify("cm1", c, r.out);
    expect(text).toContain("CN = cm1.example.com");
    expect(text).toContain("DNS:cm1.example.com");
  }, 60_000);

  test("SUBMIT with a wrong or reused challenge: rejected (exit 2, badRequest), nothing issued", async () => {
    const before = await certificateCount(f, "t1");
    const c = await TestScepClient.create("cm2.example.com");
    const wrong = await scepSubmit(["-u", `${http}/scep/t1/server`], daemonEnv("SUBMIT", await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("cm2.example.com", "not-the-challenge"), ra)));
    expect(wrong.code, wrong.out + wrong.err).toBe(REJECTED);
    // certmonger's text for failInfo badRequest.
    expect(wrong.out).toContain("Transaction either is not permitted or is not supported by server");
    const once = await challenge("server");
    const first = await TestScepClient.create("cm3.example.com");
    expect((await scepSubmit(["-u", `${http}/scep/t1/server`], daemonEnv("SUBMIT", await first.message(MESSAGE_TYPE.PKCSReq, await first.csr("cm3.example.com", once), ra)))).code).toBe(ISSUED);
    const second = await TestScepClient.create("cm4.example.com");
    const reused = await scepSubmit(["-u", `${http}/scep/t1/server`], daemonEnv("SUBMIT", await second.message(MESSAGE_TYPE.PKCSReq, await second.csr("cm4.example.com", once), ra)));
    expect(reused.code, reused.out + reused.err).toBe(REJECTED);
    expect(await certificateCount(f, "t1")).toBe(before + 1);
  }, 60_000);

  test("a queued request: SUBMIT waits (exit 1, a cookie), POLL waits until an approver approves it, then POLL collects the certificate", async () => {
    const url = `${http}/scep/t1/scep-manual`;
    const manualRa = certsOf(new Uint8Array(await (await fetch(`${url}?operation=GetCACert`)).arrayBuffer()))[0]!;
    const c = await TestScepClient.create("queued.example.com");
    const pkcsReq = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("queued.example.com", await challenge("scep-manual")), manualRa);
    const submitted = await scepSubmit(["-u", url], daemonEnv("SUBMIT", pkcsReq, manualRa));
    expect(submitted.code, submitted.out + submitted.err).toBe(WAIT);
    // The cookie certmonger keeps for its next poll: the CertRep's senderNonce, base64.
    const cookie = submitted.out.trim();
    expect(Buffer.from(cookie, "base64").length).toBe(16);

    // POLL sends the PKCSReq again (same transactionID, key and CSR), which RFC 8894 allows;
    // pki-ca answers that transaction's state.
    const poll = () => scepSubmit(["-u", url], daemonEnv("POLL", pkcsReq, manualRa, cookie));
    const early = await poll();
    expect(early.code, early.out + early.err).toBe(WAIT);

    const approver = await f.token("t1", "pki:approve");
    const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
    const req = pending.items.find((i) => i.subject === "CN=queued.example.com");
    expect(req).toBeDefined();
    expect((await f.api(`/requests/${req!.id}/approve`, approver, { method: "POST" })).status).toBe(201);

    const done = await poll();
    expect(done.code, done.out + done.err).toBe(ISSUED);
    const text = await openAndVerify("queued", c, done.out);
    expect(text).toContain("CN = queued.example.com");

    // The same transaction through RFC 8894's CertPoll (GetCertInitial), in scep-submit's -g mode with the message in a file.
    write(f.dir, "manual-ra.pem", toPem("CERTIFICATE", manualRa.rawData));
    write(f.dir, "ca.pem", rootPem);
    write(f.dir, "others.pem", toPem("CERTIFICATE", issuing.rawData));
    write(f.dir, "certpoll.p7", toPem("PKCS7", await c.certPoll(manualRa, issuing)));
    const polled = await scepSubmit(["-u", url, "-g", "-r", "manual-ra.pem", "-N", "ca.pem", "-I", "others.pem", "certpoll.p7"]);
    expect(polled.code, polled.out + polled.err).toBe(ISSUED);
    expect(await openAndVerify("certpoll", c, polled.out)).toContain("CN = queued.example.com");
  }, 60_000);

  test("an RA with a P-256 signing certificate of its own (ra_signing_key: P-256): -C takes the RSA encryption certificate as the RA, SUBMIT verifies the P-256 signature and is issued", async () => {
    const url = `${http}/scep/t1/server-ec`;
    const certs = certsOf(new Uint8Array(await (await fetch(`${url}?operation=GetCACert`)).arrayBuffer()));
    const [enc, sign] = certs as [X509Certificate, X509Certificate];
    expect(enc.getExtension(KeyUsagesExtension)!.usages).toBe(KeyUsageFlags.keyEncipherment);
    expect(enc.publicKey.algorithm.name).toBe("RSASSA-PKCS1-v1_5");
    expect(sign.getExtension(KeyUsagesExtension)!.usages).toBe(KeyUsageFlags.digitalSignature);
    expect((sign.publicKey.algorithm as EcKeyAlgorithm).namedCurve).toBe("P-256");
    expect(certs.slice(2).map((c) => c.subject)).toEqual([issuing.subject, issuing.issuer]);
    write(f.dir, "ec-ra.pem", toPem("CERTIFICATE", enc.rawData) + toPem("CERTIFICATE", sign.rawData));
    expect((await shIn(f.dir, "openssl verify -CAfile root.pem -untrusted issuing.pem ec-ra.pem")).out).toContain("ec-ra.pem: OK");
    const ca = await scepSubmit(["-u", url, "-C"]);
    expect(ca.code, ca.out + ca.err).toBe(ISSUED);
    // scep-submit's RA is the certificate that can encrypt; the signing one is among the others.
    const pems = pemsOf(ca.out);
    expect(pems[0]).toBe(toPem("CERTIFICATE", enc.rawData));
    expect(pems).toContain(toPem("CERTIFICATE", sign.rawData));
    const c = await TestScepClient.create("cm-ec.example.com");
    const msg = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("cm-ec.example.com", await challenge("server-ec")), enc);
    const env = { ...daemonEnv("SUBMIT", msg, enc), CERTMONGER_SCEP_CERTIFICATES: pems.slice(2).join("") };
    const r = await scepSubmit(["-u", url], env);
    expect(r.code, r.out + r.err).toBe(ISSUED);
    expect(await openAndVerify("cm-ec", c, r.out)).toContain("CN = cm-ec.example.com");
    // The CertRep was signed by the P-256 certificate (scep-submit verified it up to the root).
    const rep = await parsePkiMessage(new Uint8Array(await (await fetch(`${url}?operation=PKIOperation`, { method: "POST", body: msg.slice().buffer as ArrayBuffer })).arrayBuffer()));
    expect(Buffer.from(rep.signerDer).equals(Buffer.from(sign.rawData))).toBe(true);
  }, 60_000);

  test("ra_key RSA-2048: -C gives the one RSA-2048 RA certificate (keyEncipherment + digitalSignature), SUBMIT is issued and the CertRep is signed by that certificate", async () => {
    const url = `${http}/scep/t1/server-2048`;
    const ca = await scepSubmit(["-u", url, "-C"]);
    expect(ca.code, ca.out + ca.err).toBe(ISSUED);
    const pems = pemsOf(ca.out);
    expect(pems.slice(1)).toEqual([rootPem, toPem("CERTIFICATE", issuing.rawData)]);
    const ra2048 = certsOf(new Uint8Array(await (await fetch(`${url}?operation=GetCACert`)).arrayBuffer()))[0]!;
    expect(pems[0]).toBe(toPem("CERTIFICATE", ra2048.rawData));
    expect((ra2048.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength).toBe(2048);
    expect(ra2048.getExtension(KeyUsagesExtension)!.usages).toBe(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment);
    expect(pems[0]).not.toBe(toPem("CERTIFICATE", ra.rawData));
    write(f.dir, "ra-2048.pem", pems[0]!);
    expect((await shIn(f.dir, "openssl verify -CAfile root.pem -untrusted issuing.pem ra-2048.pem")).out).toContain("ra-2048.pem: OK");

    const c = await TestScepClient.create("cm-2048.example.com");
    const msg = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("cm-2048.example.com", await challenge("server-2048")), ra2048);
    const r = await scepSubmit(["-u", url], daemonEnv("SUBMIT", msg, ra2048));
    expect(r.code, r.out + r.err).toBe(ISSUED);
    expect(await openAndVerify("cm-2048", c, r.out)).toContain("CN = cm-2048.example.com");
    // The same message again (its transaction's state): the CertRep's signer is the RSA-2048 certificate.
    const rep = await parsePkiMessage(new Uint8Array(await (await fetch(`${url}?operation=PKIOperation`, { method: "POST", body: msg.slice().buffer as ArrayBuffer })).arrayBuffer()));
    expect(rep.pkiStatus).toBe("0");
    expect(Buffer.from(rep.signerDer).equals(Buffer.from(ra2048.rawData))).toBe(true);
  }, 60_000);

  test("ra_key RSA-2048 with ra_signing_key P-256: an RSA-2048 encryption certificate and the P-256 signer; SUBMIT is issued", async () => {
    const url = `${http}/scep/t1/server-ec-2048`;
    const [enc, sign] = certsOf(new Uint8Array(await (await fetch(`${url}?operation=GetCACert`)).arrayBuffer())) as [X509Certificate, X509Certificate];
    expect(enc.getExtension(KeyUsagesExtension)!.usages).toBe(KeyUsageFlags.keyEncipherment);
    expect((enc.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength).toBe(2048);
    expect((sign.publicKey.algorithm as EcKeyAlgorithm).namedCurve).toBe("P-256");
    // The encryption certificate is not the RSA-3072 one of the P-256 layout; the P-256 signer is the issuing CA's one signer.
    const [enc3072, sign3072] = certsOf(new Uint8Array(await (await fetch(`${http}/scep/t1/server-ec?operation=GetCACert`)).arrayBuffer())) as [X509Certificate, X509Certificate];
    expect((enc3072.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength).toBe(3072);
    expect(enc.serialNumber).not.toBe(enc3072.serialNumber);
    expect(sign.serialNumber).toBe(sign3072.serialNumber);
    const ca = await scepSubmit(["-u", url, "-C"]);
    expect(ca.code, ca.out + ca.err).toBe(ISSUED);
    const pems = pemsOf(ca.out);
    expect(pems[0]).toBe(toPem("CERTIFICATE", enc.rawData));
    const c = await TestScepClient.create("cm-ec-2048.example.com");
    const msg = await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("cm-ec-2048.example.com", await challenge("server-ec-2048")), enc);
    const r = await scepSubmit(["-u", url], { ...daemonEnv("SUBMIT", msg, enc), CERTMONGER_SCEP_CERTIFICATES: pems.slice(2).join("") });
    expect(r.code, r.out + r.err).toBe(ISSUED);
    expect(await openAndVerify("cm-ec-2048", c, r.out)).toContain("CN = cm-ec-2048.example.com");
  }, 60_000);

  test("the plain-HTTP port serves SCEP and revocation data, nothing else", async () => {
    expect((await fetch(`${http}/scep/t1/server?operation=GetCACaps`)).status).toBe(200);
    expect((await fetch(`${http}/scep/nobody?operation=GetCACaps`)).status).toBe(404);
    expect((await fetch(`${http}/pki/ca/root.pem`)).status).toBe(200);
    for (const path of ["/service/api/v1/scep/challenges", "/docs", "/.well-known/est/cacerts", "/acme/t1/directory"]) expect((await fetch(`${http}${path}`)).status).toBe(404);
    expect((await fetch(`${http}/service/api/v1/scep/challenges`, { method: "POST", body: "{}" })).status).toBe(405);
    expect((await fetch(`${http}/cmc`, { method: "POST", body: new Uint8Array(4) })).status).toBe(405);
  });

  test("the endpoints npm start prints name the plain-HTTP SCEP URLs next to the https ones", () => {
    const scep = enrollmentEndpoints(f.svc.config, f.svc.publicUrl).filter((e) => e.name.startsWith("SCEP"));
    expect(scep).toEqual([
      { name: "SCEP (profile server)", tenant: "t1", url: `${f.svc.publicUrl}/scep/t1/server` },
      { name: "SCEP over http (profile server)", tenant: "t1", url: `${http}/scep/t1/server` },
      { name: "SCEP (profile scep-manual)", tenant: "t1", url: `${f.svc.publicUrl}/scep/t1/scep-manual` },
      { name: "SCEP over http (profile scep-manual)", tenant: "t1", url: `${http}/scep/t1/scep-manual` },
      { name: "SCEP (profile server-ec)", tenant: "t1", url: `${f.svc.publicUrl}/scep/t1/server-ec` },
      { name: "SCEP over http (profile server-ec)", tenant: "t1", url: `${http}/scep/t1/server-ec` },
      { name: "SCEP (profile server-2048)", tenant: "t1", url: `${f.svc.publicUrl}/scep/t1/server-2048` },
      { name: "SCEP over http (profile server-2048)", tenant: "t1", url: `${http}/scep/t1/server-2048` },
      { name: "SCEP (profile server-ec-2048)", tenant: "t1", url: `${f.svc.publicUrl}/scep/t1/server-ec-2048` },
      { name: "SCEP over http (profile server-ec-2048)", tenant: "t1", url: `${http}/scep/t1/server-ec-2048` },
    ]);
  });

  test("the certificates say they came through SCEP (the dashboard's origin)", async () => {
    await expectOrigin(f, "t1", "scep");
  });
});

/** Debian package dbus-daemon: a private session bus for the certmonger daemon. */
const daemonOk = ok && haveTool("certmonger", "certmonger") && haveTool("getcert", "certmonger") && haveTool("dbus-run-session", "dbus-daemon");

describe.skipIf(!daemonOk)("the certmonger daemon (getcert) on a private session bus, its state in the test's directory", () => {
  let cm: string;
  let env: Record<string, string>;
  let daemon: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(async () => {
    // certmonger keeps its CAs, requests and lock where these variables say, never in /var/lib.
    cm = `${f.dir}/certmonger`;
    for (const d of ["cas", "requests", "local", "tmp", "config"]) mkdirSync(`${cm}/${d}`, { recursive: true });
    env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: cm,
      CERTMONGER_CAS_DIR: `${cm}/cas`,
      CERTMONGER_REQUESTS_DIR: `${cm}/requests`,
      CERTMONGER_LOCAL_CA_DIR: `${cm}/local`,
      CERTMONGER_TMPDIR: `${cm}/tmp`,
      CERTMONGER_CONFIG_DIR: `${cm}/config`,
      CERTMONGER_SYSTEM_LOCK_FILE: `${cm}/lock`,
    };
    // The daemon runs this script and stops when it ends: it hands out the bus address, then waits for the stop file.
    write(cm, "hold.sh", `echo "$DBUS_SESSION_BUS_ADDRESS" > ${cm}/bus; while [ ! -e ${cm}/stop ]; do sleep 0.2; done\n`);
    daemon = Bun.spawn(["dbus-run-session", "--", "certmonger", "-s", "-n", "-c", `sh ${cm}/hold.sh`], { env, stdout: "ignore", stderr: "ignore" });
    for (let i = 0; i < 300 && !existsSync(`${cm}/bus`); i++) await Bun.sleep(100);
    env.DBUS_SESSION_BUS_ADDRESS = readFileSync(`${cm}/bus`, "utf8").trim();
  }, 60_000);
  afterAll(async () => {
    if (!daemon) return;
    writeFileSync(`${cm}/stop`, "");
    await daemon.exited;
  }, 30_000);

  async function getcert(...args: string[]): Promise<{ code: number; out: string }> {
    const p = Bun.spawn(["getcert", ...args], { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    return { code: await p.exited, out: out + err };
  }

  /** The request's status once it leaves the daemon's own working states (key, CSR, SCEP data, submission). */
  async function settled(id: string): Promise<string> {
    let status = "";
    for (let i = 0; i < 600; i++) {
      status = /status: (\S+)/.exec((await getcert("list", "-s", "-i", id)).out)?.[1] ?? "";
      if (["CA_WORKING", "MONITORING", "CA_REJECTED", "CA_UNREACHABLE", "CA_UNCONFIGURED"].includes(status)) return status;
      await Bun.sleep(100);
    }
    return status;
  }

  async function verifyIssued(file: string, cn: string): Promise<void> {
    const r = await shIn(f.dir, `openssl verify -CAfile root.pem -untrusted issuing.pem ${file} && openssl x509 -in ${file} -noout -subject`);
    expect(r.out).toContain(`${file}: OK`);
    expect(r.out).toContain(`CN = ${cn}`);
  }

  /** The daemon enrolls through SCEP profile `profile`: add-scep-ca `ca`, request `id` with a one-time challenge, saved as `<file>.crt`. */
  async function daemonEnrolls(ca: string, profile: string, id: string, file: string, cn: string) {
    const added = await getcert("add-scep-ca", "-s", "-c", ca, "-u", `${http}/scep/t1/${profile}`);
    expect(added.code, added.out).toBe(0);
    const r = await getcert("request", "-s", "-c", ca, "-I", id, "-f", `${f.dir}/${file}.crt`, "-k", `${f.dir}/${file}.key`, "-N", `CN=${cn}`, "-D", cn, "-L", await challenge(profile));
    expect(r.code, r.out).toBe(0);
    expect(await settled(id)).toBe("MONITORING");
    await verifyIssued(`${file}.crt`, cn);
  }

  test("add-scep-ca, then a request with a one-time challenge: the daemon makes the key, CSR and pkiMessage, scep-submit sends it, the certificate is saved", async () => {
    await daemonEnrolls("pki", "server", "dev", "daemon-dev", "daemon.example.com");
  }, 90_000);

  test("an RA with a P-256 signing certificate of its own (ra_signing_key: P-256): add-scep-ca and a request, the certificate is saved", async () => {
    await daemonEnrolls("pki-ec", "server-ec", "ec", "daemon-ec", "daemon-ec.example.com");
  }, 90_000);

  test("an RA with an RSA-2048 key (ra_key: RSA-2048): add-scep-ca and a request, the certificate is saved", async () => {
    await daemonEnrolls("pki-2048", "server-2048", "k2048", "daemon-2048", "daemon-2048.example.com");
  }, 90_000);

  test("a queued request: CA_WORKING until an approver approves it, then `getcert refresh` polls and the certificate is saved", async () => {
    expect((await getcert("add-scep-ca", "-s", "-c", "pki-manual", "-u", `${http}/scep/t1/scep-manual`)).code).toBe(0);
    const r = await getcert("request", "-s", "-c", "pki-manual", "-I", "queued", "-f", `${f.dir}/daemon-queued.crt`, "-k", `${f.dir}/daemon-queued.key`, "-N", "CN=daemon-queued.example.com", "-D", "daemon-queued.example.com", "-L", await challenge("scep-manual"));
    expect(r.code, r.out).toBe(0);
    expect(await settled("queued")).toBe("CA_WORKING");
    expect(existsSync(`${f.dir}/daemon-queued.crt`)).toBe(false);

    const approver = await f.token("t1", "pki:approve");
    const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
    const req = pending.items.find((i) => i.subject === "CN=daemon-queued.example.com");
    expect(req).toBeDefined();
    expect((await f.api(`/requests/${req!.id}/approve`, approver, { method: "POST" })).status).toBe(201);

    expect((await getcert("refresh", "-s", "-i", "queued")).code).toBe(0);
    for (let i = 0; i < 600 && (await settled("queued")) !== "MONITORING"; i++) await Bun.sleep(100);
    expect(await settled("queued")).toBe("MONITORING");
    await verifyIssued("daemon-queued.crt", "daemon-queued.example.com");
  }, 120_000);
});

