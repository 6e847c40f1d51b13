import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../../src/service/errors.ts";
import { toPem } from "../../src/pki/keys.ts";
import { issueLeaf } from "../../src/pki/leaf.ts";
import { loadStaticTlsMaterial, type StaticTlsSource } from "../../src/pki/static-tls.ts";
import { createSuiteCa, type SuiteCa } from "../../src/pki/suite-ca.ts";
import { haveOpenssl, openssl, tempDir } from "./helpers.ts";

let dir = "";
let cleanup = async () => {};
let ca: SuiteCa;
let chainPem = "";
let keyPem = "";
let otherKeyPem = "";

const SANS = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] };

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir("static"));
  ca = await createSuiteCa();
  const a = await issueLeaf(ca, { serviceName: "pki-ca", ...SANS });
  const b = await issueLeaf(ca, { serviceName: "pki-ca", ...SANS });
  chainPem = a.cert.toString("pem") + "\n" + ca.intermediate.cert.toString("pem") + "\n";
  keyPem = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", a.keys.privateKey)));
  otherKeyPem = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", b.keys.privateKey)));
});

afterAll(() => cleanup());

async function errorOf(src: StaticTlsSource): Promise<AppError> {
  const e = await loadStaticTlsMaterial(src).then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

describe("static TLS material", () => {
  test("chain from a file and key from a secret file", async () => {
    const certPath = join(dir, "chain.pem");
    const keyFile = join(dir, "tls_key.secret");
    await writeFile(certPath, chainPem);
    await writeFile(keyFile, keyPem, { mode: 0o600 });
    const m = await loadStaticTlsMaterial({ certPath, keyFile });
    expect(m.certChainPem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
    expect(m.keyPem).toBe(keyPem);
    expect(m.caBundlePem).toBe(""); // no CA configured and the chain stops at the intermediate
    expect(m.leaf.sans).toEqual({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    const withCa = await loadStaticTlsMaterial({ certPem: chainPem, keyPem, caPem: ca.root.cert.toString("pem") });
    expect(withCa.caBundlePem).toContain("BEGIN CERTIFICATE");
  });

  test("a key that does not match the certificate is config_invalid", async () => {
    const e = await errorOf({ certPem: chainPem, keyPem: otherKeyPem });
    expect(e.code).toBe("config_invalid");
    expect(e.message).toContain("does not match");
    expect(e.message).not.toContain("PRIVATE KEY");
  });

  test("bad inputs name what is wrong", async () => {
    const cases: Array<[StaticTlsSource, string]> = [
      [{ keyPem }, "certificate chain"],
      [{ certPem: chainPem }, "private key"],
      [{ certPem: chainPem, certPath: "x.pem", keyPem }, "not both"],
      [{ certPath: join(dir, "missing.pem"), keyPem }, "cannot be read"],
      [{ certPem: "hello", keyPem }, "no PEM block"],
      [{ certPem: keyPem, keyPem }, "only CERTIFICATE"],
      [{ certPem: ca.intermediate.cert.toString("pem") + chainPem, keyPem }, "not signed by"],
      [{ certPem: chainPem, keyPem: keyPem.replaceAll("PRIVATE KEY", "ENCRYPTED PRIVATE KEY") }, "encrypted"],
      [{ certPem: chainPem, keyPem: keyPem.replaceAll("PRIVATE KEY", "EC PRIVATE KEY") }, "PKCS#8"],
      [{ certPem: chainPem, keyPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }, "not a valid PKCS#8"],
      [{ certPem: chainPem, keyPem, now: new Date(Date.now() + 400 * 86_400_000) }, "expired"],
      [{ certPem: chainPem, keyPem, now: new Date(Date.now() - 86_400_000) }, "not valid before"],
    ];
    for (const [src, words] of cases) {
      const e = await errorOf(src);
      expect(e.code).toBe("config_invalid");
      expect(e.message).toContain(words);
    }
  });

  test("keys and certificates made by openssl (EC and RSA)", async () => {
    if (!haveOpenssl()) return;
    for (const alg of [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], ["-newkey", "rsa:2048"]]) {
      const key = join(dir, "o.key");
      const cert = join(dir, "o.crt");
      const r = openssl(["req", "-x509", ...alg, "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]);
      expect(r.code).toBe(0);
      const m = await loadStaticTlsMaterial({ certPath: cert, keyPath: key });
      expect(m.caBundlePem).toContain("BEGIN CERTIFICATE"); // self-signed: it is its own anchor
      // Real handshake with the openssl-made material.
      const server = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: m.certChainPem, key: m.keyPem }, fetch: () => new Response("ok") });
      try {
        const res = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: m.caBundlePem, checkServerIdentity: () => undefined } } as RequestInit);
        expect(await res.text()).toBe("ok");
      } finally {
        server.stop(true);
      }
      const e = await errorOf({ certPath: cert, keyPem });
      expect(e.code).toBe("config_invalid");
    }
  });
});
