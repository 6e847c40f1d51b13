/**
 * CSR decoding and proof of possession: the WebCrypto fast path accepts real openssl
 * CSRs of every key type and never accepts a mutated CSR that @peculiar/x509 refuses.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeCsr, parseCsr, verifyPossession } from "../../src/pki/csr.ts";
import { AppError } from "../../src/service/errors.ts";
import { haveOpenssl, makeCsr } from "./helpers.ts";

const ok = haveOpenssl();
const dir = mkdtempSync(join(tmpdir(), "cryptoutil-csr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!ok)("proof of possession", () => {
  const keys = ["ec256", "ec384", "rsa2048", "ed25519"] as const;
  for (const key of keys) {
    test(`${key}: a real CSR verifies, a flipped signature bit does not, no mutation passes that the library refuses`, async () => {
      const { csr } = makeCsr(dir, key, { subj: "/CN=a.example.com", san: "DNS:a.example.com", key });
      const der = decodeCsr(csr);
      const p = parseCsr(der);
      expect(await verifyPossession(p)).toBe(true);
      const bad = der.slice();
      bad[bad.length - 2]! ^= 0x01;
      expect(await verifyPossession(parseCsr(bad))).toBe(false);
      let compared = 0;
      for (let i = 0; i < 300; i++) {
        const m = der.slice();
        const at = (i * 37 + 11) % m.length;
        m[at] = m[at]! ^ (1 << (i % 8));
        let parsed;
        try {
          parsed = parseCsr(m);
        } catch (e) {
          expect(e).toBeInstanceOf(AppError);
          continue;
        }
        const lib = await parsed.csr.verify().catch(() => false);
        // Never accepts what the library refuses; may refuse more (it requires strict DER
        // lengths and zero unused bits in the signature, which the library lets pass).
        if (await verifyPossession(parsed)) expect(lib).toBe(true);
        compared++;
      }
      expect(compared).toBeGreaterThan(0);
    });
  }

  test("RSA-PSS CSRs go through the library verifier", async () => {
    const keyFile = join(dir, "pss.key");
    const csrFile = join(dir, "pss.csr");
    const r = Bun.spawnSync(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", "/CN=pss.example.com", "-sigopt", "rsa_padding_mode:pss", "-sha256"], { stderr: "pipe" });
    expect(r.exitCode).toBe(0);
    const p = parseCsr(decodeCsr(await Bun.file(csrFile).text()));
    expect(await verifyPossession(p)).toBe(await p.csr.verify());
  });

  test("decodeCsr accepts PEM and base64 DER and refuses anything else", () => {
    const { csr } = makeCsr(dir, "dec", { subj: "/CN=d.example.com" });
    const der = decodeCsr(csr);
    expect(decodeCsr(Buffer.from(der).toString("base64"))).toEqual(der);
    for (const bad of ["not a csr!", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "===="]) {
      expect(() => parseCsr(decodeCsr(bad))).toThrow(AppError);
    }
  });
});
