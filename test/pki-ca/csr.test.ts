/**
 * CSR decoding and proof of possession: the WebCrypto fast path accepts real openssl
 * CSRs of every key type and never accepts a mutated CSR that @peculiar/x509 refuses; the
 * DER-walk parser gives the library's answer on real CSRs of many shapes and their mutations.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPairSync, sign } from "node:crypto";
import { decodeCsr, parseCsr, parseCsrGeneric, verifyEcdsaSpki, verifyPossession, type ParsedCsr } from "../../src/pki/csr.ts";
import { AppError } from "../../src/service/errors.ts";
import { haveOpenssl, makeCsr } from "./helpers.ts";

const ok = haveOpenssl();
const dir = mkdtempSync(join(tmpdir(), "cryptoutil-csr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!ok)("proof of possession [needs Debian openssl]", () => {
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

/** What a parse yields, comparable across the two parsers; or the error code. */
function outcome(parse: () => ParsedCsr): unknown {
  try {
    const p = parse();
    return {
      subject: p.subject,
      commonName: p.commonName,
      keyType: p.keyType,
      dns: p.dns,
      ips: p.ips,
      emails: p.emails,
      uris: p.uris,
      upns: p.upns,
      extensions: p.extensions.map((e) => ({ oid: e.oid, critical: e.critical, der: Buffer.from(e.der).toString("hex") })),
    };
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return { error: (e as AppError).code };
  }
}
const usedFastPath = (p: ParsedCsr) => typeof Object.getOwnPropertyDescriptor(p, "csr")?.get === "function";

