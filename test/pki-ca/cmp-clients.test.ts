/**
 * CMP (RFC 9810 / RFC 9483 over HTTPS) against pki-ca with `openssl cmp` (OpenSSL 3.0 from
 * Debian) as the client: ir, cr, p10cr, kur, rr and genm; PBM protection with a shared secret
 * from the admin API and signature protection with a certificate pki-ca issued; implicit and
 * explicit confirmation; a request queued for approval, approved through the REST API and
 * collected by openssl's own polling. `openssl verify` checks every issued chain. Refusals, each
 * in CMP's error form and with nothing issued: a wrong PBM secret, a bad signature on the
 * protected message, a replayed transaction id, kur with a revoked certificate and with an
 * expired one, and a template the profile forbids. Needs the Debian package openssl; skips with
 * a printed reason without it (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { children, intOf, namedBitsOf, oidOf, readTlv, topLevel } from "../../apps/pki-ca/cmp/asn1.ts";
import { BODY, FAIL, parseMessage } from "../../apps/pki-ca/cmp/message.ts";
import { toPem } from "../../src/pki/keys.ts";
import { buildIr, certificateOf, pbmMessage } from "./cmp-helpers.ts";
import { haveOpenssl, PROFILES, startCa, write, type CaFixture, expectOrigin } from "./helpers.ts";

const sslOk = haveOpenssl();
let f: CaFixture;
let trust: string;
let root: string;
let issuing: string;
let kid: string;
let secret: string;
let manualKid: string;
let manualSecret: string;
let base: string;

beforeAll(async () => {
  if (!sslOk) return;
  f = await startCa({ profiles: PROFILES, cmp: { tenants: { t1: { profiles: ["server", "manual"] } }, check_after_seconds: 1 } });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  root = write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
  issuing = write(f.dir, "issuing.pem", await (await f.svc.call("/pki/ca/issuing-p-256.pem")).text());
  const admin = await f.token("t1", "pki:admin");
  const c1 = (await (await f.api("/cmp/credentials", admin, { body: { profile: "server" } })).json()) as { kid: string; secret: string };
  const c2 = (await (await f.api("/cmp/credentials", admin, { body: { profile: "manual" } })).json()) as { kid: string; secret: string };
  [kid, secret, manualKid, manualSecret] = [c1.kid, c1.secret, c2.kid, c2.secret];
  base = f.svc.publicUrl.replace(/^https:\/\//, "");
}, 120_000);
afterAll(async () => {
  await f?.stop();
}, 30_000);

async function run(cmd: string[]): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { cwd: f.dir, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

function key(name: string): string {
  const file = join(f.dir, `${name}.key`);
  if (!existsSync(file)) Bun.spawnSync(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
  return file;
}

/**
 * `openssl cmp` against a label, over TLS trusting the suite CA. `-keep_alive 0`: OpenSSL 3.0's
 * client fails to send the second message of a transaction (certConf, pollReq) on a kept-alive
 * TLS connection ("error sending"), so each message gets its own connection.
 */
function cmp(label: string, args: string[]) {
  return run(["openssl", "cmp", "-server", `${base}/.well-known/cmp/p/${label}`, "-tls_used", "-tls_trusted", trust, "-keep_alive", "0", "-msg_timeout", "30", "-total_timeout", "120", ...args]);
}
const pbmArgs = (k = kid, s = secret) => ["-ref", k, "-secret", `pass:${s}`, "-recipient", "/CN=pki-ca"];
const sigArgs = (cert: string, keyFile: string) => ["-cert", cert, "-key", keyFile, "-trusted", root, "-untrusted", issuing];

async function verify(cert: string) {
  const v = await run(["openssl", "verify", "-CAfile", root, "-untrusted", issuing, cert]);
  expect(v.out).toContain(": OK");
}

async function certificateCount(): Promise<number> {
  const r = await f.api("/certificates?limit=500", await f.token("t1", "pki:read"));
  return ((await r.json()) as { items: unknown[] }).items.length;
}

