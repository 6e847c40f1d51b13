/**
 * Profile rules beyond DNS/IP/email: URI SAN patterns, UPN SANs (otherName) by domain, and
 * required / forbidden requested extensions, end to end with CSRs made by openssl; refusals
 * list every reason.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, openssl, PROFILES, startCa, write, type CaFixture } from "./helpers.ts";

const ok = haveOpenssl();
let f: CaFixture;
let tok: string;

const PROFILES_WITH_RULES = {
  ...PROFILES,
  workload: {
    issuing_ca: "P-256",
    key_types: ["P-256"],
    max_validity_days: 7,
    default_validity_days: 1,
    key_usage: ["digitalSignature"],
    extended_key_usage: ["clientAuth", "serverAuth"],
    dns: { allow: ["*.svc.example.com"] },
    uri: { allow: ["spiffe://example.org/*", "https://*.example.com/api/*"] },
    required_extensions: ["subjectAltName"],
    forbidden_extensions: ["basicConstraints:CA", "nameConstraints", "1.3.6.1.5.5.7.1.24"],
  },
  smartcard: {
    issuing_ca: "P-256",
    key_types: ["P-256"],
    max_validity_days: 7,
    default_validity_days: 1,
    key_usage: ["digitalSignature"],
    extended_key_usage: ["clientAuth"],
    dns: { allow: [] },
    email_domains: ["example.com"],
    upn_domains: ["example.com", "Corp.Example.org"],
  },
};

beforeAll(async () => {
  f = await startCa({ profiles: PROFILES_WITH_RULES });
  tok = await f.token("acme", "pki:request pki:read");
});
afterAll(async () => {
  await f?.stop();
});

/** A P-256 key and CSR from openssl with the given -addext values. */
function csrWith(name: string, subj: string, exts: string[]): string {
  const keyFile = join(f.dir, `${name}.key`);
  const csrFile = join(f.dir, `${name}.csr`);
  const args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", subj];
  for (const e of exts) args.push("-addext", e);
  const r = openssl(args);
  if (r.code !== 0) throw new Error(`openssl req failed: ${r.out}`);
  return readFileSync(csrFile, "utf8");
}

async function submit(csr: string, profile = "workload") {
  const r = await f.api("/certificates", tok, { body: { csr, profile } });
  return { status: r.status, body: (await r.json()) as any };
}
const codes = (body: any): string[] => body.error.details.reasons.map((r: any) => r.code).sort();

describe.skipIf(!ok)("URI SAN rules [needs Debian openssl]", () => {
  test("a SPIFFE ID and an https URI under the patterns are issued; openssl verifies and shows them", async () => {
    const csr = csrWith("spiffe", "/CN=w1.svc.example.com", ["subjectAltName=URI:spiffe://example.org/ns/prod/sa/web,URI:https://api.example.com/api/v1,DNS:w1.svc.example.com"]);
    const { status, body } = await submit(csr);
    expect(status).toBe(201);
    const cert = body.certificate;
    expect(cert.sans).toContain("uri:spiffe://example.org/ns/prod/sa/web");
    expect(cert.sans).toContain("uri:https://api.example.com/api/v1");
    const leaf = write(f.dir, "spiffe.pem", cert.certificate_pem);
    const [issuing, root] = cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/);
    const v = openssl(["verify", "-CAfile", write(f.dir, "root-u.pem", root), "-untrusted", write(f.dir, "issuing-u.pem", issuing), leaf]);
    expect(v.code).toBe(0);
    const text = openssl(["x509", "-in", leaf, "-noout", "-ext", "subjectAltName"]).out;
    expect(text).toContain("URI:spiffe://example.org/ns/prod/sa/web");
    expect(text).toContain("URI:https://api.example.com/api/v1");
    expect(text).toContain("DNS:w1.svc.example.com");
  });

  test("a URI alone is a subject alternative name", async () => {
    const { status, body } = await submit(csrWith("uri-only", "/O=workloads", ["subjectAltName=URI:spiffe://example.org/job/7"]));
    expect(status).toBe(201);
    expect(body.certificate.sans).toEqual(["uri:spiffe://example.org/job/7"]);
  });

  test("URIs outside the patterns are refused, each with a reason, alongside other reasons", async () => {
    const csr = csrWith("bad-uris", "/CN=x.other.com", [
      "subjectAltName=URI:spiffe://evil.org/ns/prod,URI:http://api.example.com/api/v1,URI:https://api.example.com/admin,URI:https://user@api.example.com/api/x,DNS:x.other.com",
    ]);
    const { status, body } = await submit(csr);
    expect(status).toBe(422);
    expect(body.error.code).toBe("policy_rejected");
    expect(codes(body)).toEqual(["dns_not_allowed", "uri_invalid", "uri_not_allowed", "uri_not_allowed", "uri_not_allowed"]);
    const messages = body.error.details.reasons.map((r: any) => r.message).join("\n");
    expect(messages).toContain("spiffe://evil.org/ns/prod");
    expect(messages).toContain("userinfo");
  });

  test("a profile without URI patterns refuses every URI SAN", async () => {
    const { status, body } = await submit(csrWith("uri-server", "/CN=a.example.com", ["subjectAltName=DNS:a.example.com,URI:https://a.example.com/"]), "server");
    expect(status).toBe(422);
    expect(codes(body)).toEqual(["uri_not_allowed"]);
  });
});

