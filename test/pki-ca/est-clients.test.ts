/**
 * EST (RFC 7030) against pki-ca with curl and openssl, as a device script would do it: cacerts
 * (base64 PKCS#7, decoded with `openssl base64 -d | openssl pkcs7 -print_certs`), csrattrs,
 * simpleenroll and simplereenroll with HTTP Basic credentials from the admin API, a request queued
 * for approval (202 + Retry-After), approved through the REST API and collected by sending it
 * again. openssl verifies every issued chain. On the mTLS port, a certificate the CA issued
 * re-enrolls for its own identity with no password; another identity, a revoked certificate
 * and a certificate from another CA are refused. Needs the Debian packages curl and openssl; skips
 * with a printed reason when one is missing (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "../../src/pki/x509.ts";
import { derTlv } from "../../src/pki/leaf-signer.ts";
import { oidDer } from "../../src/pki/der.ts";
import { haveOpenssl, startCa, write, type CaFixture, haveTool, shIn, expectOrigin } from "./helpers.ts";

const have = haveTool;
const ok = haveOpenssl() && have("curl", "curl");

let f: CaFixture;
let trust: string;
let root: string;
let base: string;

beforeAll(async () => {
  if (!ok) return;
  f = await startCa({ est: { tenants: { t1: { profiles: ["server", "manual"] } }, default_profile: "server", retry_after_seconds: 7 } }, undefined, undefined, undefined, (c) => {
    c.server.mtls_port = 0;
  });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  root = write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
  base = `${f.svc.publicUrl}/.well-known/est`;
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

const sh = (script: string) => shIn(f.dir, script);

async function credential(profile: string): Promise<{ username: string; password: string }> {
  const r = await f.api("/est/credentials", await f.token("t1", "pki:admin"), { body: { profile } });
  const body = (await r.json()) as { username: string; password: string };
  expect(r.status, JSON.stringify(body)).toBe(201);
  return body;
}

/** A new P-256 key and CSR (base64 DER, as EST sends it) in `<name>.key` and `<name>.b64`. */
async function csr(name: string, subj: string, san: string): Promise<void> {
  const r = await sh(`openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${name}.key -subj '${subj}' -addext 'subjectAltName=${san}' -outform DER -out ${name}.der && openssl base64 -in ${name}.der -out ${name}.b64`);
  expect(r.code).toBe(0);
}

/** POSTs `<name>.b64` to an EST operation; the answer body lands in `<name>.out`. Returns status and headers. */
async function post(op: string, name: string, user: string, pass: string): Promise<{ status: number; headers: string }> {
  const r = await sh(`curl -sS --cacert ${trust} -u '${user}:${pass}' -H 'Content-Type: application/pkcs10' -H 'Content-Transfer-Encoding: base64' --data-binary @${name}.b64 -D ${name}.hdr -o ${name}.out -w '%{http_code}' ${base}/${op}`);
  return { status: Number(r.out.trim().slice(-3)), headers: (await sh(`cat ${name}.hdr`)).out.toLowerCase() };
}

/** Decodes `<name>.out` (base64 certs-only PKCS#7) to `<name>.pem` and verifies it to the root with the CA chain. */
async function verifyIssued(name: string): Promise<string> {
  const d = await sh(`openssl base64 -d -in ${name}.out | openssl pkcs7 -inform DER -print_certs -out ${name}.pem && openssl verify -CAfile ${root} -untrusted chain.pem ${name}.pem`);
  expect(d.out).toContain(`${name}.pem: OK`);
  expect(d.code).toBe(0);
  return (await sh(`openssl x509 -in ${name}.pem -noout -subject -ext subjectAltName -serial`)).out;
}

async function certificateCount(): Promise<number> {
  const r = await f.api("/certificates?limit=100", await f.token("t1", "pki:read"));
  return ((await r.json()) as { items: unknown[] }).items.length;
}