/** The failInfo bits of an answer: the error body's, or the first status of a rejecting rep. */
function failInfoOf(der: Uint8Array): { body: number; fail: number[] } {
  const m = parseMessage(der);
  const b = m.der;
  let status = m.body;
  if (m.bodyType === BODY.error) status = children(b, m.body)[0]!;
  else if ([BODY.ip, BODY.cp, BODY.kup].includes(m.bodyType as 1)) {
    const reps = children(b, m.body);
    const responses = children(b, reps[reps.length - 1]!);
    status = children(b, responses[0]!)[1]!;
  } else if (m.bodyType === BODY.rp) status = children(b, children(b, m.body)[0]!)[0]!;
  const parts = children(b, status);
  expect(intOf(b, parts[0]!)).toBe(2);
  const bits = parts.find((p) => p.tag === 0x03);
  return { body: m.bodyType, fail: bits ? namedBitsOf(b, bits) : [] };
}

async function post(der: Uint8Array, label = "server"): Promise<{ status: number; der: Uint8Array }> {
  const r = await f.svc.call(`/.well-known/cmp/p/${label}`, { method: "POST", body: der.slice().buffer as ArrayBuffer, headers: { "content-type": "application/pkixcmp" } });
  return { status: r.status, der: new Uint8Array(await r.arrayBuffer()) };
}

