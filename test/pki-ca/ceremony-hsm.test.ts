/**
 * The offline root with its key in a PKCS#11 token (SoftHSM2): `cli.ts root init --hsm-*`
 * generates a non-extractable P-384 key in the token and self-signs the root; `root sign
 * --hsm-*` signs an issuing-CA CSR with it; openssl verifies root, issuing CA and a leaf
 * below; refusals (wrong PIN, RSA in the HSM, mixed flags, an existing label, a token
 * without the key, a root certificate of another key) exit 2 with one line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { haveOpenssl, openssl } from "./helpers.ts";
import { Pkcs11Provider } from "../../src/crypto/pkcs11/index.ts";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";

const softhsm: SoftHsm | undefined = haveOpenssl() ? await setupSoftHsm() : undefined;
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../apps/pki-ca/cli.ts", import.meta.url));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([process.execPath, "run", CLI, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

function expectRefusal(r: { code: number; err: string }, text: RegExp) {
  expect(r.code).toBe(2);
  const lines = r.err.trim().split("\n");
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(text);
  expect(r.err).not.toMatch(/\n\s+at /);
}

describe.skipIf(!softhsm)("HSM-held offline root [needs Debian openssl and softhsm2]", () => {
  let dir: string;
  let token: SoftHsmToken;
  let empty: SoftHsmToken;
  let hsmArgs: string[];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "cryptoutil-hsm-root-"));
    token = softhsm!.createToken("pki-root");
    empty = softhsm!.createToken("pki-empty");
    hsmArgs = ["--hsm-module", softhsm!.modulePath, "--hsm-token", token.label, "--hsm-pin-file", token.pinFile];
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    softhsm!.cleanup();
  });

  test("root init in the token, root sign of an issuing CA; openssl verifies the chain; the key is not extractable", async () => {
    const init = await cli(["root", "init", "--dir", dir, "--cn", "HSM Test Root", ...hsmArgs]);
    expect(init.err).toBe("");
    expect(init.code).toBe(0);
    expect(init.out).toContain("key label 'cryptoutil-pki-root'");
    expect(init.out).toMatch(/SHA-256 fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    expect(existsSync(join(dir, "root.key.pem"))).toBe(false);
    expect(JSON.parse(readFileSync(join(dir, "root.hsm.json"), "utf8"))).toEqual({ token: "pki-root", key_label: "cryptoutil-pki-root", key_type: "P-384" });
    const root = join(dir, "root.crt.pem");
    const text = openssl(["x509", "-in", root, "-noout", "-text"]).out;
    expect(text).toContain("ecdsa-with-SHA384");
    expect(text).toContain("NIST CURVE: P-384");
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(openssl(["verify", "-CAfile", root, root]).code).toBe(0);
    // The fingerprint printed is the certificate's.
    const fp = openssl(["x509", "-in", root, "-noout", "-fingerprint", "-sha256"]).out.split("=")[1]!.trim();
    expect(init.out).toContain(`SHA-256 fingerprint: ${fp}`);

    // The key in the token: sensitive, never extractable, and refuses to show its value.
    const hsm = await Pkcs11Provider.open(token.config);
    try {
      const key = await hsm.findKey("cryptoutil-pki-root");
      const prot = await hsm.keyProtection(key);
      expect(prot.extractable).toBe(false);
      expect(prot.neverExtractable).toBe(true);
      expect(prot.sensitive).toBe(true);
      expect(prot.persistent).toBe(true);
      await expect(hsm.readKeyValue(key)).rejects.toThrow();
    } finally {
      await hsm.close();
    }

    // An issuing CA signed by the token key; a leaf under it (openssl as the issuing CA).
    const csr = join(dir, "issuing.csr.pem");
    const issuingKey = join(dir, "issuing.key");
    expect(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", issuingKey, "-out", csr, "-subj", "/CN=HSM Issuing/O=test", "-addext", "basicConstraints=critical,CA:TRUE"]).code).toBe(0);
    const issuing = join(dir, "issuing.crt.pem");
    const sign = await cli(["root", "sign", "--dir", dir, "--hsm-module", softhsm!.modulePath, "--hsm-pin-file", token.pinFile, "--csr", csr, "--out", issuing]);
    expect(sign.err).toBe("");
    expect(sign.code).toBe(0);
    expect(openssl(["verify", "-CAfile", root, issuing]).code).toBe(0);
    expect(openssl(["x509", "-in", issuing, "-noout", "-text"]).out).toContain("ecdsa-with-SHA384");
    const leafCsr = join(dir, "leaf.csr");
    expect(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "leaf.key"), "-out", leafCsr, "-subj", "/CN=leaf.example.com"]).code).toBe(0);
    const leaf = join(dir, "leaf.pem");
    expect(openssl(["x509", "-req", "-in", leafCsr, "-CA", issuing, "-CAkey", issuingKey, "-out", leaf, "-days", "1", "-set_serial", "7"]).code).toBe(0);
    const v = openssl(["verify", "-CAfile", root, "-untrusted", issuing, leaf]);
    expect(v.code).toBe(0);
    expect(v.out).toContain(": OK");
  });

  test("refusals exit 2 with one line", async () => {
    const other = mkdtempSync(join(tmpdir(), "cryptoutil-hsm-root-"));
    try {
      const wrongPin = softhsm!.pinFile("wrong", "not-the-pin");
      expectRefusal(await cli(["root", "init", "--dir", other, "--cn", "X", "--hsm-module", softhsm!.modulePath, "--hsm-token", token.label, "--hsm-pin-file", wrongPin]), /PIN|pin/);
      expectRefusal(await cli(["root", "init", "--dir", other, "--cn", "X", "--key-type", "RSA-4096", ...hsmArgs]), /P-384 or P-256/);
      expectRefusal(await cli(["root", "init", "--dir", other, "--cn", "X", ...hsmArgs, "--passphrase-file", token.pinFile]), /exclude each other/);
      expectRefusal(await cli(["root", "init", "--dir", other, "--cn", "X", "--hsm-module", softhsm!.modulePath, "--hsm-pin-file", token.pinFile]), /--hsm-token is required/);
      // The label is taken by the first root: the token refuses a second key under it.
      expectRefusal(await cli(["root", "init", "--dir", other, "--cn", "X", ...hsmArgs]), /already exists/);
      expect(existsSync(join(other, "root.crt.pem"))).toBe(false);
      // A second root under another label works; then its record is pointed at a token without the key.
      const init2 = await cli(["root", "init", "--dir", other, "--cn", "Second", "--key-type", "P-256", ...hsmArgs, "--hsm-key-label", "second-root"]);
      expect(init2.code).toBe(0);
      const csr = join(other, "i.csr");
      expect(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(other, "i.key"), "-out", csr, "-subj", "/CN=I", "-addext", "basicConstraints=critical,CA:TRUE"]).code).toBe(0);
      const signArgs = (pin: string, out: string, tokenLabel?: string) => [
        "root", "sign", "--dir", other, "--hsm-module", softhsm!.modulePath, "--hsm-pin-file", pin, "--csr", csr, "--out", join(other, out), ...(tokenLabel ? ["--hsm-token", tokenLabel] : []),
      ];
      expectRefusal(await cli(signArgs(empty.pinFile, "a.pem", empty.label)), /no key labelled 'second-root'/);
      // root.crt.pem of another key than the token's: refused before signing.
      writeFileSync(join(other, "root.hsm.json"), JSON.stringify({ token: "pki-root", key_label: "cryptoutil-pki-root", key_type: "P-256" }));
      expectRefusal(await cli(signArgs(token.pinFile, "b.pem")), /not a P-256 private key/);
      writeFileSync(join(other, "root.hsm.json"), "{not json");
      expectRefusal(await cli(signArgs(token.pinFile, "c.pem")), /not JSON/);
      writeFileSync(join(other, "root.hsm.json"), JSON.stringify({ token: "pki-root", key_label: "second-root", key_type: "P-256" }));
      const ok = await cli(signArgs(token.pinFile, "d.pem"));
      expect(ok.code).toBe(0);
      expect(openssl(["verify", "-CAfile", join(other, "root.crt.pem"), join(other, "d.pem")]).code).toBe(0);
      // The first root's certificate with the second root's key record: the public keys differ.
      writeFileSync(join(other, "root.crt.pem"), readFileSync(join(dir, "root.crt.pem")));
      writeFileSync(join(other, "root.hsm.json"), JSON.stringify({ token: "pki-root", key_label: "second-root", key_type: "P-256" }));
      expectRefusal(await cli(signArgs(token.pinFile, "e.pem")), /does not belong to root.crt.pem/);
      for (const f of ["a.pem", "b.pem", "c.pem", "e.pem"]) expect(existsSync(join(other, f))).toBe(false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
