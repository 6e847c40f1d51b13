/**
 * SCEP (RFC 8894) against pki-ca with Debian's `scepclient` (micromdm): GetCACaps, GetCACert (RA
 * certificate with keyEncipherment and digitalSignature, then the chain), PKCSReq with one-time and
 * static challenge passwords; openssl verifies what it gets. A wrong or reused challenge is a
 * FAILURE (badRequest) and nothing is issued. A request queued for approval answers PENDING; it
 * is approved through the REST API and collected by CertPoll (built in-process: scepclient only
 * resends its PKCSReq every 30 s), GetCert returns a certificate to its key's holder. scepclient
 * refuses a CertRep signed by an RA's separate P-256 certificate (`ra_signing_key: P-256`), and
 * enrolls against a profile whose RA key is RSA-2048 (`ra_key: RSA-2048`: its own certificate,
 * distinct from the RSA-3072 one of the same issuing CA). Needs the
 * Debian packages scep, openssl and curl; skips with a printed reason when one is missing
 * (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { IssuerAndSerialNumber } from "@peculiar/asn1-cms";
import { toPem } from "../../src/pki/keys.ts";
import * as x509 from "../../src/pki/x509.ts";
import { MESSAGE_TYPE, openEnvelope, parsePkiMessage } from "../../apps/pki-ca/scep/cms.ts";
import { haveOpenssl, PROFILES, startCa, write, type CaFixture, haveTool, expectOrigin } from "./helpers.ts";
import { certificateCount, certsOf, scepChallenge, TestScepClient } from "./scep-helpers.ts";

const have = haveTool;
const sslOk = haveOpenssl() && have("curl", "curl");
const scepOk = have("scepclient", "scep") && sslOk;

const STATIC = "static-secret-1";
let f: CaFixture;
let trust: string;
let root: string;
let chainFile: string;
let url: string;
let ra: x509.X509Certificate;
let issuing: x509.X509Certificate;

beforeAll(async () => {
  if (!sslOk) return;
  f = await startCa({
    profiles: { ...PROFILES, "scep-manual": { ...PROFILES.manual, key_types: ["RSA-2048"] }, "server-ec": PROFILES.server, "server-2048": PROFILES.server },
    scep: { tenants: { t1: { profiles: { server: { challenge_sha256: createHash("sha256").update(STATIC).digest("hex") }, "scep-manual": {}, "server-ec": { ra_signing_key: "P-256" }, "server-2048": { ra_key: "RSA-2048" } } } } },
  });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  root = write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
  url = `${f.svc.publicUrl}/scep/t1/server`;
  const certs = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/server?operation=GetCACert")).arrayBuffer()));
  [ra, issuing] = certs as [x509.X509Certificate, x509.X509Certificate];
  chainFile = write(f.dir, "chain.pem", toPem("CERTIFICATE", issuing.rawData));
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

async function run(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { cwd: f.dir, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

const challenge = (profile: string) => scepChallenge(f, "t1", profile);

const fingerprint = (c: x509.X509Certificate) => createHash("sha256").update(new Uint8Array(c.rawData)).digest("hex");

/** scepclient in a directory of its own (it keeps csr.pem and self.pem beside the key). */
function scepclient(name: string, cn: string, secret: string, at = url, recipient = ra) {
  return run(["scepclient", "-server-url", at, "-private-key", `${f.dir}/${name}/client.key`, "-cn", cn, "-challenge", secret, "-ca-fingerprint", fingerprint(recipient)], { SSL_CERT_FILE: trust }).then((r) => ({ ...r, cert: `${f.dir}/${name}/client.pem` }));
}

async function mkdir(name: string) {
  await run(["mkdir", "-p", `${f.dir}/${name}`]);
}

