/**
 * Issue 14 (6): bad input that answered 500 answers 4xx. identity-authz client create/patch with
 * an unparsable redirect URI; OCSP (POST and GET) and TSA requests whose hash
 * AlgorithmIdentifier parameters are an empty UTCTime (`17 00`) instead of NULL, anonymous;
 * a jose-ja JWT whose schema-valid claim nests 50,000 deep.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { CertID, OCSPRequest, Request as OcspSingleRequest, TBSRequest } from "@peculiar/asn1-ocsp";
import { MessageImprint, TimeStampReq } from "@peculiar/asn1-tsp";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { sendJson, startAllServices, type AllServices, type JsonTarget } from "../support/all-services.ts";

let all: AllServices;
const target = (name: string) => all.targets.find((t) => t.service === name)!;
beforeAll(async () => {
  all = await startAllServices();
});
afterAll(async () => {
  await all?.stop();
});

/** The DER with the first `05 00` (NULL parameters) after the hash OID replaced by an empty UTCTime. */
function utcTimeParameters(der: ArrayBuffer, oidHex: string): Uint8Array {
  const hex = Buffer.from(der).toString("hex");
  expect(hex).toContain(`${oidHex}0500`);
  return new Uint8Array(Buffer.from(hex.replace(`${oidHex}0500`, `${oidHex}1700`), "hex"));
}

const SHA1_OID = "06052b0e03021a";
const SHA256_OID = "0609608648016503040201";
const hashAlg = (oid: string) => new AlgorithmIdentifier({ algorithm: oid, parameters: null });

test("identity-authz: an unparsable redirect URI is 400 on create and on patch, for both URI lists", async () => {
  const t = target("identity-authz");
  const base = t.seed as Record<string, unknown>;
  for (const field of ["redirect_uris", "post_logout_redirect_uris"]) {
    const r = await sendJson(t, JSON.stringify({ ...base, [field]: ["null"] }));
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.details[0].path).toBe(`${field}.0`);
  }
  const created = await sendJson(t, JSON.stringify(base));
  expect(created.status).toBe(201);
  const id = JSON.parse(created.text).client_id as string;
  const patch: JsonTarget = { ...t, method: "PATCH", path: `${t.path}/${id}` };
  for (const field of ["redirect_uris", "post_logout_redirect_uris"]) {
    const r = await sendJson(patch, JSON.stringify({ [field]: ["null", "https://ok.example.com/cb"] }));
    expect(r.status).toBe(400);
  }
});

test("pki-ca: OCSP POST and GET and a TSA request with UTCTime hash parameters are 400 (malformedRequest / rejection), anonymous", async () => {
  const ca = target("pki-ca").svc;
  const certId = new CertID({
    hashAlgorithm: hashAlg("1.3.14.3.2.26"),
    issuerNameHash: new OctetString(new Uint8Array(20)),
    issuerKeyHash: new OctetString(new Uint8Array(20)),
    serialNumber: new Uint8Array([1, 2, 3]).buffer,
  });
  const ocsp = utcTimeParameters(AsnConvert.serialize(new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new OcspSingleRequest({ reqCert: certId })] }) })), SHA1_OID);
  const post = await ca.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: ocsp.slice().buffer as ArrayBuffer });
  const get = await ca.call(`/pki/ocsp/${encodeURIComponent(Buffer.from(ocsp).toString("base64"))}`);
  for (const res of [post, get]) {
    expect(res.status).toBe(400);
    // OCSPResponse { responseStatus malformedRequest(1) }
    expect(Buffer.from(await res.arrayBuffer()).toString("hex")).toBe("30030a0101");
  }
  const tsq = utcTimeParameters(
    AsnConvert.serialize(new TimeStampReq({ messageImprint: new MessageImprint({ hashAlgorithm: hashAlg("2.16.840.1.101.3.4.2.1"), hashedMessage: new OctetString(new Uint8Array(32)) }), certReq: true })),
    SHA256_OID,
  );
  const ts = await ca.call("/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: tsq.slice().buffer as ArrayBuffer });
  expect(ts.status).toBe(400);
  expect(ts.headers.get("content-type")).toBe("application/timestamp-reply");
});

test("jose-ja: a JWT claim nested 50,000 deep is 400, not 500", async () => {
  const t = target("jose-ja");
  const issue: JsonTarget = { ...t, path: t.path.replace(/\/validate$/, "") };
  const deep = '{"a":'.repeat(50_000) + "1" + "}".repeat(50_000);
  const r = await sendJson(issue, `{"claims":{"deep":${deep}},"ttl_s":60}`);
  expect(r.status).toBe(400);
  expect(JSON.parse(r.text).error.code).toBe("body_too_deep");
});
