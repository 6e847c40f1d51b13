/**
 * pki-ca end to end over real HTTPS with real clients: issuance through the RA,
 * `openssl verify` of every chain, CRLDP/AIA in `openssl x509 -text`, revocation
 * in a CRL `openssl crl -verify` accepts, and `openssl ocsp` good/revoked/unknown.
 * Run embedded by ca.test.ts and on PostgreSQL by ca-postgres.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { BASE_URL, haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { inProcess, type TestEngine } from "../support/engine.ts";

/** The rows of pki_cas in an embedded database file another process serves (read only). */
function caRowsFromFile(path: string): any[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.query("select * from pki_cas").all() as any[];
  } finally {
    db.close();
  }
}

/** Registers the pki-ca end-to-end tests on a service whose database is on `engine`. */
export function caSuite(engine: TestEngine): void {
  const ok = haveOpenssl();
  let f: CaFixture;
  let rootPem: string;
  let tokReq: string;
  let tokRead: string;

  beforeAll(async () => {
    f = await startCa({}, undefined, undefined, engine);
    tokReq = await f.token("acme", "pki:request pki:read pki:revoke");
    tokRead = await f.token("acme", "pki:read");
    const r = await f.svc.call("/pki/ca/root.pem");
    expect(r.status).toBe(200);
    rootPem = await r.text();
    write(f.dir, "root.pem", rootPem);
  });
  afterAll(async () => {
    await f?.stop();
  });

  async function submit(csr: string, profile = "server", extra: Record<string, unknown> = {}, token = tokReq) {
    const r = await f.api("/certificates", token, { body: { csr, profile, ...extra } });
    return { status: r.status, body: (await r.json()) as any };
  }

  function ocspCheck(serialOrCert: { cert?: string; serial?: string }, issuing: string) {
    const reqFile = join(f.dir, `ocsp-${crypto.randomUUID()}.der`);
    const args = ["ocsp", "-issuer", issuing, ...(serialOrCert.cert ? ["-cert", serialOrCert.cert] : ["-serial", `0x${serialOrCert.serial}`]), "-reqout", reqFile];
    const made = openssl(args);
    expect(made.code).toBe(0);
    return reqFile;
  }

  async function ocspRoundTrip(reqFile: string, issuing: string, via: "POST" | "GET" = "POST") {
    const der = readFileSync(reqFile);
    const r =
      via === "POST"
        ? await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: der })
        : await f.svc.call(`/pki/ocsp/${encodeURIComponent(der.toString("base64"))}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/ocsp-response");
    const respFile = write(f.dir, `resp-${crypto.randomUUID()}.der`, new Uint8Array(await r.arrayBuffer()));
    return openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", respFile, "-CAfile", join(f.dir, "root.pem"), "-resp_text"]);
  }

  describe.skipIf(!ok)("pki-ca with openssl [needs Debian openssl]", () => {
    test("issues P-256, P-384, RSA and Ed25519 subject keys; openssl verify accepts every chain; x509 -text shows CRLDP and AIA", async () => {
      const cases = [
        { key: "ec256" as const, profile: "server" },
        { key: "ec384" as const, profile: "server" },
        { key: "rsa2048" as const, profile: "server" },
        { key: "ed25519" as const, profile: "server" },
        { key: "ec256" as const, profile: "server-p384" },
      ];
      for (const [i, c] of cases.entries()) {
        const { csr } = makeCsr(f.dir, `leaf${i}`, { subj: `/CN=www${i}.example.com`, san: `DNS:www${i}.example.com,DNS:api${i}.example.com`, key: c.key });
        const { status, body } = await submit(csr, c.profile);
        expect(status).toBe(201);
        expect(body.status).toBe("issued");
        const cert = body.certificate;
        const leaf = write(f.dir, `leaf${i}.pem`, cert.certificate_pem);
        const issuing = write(f.dir, `issuing${i}.pem`, cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
        const v = openssl(["verify", "-CAfile", join(f.dir, "root.pem"), "-untrusted", issuing, "-purpose", "sslserver", leaf]);
        expect(v.out).toContain(": OK");
        expect(v.code).toBe(0);
        const text = openssl(["x509", "-in", leaf, "-noout", "-text"]).out;
        expect(text).toContain(`URI:${BASE_URL}/pki/crl/${cert.issuing_ca}.crl`);
        expect(text).toContain(`OCSP - URI:${BASE_URL}/pki/ocsp`);
        expect(text).toContain(`CA Issuers - URI:${BASE_URL}/pki/ca/${cert.issuing_ca}.crt`);
        expect(text).toContain("DNS:www" + i + ".example.com");
        expect(text).toContain("CA:FALSE");
        // Key usage follows the key: encipherment only for RSA.
        expect(text.includes("Key Encipherment")).toBe(c.key === "rsa2048");
      }
    });

    test("IP and email SANs inside the profile's ranges and domains are issued as written", async () => {
      const { csr } = makeCsr(f.dir, "ipsan", { subj: "/CN=svc.example.com", san: "DNS:svc.example.com,IP:10.1.2.3,IP:fd00::1,email:ops@example.com" });
      const { status, body } = await submit(csr);
      expect(status).toBe(201);
      expect(body.certificate.sans).toEqual(["dns:svc.example.com", "ip:10.1.2.3", "ip:fd00::1", "email:ops@example.com"]);
      const leaf = write(f.dir, "ipsan.pem", body.certificate.certificate_pem);
      const text = openssl(["x509", "-in", leaf, "-noout", "-ext", "subjectAltName"]).out;
      expect(text).toContain("DNS:svc.example.com");
      expect(text).toContain("IP Address:10.1.2.3");
      expect(text).toContain("IP Address:FD00:0:0:0:0:0:0:1");
      expect(text).toContain("email:ops@example.com");
      const issuing = write(f.dir, "ipsan-issuing.pem", body.certificate.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      expect(openssl(["verify", "-CAfile", join(f.dir, "root.pem"), "-untrusted", issuing, leaf]).code).toBe(0);
    });

    test("CA downloads: root and chain PEM, DER issuing certificate, list of issuing CAs", async () => {
      const list = (await (await f.api("/issuing-cas", tokRead)).json()) as any;
      expect(list.items.map((i: any) => i.key_type).sort()).toEqual(["P-256", "P-384"]);
      for (const ca of list.items) {
        const crt = await f.svc.call(`/pki/ca/${ca.id}.crt`);
        expect(crt.headers.get("content-type")).toBe("application/pkix-cert");
        const file = write(f.dir, `${ca.id}.crt`, new Uint8Array(await crt.arrayBuffer()));
        const v = openssl(["verify", "-CAfile", join(f.dir, "root.pem"), file]);
        expect(v.code).toBe(0);
        const text = openssl(["x509", "-inform", "DER", "-in", file, "-noout", "-text"]).out;
        expect(text).toContain("CA:TRUE, pathlen:0");
        const pem = await (await f.svc.call(`/pki/ca/${ca.id}.pem`)).text();
        expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
        const p7 = await f.svc.call(`/pki/ca/${ca.id}.p7c`);
        expect(p7.headers.get("content-type")).toBe("application/pkcs7-mime");
        const p7file = write(f.dir, `${ca.id}.p7c`, new Uint8Array(await p7.arrayBuffer()));
        const printed = openssl(["pkcs7", "-inform", "DER", "-in", p7file, "-print_certs", "-noout"]).out;
        expect(printed).toContain(`subject=CN = cryptoutil pki-ca Issuing CA ${ca.key_type}`);
        expect(printed).toContain("subject=CN = cryptoutil pki-ca Root CA");
      }
      expect((await f.svc.call("/pki/ca/nope.pem")).status).toBe(404);
    });

    test("revocation: CRL verifies and lists the serial with its reason; OCSP says good, then revoked with reason, and unknown for a serial never issued", async () => {
      const { csr } = makeCsr(f.dir, "rev", { subj: "/CN=rev.example.com", san: "DNS:rev.example.com" });
      const { body } = await submit(csr);
      const cert = body.certificate;
      const leaf = write(f.dir, "rev.pem", cert.certificate_pem);
      const issuing = write(f.dir, "rev-issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);

      const req = ocspCheck({ cert: leaf }, issuing);
      const good = await ocspRoundTrip(req, issuing);
      expect(good.out).toContain("Response verify OK");
      expect(good.out).toContain("Cert Status: good");
      expect(good.out).toContain("OCSP Nonce");
      const viaGet = await ocspRoundTrip(req, issuing, "GET");
      expect(viaGet.out).toContain("Response verify OK");
      expect(viaGet.out).toContain("Cert Status: good");

      // A nonce-less request is answered from the cache on repeat; revocation must refresh it.
      const cachedReq = join(f.dir, "nononce.der");
      expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", cachedReq]).code).toBe(0);
      for (let i = 0; i < 2; i++) expect((await ocspRoundTrip(cachedReq, issuing, "GET")).out).toContain("Cert Status: good");

      const crlBefore = await f.svc.call(`/pki/crl/${cert.issuing_ca}.crl`);
      expect(crlBefore.headers.get("content-type")).toBe("application/pkix-crl");
      const numberBefore = openssl(["crl", "-inform", "DER", "-in", write(f.dir, "crl0.der", new Uint8Array(await crlBefore.arrayBuffer())), "-noout", "-crlnumber"]).out;

      const rv = await f.api(`/certificates/${cert.serial}/revoke`, tokReq, { body: { reason: "keyCompromise" } });
      expect(rv.status).toBe(200);
      expect(((await rv.json()) as any).status).toBe("revoked");
      expect((await f.api(`/certificates/${cert.serial}/revoke`, tokReq, { body: { reason: "superseded" } })).status).toBe(409);

      const crlRes = await f.svc.call(`/pki/crl/${cert.issuing_ca}.crl`);
      const crlFile = write(f.dir, "crl.der", new Uint8Array(await crlRes.arrayBuffer()));
      const crl = openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", issuing, "-verify", "-noout", "-text"]);
      expect(crl.out).toContain("verify OK");
      expect(crl.out.toUpperCase()).toContain(`SERIAL NUMBER: ${cert.serial.toUpperCase()}`);
      expect(crl.out).toContain("Key Compromise");
      expect(crl.out).toContain("X509v3 CRL Number");
      expect(openssl(["crl", "-inform", "DER", "-in", crlFile, "-noout", "-crlnumber"]).out).not.toBe(numberBefore);
      // The CRL also checks the leaf as revoked in a full chain verification.
      const crlPem = write(f.dir, "crl.pem", openssl(["crl", "-inform", "DER", "-in", crlFile]).out);
      const v = openssl(["verify", "-crl_check", "-CRLfile", crlPem, "-CAfile", join(f.dir, "root.pem"), "-untrusted", issuing, leaf]);
      expect(v.code).not.toBe(0);
      expect(v.out).toContain("certificate revoked");

      const revoked = await ocspRoundTrip(ocspCheck({ cert: leaf }, issuing), issuing);
      expect(revoked.out).toContain("Response verify OK");
      expect(revoked.out).toContain("Cert Status: revoked");
      expect(revoked.out).toContain("Reason: keyCompromise");

      const afterCache = await ocspRoundTrip(cachedReq, issuing, "GET");
      expect(afterCache.out).toContain("Cert Status: revoked");
      expect(afterCache.out).not.toContain("OCSP Nonce");

      const unknown = await ocspRoundTrip(ocspCheck({ serial: "7e" + "ab".repeat(15) }, issuing), issuing);
      expect(unknown.out).toContain("Response verify OK");
      expect(unknown.out).toContain("Cert Status: unknown");

      // Search finds it by status and SAN within the tenant, and not from another tenant.
      const found = (await (await f.api(`/certificates?status=revoked&san=rev.example.com`, tokRead)).json()) as any;
      expect(found.items.map((c: any) => c.serial)).toContain(cert.serial);
      expect(found.items[0].revocation_reason).toBe("keyCompromise");
      const other = await f.token("other-tenant", "pki:read pki:revoke");
      expect((await f.api(`/certificates/${cert.serial}`, other)).status).toBe(404);
      expect(((await (await f.api(`/certificates?san=rev.example.com`, other)).json()) as any).items).toEqual([]);
    });

    test("openssl ocsp talks to the responder itself over HTTPS", async () => {
      const { csr } = makeCsr(f.dir, "live", { subj: "/CN=live.example.com", san: "DNS:live.example.com" });
      const { body } = await submit(csr);
      const leaf = write(f.dir, "live.pem", body.certificate.certificate_pem);
      const issuing = write(f.dir, "live-issuing.pem", body.certificate.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      const trust = write(f.dir, "trust.pem", readFileSync(join(f.dir, "root.pem"), "utf8") + f.svc.ca);
      // Spawned asynchronously: the responder runs in this process, so a blocking spawn would deadlock.
      const p = Bun.spawn(["openssl", "ocsp", "-issuer", issuing, "-cert", leaf, "-url", `${f.svc.publicUrl}/pki/ocsp`, "-CAfile", trust, "-timeout", "10"], { stdout: "pipe", stderr: "pipe" });
      const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
      await p.exited;
      expect(out).toContain("Response verify OK");
      expect(out).toContain(": good");
    });

    test("policy: denied domain, too-long validity, weak key, bad CSR signature are refused with reasons", async () => {
      const denied = await submit(makeCsr(f.dir, "deny", { subj: "/CN=x.bad.example.com", san: "DNS:x.bad.example.com" }).csr);
      expect(denied.status).toBe(422);
      expect(denied.body.error.code).toBe("policy_rejected");
      expect(denied.body.error.details.reasons.map((r: any) => r.code)).toContain("dns_denied");

      const outside = await submit(makeCsr(f.dir, "outside", { subj: "/CN=www.example.org", san: "DNS:www.example.org,IP:192.168.1.1,email:a@evil.test" }).csr);
      expect(outside.status).toBe(422);
      expect(outside.body.error.details.reasons.map((r: any) => r.code).sort()).toEqual(["dns_not_allowed", "email_not_allowed", "ip_not_allowed"]);

      const long = await submit(makeCsr(f.dir, "long", { subj: "/CN=long.example.com", san: "DNS:long.example.com" }).csr, "server", { validity_days: 400 });
      expect(long.status).toBe(422);
      expect(long.body.error.details.reasons.map((r: any) => r.code)).toEqual(["validity_too_long"]);

      const weak = await submit(makeCsr(f.dir, "weak", { subj: "/CN=weak.example.com", san: "DNS:weak.example.com", key: "rsa1024" }).csr);
      expect(weak.status).toBe(422);
      expect(weak.body.error.details.reasons.map((r: any) => r.code)).toEqual(["weak_key"]);

      // Flip one bit in the signature (the last bytes of the DER) so proof of possession fails.
      const good = makeCsr(f.dir, "badsig", { subj: "/CN=sig.example.com", san: "DNS:sig.example.com" }).csr;
      const der = Buffer.from(good.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
      der[der.length - 3]! ^= 0x01;
      const badSig = await submit(der.toString("base64"));
      expect(badSig.status).toBe(400);
      expect(badSig.body.error.code).toBe("csr_signature_invalid");
      expect(badSig.body.error.details.reasons[0].code).toBe("csr_signature_invalid");

      const unknownProfile = await submit(good, "nope");
      expect(unknownProfile.status).toBe(404);
      const noScope = await submit(good, "server", {}, tokRead);
      expect(noScope.status).toBe(403);
    });

    test("RA: a queued CSR issues only after approval; rejection is final; approvers need pki:approve", async () => {
      const approver = await f.token("acme", "pki:approve");
      const { csr } = makeCsr(f.dir, "q1", { subj: "/CN=q1.example.com", san: "DNS:q1.example.com" });
      const queued = await submit(csr, "manual");
      expect(queued.status).toBe(202);
      expect(queued.body.status).toBe("pending");
      const id = queued.body.request.id;
      expect(((await (await f.api(`/certificates?san=q1.example.com`, tokRead)).json()) as any).items).toEqual([]);
      expect((await f.api("/requests", tokReq)).status).toBe(403);
      const pending = (await (await f.api("/requests", approver)).json()) as any;
      expect(pending.items.map((r: any) => r.id)).toContain(id);
      const otherApprover = await f.token("other-tenant", "pki:approve");
      expect((await f.api(`/requests/${id}/approve`, otherApprover, { method: "POST" })).status).toBe(404);

      const approved = await f.api(`/requests/${id}/approve`, approver, { method: "POST" });
      expect(approved.status).toBe(201);
      const cert = (await approved.json()) as any;
      const leaf = write(f.dir, "q1.pem", cert.certificate_pem);
      const issuing = write(f.dir, "q1-issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      expect(openssl(["verify", "-CAfile", join(f.dir, "root.pem"), "-untrusted", issuing, "-purpose", "sslclient", leaf]).code).toBe(0);
      expect((await f.api(`/requests/${id}/approve`, approver, { method: "POST" })).status).toBe(409);
      expect(((await (await f.api(`/requests/${id}`, approver)).json()) as any).serial).toBe(cert.serial);

      const q2 = await submit(makeCsr(f.dir, "q2", { subj: "/CN=q2.example.com", san: "DNS:q2.example.com" }).csr, "manual");
      const rj = await f.api(`/requests/${q2.body.request.id}/reject`, approver, { body: { reason: "not ours" } });
      expect(rj.status).toBe(200);
      expect(((await rj.json()) as any).status).toBe("rejected");
      expect((await f.api(`/requests/${q2.body.request.id}/approve`, approver, { method: "POST" })).status).toBe(409);
      expect(((await (await f.api(`/certificates?san=q2.example.com`, tokRead)).json()) as any).items).toEqual([]);
    });

    test("CA private keys are stored only sealed", async () => {
      // A service on Deno keeps its database in its own process: its file is read from here.
      const rows = inProcess(engine) ? ((await f.svc.ctx.db.selectFrom("pki_cas").selectAll().execute()) as any[]) : caRowsFromFile(join(f.svc.dataDir, "pki-ca.db"));
      expect(rows.map((r) => r.id).sort()).toEqual(["issuing-p-256", "issuing-p-384", "ocsp-p-256", "ocsp-p-384", "root", "tsa"]);
      for (const r of rows) {
        // Every PKCS#8 EC key carries the id-ecPublicKey OID; sealed bytes must not.
        expect(Buffer.from(new Uint8Array(r.key_sealed)).includes(Buffer.from([0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]))).toBe(false);
      }
    });
  });

  test("the service keeps its state on the engine under test", async () => {
    const health = (await (await f.svc.admin("/admin/v1/healthz")).json()) as { database: { mode: string } };
    expect(health.database.mode).toBe(engine.kind === "postgres" ? "postgres" : "file");
  });

  describe("pki-ca OpenAPI document", () => {
    test("documents the API under both prefixes and the public revocation routes", async () => {
      const r = await f.svc.call("/docs/openapi.json");
      expect(r.status).toBe(200);
      const doc = (await r.json()) as { paths: Record<string, unknown> };
      for (const p of ["/service/api/v1/certificates", "/browser/api/v1/certificates", "/service/api/v1/requests/{id}/approve", "/pki/ocsp", "/pki/tsa", "/pki/crl/{file}", "/service/api/v1/cmp/credentials", "/service/api/v1/cmp/credentials/{kid}"]) {
        expect(Object.keys(doc.paths)).toContain(p);
      }
    });
  });
}
