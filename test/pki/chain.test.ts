import { describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../../src/service/errors.ts";
import { createSuiteCa, type SuiteCa } from "../../src/pki/suite-ca.ts";
import { issueLeaf, sansOf } from "../../src/pki/leaf.ts";
import { serverSans } from "../../src/pki/sans.ts";
import { randomSerialHex, timeOrderedId, uuidV7 } from "../../src/pki/serial.ts";
import * as x509 from "../../src/pki/x509.ts";
import { haveOpenssl, openssl, tempDir } from "./helpers.ts";

const ca: SuiteCa = await createSuiteCa();
const leaf = await issueLeaf(ca, {
  serviceName: "sm-kms",
  dnsNames: ["localhost", "kms.example.org"],
  ipAddresses: ["127.0.0.1", "::1", "10.1.2.3"],
});

function catchErr(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe("suite CA and leaf", () => {
  test("serials are 16 bytes, positive, minimal", () => {
    for (let i = 0; i < 200; i++) {
      const s = randomSerialHex();
      expect(s).toMatch(/^[0-9a-f]{32}$/);
      const first = parseInt(s.slice(0, 2), 16);
      expect(first).toBeGreaterThan(0);
      expect(first).toBeLessThan(0x80);
    }
    for (const c of [ca.root.cert, ca.intermediate.cert, leaf.cert]) expect(c.serialNumber).toMatch(/^[0-7][0-9A-Fa-f]{31}$/);
  });

  test("time-ordered ids: 22 base64url characters, 48-bit ms time first, unique, sorting by time", () => {
    const before = Date.now();
    const ids = Array.from({ length: 2000 }, () => timeOrderedId());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const b = Buffer.from(id, "base64url");
      expect(b.length).toBe(16);
      const t = b.readUIntBE(0, 6);
      expect(t).toBeGreaterThanOrEqual(before);
      expect(t).toBeLessThanOrEqual(after);
    }
    const times = ids.map((id) => Buffer.from(id, "base64url").subarray(0, 6).toString("hex"));
    expect([...times].sort()).toEqual(times);
    expect(new Set(ids.map((id) => Buffer.from(id, "base64url").subarray(6).toString("hex"))).size).toBe(ids.length);
  });

  test("serials: 48-bit ms time, then 80 random bits (unique, time-ordered)", () => {
    const before = Date.now();
    const serials = Array.from({ length: 2000 }, () => randomSerialHex());
    const after = Date.now();
    expect(new Set(serials).size).toBe(serials.length);
    expect(new Set(serials.map((s) => s.slice(12))).size).toBe(serials.length);
    for (const s of serials) {
      const t = parseInt(s.slice(0, 12), 16);
      expect(t).toBeGreaterThanOrEqual(before);
      expect(t).toBeLessThanOrEqual(after);
    }
    const times = serials.map((s) => s.slice(0, 12));
    expect([...times].sort()).toEqual(times);
    // The random part is not constant in any bit position over 2000 draws.
    let or = 0n;
    let and = (1n << 80n) - 1n;
    for (const s of serials) {
      const r = BigInt(`0x${s.slice(12)}`);
      or |= r;
      and &= r;
    }
    expect(or).toBe((1n << 80n) - 1n);
    expect(and).toBe(0n);
  });

  test("uuidV7: RFC 9562 version 7 layout, time-ordered", () => {
    const ids = Array.from({ length: 500 }, () => uuidV7());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    const times = ids.map((id) => id.slice(0, 13));
    expect([...times].sort()).toEqual(times);
    expect(Math.abs(parseInt(ids[0]!.replace("-", "").slice(0, 12), 16) - Date.now())).toBeLessThan(60_000);
  });

  test("root: self-signed, CA pathLen 1, keyCertSign+cRLSign, 10 years", async () => {
    const r = ca.root.cert;
    expect(await r.isSelfSigned()).toBe(true);
    const bc = r.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.ca, bc.pathLength, bc.critical]).toEqual([true, 1, true]);
    const ku = r.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(ku.critical).toBe(true);
    const years = (r.notAfter.getTime() - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(r.getExtension(x509.SubjectKeyIdentifierExtension)).not.toBeNull();
  });

  test("intermediate: CA pathLen 0, 5 years, AKI = root SKI", async () => {
    const i = ca.intermediate.cert;
    expect(await i.verify({ publicKey: ca.root.cert.publicKey, signatureOnly: true })).toBe(true);
    const bc = i.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.ca, bc.pathLength]).toEqual([true, 0]);
    const years = (i.notAfter.getTime() - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(4.9);
    expect(years).toBeLessThan(5.1);
    expect(i.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(
      ca.root.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
    );
    expect(i.issuer).toBe(ca.root.cert.subject);
  });

  test("leaf: CN, EKU, KU, SANs, 397 days, AKI = intermediate SKI", async () => {
    const c = leaf.cert;
    expect(c.subject).toContain("CN=sm-kms");
    expect(await c.verify({ publicKey: ca.intermediate.cert.publicKey, signatureOnly: true })).toBe(true);
    expect(c.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
    expect(c.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(c.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    expect(sansOf(c)).toEqual({ dnsNames: ["kms.example.org", "localhost"], ipAddresses: ["10.1.2.3", "127.0.0.1", "::1"] });
    const days = (c.notAfter.getTime() - c.notBefore.getTime()) / 86_400_000;
    expect(Math.round(days)).toBe(397);
    expect(c.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(
      ca.intermediate.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
    );
    expect((c.publicKey.algorithm as EcKeyAlgorithm).namedCurve).toBe("P-256");
  });

  test("bad leaf requests are config_invalid", async () => {
    const bad = [
      { serviceName: "SM KMS", dnsNames: ["localhost"], ipAddresses: [] },
      { serviceName: "sm-kms", dnsNames: ["bad_name!"], ipAddresses: [] },
      { serviceName: "sm-kms", dnsNames: [], ipAddresses: ["300.1.1.1"] },
      { serviceName: "sm-kms", dnsNames: [], ipAddresses: [] },
      { serviceName: "sm-kms", dnsNames: ["localhost"], ipAddresses: [], validityDays: 398 },
      { serviceName: "sm-kms", dnsNames: ["localhost"], ipAddresses: [], validityDays: 0 },
    ];
    for (const req of bad) {
      const err = await issueLeaf(ca, req).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("config_invalid");
    }
  });

  test("serverSans: loopback, wildcard, concrete IP, host names", () => {
    expect(serverSans({ bindAddresses: ["127.0.0.1"] })).toEqual({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] });
    expect(serverSans({ bindAddresses: ["0.0.0.0", "127.0.0.1"], hostnames: ["KMS.example.org"] })).toEqual({
      dnsNames: ["kms.example.org", "localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
    });
    expect(serverSans({ bindAddresses: ["::"], hostnames: ["10.0.0.5", "[fe80::1]", "sm-kms"] })).toEqual({
      dnsNames: ["localhost", "sm-kms"],
      ipAddresses: ["10.0.0.5", "127.0.0.1", "::1", "fe80::1"],
    });
    expect(serverSans({ bindAddresses: ["192.168.1.20"] })).toEqual({ dnsNames: [], ipAddresses: ["192.168.1.20"] });
    expect(serverSans({ bindAddresses: ["[0:0::1]"] })).toEqual({ dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] });
    const err = catchErr(() => serverSans({ bindAddresses: ["not an address"] }));
    expect((err as AppError).code).toBe("config_invalid");
  });

  test("openssl verifies the chain, purpose, host names and IPs", async () => {
    if (!haveOpenssl()) return;
    const { dir, cleanup } = await tempDir("chain");
    try {
      const root = join(dir, "root.pem");
      const int = join(dir, "int.pem");
      const lf = join(dir, "leaf.pem");
      await writeFile(root, ca.root.cert.toString("pem"));
      await writeFile(int, ca.intermediate.cert.toString("pem"));
      await writeFile(lf, leaf.cert.toString("pem"));
      const base = ["verify", "-CAfile", root, "-untrusted", int, "-purpose", "sslserver"];
      for (const extra of [[], ["-verify_hostname", "localhost"], ["-verify_ip", "127.0.0.1"], ["-verify_ip", "::1"], ["-verify_hostname", "kms.example.org"]]) {
        const r = openssl([...base, ...extra, lf]);
        expect(r.out).toContain(`${lf}: OK`);
        expect(r.code).toBe(0);
      }
      // A name that is not in the SANs must fail: proves the checks above are real.
      expect(openssl([...base, "-verify_hostname", "evil.example.org", lf]).code).not.toBe(0);
      // Without the intermediate the chain cannot be built.
      expect(openssl(["verify", "-CAfile", root, lf]).code).not.toBe(0);
      const text = openssl(["x509", "-in", lf, "-noout", "-text"]).out;
      expect(text).toContain("DNS:localhost");
      expect(text).toContain("IP Address:127.0.0.1");
      expect(text).toContain("IP Address:0:0:0:0:0:0:0:1");
      expect(text).toContain("TLS Web Server Authentication, TLS Web Client Authentication");
      expect(text).toContain("ASN1 OID: prime256v1");
      const rootText = openssl(["x509", "-in", root, "-noout", "-text"]).out;
      expect(rootText).toMatch(/CA:TRUE, pathlen:1/);
      expect(rootText).toContain("Certificate Sign, CRL Sign");
      const intText = openssl(["x509", "-in", int, "-noout", "-text"]).out;
      expect(intText).toMatch(/CA:TRUE, pathlen:0/);
    } finally {
      await cleanup();
    }
  });
});
