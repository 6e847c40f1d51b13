/**
 * The ceremony's key file and root key types against openssl: encrypted PKCS#8 made by
 * openssl opens with `decryptPkcs8` (and ours with openssl, see ceremony.test.ts); weaker
 * schemes are refused with `unseal_failed`; an RSA-4096 root with a pathLen signs issuing
 * CAs openssl verifies and refuses a pathLen not below its own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "../../src/service/errors.ts";
import { decryptPkcs8, encryptPkcs8 } from "../../apps/pki-ca/ceremony/encrypted-pkcs8.ts";
import { loadRoot, rootInit, rootSign } from "../../apps/pki-ca/ceremony/root.ts";
import { haveOpenssl, openssl, write } from "./helpers.ts";

const ok = haveOpenssl();
const PASS = "a long enough passphrase";
const enc = new TextEncoder();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "cryptoutil-ceremony-keys-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pemDer(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
}

async function unsealError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe("unseal_failed");
    return e as AppError;
  }
  throw new Error("expected unseal_failed");
}

describe.skipIf(!ok)("ceremony key files [needs Debian openssl]", () => {
  test("openssl-made PBES2 (HMAC-SHA256, AES-256-CBC) opens; SHA-1 PRF, AES-128, PBES1 and wrong passphrases are refused", async () => {
    const plain = write(dir, "k.pem", openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]).out);
    const expected = pemDer(openssl(["pkcs8", "-topk8", "-nocrypt", "-in", plain]).out);
    const made = (args: string[]) => pemDer(openssl(["pkcs8", "-topk8", "-in", plain, "-passout", `pass:${PASS}`, ...args]).out);

    const good = made(["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", "2000"]);
    expect(await decryptPkcs8(good, enc.encode(PASS))).toEqual(expected);
    expect((await unsealError(decryptPkcs8(good, enc.encode("not it")))).message).toContain("wrong passphrase");
    expect((await unsealError(decryptPkcs8(made(["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA1", "-iter", "2000"]), enc.encode(PASS)))).message).toContain("HMAC-SHA1");
    expect((await unsealError(decryptPkcs8(made(["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA256", "-iter", "2000"]), enc.encode(PASS)))).message).toContain("AES-256-CBC");
    expect((await unsealError(decryptPkcs8(made(["-v1", "PBE-SHA1-3DES"]), enc.encode(PASS)))).message).toContain("not PBES2");
    // Many wrong passphrases: each is refused (padding that happens to pass still fails the DER check).
    for (let i = 0; i < 300; i++) await unsealError(decryptPkcs8(good, enc.encode(`wrong ${i}`)));
    // Every truncation of a valid file is a clean refusal, never a crash.
    for (let n = 0; n < good.length; n += 7) await unsealError(decryptPkcs8(good.subarray(0, n), enc.encode(PASS)));

    // Our encryption round-trips and openssl opens it (with a low count only to keep the test fast).
    const ours = await encryptPkcs8(expected, enc.encode(PASS), 1000);
    expect(await decryptPkcs8(ours, enc.encode(PASS))).toEqual(expected);
    const f = write(dir, "ours.pem", `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${Buffer.from(ours).toString("base64")}\n-----END ENCRYPTED PRIVATE KEY-----\n`);
    expect(pemDer(openssl(["pkcs8", "-in", f, "-passin", `pass:${PASS}`]).out)).toEqual(expected);
  });

  test("RSA-4096 root with pathLen 1: signs a pathLen-0 issuing CA openssl verifies, refuses pathLen 1", async () => {
    const rsaDir = mkdtempSync(join(dir, "rsa-"));
    const r = await rootInit({ dir: rsaDir, cn: "RSA Root", keyType: "RSA-4096", pathLen: 1, days: 365, passphrase: enc.encode(PASS) });
    const text = openssl(["x509", "-in", r.certPath, "-noout", "-text"]).out;
    expect(text).toContain("Public-Key: (4096 bit)");
    expect(text).toMatch(/CA:TRUE, pathlen:1/);
    expect(text).toContain("sha256WithRSAEncryption");
    expect((await loadRoot(rsaDir, enc.encode(PASS))).key.type).toBe("private");

    const csrFile = join(dir, "rsa-issuing.csr");
    const p = Bun.spawnSync(["openssl", "req", "-new", "-newkey", "rsa:3072", "-nodes", "-keyout", join(dir, "rsa-issuing.key"), "-out", csrFile, "-subj", "/CN=RSA Issuing"], { stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    const csrPem = readFileSync(csrFile, "utf8");
    const tooDeep = rootSign({ dir: rsaDir, passphrase: enc.encode(PASS), csrPem, pathLen: 1 });
    await expect(tooDeep).rejects.toThrow(/below the root's pathLen 1/);
    const signed = await rootSign({ dir: rsaDir, passphrase: enc.encode(PASS), csrPem, days: 3650 });
    // Asked for 10 years under a 1-year root: capped at the root's notAfter.
    expect(signed.capped).toBe(true);
    const out = write(dir, "rsa-issuing.pem", signed.pem);
    expect(openssl(["verify", "-CAfile", r.certPath, out]).out).toContain(": OK");
    expect(openssl(["x509", "-in", out, "-noout", "-text"]).out).toMatch(/CA:TRUE, pathlen:0/);
  }, 20_000);
});
