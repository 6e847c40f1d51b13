/**
 * Issue 14 (3): PEM input with text outside the encapsulation boundaries (RFC 7468 §2: parsers
 * ignore it), as `certtool --generate-request` writes: a dump of the request, then a
 * `NEW CERTIFICATE REQUEST` block (a legacy label). pki-ca accepts such CSRs and certificates.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gnutls, haveGnutlsTools } from "../pki/helpers.ts";
import { ed25519Csr, startCa, write, type CaFixture } from "./helpers.ts";

let f: CaFixture;
let tok: string;
beforeAll(async () => {
  f = await startCa();
  tok = await f.token("pem", "pki:request pki:read");
});
afterAll(async () => {
  await f?.stop();
});

const PREAMBLE = "Certificate request (explanatory text, RFC 7468 §5.2):\n\tSubject: CN=pem.example.com\n\t-----\n\tSignature Algorithm: Ed25519\n\n";

describe("hand-made explanatory text around the PEM block", () => {
  test("a CSR with text before and after a NEW CERTIFICATE REQUEST block is issued; revoke-by-key takes a certificate with a text dump before it", async () => {
    const { keys, pem } = await ed25519Csr("pem.example.com");
    const legacy = pem.replace(/CERTIFICATE REQUEST/g, "NEW CERTIFICATE REQUEST");
    const res = await f.api("/certificates", tok, { body: { csr: `${PREAMBLE}${legacy}\ntrailing words\n`, profile: "server" } });
    expect(res.status).toBe(201);
    const issued = ((await res.json()) as { certificate: { certificate_pem: string; serial: string } }).certificate;

    // The certificate as `openssl x509 -text` or `certtool -i` print it: a dump, then the block.
    const certWithText = `Certificate:\n    Data:\n        Serial Number: ${issued.serial}\n${issued.certificate_pem}`;
    const timestamp = new Date().toISOString();
    const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", keys.privateKey, new TextEncoder().encode(`revoke:${issued.serial}:${timestamp}`)));
    const revoked = await f.svc.call("/pki/revoke", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ certificate: certWithText, timestamp, signature: Buffer.from(sig).toString("base64") }),
    });
    expect(revoked.status).toBe(200);
  });

  test("still refused: no block of the right label, two of them, or a block that is not base64", async () => {
    const { pem } = await ed25519Csr("pem2.example.com");
    for (const csr of [`${PREAMBLE}`, pem.replace(/CERTIFICATE REQUEST/g, "PUBLIC KEY"), pem + pem, pem.replace(/\n[A-Za-z0-9+/]{8}/, "\n!!!!!!!!")]) {
      const res = await f.api("/certificates", tok, { body: { csr, profile: "server" } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("malformed_input");
    }
  });
});

describe.skipIf(!haveGnutlsTools())("certtool --generate-request output [needs Debian gnutls-bin]", () => {
  test("a CSR written by GnuTLS certtool (dump, then NEW CERTIFICATE REQUEST) is issued", async () => {
    const key = join(f.dir, "certtool.key");
    const tmpl = write(f.dir, "certtool.tmpl", 'cn = "certtool.example.com"\ndns_name = "certtool.example.com"\n');
    expect(gnutls("certtool", ["--generate-privkey", "--key-type", "ecdsa", "--curve", "secp256r1", "--outfile", key]).code).toBe(0);
    const out = join(f.dir, "certtool.csr");
    const r = gnutls("certtool", ["--generate-request", "--load-privkey", key, "--template", tmpl, "--outfile", out]);
    expect(r.code).toBe(0);
    const csr = readFileSync(out, "utf8");
    expect(csr.startsWith("-----BEGIN")).toBe(false); // the human-readable dump comes first
    expect(csr).toContain("-----BEGIN NEW CERTIFICATE REQUEST-----");
    const res = await f.api("/certificates", tok, { body: { csr, profile: "server" } });
    expect(res.status).toBe(201);
  });
});
