/**
 * The offline root ceremony with real openssl: `cli.ts root init` writes a key openssl
 * opens with the passphrase and a root with the CA extensions; `root sign` issues an
 * issuing CA `openssl verify` accepts; refusals exit 2 with one line. Then pki-ca with
 * `root: external`: CSR out, signed by the CLI, certificate in, a leaf that verifies to
 * the offline root, and an upload for another key refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";

const ok = haveOpenssl();
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../apps/pki-ca/cli.ts", import.meta.url));
const PASS = "correct horse battery staple";

let dir: string;
let passFile: string;
let f: CaFixture | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "cryptoutil-ceremony-"));
  passFile = write(dir, "pass.txt", PASS + "\n");
});
afterAll(async () => {
  await f?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([process.execPath, "run", CLI, ...args], { cwd: REPO, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** A refusal: exit 2, one `error:` line on stderr, no stack trace. */
function expectRefusal(r: { code: number; err: string }, text: string | RegExp) {
  expect(r.code).toBe(2);
  const lines = r.err.trim().split("\n");
  expect(lines.length).toBe(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(text);
  expect(r.err).not.toMatch(/\n\s+at /);
}

/** Makes a CA CSR with openssl (its own key). */
function caCsr(name: string, extra: string[] = []): string {
  const csr = join(dir, `${name}.csr.pem`);
  const p = Bun.spawnSync(
    ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", csr, "-subj", `/CN=${name}/O=test`, "-addext", "basicConstraints=critical,CA:TRUE", ...extra],
    { stderr: "pipe" },
  );
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return csr;
}

describe.skipIf(!ok)("offline root ceremony [needs Debian openssl]", () => {
  test("root init: encrypted PKCS#8 openssl opens, CA extensions, fingerprints, no overwrite", async () => {
    const r = await cli(["root", "init", "--dir", dir, "--cn", "Ceremony Test Root", "--passphrase-file", passFile]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const keyFile = join(dir, "root.key.pem");
    const certFile = join(dir, "root.crt.pem");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, "utf8")).toStartWith("-----BEGIN ENCRYPTED PRIVATE KEY-----");

    const opened = openssl(["pkcs8", "-in", keyFile, "-passin", `file:${passFile}`]);
    expect(opened.code).toBe(0);
    expect(opened.out).toContain("-----BEGIN PRIVATE KEY-----");
    // The opened key is the certificate's: same public key.
    const pubFromKey = openssl(["pkey", "-pubout"], opened.out).out;
    expect(openssl(["x509", "-in", certFile, "-noout", "-pubkey"]).out).toBe(pubFromKey);
    // PBES2 with PBKDF2-HMAC-SHA256, >= 600,000 iterations, AES-256-CBC.
    const asn = openssl(["asn1parse", "-in", keyFile]).out;
    expect(asn).toContain(":PBES2");
    expect(asn).toContain(":PBKDF2");
    expect(asn).toContain(":hmacWithSHA256");
    expect(asn).toContain(":aes-256-cbc");
    const iterations = parseInt(/INTEGER\s+:([0-9A-F]+)/.exec(asn)![1]!, 16);
    expect(iterations).toBeGreaterThanOrEqual(600_000);
    expect(openssl(["pkcs8", "-in", keyFile, "-passin", "pass:not the passphrase"]).code).not.toBe(0);

    const text = openssl(["x509", "-in", certFile, "-noout", "-text"]).out;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE\s*\n/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain("Subject Key Identifier");
    expect(text).toContain("ecdsa-with-SHA384");
    expect(text).toContain("Subject: CN = Ceremony Test Root");
    const fp256 = openssl(["x509", "-in", certFile, "-noout", "-fingerprint", "-sha256"]).out.split("=")[1]!.trim();
    const fp1 = openssl(["x509", "-in", certFile, "-noout", "-fingerprint", "-sha1"]).out.split("=")[1]!.trim();
    expect(r.out).toContain(`SHA-256 fingerprint: ${fp256}`);
    expect(r.out).toContain(`SHA-1 fingerprint: ${fp1}`);

    const before = readFileSync(keyFile, "utf8");
    expectRefusal(await cli(["root", "init", "--dir", dir, "--cn", "Again", "--passphrase-file", passFile]), /already exists/);
    expect(readFileSync(keyFile, "utf8")).toBe(before);
  }, 15_000);

  test("root sign: an openssl CA CSR becomes a CA certificate openssl verify accepts; refusals exit 2", async () => {
    const csr = caCsr("Issuing One", ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    const out = join(dir, "issuing-one.crt.pem");
    const r = await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", csr, "--out", out]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const v = openssl(["verify", "-CAfile", join(dir, "root.crt.pem"), out]);
    expect(v.out).toContain(": OK");
    const text = openssl(["x509", "-in", out, "-noout", "-text"]).out;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain("Authority Key Identifier");
    expect(text).toContain("Subject: CN = Issuing One, O = test");
    expect(r.out).toContain(`SHA-256 fingerprint: ${openssl(["x509", "-in", out, "-noout", "-fingerprint", "-sha256"]).out.split("=")[1]!.trim()}`);
    const serial = openssl(["x509", "-in", out, "-noout", "-serial"]).out.trim().split("=")[1]!;
    expect(serial.length).toBeGreaterThanOrEqual(30);
    expect(parseInt(serial[0]!, 16)).toBeLessThan(8); // positive

    const wrong = write(dir, "wrong.txt", "not the passphrase at all\n");
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", wrong, "--csr", csr, "--out", join(dir, "x1.pem")]), /wrong passphrase/);
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", join(dir, "missing.csr"), "--out", join(dir, "x2.pem")]), /no such file/);
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", join(dir, "missing.txt"), "--csr", csr, "--out", join(dir, "x3.pem")]), /no such file/);
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", csr, "--out", out]), /already exists/);
    // A CSR asking for a SAN is odd for a CA: refused.
    const odd = caCsr("Odd", ["-addext", "subjectAltName=DNS:odd.example.com"]);
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", odd, "--out", join(dir, "x4.pem")]), /2\.5\.29\.17/);
    // A CSR whose signature no longer verifies (one byte of the signature flipped).
    const der = new Uint8Array(Buffer.from(readFileSync(csr, "utf8").replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
    der[der.length - 5]! ^= 0x01;
    const bad = write(dir, "bad.csr.pem", `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`);
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", bad, "--out", join(dir, "x5.pem")]), /proof of possession/);
    writeFileSync(join(dir, "junk.csr"), "this is not a CSR");
    expectRefusal(await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", join(dir, "junk.csr"), "--out", join(dir, "x6.pem")]), /CSR/);
    for (const x of ["x1", "x2", "x3", "x4", "x5", "x6"]) expect(() => statSync(join(dir, `${x}.pem`))).toThrow();
  }, 15_000);

  test("pki-ca with root: external: CSR out, ceremony signs, certificate in, leaves verify to the offline root", async () => {
    f = await startCa({ root: "external" });
    const admin = await f.token("ops", "pki:admin");
    const req = await f.token("t1", "pki:request pki:read");
    const { csr: leafCsr } = makeCsr(dir, "leaf", { subj: "/CN=www.example.com" });

    // Not ready yet: issuance and the root answer 503 ca_not_ready.
    const early = await f.api("/certificates", req, { body: { csr: leafCsr, profile: "server" } });
    expect(early.status).toBe(503);
    expect(((await early.json()) as any).error?.code ?? "").toBe("ca_not_ready");
    expect((await f.svc.call("/pki/ca/root.pem")).status).toBe(503);
    // The admin routes need pki:admin.
    expect((await f.api("/cas/P-256/csr", req)).status).toBe(403);

    const csrRes = await f.api("/cas/P-256/csr", admin);
    expect(csrRes.status).toBe(200);
    const csrPem = await csrRes.text();
    expect(csrPem).toStartWith("-----BEGIN CERTIFICATE REQUEST-----");
    const csrFile = write(dir, "pki-p256.csr.pem", csrPem);
    expect(openssl(["req", "-in", csrFile, "-noout", "-verify"]).out).toMatch(/verif(y OK|ication OK)/i);

    const issuingFile = join(dir, "pki-p256.crt.pem");
    const signed = await cli(["root", "sign", "--dir", dir, "--passphrase-file", passFile, "--csr", csrFile, "--out", issuingFile]);
    expect(signed.err).toBe("");
    expect(signed.code).toBe(0);
    const rootPem = readFileSync(join(dir, "root.crt.pem"), "utf8");
    const put = (type: string, body: string) => f!.svc.call(`/service/api/v1/cas/${type}/certificate`, { method: "PUT", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify({ chain_pem: body }) });

    // A certificate for another key (the openssl-made issuing CA) is refused for the P-384 CA, which is still pending.
    const wrongKey = await put("P-384", readFileSync(join(dir, "issuing-one.crt.pem"), "utf8") + rootPem);
    expect(wrongKey.status).toBe(422);
    expect(JSON.stringify(await wrongKey.json())).toContain("another key");
    // The right certificate without the root is refused too.
    expect((await put("P-256", readFileSync(issuingFile, "utf8"))).status).toBe(400);

    const up = await put("P-256", readFileSync(issuingFile, "utf8") + rootPem);
    expect(up.status).toBe(200);
    expect(((await up.json()) as any).id).toBe("issuing-p-256");
    expect((await put("P-256", readFileSync(issuingFile, "utf8") + rootPem)).status).toBe(409);
    expect(await (await f.svc.call("/pki/ca/root.pem")).text()).toBe(rootPem);

    const issued = await f.api("/certificates", req, { body: { csr: leafCsr, profile: "server" } });
    expect(issued.status).toBe(201);
    const cert = ((await issued.json()) as any).certificate;
    const leaf = write(dir, "leaf.pem", cert.certificate_pem);
    const issuing = write(dir, "issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
    expect(readFileSync(issuing, "utf8")).toBe(readFileSync(issuingFile, "utf8"));
    const v = openssl(["verify", "-CAfile", join(dir, "root.crt.pem"), "-untrusted", issuing, leaf]);
    expect(v.out).toContain(": OK");
    expect(v.code).toBe(0);

    // The OCSP responder was made under the imported issuing CA and verifies to the offline root.
    const reqFile = join(dir, "ocsp.req");
    expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-reqout", reqFile]).code).toBe(0);
    const resp = await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(reqFile) });
    const respFile = write(dir, "ocsp.resp", new Uint8Array(await resp.arrayBuffer()));
    const o = openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", respFile, "-CAfile", join(dir, "root.crt.pem"), "-resp_text"]).out;
    expect(o).toContain("Response verify OK");
    expect(o).toContain("Cert Status: good");

    // The P-384 CA still waits; a restart keeps both states.
    const p384 = makeCsr(dir, "leaf384", { subj: "/CN=p384.example.com" });
    expect((await f.api("/certificates", req, { body: { csr: p384.csr, profile: "server-p384" } })).status).toBe(503);
    const data = f.dir;
    await f.stop({ keep: true });
    f = await startCa({ root: "external" }, data);
    const req2 = await f.token("t1", "pki:request");
    expect((await f.api("/certificates", req2, { body: { csr: leafCsr, profile: "server" } })).status).toBe(201);
    expect((await f.api("/certificates", req2, { body: { csr: p384.csr, profile: "server-p384" } })).status).toBe(503);
    expect(await (await f.svc.call("/pki/ca/root.pem")).text()).toBe(rootPem);
  }, 30_000);
});
