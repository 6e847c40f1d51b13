/** OCSP answers are pre-signed and re-signed before they go stale, and re-signed at once on revocation. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";

let f: CaFixture;
beforeAll(async () => {
  f = await startCa({ ocsp_validity_minutes: 60 });
});
afterAll(async () => {
  await f?.stop();
});

test.skipIf(!haveOpenssl())("the scheduled refresh re-signs answers nearing staleness; revocation re-signs all [needs Debian openssl]", async () => {
  const tok = await f.token("acme", "pki:request pki:revoke");
  const { csr } = makeCsr(f.dir, "o", { subj: "/CN=o.example.com", san: "DNS:o.example.com" });
  const cert = ((await (await f.api("/certificates", tok, { body: { csr, profile: "server" } })).json()) as any).certificate;
  const leaf = write(f.dir, "o.pem", cert.certificate_pem);
  const issuing = write(f.dir, "o-issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
  const reqFile = join(f.dir, "o.req");
  expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", reqFile]).code).toBe(0);
  const ask = async () => new Uint8Array(await (await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(reqFile) })).arrayBuffer());
  const status = (der: Uint8Array) => openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", write(f.dir, `r-${crypto.randomUUID()}.der`, der), "-noverify", "-resp_text"]).out;

  const first = await ask();
  expect(await ask()).toEqual(first); // served from the cache
  const ca = await pkiCaOf(f.svc.ctx);
  expect(await ca.refreshOcsp()).toBe(0); // fresh: nothing to do
  expect(await ca.refreshOcsp({ now: Date.now() + 20 * 60_000 })).toBe(1); // within a quarter of going stale
  const refreshed = await ask();
  expect(refreshed).not.toEqual(first); // a new signature, served without a request having to wait for it
  expect(status(refreshed)).toContain(": good");

  expect((await f.api(`/certificates/${cert.serial}/revoke`, tok, { body: { reason: "superseded" } })).status).toBe(200);
  const after = await ask();
  expect(status(after)).toContain(": revoked");
  expect(status(after)).toContain("Revocation Reason: superseded");
});
