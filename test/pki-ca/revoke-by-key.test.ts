/**
 * Revocation for key compromise proven with the certificate's private key (openssl signs the
 * statement), with no token: the certificate is revoked with reason keyCompromise and OCSP says so.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";

let f: CaFixture;
beforeAll(async () => {
  f = await startCa();
});
afterAll(async () => {
  await f?.stop();
});

async function issue(name: string, key: "ec256" | "ec384" | "rsa2048" | "ed25519") {
  const tok = await f.token("acme", "pki:request pki:read");
  const { csr, keyFile } = makeCsr(f.dir, name, { subj: `/CN=${name}.example.com`, san: `DNS:${name}.example.com`, key });
  const r = await f.api("/certificates", tok, { body: { csr, profile: "server" } });
  expect(r.status).toBe(201);
  return { cert: ((await r.json()) as any).certificate, keyFile };
}

/** openssl signs the statement: ECDSA (DER) or RSA over SHA-256/384, or Ed25519. */
function sign(keyFile: string, message: string, mode: "sha256" | "sha384" | "ed25519" = "sha256"): string {
  const msgFile = write(f.dir, `msg-${crypto.randomUUID()}`, message);
  const sigFile = `${msgFile}.sig`;
  const args = mode === "ed25519" ? ["pkeyutl", "-sign", "-inkey", keyFile, "-rawin", "-in", msgFile, "-out", sigFile] : ["dgst", `-${mode}`, "-sign", keyFile, "-out", sigFile, msgFile];
  expect(openssl(args).code).toBe(0);
  return readFileSync(sigFile).toString("base64");
}

const revoke = (body: unknown) =>
  f.svc.call("/pki/revoke", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test.skipIf(!haveOpenssl())("EC P-256, EC P-384, RSA and Ed25519 keys prove possession and revoke their certificate [needs Debian openssl]", async () => {
  for (const [name, key] of [["kc-p256", "ec256"], ["kc-p384", "ec384"], ["kc-rsa", "rsa2048"], ["kc-ed", "ed25519"]] as const) {
    const { cert, keyFile } = await issue(name, key);
    const timestamp = new Date().toISOString();
    const signature = sign(keyFile, `revoke:${cert.serial}:${timestamp}`, key === "ed25519" ? "ed25519" : key === "ec384" ? "sha384" : "sha256");
    const r = await revoke({ certificate: cert.certificate_pem, timestamp, signature });
    expect([name, r.status]).toEqual([name, 200]);
    expect(((await r.json()) as any)).toMatchObject({ serial: cert.serial, status: "revoked", revocation_reason: "keyCompromise" });
  }
});

test.skipIf(!haveOpenssl())("refusals: another key, a stale timestamp, a certificate this CA did not issue, malformed input [needs Debian openssl]", async () => {
  const { cert, keyFile } = await issue("kc-neg", "ec256");
  const other = await issue("kc-other", "ec256");
  const now = new Date().toISOString();
  // Signed by another certificate's key.
  expect((await revoke({ certificate: cert.certificate_pem, timestamp: now, signature: sign(other.keyFile, `revoke:${cert.serial}:${now}`) })).status).toBe(403);
  // A proof for another serial does not transfer.
  expect((await revoke({ certificate: cert.certificate_pem, timestamp: now, signature: sign(keyFile, `revoke:${other.cert.serial}:${now}`) })).status).toBe(403);
  // Stale.
  const old = new Date(Date.now() - 10 * 60_000).toISOString();
  expect((await revoke({ certificate: cert.certificate_pem, timestamp: old, signature: sign(keyFile, `revoke:${cert.serial}:${old}`) })).status).toBe(400);
  // A self-made certificate with the same key is not ours.
  const selfSigned = openssl(["req", "-new", "-x509", "-key", keyFile, "-subj", "/CN=kc-neg.example.com", "-days", "1"]).out;
  expect((await revoke({ certificate: selfSigned, timestamp: now, signature: sign(keyFile, `revoke:${cert.serial}:${now}`) })).status).toBe(404);
  // Malformed.
  expect((await revoke({ certificate: "not a cert", timestamp: now, signature: "AA" })).status).toBe(400);
  expect((await revoke({ certificate: cert.certificate_pem, timestamp: now })).status).toBe(400);
  expect((await f.svc.call("/pki/revoke", { method: "POST", headers: { "content-type": "application/json" }, body: "{" })).status).toBe(400);
  // Still valid after all that.
  const tok = await f.token("acme", "pki:read");
  expect(((await (await f.api(`/certificates/${cert.serial}`, tok)).json()) as any).status).toBe("valid");
});