describe.skipIf(!sslOk)("SCEP protocol (Debian packages openssl, curl)", () => {
  test("GetCACaps and GetCACert: the RA certificate (RSA, keyEncipherment + digitalSignature) under the issuing CA", async () => {
    const caps = await run(["curl", "-sS", "--cacert", trust, `${url}?operation=GetCACaps`]);
    for (const c of ["AES", "POSTPKIOperation", "Renewal", "SHA-256", "SCEPStandard"]) expect(caps.out).toContain(c);
    const res = await f.svc.call("/scep/t1/server?operation=GetCACert");
    expect(res.headers.get("content-type")).toBe("application/x-x509-ca-ra-cert");
    const ku = ra.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.usages & x509.KeyUsageFlags.keyEncipherment).toBeTruthy();
    expect(ku.usages & x509.KeyUsageFlags.digitalSignature).toBeTruthy();
    expect(ra.publicKey.algorithm.name).toBe("RSASSA-PKCS1-v1_5");
    expect(ra.issuer).toBe(issuing.subject);
    write(f.dir, "ra.pem", toPem("CERTIFICATE", ra.rawData));
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, "ra.pem"])).out).toContain("OK");
    // /scep is the first tenant's first profile; an unknown tenant is 404.
    expect((await f.svc.call("/scep?operation=GetCACaps")).status).toBe(200);
    expect((await f.svc.call("/scep/nobody?operation=GetCACaps")).status).toBe(404);
  }, 60_000);

  test("RenewalReq: signed by the certificate being renewed, no challenge; refused once it is revoked, and for another identity", async () => {
    const c = await TestScepClient.create("renewreq.example.com");
    const post = async (der: Uint8Array) => new Uint8Array(await (await f.svc.call("/scep/t1/server?operation=PKIOperation", { method: "POST", body: der.slice().buffer as ArrayBuffer, headers: { "content-type": "application/x-pki-message" } })).arrayBuffer());
    const issued = await c.reply(await post(await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("renewreq.example.com", STATIC), ra)));
    expect(issued.msg.pkiStatus).toBe("0");
    const holder = c.withCertificate(issued.cert!);
    const renewed = await holder.reply(await post(await holder.message(MESSAGE_TYPE.RenewalReq, await holder.csr("renewreq.example.com"), ra)));
    expect(renewed.msg.pkiStatus).toBe("0");
    expect(renewed.cert!.serialNumber).not.toBe(issued.cert!.serialNumber);
    write(f.dir, "renewreq.pem", toPem("CERTIFICATE", renewed.cert!.rawData));
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, "renewreq.pem"])).out).toContain("renewreq.pem: OK");
    // Another identity under the same certificate: FAILURE badRequest.
    const other = holder.withCertificate(issued.cert!);
    expect((await other.reply(await post(await other.message(MESSAGE_TYPE.RenewalReq, await other.csr("elsewhere.example.com"), ra)))).msg.failInfo).toBe("2");
    // Revoked: FAILURE, nothing issued.
    expect((await f.api(`/certificates/${issued.cert!.serialNumber.toLowerCase()}/revoke`, await f.token("t1", "pki:revoke"), { body: { reason: "superseded" } })).status).toBe(200);
    const late = holder.withCertificate(issued.cert!);
    expect((await late.reply(await post(await late.message(MESSAGE_TYPE.RenewalReq, await late.csr("renewreq.example.com"), ra)))).msg.pkiStatus).toBe("2");
  }, 60_000);

  test("manual approval: PENDING, approved through the REST API, collected by CertPoll; GetCert for the key's holder; GetCRL once revoked", async () => {
    const c = await TestScepClient.create("poll.example.com");
    const manualRa = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/scep-manual?operation=GetCACert")).arrayBuffer()))[0]!;
    const post = async (der: Uint8Array, path = "/scep/t1/scep-manual") =>
      new Uint8Array(await (await f.svc.call(`${path}?operation=PKIOperation`, { method: "POST", body: der.slice().buffer as ArrayBuffer, headers: { "content-type": "application/x-pki-message" } })).arrayBuffer());
    const first = await c.reply(await post(await c.message(MESSAGE_TYPE.PKCSReq, await c.csr("poll.example.com", await challenge("scep-manual")), manualRa)));
    expect(first.msg.pkiStatus).toBe("3");
    expect(first.msg.transactionId).toBe(c.transactionId);
    expect((await c.reply(await post(await c.certPoll(manualRa, issuing)))).msg.pkiStatus).toBe("3");
    // Another key cannot poll this transaction.
    const other = await TestScepClient.create("other.example.com");
    expect((await other.reply(await post(await other.message(MESSAGE_TYPE.CertPoll, new Uint8Array([0x30, 0x00]), manualRa, c.transactionId)))).msg.failInfo).toBe("4");

    const approver = await f.token("t1", "pki:approve");
    const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
    const req = pending.items.find((i) => i.subject === "CN=poll.example.com")!;
    expect((await f.api(`/requests/${req.id}/approve`, approver, { method: "POST" })).status).toBe(201);
    const done = await c.reply(await post(await c.certPoll(manualRa, issuing)));
    expect(done.msg.pkiStatus).toBe("0");
    expect(done.cert!.subject).toBe("CN=poll.example.com");
    write(f.dir, "poll.pem", toPem("CERTIFICATE", done.cert!.rawData));
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, "poll.pem"])).out).toContain("poll.pem: OK");

    // GetCert: by issuer and serial, only to the holder of the certificate's key.
    const asn = AsnConvert.parse(done.cert!.rawData, Certificate);
    const ias = new Uint8Array(AsnConvert.serialize(new IssuerAndSerialNumber({ issuer: asn.tbsCertificate.issuer, serialNumber: asn.tbsCertificate.serialNumber })));
    const got = await c.reply(await post(await c.message(MESSAGE_TYPE.GetCert, ias, manualRa, "getcert-1")));
    expect(got.cert?.serialNumber).toBe(done.cert!.serialNumber);
    expect((await other.reply(await post(await other.message(MESSAGE_TYPE.GetCert, ias, manualRa, "getcert-2")))).msg.failInfo).toBe("4");

    // GetCRL: revoked, the certificate is on the CRL the CertRep carries (a degenerate PKCS#7), which openssl reads and verifies.
    expect((await f.api(`/certificates/${done.cert!.serialNumber.toLowerCase()}/revoke`, await f.token("t1", "pki:revoke"), { body: { reason: "keyCompromise" } })).status).toBe(200);
    const crlRep = await parsePkiMessage(await post(await c.message(MESSAGE_TYPE.GetCRL, ias, manualRa, "getcrl-1")));
    expect(crlRep.pkiStatus).toBe("0");
    write(f.dir, "getcrl.p7", await openEnvelope(crlRep.content, c.self, c.nodeKey));
    const crl = await run(["sh", "-c", `openssl pkcs7 -inform DER -in getcrl.p7 -print_certs > getcrl.pem && openssl crl -in getcrl.pem -CAfile ${chainFile} -noout -text`]);
    expect(crl.out).toContain("verify OK");
    expect(crl.out.toUpperCase()).toContain(done.cert!.serialNumber.toUpperCase());
    expect(crl.out).toContain("Key Compromise");
    // An issuer that is not this CA's: badCertId.
    const foreign = new Uint8Array(AsnConvert.serialize(new IssuerAndSerialNumber({ issuer: asn.tbsCertificate.subject, serialNumber: asn.tbsCertificate.serialNumber })));
    expect((await c.reply(await post(await c.message(MESSAGE_TYPE.GetCRL, foreign, manualRa, "getcrl-2")))).msg.failInfo).toBe("4");
  }, 60_000);
});

