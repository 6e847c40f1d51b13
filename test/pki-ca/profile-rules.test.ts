/**
 * Profile rules beyond DNS/IP/email: URI SAN patterns and required / forbidden requested
 * extensions, end to end with CSRs made by openssl; refusals list every reason.
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