describe.skipIf(!ok)("EST with curl and openssl (Debian packages curl, openssl)", () => {
  test("cacerts: base64 PKCS#7 that openssl decodes into the issuing CA and the root", async () => {
    const r = (await sh(`curl -sS --cacert ${trust} -D cacerts.hdr ${base}/cacerts | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out chain.pem && grep -c 'BEGIN CERTIFICATE' chain.pem`));
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe("2");
    const h = (await sh("cat cacerts.hdr")).out.toLowerCase();
    expect(h).toContain("content-type: application/pkcs7-mime");
    expect(h).toContain("content-transfer-encoding: base64");
    expect((await sh(`openssl verify -CAfile ${root} chain.pem`)).out).toContain("OK");
    // The label names a profile; an unknown one is 404.
    expect((await sh(`curl -sS --cacert ${trust} -o /dev/null -w '%{http_code}' ${base}/server/cacerts`)).out).toBe("200");
    expect((await sh(`curl -sS --cacert ${trust} -o /dev/null -w '%{http_code}' ${base}/nope/cacerts`)).out).toBe("404");
  }, 60_000);

  test("csrattrs: the profile's signature algorithms", async () => {
    const r = (await sh(`curl -sS --cacert ${trust} ${base}/server/csrattrs | openssl base64 -d | openssl asn1parse -inform DER`));
    expect(r.code).toBe(0);
    expect(r.out).toContain("ecdsa-with-SHA256");
  }, 60_000);

  test("simpleenroll with HTTP Basic, then simplereenroll with a new key; openssl verifies both", async () => {
    const c = await credential("server");
    await csr("dev1", "/CN=dev1.example.com", "DNS:dev1.example.com");
    const r = await post("simpleenroll", "dev1", c.username, c.password);
    expect(r.status).toBe(200);
    expect(r.headers).toContain("content-type: application/pkcs7-mime; smime-type=certs-only");
    expect(await verifyIssued("dev1")).toContain("DNS:dev1.example.com");
    // The label of the credential's profile works too.
    await csr("dev1b", "/CN=dev1b.example.com", "DNS:dev1b.example.com");
    expect((await sh(`curl -sS --cacert ${trust} -u '${c.username}:${c.password}' -H 'Content-Type: application/pkcs10' --data-binary @dev1b.b64 -o dev1b.out -w '%{http_code}' ${base}/server/simpleenroll`)).out).toBe("200");
    await verifyIssued("dev1b");

    await csr("dev1r", "/CN=dev1.example.com", "DNS:dev1.example.com");
    expect((await post("simplereenroll", "dev1r", c.username, c.password)).status).toBe(200);
    const renewed = await verifyIssued("dev1r");
    expect(renewed).toContain("DNS:dev1.example.com");
    expect(renewed).not.toBe(await verifyIssued("dev1"));

    // Re-enrollment of names no valid certificate has: refused, nothing issued.
    const before = await certificateCount();
    await csr("dev2r", "/CN=dev2.example.com", "DNS:dev2.example.com");
    const refused = await post("simplereenroll", "dev2r", c.username, c.password);
    expect(refused.status).toBe(400);
    expect((await sh("cat dev2r.out")).out).toContain("simplereenroll");
    expect(await certificateCount()).toBe(before);
  }, 60_000);

  test("a wrong password is 401 with a Basic challenge; a label of another profile is 403", async () => {
    const c = await credential("server");
    await csr("bad", "/CN=bad.example.com", "DNS:bad.example.com");
    const r = await post("simpleenroll", "bad", c.username, `${c.password}x`);
    expect(r.status).toBe(401);
    expect(r.headers).toContain('www-authenticate: basic realm="est"');
    expect((await post("simpleenroll", "bad", "est_nobody", "x")).status).toBe(401);
    expect((await sh(`curl -sS --cacert ${trust} -H 'Content-Type: application/pkcs10' --data-binary @bad.b64 -o /dev/null -w '%{http_code}' ${base}/simpleenroll`)).out).toBe("401");
    expect((await sh(`curl -sS --cacert ${trust} -u '${c.username}:${c.password}' -H 'Content-Type: application/pkcs10' --data-binary @bad.b64 -o /dev/null -w '%{http_code}' ${base}/manual/simpleenroll`)).out).toBe("403");
  }, 60_000);

  test("a CSR the profile forbids is a 4xx with a text reason, and nothing is issued", async () => {
    const c = await credential("server");
    const before = await certificateCount();
    await csr("deny", "/CN=x.bad.example.com", "DNS:x.bad.example.com");
    const r = await post("simpleenroll", "deny", c.username, c.password);
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.headers).toContain("content-type: text/plain");
    expect((await sh("cat deny.out")).out).toContain("policy");
    expect(await certificateCount()).toBe(before);
  }, 60_000);

  test("manual approval: 202 + Retry-After, approved through the REST API, collected by sending the CSR again", async () => {
    const c = await credential("manual");
    await csr("q", "/CN=q.example.com", "DNS:q.example.com");
    const first = await post("manual/simpleenroll", "q", c.username, c.password);
    expect(first.status).toBe(202);
    expect(first.headers).toContain("retry-after: 7");
    expect((await post("manual/simpleenroll", "q", c.username, c.password)).status).toBe(202);
    const approver = await f.token("t1", "pki:approve");
    const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
    const req = pending.items.find((i) => i.subject === "CN=q.example.com")!;
    expect(req).toBeDefined();
    expect((await f.api(`/requests/${req.id}/approve`, approver, { method: "POST" })).status).toBe(201);
    expect((await post("manual/simpleenroll", "q", c.username, c.password)).status).toBe(200);
    expect(await verifyIssued("q")).toContain("DNS:q.example.com");
  }, 60_000);

  test("credentials: listed without passwords, deleted ones no longer authenticate", async () => {
    const c = await credential("server");
    const admin = await f.token("t1", "pki:admin");
    const list = (await (await f.api("/est/credentials", admin)).json()) as { items: Array<Record<string, unknown>> };
    expect(list.items.some((i) => i.username === c.username && !("password" in i) && !("secret_sha256" in i))).toBe(true);
    expect((await f.api(`/est/credentials/${c.username}`, admin, { method: "DELETE" })).status).toBe(204);
    await csr("gone", "/CN=gone.example.com", "DNS:gone.example.com");
    expect((await post("simpleenroll", "gone", c.username, c.password)).status).toBe(401);
    // A profile this tenant does not serve over EST: 409.
    expect((await f.api("/est/credentials", admin, { body: { profile: "server-p384" } })).status).toBe(409);
  }, 60_000);
  test("mTLS port: the certificate being renewed authenticates simplereenroll; another identity, a revoked or foreign certificate is refused", async () => {
    const c = await credential("server");
    await csr("m1", "/CN=m1.example.com", "DNS:m1.example.com");
    expect((await post("simpleenroll", "m1", c.username, c.password)).status).toBe(200);
    await verifyIssued("m1");
    const mtls = `${f.svc.mtlsUrl}/.well-known/est`;
    const withCert = (op: string, name: string, cert: string, key: string) =>
      sh(`curl -sS --cacert ${trust} --cert ${cert} --key ${key} -H 'Content-Type: application/pkcs10' -H 'Content-Transfer-Encoding: base64' --data-binary @${name}.b64 -o ${name}.out -w '%{http_code}' ${mtls}/${op}`);
    // The same subject and SANs with a new key, authenticated by the certificate alone.
    await csr("m1r", "/CN=m1.example.com", "DNS:m1.example.com");
    expect((await withCert("simplereenroll", "m1r", "m1.pem", "m1.key")).out).toBe("200");
    const renewed = await verifyIssued("m1r");
    expect(renewed).toContain("m1.example.com");
    // Another identity: 403.
    await csr("m1x", "/CN=other.example.com", "DNS:other.example.com");
    expect((await withCert("simpleenroll", "m1x", "m1r.pem", "m1r.key")).out).toBe("403");
    expect((await sh("cat m1x.out")).out).toContain("its own subject");
    // Revoked at the REST API: the same certificate no longer authorizes.
    const serial = (await sh("openssl x509 -in m1r.pem -noout -serial")).out.trim().split("=")[1]!.toLowerCase();
    const rv = await f.api(`/certificates/${serial}/revoke`, await f.token("t1", "pki:revoke"), { body: { reason: "superseded" } });
    expect(rv.status).toBe(200);
    await csr("m1s", "/CN=m1.example.com", "DNS:m1.example.com");
    expect((await withCert("simplereenroll", "m1s", "m1r.pem", "m1r.key")).out).toBe("403");
    expect((await sh("cat m1s.out")).out).toContain("revoked");
    // A certificate from another CA fails the handshake: no HTTP answer at all.
    await sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout self.key -out self.pem -subj '/CN=m1.example.com' -days 1");
    const foreign = await withCert("simplereenroll", "m1s", "self.pem", "self.key");
    expect(foreign.code).not.toBe(0);
    expect(foreign.out).not.toContain("200");
  }, 120_000);
  test("serverkeygen: a key made by the CA and its certificate, as multipart/mixed; openssl reads both and they match", async () => {
    const c = await credential("server");
    await csr("kg", "/CN=kg.example.com", "DNS:kg.example.com");
    const r = await sh(`curl -sS --cacert ${trust} -u '${c.username}:${c.password}' -H 'Content-Type: application/pkcs10' --data-binary @kg.b64 -D kg.hdr -o kg.out -w '%{http_code}' ${base}/serverkeygen`);
    expect(r.out).toBe("200");
    const headers = (await sh("cat kg.hdr")).out.toLowerCase();
    const boundary = /content-type: multipart\/mixed; boundary=([^\s;]+)/.exec(headers)?.[1];
    expect(boundary).toBeDefined();
    const parts = (await sh("cat kg.out")).out.split(`--${boundary}`).slice(1, -1);
    expect(parts.length).toBe(2);
    const bodyOf = (p: string) => p.slice(p.indexOf("\r\n\r\n") + 4).trim();
    expect(parts[0]).toContain("Content-Type: application/pkcs8");
    expect(parts[1]).toContain("Content-Type: application/pkcs7-mime; smime-type=certs-only");
    write(f.dir, "kg-key.b64", bodyOf(parts[0]!) + "\n");
    write(f.dir, "kg-p7.b64", bodyOf(parts[1]!) + "\n");
    const key = await sh("openssl base64 -d -in kg-key.b64 | openssl pkey -inform DER -pubout");
    const cert = await sh("openssl base64 -d -in kg-p7.b64 | openssl pkcs7 -inform DER -print_certs -out kg.pem && openssl x509 -in kg.pem -noout -pubkey -subject");
    expect(key.code).toBe(0);
    expect(cert.out).toContain(key.out.trim());
    expect(cert.out).toContain("kg.example.com");
    expect((await sh(`openssl verify -CAfile ${root} -untrusted chain.pem kg.pem`)).out).toContain("kg.pem: OK");
    // The CSR's own key is not the one certified.
    expect(cert.out).not.toContain((await sh("openssl pkey -in kg.key -pubout")).out.trim());
    // A profile that queues for approval cannot hold a made key: 409.
    const m = await credential("manual");
    await csr("kgm", "/CN=kgm.example.com", "DNS:kgm.example.com");
    expect((await post("manual/serverkeygen", "kgm", m.username, m.password)).status).toBe(409);
  }, 120_000);

  test("serverkeygen encrypted to the client (AsymmetricDecryptKeyIdentifier): openssl cms verifies the signature and decrypts the key", async () => {
    // An RSA client certificate, enrolled with Basic, then used on the mTLS port.
    const c = await credential("server");
    const made = await sh(`openssl req -new -newkey rsa:2048 -nodes -keyout ek.key -subj '/CN=ek.example.com' -addext 'subjectAltName=DNS:ek.example.com' -outform DER -out ek.der && openssl base64 -in ek.der -out ek.b64`);
    expect(made.code).toBe(0);
    expect((await post("simpleenroll", "ek", c.username, c.password)).status).toBe(200);
    await verifyIssued("ek");
    const ski = (await sh("openssl x509 -in ek.pem -noout -ext subjectKeyIdentifier")).out.split("\n")[1]!.trim().replace(/:/g, "");
    expect(ski).toMatch(/^[0-9A-F]{40}$/);
    // A serverkeygen CSR (its own key is not certified) naming that certificate's key.
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const id = Buffer.from(ski, "hex");
    const req = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=ek.example.com",
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "ek.example.com" }])],
      attributes: [new x509.Attribute("1.2.840.113549.1.9.16.2.54", [Buffer.concat([Buffer.from([0x04, id.length]), id])])],
    });
    write(f.dir, "ekg.b64", Buffer.from(req.rawData).toString("base64") + "\n");
    const mtls = `${f.svc.mtlsUrl}/.well-known/est`;
    const r = await sh(`curl -sS --cacert ${trust} --cert ek.pem --key ek.key -H 'Content-Type: application/pkcs10' --data-binary @ekg.b64 -D ekg.hdr -o ekg.out -w '%{http_code}' ${mtls}/serverkeygen`);
    expect(r.out).toBe("200");
    const boundary = /content-type: multipart\/mixed; boundary=([^\s;]+)/.exec((await sh("cat ekg.hdr")).out.toLowerCase())?.[1];
    const parts = (await sh("cat ekg.out")).out.split(`--${boundary}`).slice(1, -1);
    expect(parts[0]).toContain("Content-Type: application/pkcs7-mime; smime-type=server-generated-key");
    const bodyOf = (p: string) => p.slice(p.indexOf("\r\n\r\n") + 4).trim();
    write(f.dir, "ekg-key.b64", bodyOf(parts[0]!) + "\n");
    write(f.dir, "ekg-p7.b64", bodyOf(parts[1]!) + "\n");
    // The server's signature, to the root.
    const verified = await sh(`openssl base64 -d -in ekg-key.b64 -out ekg-key.der && openssl cms -verify -inform DER -in ekg-key.der -CAfile ${root} -out ekg-env.der`);
    expect(verified.out).toContain("Verification successful");
    // The signed content is the EnvelopedData itself; openssl cms -decrypt reads a ContentInfo, so it is wrapped in one.
    const env = new Uint8Array(readFileSync(join(f.dir, "ekg-env.der")));
    write(f.dir, "ekg-env-ci.der", derTlv(0x30, oidDer("1.2.840.113549.1.7.3"), derTlv(0xa0, env)));
    const dec = await sh("openssl cms -decrypt -inform DER -in ekg-env-ci.der -recip ek.pem -inkey ek.key -out ekg-priv.der && openssl pkey -inform DER -in ekg-priv.der -pubout");
    expect(dec.code).toBe(0);
    const cert = await sh("openssl base64 -d -in ekg-p7.b64 | openssl pkcs7 -inform DER -print_certs -out ekg.pem && openssl x509 -in ekg.pem -noout -pubkey");
    expect(cert.out).toContain(dec.out.trim());
    expect((await sh(`openssl verify -CAfile ${root} -untrusted chain.pem ekg.pem`)).out).toContain("ekg.pem: OK");
    // With Basic there is no client certificate to encrypt to: 400, and a symmetric DecryptKeyIdentifier is refused too.
    expect((await post("serverkeygen", "ekg", c.username, c.password)).status).toBe(400);
    const sym = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=ek.example.com", keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }, attributes: [new x509.Attribute("1.2.840.113549.1.9.16.2.37", [Buffer.from([0x04, 0x01, 0x01])])] });
    write(f.dir, "eks.b64", Buffer.from(sym.rawData).toString("base64") + "\n");
    expect((await post("serverkeygen", "eks", c.username, c.password)).status).toBe(400);
  }, 120_000);

  test("the certificates say they came through EST (the dashboard's origin)", async () => {
    await expectOrigin(f, "t1", "est");
  });
});
