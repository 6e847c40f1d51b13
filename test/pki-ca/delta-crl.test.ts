/**
 * Delta CRLs: with crl_full_on_revoke off, a revocation goes to the delta CRL (deltaCRLIndicator
 * naming its base) at once and into the full CRL (which points at the delta through
 * freshestCRL) at its next regeneration; openssl verifies both and, with deltas, rejects the leaf.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { BASE_URL, haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";

let f: CaFixture;
beforeAll(async () => {
  f = await startCa({ crl_full_on_revoke: false });
});
afterAll(async () => {
  await f?.stop();
});

const crlNumber = (text: string, label: string) => Number(text.match(new RegExp(`${label}:\\s*(?:critical\\s*)?\\n?\\s*(\\d+)`))?.[1]);

test.skipIf(!haveOpenssl())("a revocation reaches the delta CRL at once and the full CRL at its next regeneration [needs Debian openssl]", async () => {
  const tok = await f.token("acme", "pki:request pki:revoke");
  const { csr } = makeCsr(f.dir, "d", { subj: "/CN=d.example.com", san: "DNS:d.example.com" });
  const cert = ((await (await f.api("/certificates", tok, { body: { csr, profile: "server" } })).json()) as any).certificate;
  const leaf = write(f.dir, "d.pem", cert.certificate_pem);
  const issuing = cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0];
  const root = await (await f.svc.call("/pki/ca/root.pem")).text();
  const bundle = write(f.dir, "bundle.pem", root + issuing);
  const fetchCrl = async (name: string) => write(f.dir, `${name}-${crypto.randomUUID()}.crl`, new Uint8Array(await (await f.svc.call(`/pki/crl/${name}.crl`)).arrayBuffer()));

  expect((await f.api(`/certificates/${cert.serial}/revoke`, tok, { body: { reason: "keyCompromise" } })).status).toBe(200);

  const full = await fetchCrl(cert.issuing_ca);
  const delta = await fetchCrl(`${cert.issuing_ca}-delta`);
  const fullText = openssl(["crl", "-inform", "DER", "-in", full, "-noout", "-text"]).out;
  const deltaText = openssl(["crl", "-inform", "DER", "-in", delta, "-noout", "-text"]).out;
  expect(fullText).not.toContain(cert.serial.toUpperCase());
  expect(fullText).toContain("Freshest CRL");
  expect(fullText).toContain(`URI:${BASE_URL}/pki/crl/${cert.issuing_ca}-delta.crl`);
  expect(deltaText).toContain("Delta CRL Indicator");
  expect(deltaText).toContain(cert.serial.toUpperCase());
  expect(deltaText).toContain("Key Compromise");
  expect(crlNumber(deltaText, "Delta CRL Indicator")).toBe(crlNumber(fullText, "X509v3 CRL Number"));
  expect(crlNumber(deltaText, "X509v3 CRL Number")).toBeGreaterThan(crlNumber(fullText, "X509v3 CRL Number"));
  for (const c of [full, delta]) expect(openssl(["crl", "-inform", "DER", "-in", c, "-CAfile", bundle, "-verify", "-noout"]).out).toContain("verify OK");

  // openssl with deltas: the full CRL alone passes the leaf, full + delta rejects it.
  const pem = (der: string) => write(f.dir, `${crypto.randomUUID()}.pem`, openssl(["crl", "-inform", "DER", "-in", der, "-outform", "PEM"]).out);
  const [fullPem, deltaPem] = [pem(full), pem(delta)];
  const issuingFile = write(f.dir, "issuing-d.pem", issuing);
  const withoutDelta = openssl(["verify", "-crl_check", "-CAfile", write(f.dir, "root-d.pem", root), "-untrusted", issuingFile, "-CRLfile", fullPem, leaf]);
  expect(withoutDelta.code).toBe(0);
  const withDelta = openssl(["verify", "-crl_check", "-use_deltas", "-CAfile", write(f.dir, "root-d2.pem", root), "-untrusted", issuingFile, "-CRLfile", fullPem, "-CRLfile", deltaPem, leaf]);
  expect(withDelta.code).not.toBe(0);
  expect(withDelta.out).toContain("certificate revoked");

  // The next full CRL lists it.
  const ca = await pkiCaOf(f.svc.ctx);
  await ca.regenerateCrl(cert.issuing_ca);
  const full2 = openssl(["crl", "-inform", "DER", "-in", await fetchCrl(cert.issuing_ca), "-noout", "-text"]).out;
  expect(full2).toContain(cert.serial.toUpperCase());
});

test("an unknown CA's delta CRL is 404, and so are shard names of an unsharded CA", async () => {
  expect((await f.svc.call("/pki/crl/nope-delta.crl")).status).toBe(404);
  const ca = await pkiCaOf(f.svc.ctx);
  const id = ca.hierarchy.issuing.get("P-256")!.id;
  expect((await f.svc.call(`/pki/crl/${id}-s0.crl`)).status).toBe(404);
  expect((await f.svc.call(`/pki/crl/${id}-s0-delta.crl`)).status).toBe(404);
});
