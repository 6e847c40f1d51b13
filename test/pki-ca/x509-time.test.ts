/**
 * Issue 14 (4): times in certificates, CRLs and OCSP responses carry whole seconds (RFC 5280
 * §4.1.2.5.2 forbids fractions in GeneralizedTime); GnuTLS `ocsptool --response-info` refused
 * `20261207004241.069Z`. Checked on the DER over HTTPS, and with ocsptool when installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { CertID, OCSPRequest, Request as OcspSingleRequest, TBSRequest } from "@peculiar/asn1-ocsp";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import * as x509 from "../../src/pki/x509.ts";
import { gnutls, haveGnutlsTools } from "../pki/helpers.ts";
import { ed25519Csr, startCa, write, type CaFixture } from "./helpers.ts";

let f: CaFixture;
let leafPem: string;
let issuerPem: string;
let ocspRequest: Uint8Array;

/** Every UTCTime (0x17) and GeneralizedTime (0x18) value in a DER buffer, as text. */
function derTimes(der: Uint8Array): Array<{ tag: number; text: string }> {
  const out: Array<{ tag: number; text: string }> = [];
  const latin1 = Buffer.from(der).toString("latin1");
  for (const m of latin1.matchAll(/([\x17\x18])([\x0b-\x20])(\d{10,14}[0-9.,+\-Z]*)/g)) {
    const len = m[2]!.charCodeAt(0);
    out.push({ tag: m[1]!.charCodeAt(0), text: latin1.substr(m.index! + 2, len) });
  }
  return out;
}

function expectWholeSeconds(der: Uint8Array, atLeast: number) {
  const times = derTimes(der);
  expect(times.length).toBeGreaterThanOrEqual(atLeast);
  for (const t of times) expect(t.text).toMatch(/^\d+Z$/);
}

async function sha1(b: ArrayBuffer | Uint8Array) {
  return new OctetString(await crypto.subtle.digest("SHA-1", b as Uint8Array<ArrayBuffer>));
}

beforeAll(async () => {
  f = await startCa();
  const tok = await f.token("time", "pki:request pki:revoke");
  const { pem } = await ed25519Csr("time.example.com");
  const res = await f.api("/certificates", tok, { body: { csr: pem, profile: "server" } });
  expect(res.status).toBe(201);
  const issued = ((await res.json()) as { certificate: { certificate_pem: string; chain_pem: string; serial: string } }).certificate;
  leafPem = issued.certificate_pem;
  issuerPem = issued.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!;
  // Revoked at a time with milliseconds, so revocationTime and the CRL entry have a fraction to lose.
  expect((await f.api(`/certificates/${issued.serial}/revoke`, tok, { body: { reason: "keyCompromise" } })).status).toBe(200);

  const issuer = AsnConvert.parse(new x509.X509Certificate(issuerPem).rawData, Certificate);
  const leaf = new x509.X509Certificate(leafPem);
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: "1.3.14.3.2.26", parameters: null }),
    issuerNameHash: await sha1(AsnConvert.serialize(issuer.tbsCertificate.subject)),
    issuerKeyHash: await sha1(issuer.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey),
    serialNumber: Buffer.from(leaf.serialNumber, "hex").buffer as ArrayBuffer,
  });
  ocspRequest = new Uint8Array(AsnConvert.serialize(new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new OcspSingleRequest({ reqCert: certId })] }) })));
});
afterAll(async () => {
  await f?.stop();
});

const postOcsp = () =>
  f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: ocspRequest.slice().buffer as ArrayBuffer });

describe("whole seconds in the DER", () => {
  test("OCSP producedAt, thisUpdate, nextUpdate and revocationTime", async () => {
    const res = await postOcsp();
    expect(res.status).toBe(200);
    const der = new Uint8Array(await res.arrayBuffer());
    expectWholeSeconds(der, 4);
    expect(derTimes(der).filter((t) => t.tag === 0x18).length).toBeGreaterThanOrEqual(4);
  });

  test("CRL thisUpdate, nextUpdate and the revoked entry; certificate validity", async () => {
    const leaf = new x509.X509Certificate(leafPem);
    const dp = leaf.getExtension(x509.CRLDistributionPointsExtension)!;
    const url = new URL(dp.distributionPoints[0]!.distributionPoint!.fullName![0]!.uniformResourceIdentifier!);
    const crl = await f.svc.call(url.pathname);
    expect(crl.status).toBe(200);
    expectWholeSeconds(new Uint8Array(await crl.arrayBuffer()), 3);
    expectWholeSeconds(new Uint8Array(leaf.rawData), 2);
    expectWholeSeconds(new Uint8Array(new x509.X509Certificate(issuerPem).rawData), 2);
  });
});

describe.skipIf(!haveGnutlsTools())("GnuTLS ocsptool [needs Debian gnutls-bin]", () => {
  test("ocsptool --response-info reads the response and sees the revocation", async () => {
    const res = await postOcsp();
    const file = write(f.dir, "resp.der", new Uint8Array(await res.arrayBuffer()));
    const r = gnutls("ocsptool", ["--response-info", "--infile", file, "--inder"]);
    expect(r.out).not.toContain("error");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Certificate Status: revoked/);
    expect(r.out).toMatch(/Produced At: .*\d{4}/);
  });
});
