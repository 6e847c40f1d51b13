/**
 * pki-ca's optional plain-HTTP revocation listener: CRLs, CA certificates and OCSP over http
 * (as relying parties and CA/Browser Forum rules expect), and nothing else on that port.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { freePort } from "../identity/support/authz.ts";

let f: CaFixture;
let http: string;

beforeAll(async () => {
  const port = await freePort();
  http = `http://127.0.0.1:${port}`;
  f = await startCa({ base_url: http, http_revocation: { bind: "127.0.0.1", port } });
});
afterAll(async () => {
  await f?.stop();
});

test.skipIf(!haveOpenssl())("certificates point at the http listener, which serves CRLs, CA certificates and OCSP [needs Debian openssl]", async () => {
  const tok = await f.token("acme", "pki:request pki:read");
  const { csr } = makeCsr(f.dir, "web", { subj: "/CN=www.example.com", san: "DNS:www.example.com" });
  const r = await f.api("/certificates", tok, { body: { csr, profile: "server" } });
  expect(r.status).toBe(201);
  const cert = ((await r.json()) as any).certificate;
  const leaf = write(f.dir, "web.pem", cert.certificate_pem);
  const issuing = write(f.dir, "issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
  const root = write(f.dir, "root.pem", await (await fetch(`${http}/pki/ca/root.pem`)).text());
  const text = openssl(["x509", "-in", leaf, "-noout", "-text"]).out;
  expect(text).toContain(`URI:${http}/pki/crl/${cert.issuing_ca}.crl`);
  expect(text).toContain(`OCSP - URI:${http}/pki/ocsp`);

  const crl = await fetch(`${http}/pki/crl/${cert.issuing_ca}.crl`);
  expect(crl.status).toBe(200);
  expect(crl.headers.get("content-type")).toBe("application/pkix-crl");
  const crlFile = write(f.dir, "ca.crl", new Uint8Array(await crl.arrayBuffer()));
  const bundle = write(f.dir, "bundle.pem", (await Bun.file(root).text()) + (await Bun.file(issuing).text()));
  expect(openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", bundle, "-verify", "-noout"]).out).toContain("verify OK");

  // openssl fetches OCSP over plain http itself (POST); spawned async, as this process serves it.
  const p = Bun.spawn(["openssl", "ocsp", "-issuer", issuing, "-cert", leaf, "-url", `${http}/pki/ocsp`, "-CAfile", root, "-timeout", "10"], { stdout: "pipe", stderr: "pipe" });
  const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
  expect(await p.exited).toBe(0);
  expect(out).toContain(": good");
  expect(out).toContain("Response verify OK");
});

test("nothing but revocation data on the plain-HTTP port", async () => {
  expect((await fetch(`${http}/pki/tsa`, { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: new Uint8Array(8) })).status).toBe(405);
  for (const path of ["/pki/tsa", "/docs", "/docs/openapi.json", "/service/api/v1/certificates", "/browser/api/v1/certificates", "/admin/v1/livez", "/"]) {
    expect((await fetch(`${http}${path}`)).status).toBe(404);
  }
  expect((await fetch(`${http}/pki/crl/x.crl`, { method: "DELETE" })).status).toBe(405);
  // SCEP only with app.http_revocation.scep (test/pki-ca/scep-certmonger.test.ts).
  expect((await fetch(`${http}/scep?operation=GetCACaps`)).status).toBe(404);
  expect((await fetch(`${http}/scep?operation=PKIOperation`, { method: "POST", body: new Uint8Array(4) })).status).toBe(405);
  // The HTTPS server still serves everything, time-stamping included.
  expect((await f.svc.call("/docs")).status).toBe(200);
});
