/**
 * The CLI's ca commands against identity-authz and pki-ca over real HTTPS: a certificate
 * made from a local key and CSR, checked by openssl (Debian package `openssl`), OCSP good,
 * revocation, OCSP revoked, the CRL, profiles, the aliases, the local key generator and the
 * offline root ceremony.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, openssl } from "../pki/helpers.ts";
import { oneErrorLine, startCliSuite, type CliSuite } from "./support/suite.ts";

setDefaultTimeout(60_000);
let s: CliSuite;
let home: string;

beforeAll(async () => {
  s = await startCliSuite(["pki-ca"]);
  home = await s.loggedInHome();
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

const run = (args: string[], opts?: Parameters<CliSuite["cli"]>[2]) => s.cli(home, args, opts);
const f = (name: string) => join(home, name);

/** Splits the file `ca certificate` wrote into the leaf and the chain (issuing CA, root). */
function splitChain(crt: string): { leaf: string; chain: string } {
  const blocks = readFileSync(crt, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
  writeFileSync(`${crt}.leaf`, blocks[0]!);
  writeFileSync(`${crt}.chain`, blocks.slice(1).join(""));
  return { leaf: `${crt}.leaf`, chain: `${crt}.chain` };
}

describe("ca certificate, OCSP and revocation", () => {
  test("certificate: key 0600 PKCS#8, certificate + chain; openssl verify (Debian openssl)", async () => {
    const r = await run(["ca", "certificate", "svc.example.com", f("svc.crt"), f("svc.key"), "--san", "svc.example.com", "--san", "10.1.2.3", "--not-after", "48h", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { status: string; certificate: { serial: string; sans: string[] } };
    expect(out.status).toBe("issued");
    expect(out.certificate.sans).toEqual(["dns:svc.example.com", "ip:10.1.2.3"]);
    expect(statSync(f("svc.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(f("svc.key"), "utf8")).toContain("-----BEGIN PRIVATE KEY-----");
    expect(readFileSync(f("svc.crt"), "utf8").match(/BEGIN CERTIFICATE/g)!.length).toBe(3);
    if (!haveOpenssl()) return;
    const { leaf, chain } = splitChain(f("svc.crt"));
    const v = openssl(["verify", "-CAfile", chain, leaf]);
    expect(v.out).toContain(": OK");
    expect(v.code).toBe(0);
    // The key written is the certificate's key.
    const pubOfKey = openssl(["pkey", "-in", f("svc.key"), "-pubout"]);
    const pubOfCert = openssl(["x509", "-in", leaf, "-noout", "-pubkey"]);
    expect(pubOfKey.out).toBe(pubOfCert.out);
  });

  test("ocsp check: good; revoke by file; ocsp check: revoked with the reason", async () => {
    const good = await run(["ca", "ocsp", "check", f("svc.crt")]);
    expect(good.stderr).toBe("");
    expect(good.stdout.trim()).toBe("good");
    const rev = await run(["ca", "revoke", f("svc.crt"), "--reason", "keyCompromise"]);
    expect(rev.code).toBe(0);
    expect(rev.stdout).toContain("keyCompromise");
    const revoked = await run(["ca", "ocsp", "check", f("svc.crt"), "--json"]);
    expect(revoked.code).toBe(0);
    const st = JSON.parse(revoked.stdout) as { status: string; reason: string };
    expect(st.status).toBe("revoked");
    expect(st.reason).toBe("keyCompromise");
    const again = await run(["ca", "revoke", f("svc.crt")]);
    expect(again.code).toBe(1);
    expect(oneErrorLine(again.stderr)).toMatch(/^error: [a-z_]+: /);
  });

  test("crl get: DER to a file lists the revoked serial (Debian openssl)", async () => {
    const r = await run(["ca", "crl", "get", "--out", f("issuing.crl")]);
    expect(r.code).toBe(0);
    if (!haveOpenssl()) return;
    const serial = openssl(["x509", "-in", f("svc.crt"), "-noout", "-serial"]).out.trim().split("=")[1]!;
    const crl = openssl(["crl", "-inform", "DER", "-in", f("issuing.crl"), "-noout", "-text"]);
    expect(crl.out.toUpperCase()).toContain(serial.toUpperCase());
  });

  test("Ed25519 and RSA keys; the cert create alias; a policy refusal is exit 1 with the CA's code", async () => {
    const ed = await run(["cert", "create", "ed.example.com", f("ed.crt"), f("ed.key"), "--kty", "OKP", "--curve", "Ed25519"]);
    expect(ed.stderr).toBe("");
    expect(ed.code).toBe(0);
    const rsa = await run(["ca", "certificate", "rsa.example.com", f("rsa.crt"), f("rsa.key"), "--kty", "RSA", "--size", "2048"]);
    expect(rsa.code).toBe(0);
    const refused = await run(["ca", "certificate", "host.other.org", f("other.crt"), f("other.key")]);
    expect(refused.code).toBe(1);
    expect(oneErrorLine(refused.stderr)).toMatch(/^error: policy_rejected: /);
    const exists = await run(["ca", "certificate", "ed.example.com", f("ed.crt"), f("ed.key")]);
    expect(exists.code).toBe(2);
    expect(oneErrorLine(exists.stderr)).toContain("already exists");
  });

  test("--san upn:name@domain: a client certificate with the UPN as otherName (Debian openssl); a UPN outside the profile's domains is refused", async () => {
    const r = await run(["ca", "certificate", "alice", f("alice.crt"), f("alice.key"), "--profile", "tls-client", "--san", "upn:alice@example.com", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { certificate: { sans: string[] } }).certificate.sans).toEqual(["upn:alice@example.com"]);
    const refused = await run(["ca", "certificate", "mallory", f("mallory.crt"), f("mallory.key"), "--profile", "tls-client", "--san", "upn:mallory@evil.test"]);
    expect(refused.code).toBe(1);
    expect(oneErrorLine(refused.stderr)).toMatch(/^error: policy_rejected: /);
    const usage = await run(["ca", "certificate", "x", f("x-upn.crt"), f("x-upn.key"), "--profile", "tls-client", "--san", "upn:no-domain"]);
    expect(usage.code).toBe(2);
    expect(oneErrorLine(usage.stderr)).toContain("upn:name@domain");
    if (!haveOpenssl()) return;
    const { leaf } = splitChain(f("alice.crt"));
    expect(openssl(["x509", "-in", leaf, "-noout", "-ext", "subjectAltName"]).out).toContain("othername: UPN::alice@example.com");
  });

  test("key generate and csr submit (aliases of ca key generate and ca csr submit; Debian openssl)", async () => {
    const k = await run(["key", "generate", f("own.key"), "--pub", f("own.pub")]);
    expect(k.code).toBe(0);
    expect(statSync(f("own.key")).mode & 0o777).toBe(0o600);
    if (!haveOpenssl()) return;
    const csr = openssl(["req", "-new", "-key", f("own.key"), "-subj", "/CN=own.example.com", "-addext", "subjectAltName=DNS:own.example.com", "-out", f("own.csr")]);
    expect(csr.code).toBe(0);
    const r = await run(["csr", "submit", f("own.csr"), "--out", f("own.crt"), "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).status).toBe("issued");
    expect(readFileSync(f("own.crt"), "utf8")).toContain("BEGIN CERTIFICATE");
  });

  test("profile list shows the CA's profiles", async () => {
    const r = await run(["ca", "profile", "list", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { items: Array<{ name: string }> }).items.map((p) => p.name)).toContain("tls-server");
  });

  test("request list: nothing pending", async () => {
    const r = await run(["ca", "request", "list"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("no pending requests");
  });

  test("the offline root ceremony: root init then root sign, locally (Debian openssl)", async () => {
    writeFileSync(f("pass.txt"), "correct horse battery staple\n", { mode: 0o600 });
    const init = await run(["ca", "root", "init", "--dir", f("root"), "--cn", "Test Root", "--key-type", "P-256", "--passphrase-file", f("pass.txt")]);
    expect(init.stderr).toBe("");
    expect(init.code).toBe(0);
    expect(init.stdout).toContain("SHA-256 fingerprint");
    if (!haveOpenssl()) return;
    openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("issuing.key"), "-subj", "/CN=Issuing", "-out", f("issuing.csr")]);
    const sign = await run(["ca", "root", "sign", "--dir", f("root"), "--passphrase-file", f("pass.txt"), "--csr", f("issuing.csr"), "--out", f("issuing.crt")]);
    expect(sign.stderr).toBe("");
    expect(sign.code).toBe(0);
    expect(openssl(["verify", "-CAfile", join(f("root"), "root.crt.pem"), f("issuing.crt")]).code).toBe(0);
  });

  test("usage errors: a bad --not-after, a missing CSR file, a non-hex serial", async () => {
    const bad = await run(["ca", "certificate", "x.example.com", f("x.crt"), f("x.key"), "--not-after", "soon"]);
    expect(bad.code).toBe(2);
    expect(oneErrorLine(bad.stderr)).toContain("--not-after");
    const missing = await run(["ca", "csr", "submit", f("none.csr")]);
    expect(missing.code).toBe(2);
    expect(oneErrorLine(missing.stderr)).toContain("no such file");
    const serial = await run(["ca", "revoke", "not-a-serial"]);
    expect(serial.code).toBe(2);
    expect(oneErrorLine(serial.stderr)).toContain("no such file");
  });
});