describe.skipIf(!scepOk)("SCEP with scepclient (Debian packages scep, openssl, curl)", () => {
  test("enrollment with a one-time challenge from the admin API; openssl verifies the certificate", async () => {
    await mkdir("c1");
    const r = await scepclient("c1", "dev1.example.com", await challenge("server"));
    expect(r.code, r.out).toBe(0);
    expect(existsSync(r.cert)).toBe(true);
    const v = await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, r.cert]);
    expect(v.out).toContain(": OK");
    expect((await run(["openssl", "x509", "-in", r.cert, "-noout", "-subject", "-ext", "subjectAltName"])).out).toContain("DNS:dev1.example.com");
  }, 60_000);

  test("scepclient with its existing key and certificate resends its first transaction (key-derived transactionID, saved CSR) and gets the same certificate back", async () => {
    await mkdir("r1");
    const first = await scepclient("r1", "renew.example.com", await challenge("server"));
    expect(first.code, first.out).toBe(0);
    const serialOf = async (file: string) => (await run(["openssl", "x509", "-in", file, "-noout", "-serial"])).out.trim().split("=")[1]!.toLowerCase();
    const old = await serialOf(first.cert);
    const again = await run(["scepclient", "-server-url", url, "-private-key", `${f.dir}/r1/client.key`, "-certificate", `${f.dir}/r1/client.pem`, "-cn", "renew.example.com", "-ca-fingerprint", fingerprint(ra)], { SSL_CERT_FILE: trust });
    expect(again.code, again.out).toBe(0);
    expect(await serialOf(first.cert)).toBe(old);
  }, 60_000);

  test("a wrong or reused challenge: FAILURE badRequest, nothing issued", async () => {
    const before = await certificateCount(f, "t1");
    await mkdir("c2");
    const wrong = await scepclient("c2", "dev2.example.com", "not-the-challenge");
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toContain("badRequest");
    const once = await challenge("server");
    await mkdir("c3");
    expect((await scepclient("c3", "dev3.example.com", once)).code).toBe(0);
    await mkdir("c4");
    const reused = await scepclient("c4", "dev4.example.com", once);
    expect(reused.code).not.toBe(0);
    expect(reused.out).toContain("badRequest");
    expect(await certificateCount(f, "t1")).toBe(before + 1);
  }, 60_000);

  test("the profile's static challenge (configured as its SHA-256)", async () => {
    await mkdir("c5");
    const r = await scepclient("c5", "dev5.example.com", STATIC);
    expect(r.code, r.out).toBe(0);
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, r.cert])).out).toContain(": OK");
  }, 60_000);

  test("why ra_signing_key P-256 is not the default: scepclient checks a CertRep only against the certificate it encrypted to, so it refuses one signed by the RA's separate P-256 certificate", async () => {
    const ecUrl = `${f.svc.publicUrl}/scep/t1/server-ec`;
    const [enc, sign] = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/server-ec?operation=GetCACert")).arrayBuffer())) as [x509.X509Certificate, x509.X509Certificate];
    expect(enc.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.keyEncipherment);
    expect(sign.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    await mkdir("ec1");
    const r = await scepclient("ec1", "ec1.example.com", await challenge("server-ec"), ecUrl, enc);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("No certificate for signer");
    expect(existsSync(r.cert)).toBe(false);
  }, 60_000);

  test("ra_key RSA-2048: GetCACert gives one RSA-2048 RA certificate (keyEncipherment + digitalSignature) of its own; scepclient enrolls with it and openssl verifies the chain", async () => {
    const url2048 = `${f.svc.publicUrl}/scep/t1/server-2048`;
    const certs = certsOf(new Uint8Array(await (await f.svc.call("/scep/t1/server-2048?operation=GetCACert")).arrayBuffer()));
    const ra2048 = certs[0]!;
    expect(certs.slice(1).map((c) => c.subject)).toEqual([issuing.subject, issuing.issuer]);
    expect((ra2048.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength).toBe(2048);
    expect((ra.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength).toBe(3072);
    expect(ra2048.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    expect(ra2048.issuer).toBe(issuing.subject);
    // The same issuing CA's RSA-3072 RA is another certificate with another key.
    expect(fingerprint(ra2048)).not.toBe(fingerprint(ra));
    expect(Buffer.from(ra2048.publicKey.rawData).equals(Buffer.from(ra.publicKey.rawData))).toBe(false);
    write(f.dir, "ra2048.pem", toPem("CERTIFICATE", ra2048.rawData));
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, "ra2048.pem"])).out).toContain("ra2048.pem: OK");
    expect((await run(["openssl", "x509", "-in", "ra2048.pem", "-noout", "-text"])).out).toContain("Public-Key: (2048 bit)");

    await mkdir("k1");
    const r = await scepclient("k1", "k2048.example.com", await challenge("server-2048"), url2048, ra2048);
    expect(r.code, r.out).toBe(0);
    expect((await run(["openssl", "verify", "-CAfile", root, "-untrusted", chainFile, r.cert])).out).toContain(": OK");
    expect((await run(["openssl", "x509", "-in", r.cert, "-noout", "-subject"])).out).toContain("k2048.example.com");
  }, 60_000);

  test("the certificates say they came through SCEP (the dashboard's origin)", async () => {
    await expectOrigin(f, "t1", "scep");
  });
});