describe.skipIf(!ok)("UPN SANs (Microsoft otherName) [needs Debian openssl]", () => {
  const issuedFor = async (san: string) => ((await (await f.api(`/certificates?san=${encodeURIComponent(san)}`, tok)).json()) as any).items.length;

  test("a UPN in an admitted domain is issued as otherName UPN; openssl verifies and shows it", async () => {
    const csr = csrWith("upn", "/CN=alice", ["subjectAltName=otherName:msUPN;UTF8:alice@corp.example.org,email:alice@example.com"]);
    const { status, body } = await submit(csr, "smartcard");
    expect(status).toBe(201);
    const cert = body.certificate;
    expect(cert.sans.sort()).toEqual(["email:alice@example.com", "upn:alice@corp.example.org"]);
    const leaf = write(f.dir, "upn.pem", cert.certificate_pem);
    const [issuing, root] = cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/);
    expect(openssl(["verify", "-CAfile", write(f.dir, "root-upn.pem", root), "-untrusted", write(f.dir, "issuing-upn.pem", issuing), leaf]).code).toBe(0);
    const text = openssl(["x509", "-in", leaf, "-noout", "-text"]).out;
    expect(text).toContain("othername: UPN::alice@corp.example.org");
    expect(text).toContain("email:alice@example.com");
    // The DER openssl reads back: [0] { 1.3.6.1.4.1.311.20.2.3, [0] EXPLICIT UTF8String }.
    const asn = openssl(["asn1parse", "-in", leaf, "-strparse", String(sanOffset(leaf))]).out;
    expect(asn).toMatch(/cont \[ 0 \][^\n]*\n[^\n]*OBJECT\s+:Microsoft User Principal Name\n[^\n]*cont \[ 0 \]/);
    expect(asn).toMatch(/UTF8STRING\s+:alice@corp\.example\.org/);
  });

  test("a UPN alone is a subject alternative name; the domain is compared case-insensitively", async () => {
    const { status, body } = await submit(csrWith("upn-only", "/CN=Bob", ["subjectAltName=otherName:msUPN;UTF8:Bob@EXAMPLE.com"]), "smartcard");
    expect(status).toBe(201);
    expect(body.certificate.sans).toEqual(["upn:Bob@EXAMPLE.com"]);
  });

  test("a UPN outside upn_domains, or not name@domain, is refused with a reason each, and nothing is issued", async () => {
    const csr = csrWith("upn-bad", "/CN=mallory", ["subjectAltName=otherName:msUPN;UTF8:mallory@evil.example.net,otherName:msUPN;UTF8:mallory,otherName:msUPN;UTF8:a@b@example.com,email:mallory@example.com"]);
    const { status, body } = await submit(csr, "smartcard");
    expect(status).toBe(422);
    expect(body.error.code).toBe("policy_rejected");
    expect(codes(body)).toEqual(["upn_invalid", "upn_invalid", "upn_not_allowed"]);
    expect(body.error.details.reasons.map((r: any) => r.message).join("\n")).toContain("mallory@evil.example.net");
    expect(await issuedFor("mallory")).toBe(0);
  });

  test("a profile without upn_domains refuses every UPN", async () => {
    const { status, body } = await submit(csrWith("upn-server", "/CN=a.example.com", ["subjectAltName=DNS:a.example.com,otherName:msUPN;UTF8:carol@example.com"]), "server");
    expect(status).toBe(422);
    expect(codes(body)).toEqual(["upn_not_allowed"]);
    expect(await issuedFor("carol@example.com")).toBe(0);
  });

  test("other otherName types stay refused as malformed", async () => {
    const { status, body } = await submit(csrWith("othername", "/CN=o", ["subjectAltName=otherName:1.2.3.4;UTF8:o@example.com,otherName:msUPN;UTF8:o@example.com"]), "smartcard");
    expect(status).toBe(400);
    expect(body.error.code).toBe("malformed_input");
    expect(await issuedFor("o@example.com")).toBe(0);
  });
});

/** Offset of the subjectAltName extension's OCTET STRING value in a PEM certificate, for `asn1parse -strparse`. */
function sanOffset(pemFile: string): number {
  const lines = openssl(["asn1parse", "-in", pemFile]).out.split("\n");
  const at = lines.findIndex((l) => l.includes("X509v3 Subject Alternative Name"));
  const octets = lines.slice(at + 1).find((l) => l.includes("OCTET STRING"))!;
  return Number(/^\s*(\d+):/.exec(octets)![1]);
}

describe.skipIf(!ok)("required and forbidden extensions [needs Debian openssl]", () => {
  test("CA:TRUE, nameConstraints and TLS feature requested: all three reasons", async () => {
    const csr = csrWith("ca-req", "/CN=c.svc.example.com", [
      "subjectAltName=DNS:c.svc.example.com",
      "basicConstraints=critical,CA:TRUE",
      "nameConstraints=permitted;DNS:example.com",
      "tlsfeature=status_request",
    ]);
    const { status, body } = await submit(csr);
    expect(status).toBe(422);
    expect(codes(body)).toEqual(["extension_forbidden", "extension_forbidden", "extension_forbidden"]);
    const messages = body.error.details.reasons.map((r: any) => r.message).join("\n");
    expect(messages).toContain("CA:TRUE");
    expect(messages).toContain("nameConstraints (2.5.29.30)");
    expect(messages).toContain("1.3.6.1.5.5.7.1.24");
  });

  test("basicConstraints CA:FALSE is not refused by basicConstraints:CA", async () => {
    const { status } = await submit(csrWith("ca-false", "/CN=d.svc.example.com", ["subjectAltName=DNS:d.svc.example.com", "basicConstraints=CA:FALSE"]));
    expect(status).toBe(201);
  });

  test("a CSR without the required subjectAltName extension is refused even with a DNS common name", async () => {
    const { status, body } = await submit(csrWith("no-san", "/CN=e.svc.example.com", []));
    expect(status).toBe(422);
    expect(codes(body)).toEqual(["extension_required"]);
    expect(body.error.details.reasons[0].message).toContain("subjectAltName (2.5.29.17)");
  });
});