describe.skipIf(!sslOk)("CMP with openssl cmp (Debian package openssl)", () => {
  test("ir with PBM and implicit confirmation; cr with certConf; p10cr; each chain verifies", async () => {
    const ir = await cmp("server", ["-cmd", "ir", ...pbmArgs(), "-newkey", key("ir"), "-subject", "/CN=ir.example.com", "-sans", "ir.example.com", "-implicit_confirm", "-certout", "ir.pem", "-reqout", "ir.req.der"]);
    expect(ir.code, ir.out).toBe(0);
    await verify("ir.pem");
    expect((await run(["openssl", "x509", "-in", "ir.pem", "-noout", "-subject", "-ext", "subjectAltName"])).out).toContain("DNS:ir.example.com");

    const cr = await cmp("server", ["-cmd", "cr", ...pbmArgs(), "-newkey", key("cr"), "-subject", "/CN=cr.example.com", "-sans", "cr.example.com", "-certout", "cr.pem"]);
    expect(cr.code, cr.out).toBe(0);
    await verify("cr.pem");

    const csr = join(f.dir, "p10.csr");
    Bun.spawnSync(["openssl", "req", "-new", "-key", key("p10"), "-subj", "/CN=p10.example.com", "-addext", "subjectAltName=DNS:p10.example.com", "-out", csr]);
    const p10 = await cmp("server", ["-cmd", "p10cr", ...pbmArgs(), "-csr", csr, "-certout", "p10.pem"]);
    expect(p10.code, p10.out).toBe(0);
    await verify("p10.pem");
  }, 120_000);

  test("signature protection: cr and kur signed by a certificate pki-ca issued, answers signed by the CMP RA", async () => {
    const cr = await cmp("server", ["-cmd", "cr", ...sigArgs("ir.pem", key("ir")), "-newkey", key("ir2"), "-subject", "/CN=ir.example.com", "-sans", "ir.example.com", "-certout", "ir2.pem"]);
    expect(cr.code, cr.out).toBe(0);
    await verify("ir2.pem");
    const kur = await cmp("server", ["-cmd", "kur", ...sigArgs("ir2.pem", key("ir2")), "-newkey", key("kur"), "-certout", "kur.pem", "-reqout", "kur.req.der"]);
    expect(kur.code, kur.out).toBe(0);
    await verify("kur.pem");
    expect((await run(["openssl", "x509", "-in", "kur.pem", "-noout", "-subject"])).out).toContain("ir.example.com");
  }, 120_000);

  test("genm: CA certificates (caCerts: issuing CA and root) and key pair types, read from the genp openssl saved", async () => {
    const itavs = (file: string) => {
      const der = new Uint8Array(readFileSync(join(f.dir, file)));
      const m = parseMessage(der);
      expect(m.bodyType).toBe(BODY.genp);
      return children(der, m.body).map((itav) => {
        const [type, value] = children(der, itav);
        return { oid: oidOf(der, type!), value: value ? children(der, value).map((c) => der.slice(c.start, c.end)) : [] };
      });
    };
    const ca = await cmp("server", ["-cmd", "genm", ...pbmArgs(), "-infotype", "caCerts", "-rspout", "genp-ca.der"]);
    expect(ca.code, ca.out).toBe(0);
    const [caCerts] = itavs("genp-ca.der");
    expect(caCerts!.oid).toBe("1.3.6.1.5.5.7.4.17");
    const pem = (der: Uint8Array) => toPem("CERTIFICATE", der.slice().buffer as ArrayBuffer).trim();
    // issuing.pem is the issuing CA then the root: the same two certificates, in that order.
    const blocks = readFileSync(issuing, "utf8").match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
    expect(caCerts!.value.map(pem)).toEqual(blocks.map((b) => b.trim()));
    expect(blocks[1]).toBe(readFileSync(root, "utf8").trim());
    const kt = await cmp("server", ["-cmd", "genm", ...pbmArgs(), "-infotype", "signKeyPairTypes", "-rspout", "genp-kt.der"]);
    expect(kt.code, kt.out).toBe(0);
    const [types] = itavs("genp-kt.der");
    expect(types!.oid).toBe("1.3.6.1.5.5.7.4.2");
    expect(types!.value.length).toBe(PROFILES.server.key_types.length);
  }, 60_000);

  test("rr: revocation by PBM and by the certificate's own signature; a second rr is certRevoked", async () => {
    const before = await certificateCount();
    const rr = await cmp("server", ["-cmd", "rr", ...pbmArgs(), "-oldcert", "cr.pem", "-revreason", "1"]);
    expect(rr.code, rr.out).toBe(0);
    const again = await cmp("server", ["-cmd", "rr", ...pbmArgs(), "-oldcert", "cr.pem", "-revreason", "1"]);
    expect(again.code).not.toBe(0);
    expect(again.out).toMatch(/certRevoked|revoked/i);
    const self = await cmp("server", ["-cmd", "rr", ...sigArgs("p10.pem", key("p10")), "-oldcert", "p10.pem"]);
    expect(self.code, self.out).toBe(0);
    const row = (await (await f.api(`/certificates?status=revoked&limit=100`, await f.token("t1", "pki:read"))).json()) as { items: Array<{ subject: string; revocation_reason: string }> };
    expect(row.items.find((i) => i.subject === "CN=cr.example.com")?.revocation_reason).toBe("keyCompromise");
    expect(await certificateCount()).toBe(before);
  }, 60_000);

  test("refusals in CMP's error form, nothing issued", async () => {
    const before = await certificateCount();
    // A wrong PBM secret: an unprotected error with badMessageCheck.
    const wrong = await cmp("server", ["-cmd", "ir", ...pbmArgs(kid, "not-the-secret"), "-newkey", key("wrong"), "-subject", "/CN=wrong.example.com", "-certout", "wrong.pem", "-unprotected_errors"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.out, wrong.out).toContain("badMessageCheck");
    // A replayed transaction: the ir sent again as it was.
    const replay = await post(new Uint8Array(readFileSync(join(f.dir, "ir.req.der"))));
    expect(replay.status).toBe(200);
    expect(failInfoOf(replay.der).fail).toContain(FAIL.transactionIdInUse);
    // A bad signature on the protected message: one bit of the kur's protection flipped.
    const kur = new Uint8Array(readFileSync(join(f.dir, "kur.req.der")));
    const top = topLevel(kur, 0x30);
    const prot = children(kur, top)[2]!;
    const bits = readTlv(kur, prot.contentStart, prot.end);
    kur[bits.end - 3]! ^= 0x01;
    expect(failInfoOf((await post(kur)).der).fail).toContain(FAIL.badMessageCheck);
    // A template the profile forbids (a denied name): a rejecting ip with badCertTemplate.
    const denied = await cmp("server", ["-cmd", "ir", ...pbmArgs(), "-newkey", key("denied"), "-subject", "/CN=x.bad.example.com", "-sans", "x.bad.example.com", "-certout", "denied.pem"]);
    expect(denied.code).not.toBe(0);
    expect(denied.out, denied.out).toContain("badCertTemplate");
    // kur with a revoked certificate (cr.pem, revoked above): certRevoked.
    const revoked = await cmp("server", ["-cmd", "kur", ...sigArgs("cr.pem", key("cr")), "-newkey", key("kur2"), "-certout", "kur2.pem", "-unprotected_errors"]);
    expect(revoked.code).not.toBe(0);
    expect(revoked.out, revoked.out).toContain("certRevoked");
    // kur with an expired certificate: one issued (through an ir built here) with a validity window already past.
    const day = 86_400_000;
    const built = buildIr(kid, secret, "expired.example.com", { notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) });
    const expiredDer = certificateOf((await post(built.der)).der);
    expect(expiredDer).toBeDefined();
    write(f.dir, "expired.pem", toPem("CERTIFICATE", expiredDer!.slice().buffer as ArrayBuffer));
    write(f.dir, "expired.key", built.keyPem);
    const expired = await cmp("server", ["-cmd", "kur", ...sigArgs("expired.pem", join(f.dir, "expired.key")), "-newkey", key("kur4"), "-certout", "kur4.pem", "-unprotected_errors"]);
    expect(expired.code).not.toBe(0);
    expect(expired.out, expired.out).toContain("signerNotTrusted");
    // kur authenticated by a shared secret instead of the certificate: notAuthorized.
    const macKur = await cmp("server", ["-cmd", "kur", ...pbmArgs(), "-oldcert", "kur.pem", "-newkey", key("kur3"), "-certout", "kur3.pem"]);
    expect(macKur.code).not.toBe(0);
    expect(macKur.out, macKur.out).toContain("notAuthorized");
    expect(await certificateCount()).toBe(before + 1); // the expired one made for the kur above
  }, 120_000);

  test("HTTP: a body that is not a PKIMessage is a 400 with an error PKIMessage (badDataFormat); unknown label 404, other media type 415, GET 405", async () => {
    const junk = await post(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]));
    expect(junk.status).toBe(400);
    expect(failInfoOf(junk.der)).toEqual({ body: BODY.error, fail: [FAIL.badDataFormat] });
    expect((await post(new Uint8Array([0x30, 0x00]), "nope")).status).toBe(404);
    const text = await f.svc.call("/.well-known/cmp/p/server", { method: "POST", body: "x", headers: { "content-type": "text/plain" } });
    expect(text.status).toBe(415);
    expect((await f.svc.call("/.well-known/cmp/p/server")).status).toBe(405);
    // A certConf under a transaction id another client began is refused (the transaction is not the sender's).
    const other = buildIr(manualKid, manualSecret, "other.example.com");
    const irTid = parseMessage(new Uint8Array(readFileSync(join(f.dir, "ir.req.der")))).transactionID!;
    const second = (await (await f.api("/cmp/credentials", await f.token("t1", "pki:admin"), { body: { profile: "server" } })).json()) as { kid: string; secret: string };
    const conf = await post(pbmMessage(second.kid, second.secret, BODY.certConf, new Uint8Array([0x30, 0x00]), irTid));
    expect(failInfoOf(conf.der).fail).toContain(FAIL.badRequest);
    // A secret of another profile does not authenticate at this label.
    expect(failInfoOf((await post(other.der)).der).fail).toContain(FAIL.notAuthorized);
  }, 60_000);

  test("a request queued for approval: openssl polls, the approver approves, the certificate arrives", async () => {
    const p = cmp("manual", ["-cmd", "ir", ...pbmArgs(manualKid, manualSecret), "-newkey", key("poll"), "-subject", "/CN=poll.example.com", "-sans", "poll.example.com", "-certout", "poll.pem"]);
    const approver = await f.token("t1", "pki:approve");
    let id: string | undefined;
    for (let i = 0; i < 120 && !id; i++) {
      const pending = (await (await f.api("/requests?status=pending", approver)).json()) as { items: Array<{ id: string; subject: string }> };
      id = pending.items.find((r) => r.subject === "CN=poll.example.com")?.id;
      if (!id) await Bun.sleep(250);
    }
    expect(id).toBeDefined();
    expect((await f.api(`/requests/${id}/approve`, approver, { method: "POST" })).status).toBe(201);
    const out = await p;
    expect(out.code, out.out).toBe(0);
    expect(out.out).toMatch(/poll/i);
    await verify("poll.pem");
  }, 180_000);

  test("the certificates say they came through CMP (the dashboard's origin)", async () => {
    await expectOrigin(f, "t1", "cmp");
  });
});