describe.skipIf(!ok)("DER-walk parser against the library [needs Debian openssl]", () => {
  const shapes: Array<{ name: string; key?: "ec256" | "ec384" | "rsa2048" | "ed25519"; subj: string; exts?: string[]; fast: boolean }> = [
    { name: "plain", subj: "/CN=a.example.com", fast: true },
    { name: "no-cn", subj: "/O=Example/OU=Ops", exts: ["subjectAltName=DNS:x.example.com"], fast: true },
    { name: "multi", subj: "/C=DE/ST=Be/O=Ex Ample, Inc./CN=Mixed.Example.COM", exts: ["subjectAltName=DNS:Mixed.Example.COM,DNS:*.example.com,email:a@example.com,URI:spiffe://example.org/x,IP:10.1.2.3,IP:2001:db8::1,IP:::1,IP:fd00:0:0:1::,IP:1:0:0:2:0:0:0:3,IP:0:0:1:0:0:1:0:0"], fast: true },
    { name: "utf8", subj: "/CN=tést.example.com/O=Ümlaut+OU=Zwei", fast: true },
    { name: "exts", key: "ec384", subj: "/CN=e.example.com", exts: ["subjectAltName=DNS:e.example.com", "basicConstraints=critical,CA:TRUE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=serverAuth", "nameConstraints=permitted;DNS:example.com", "tlsfeature=status_request"], fast: true },
    { name: "rsa", key: "rsa2048", subj: "/CN=r.example.com", exts: ["subjectAltName=DNS:r.example.com"], fast: true },
    { name: "ed", key: "ed25519", subj: "/CN=ed.example.com", exts: ["subjectAltName=IP:192.168.0.1"], fast: true },
    { name: "escapes", subj: "/DC=com/DC=example/CN=a\\, b \\+ c;\"q\"<x>/OU=#hash/OU= lead/emailAddress=a@example.com/2.5.4.5=1234", fast: true },
    { name: "two-cn", subj: "/CN=a.example.com/CN=b.example.com", fast: true },
    { name: "dirname", subj: "/CN=d.example.com", exts: ["subjectAltName=dirName:dir_sect"], fast: false },
    { name: "upn", subj: "/CN=alice", exts: ["subjectAltName=otherName:msUPN;UTF8:alice@example.com,email:alice@example.com"], fast: true },
    { name: "upn-unicode", key: "ed25519", subj: "/CN=jürgen", exts: ["subjectAltName=otherName:msUPN;UTF8:jürgen@example.com"], fast: true },
    { name: "upn-ia5", subj: "/CN=bob", exts: ["subjectAltName=otherName:msUPN;IA5STRING:bob@example.com"], fast: false },
    { name: "othername", subj: "/CN=o.example.com", exts: ["subjectAltName=DNS:o.example.com,otherName:1.2.3.4;UTF8:someone"], fast: false },
  ];

  for (const shape of shapes) {
    test(`${shape.name}: same answer as the library, for the CSR and 400 mutations`, () => {
      const keyFile = join(dir, `${shape.name}.key`);
      const csrFile = join(dir, `${shape.name}.csr`);
      const newkey = { ec256: ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"], ec384: ["ec", "-pkeyopt", "ec_paramgen_curve:P-384"], rsa2048: ["rsa:2048"], ed25519: ["ed25519"] }[shape.key ?? "ec256"];
      const cnf = join(dir, `${shape.name}.cnf`);
      Bun.write(cnf, "[req]\ndistinguished_name=dn\n[dn]\n[dir_sect]\nCN=Inner\n");
      const args = ["openssl", "req", "-new", "-config", cnf, "-newkey", ...newkey, "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", shape.subj, "-utf8", "-multivalue-rdn"];
      for (const e of shape.exts ?? []) args.push("-addext", e);
      const r = Bun.spawnSync(args, { stderr: "pipe" });
      expect(r.exitCode).toBe(0);
      const der = decodeCsr(require("node:fs").readFileSync(csrFile, "utf8"));
      const fastOutcome = outcome(() => parseCsr(der));
      expect(fastOutcome).toEqual(outcome(() => parseCsrGeneric(der)));
      if (!("error" in (fastOutcome as object))) expect(usedFastPath(parseCsr(der))).toBe(shape.fast);
      let fast = 0;
      for (let i = 0; i < 400; i++) {
        const m = der.slice();
        const at = (i * 53 + 7) % m.length;
        m[at] = m[at]! ^ (1 << (i % 8));
        const a = outcome(() => parseCsr(m));
        const b = outcome(() => parseCsrGeneric(m));
        expect({ i, at, a }).toEqual({ i, at, a: b });
        try {
          if (usedFastPath(parseCsr(m))) fast++;
        } catch {}
      }
      if (shape.fast) expect(fast).toBeGreaterThan(0);
    });
  }
});

describe("ECDSA verification: WebCrypto (off the event loop) and node:crypto give the same answers", () => {
  const curves = [
    ["P-256", "prime256v1", "SHA-256", "sha256"],
    ["P-384", "secp384r1", "SHA-384", "sha384"],
    ["P-521", "secp521r1", "SHA-512", "sha512"],
  ] as const;
  const ab = (u: Uint8Array) => u.slice().buffer as ArrayBuffer;
  for (const [curve, nodeCurve, hash, nodeHash] of curves) {
    test(`${curve}: valid, tampered data, tampered signature, wrong curve, not DER`, async () => {
      const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: nodeCurve });
      const other = generateKeyPairSync("ec", { namedCurve: curve === "P-256" ? "secp384r1" : "prime256v1" }).publicKey;
      const spki = new Uint8Array(publicKey.export({ format: "der", type: "spki" }));
      const otherSpki = new Uint8Array(other.export({ format: "der", type: "spki" }));
      const data = crypto.getRandomValues(new Uint8Array(200));
      const sig = new Uint8Array(sign(nodeHash, data, privateKey));
      const flippedData = data.slice();
      flippedData[0]! ^= 1;
      const flippedSig = sig.slice();
      flippedSig[sig.length - 1]! ^= 1;
      const cases: [string, ArrayBuffer, Uint8Array, Uint8Array, boolean][] = [
        ["valid", ab(spki), data, sig, true],
        ["tampered data", ab(spki), flippedData, sig, false],
        ["tampered signature", ab(spki), data, flippedSig, false],
        ["key on another curve", ab(otherSpki), data, sig, false],
        ["signature with trailing byte", ab(spki), data, new Uint8Array([...sig, 0]), false],
        ["empty signature", ab(spki), data, new Uint8Array(0), false],
      ];
      for (const [name, key, d, s, want] of cases) {
        for (const offThread of [true, false]) {
          expect({ name, offThread, ok: await verifyEcdsaSpki(key, curve, hash, ab(d), ab(s), offThread) }).toEqual({ name, offThread, ok: want });
        }
      }
    });
  }
});
