/**
 * The four issuing-CA key types (P-256, P-384, RSA-3072, Ed25519) each issue a
 * chain `openssl verify` accepts and answer OCSP with a signature openssl verifies;
 * the hierarchy is the same after a restart on the same data directory.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";

const ok = haveOpenssl();
const TYPES = ["P-256", "P-384", "RSA-3072", "Ed25519"] as const;
const profile = (t: string) => ({
  issuing_ca: t,
  key_types: ["P-256"],
  max_validity_days: 30,
  default_validity_days: 10,
  key_usage: ["digitalSignature"],
  extended_key_usage: ["serverAuth"],
  dns: { allow: ["*.example.com"] },
});
const app = { issuing_cas: [...TYPES], profiles: Object.fromEntries(TYPES.map((t) => [t.toLowerCase(), profile(t)])) };
let f: CaFixture | undefined;
afterAll(async () => {
  await f?.stop();
});

describe.skipIf(!ok)("issuing CA key types [needs Debian openssl]", () => {
  test("every key type issues, verifies, revokes and answers OCSP; restart keeps the hierarchy", async () => {
    f = await startCa(app);
    const rootPem = await (await f.svc.call("/pki/ca/root.pem")).text();
    const root = write(f.dir, "root.pem", rootPem);
    const tok = await f.token("t1", "pki:request pki:read pki:revoke");
    const serials: Record<string, string> = {};
    for (const t of TYPES) {
      const { csr } = makeCsr(f.dir, t, { subj: `/CN=${t.toLowerCase()}.example.com` });
      const r = await f.api("/certificates", tok, { body: { csr, profile: t.toLowerCase() } });
      expect(r.status).toBe(201);
      const cert = ((await r.json()) as any).certificate;
      serials[t] = cert.serial;
      // The CN, a DNS name, was copied into the SAN.
      expect(cert.sans).toEqual([`dns:${t.toLowerCase()}.example.com`]);
      const leaf = write(f.dir, `${t}.pem`, cert.certificate_pem);
      const issuing = write(f.dir, `${t}-issuing.pem`, cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      expect(openssl(["verify", "-CAfile", root, "-untrusted", issuing, leaf]).code).toBe(0);
      expect((await f.api(`/certificates/${cert.serial}/revoke`, tok, { body: { reason: "superseded" } })).status).toBe(200);
      const crlFile = write(f.dir, `${t}.crl`, new Uint8Array(await (await f.svc.call(`/pki/crl/${cert.issuing_ca}.crl`)).arrayBuffer()));
      const crl = openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", issuing, "-verify", "-noout", "-text"]);
      expect(crl.out).toContain("verify OK");
      expect(crl.out).toContain("Superseded");
      const reqFile = join(f.dir, `${t}.ocspreq`);
      expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-reqout", reqFile]).code).toBe(0);
      const resp = await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(reqFile) });
      const respFile = write(f.dir, `${t}.ocspresp`, new Uint8Array(await resp.arrayBuffer()));
      const out = openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", respFile, "-CAfile", root, "-resp_text"]).out;
      expect(out).toContain("Response verify OK");
      expect(out).toContain("Cert Status: revoked");
    }
    const dir = f.dir;
    await f.stop({ keep: true });
    f = await startCa(app, dir);
    expect(await (await f.svc.call("/pki/ca/root.pem")).text()).toBe(rootPem);
    const tok2 = await f.token("t1", "pki:read");
    for (const t of TYPES) expect(((await (await f.api(`/certificates/${serials[t]}`, tok2)).json()) as any).status).toBe("revoked");
  }, 30_000);
});
