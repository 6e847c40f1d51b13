/** The DER fast path for leaf signing, checked against @peculiar/x509's parser and verifier. */
import { describe, expect, test } from "bun:test";
import { csrParts, signLeaf } from "../../src/pki/leaf-signer.ts";
import { generateCaKey, type CaKeyType } from "../../src/pki/signing.ts";
import { AppError } from "../../src/service/errors.ts";
import * as x509 from "../../src/pki/x509.ts";

async function fixture(t: CaKeyType) {
  const keys = await generateCaKey(t);
  const alg = t === "P-256" ? { name: "ECDSA", hash: "SHA-256" } : t === "P-384" ? { name: "ECDSA", hash: "SHA-384" } : t === "RSA-3072" ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "Ed25519" };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "01", name: `CN=Test ${t}, O=x`, notBefore: new Date(), notAfter: new Date(Date.now() + 1e10), keys, signingAlgorithm: alg, extensions: [new x509.BasicConstraintsExtension(true, 0, true)] });
  return { keyType: t, key: keys.privateKey, cert };
}

const leafKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=leaf.example.com, O=Ünïcode Org", keys: leafKeys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } });
const csrDer = new Uint8Array(csr.rawData);

describe("signLeaf", () => {
  for (const t of ["P-256", "P-384", "RSA-3072", "Ed25519"] as const) {
    test(`${t} issuer: parses, verifies, carries the CSR's subject and key`, async () => {
      const issuer = await fixture(t);
      const san = new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "leaf.example.com" }]);
      const der = await signLeaf(issuer, { serialHex: "7f0102", csrDer, notBefore: new Date("2026-01-01T00:00:00Z"), notAfter: new Date("2051-01-01T00:00:00Z"), extensions: [new Uint8Array(san.rawData)] });
      const cert = new x509.X509Certificate(der.slice().buffer as ArrayBuffer);
      expect(await cert.verify({ publicKey: issuer.cert.publicKey, signatureOnly: true })).toBe(true);
      expect(cert.serialNumber).toBe("7f0102");
      expect(cert.subject).toBe(csr.subject);
      expect(cert.issuer).toBe(issuer.cert.subject);
      expect(cert.notBefore.toISOString()).toBe("2026-01-01T00:00:00.000Z");
      expect(cert.notAfter.toISOString()).toBe("2051-01-01T00:00:00.000Z");
      expect(Buffer.from(cert.publicKey.rawData).equals(Buffer.from(csr.publicKey.rawData))).toBe(true);
      const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)!;
      const expected = await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey);
      expect(ski.keyId).toBe(expected.keyId);
      expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.value).toBe("leaf.example.com");
    });
  }
  test("malformed CSR bytes are malformed_input, never another error", () => {
    for (let i = 0; i < 2000; i++) {
      const b = csrDer.slice(0, 1 + ((i * 7) % csrDer.length));
      const k = (i * 13) % b.length;
      b[k] = b[k]! ^ (1 << (i % 8));
      try {
        csrParts(b);
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
        expect((e as AppError).code).toBe("malformed_input");
      }
    }
  });
});
