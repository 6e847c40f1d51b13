/**
 * Delegated OCSP responder and TSA certificates are renewed before they expire (when less
 * than signer_renewal_fraction of their validity remains, checked on the OCSP refresh
 * schedule; here with a one-hour validity and a clock moved ahead): new keys and
 * certificates sign from then on, answers and tokens signed before still verify with
 * openssl, a second check renews nothing, and a restart loads the renewed ones.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";
import { PkiStore } from "../../apps/pki-ca/store.ts";
import { renewalDue } from "../../apps/pki-ca/hierarchy.ts";

const CONFIG = { responder_validity_hours: 1, tsa_validity_hours: 1, signer_renewal_fraction: 0.25 };
let f: CaFixture;
beforeAll(async () => {
  f = await startCa(CONFIG);
});
afterAll(async () => {
  await f?.stop();
});

test.skipIf(!haveOpenssl())("responder and TSA certificates renew near expiry; earlier responses and tokens keep verifying [needs Debian openssl]", async () => {
  const ca = await pkiCaOf(f.svc.ctx);
  const p256 = ca.hierarchy.issuing.get("P-256")!;
  const oldResponder = p256.responder.cert;
  const oldTsa = ca.hierarchy.tsa.cert;
  expect(oldResponder.notAfter.getTime() - oldResponder.notBefore.getTime()).toBeLessThanOrEqual(3_600_000 + 60_000);
  expect(await ca.renewSigners()).toEqual([]); // fresh: nothing due

  const tok = await f.token("acme", "pki:request");
  const { csr } = makeCsr(f.dir, "rn", { subj: "/CN=rn.example.com", san: "DNS:rn.example.com" });
  const cert = ((await (await f.api("/certificates", tok, { body: { csr, profile: "server" } })).json()) as any).certificate;
  const leaf = write(f.dir, "rn.pem", cert.certificate_pem);
  const [issuingPem, rootPem] = cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/);
  const issuing = write(f.dir, "rn-issuing.pem", issuingPem);
  const root = write(f.dir, "rn-root.pem", rootPem);
  const reqFile = join(f.dir, "rn.req");
  expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-reqout", reqFile]).code).toBe(0);
  const ocsp = async (name: string) => {
    const r = await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(reqFile) });
    return write(f.dir, name, new Uint8Array(await r.arrayBuffer()));
  };
  const verifyOcsp = (resp: string) => openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", resp, "-CAfile", root, "-resp_text"]);
  const data = write(f.dir, "rn.txt", "renewal\n");
  const query = join(f.dir, "rn.tsq");
  expect(openssl(["ts", "-query", "-data", data, "-sha256", "-cert", "-out", query]).code).toBe(0);
  const stamp = async (name: string) => {
    const r = await f.svc.call("/pki/tsa", { method: "POST", headers: { "content-type": "application/timestamp-query" }, body: readFileSync(query) });
    return write(f.dir, name, new Uint8Array(await r.arrayBuffer()));
  };
  const verifyToken = (reply: string) => openssl(["ts", "-verify", "-queryfile", query, "-in", reply, "-CAfile", root, "-untrusted", issuing]);

  const before = await ocsp("before.ocsp");
  const tokenBefore = await stamp("before.tsr");
  expect(verifyOcsp(before).out).toContain("Response verify OK");
  expect(verifyToken(tokenBefore).out).toContain("Verification: OK");

  // 50 minutes on: less than a quarter of the hour remains.
  const later = Date.now() + 50 * 60_000;
  expect(renewalDue(oldResponder, later, 0.25)).toBe(true);
  expect((await ca.renewSigners(later)).sort()).toEqual(["ocsp-p-256", "ocsp-p-384", "tsa"]);
  expect(await ca.renewSigners()).toEqual([]); // the new ones are fresh

  const newResponder = p256.responder.cert;
  expect(newResponder.serialNumber).not.toBe(oldResponder.serialNumber);
  expect(newResponder.subject).toBe(oldResponder.subject);
  expect(new Uint8Array(newResponder.publicKey.rawData)).not.toEqual(new Uint8Array(oldResponder.publicKey.rawData));
  expect(ca.hierarchy.tsa.cert.serialNumber).not.toBe(oldTsa.serialNumber);

  // New answers and tokens come from the renewed certificates and verify.
  const after = await ocsp("after.ocsp");
  const afterText = verifyOcsp(after);
  expect(afterText.out).toContain("Response verify OK");
  expect(afterText.out).toContain(newResponder.serialNumber.toLowerCase().match(/../g)!.join(":"));
  const tokenAfter = await stamp("after.tsr");
  expect(verifyToken(tokenAfter).out).toContain("Verification: OK");
  // The token carries the renewed TSA certificate (certReq).
  const embedded = (reply: string) => {
    const tok = join(f.dir, `${crypto.randomUUID()}.tok`);
    expect(openssl(["ts", "-reply", "-in", reply, "-token_out", "-out", tok]).code).toBe(0);
    return openssl(["pkcs7", "-inform", "DER", "-in", tok, "-print_certs"]).out.replace(/\s+/g, "");
  };
  const b64 = (c: { rawData: ArrayBuffer }) => Buffer.from(c.rawData).toString("base64");
  expect(embedded(tokenAfter)).toContain(b64(ca.hierarchy.tsa.cert));
  expect(embedded(tokenBefore)).toContain(b64(oldTsa));
  const tsaPem = await (await f.svc.call("/pki/ca/tsa.pem")).text();
  expect(tsaPem).toContain(ca.hierarchy.tsa.cert.toString("pem").split("\n")[1]!);

  // Those signed before renewal still verify.
  expect(verifyOcsp(before).out).toContain("Response verify OK");
  expect(verifyToken(tokenBefore).out).toContain("Verification: OK");

  // The old certificates are kept without their keys.
  const store = new PkiStore(f.svc.ctx.db as never);
  const archived = await store.getCa(`ocsp-p-256@${oldResponder.serialNumber.toLowerCase()}`);
  expect(archived?.key_sealed.length).toBe(0);
  expect(new Uint8Array(archived!.cert_der)).toEqual(new Uint8Array(oldResponder.rawData));
  expect((await store.getCa(`tsa@${oldTsa.serialNumber.toLowerCase()}`))?.key_sealed.length).toBe(0);

  // A restart loads the renewed certificates.
  const dir = f.dir;
  await f.stop({ keep: true });
  f = await startCa(CONFIG, dir);
  const again = await pkiCaOf(f.svc.ctx);
  expect(again.hierarchy.issuing.get("P-256")!.responder.cert.serialNumber).toBe(newResponder.serialNumber);
  expect(again.hierarchy.tsa.cert.serialNumber).toBe(ca.hierarchy.tsa.cert.serialNumber);
});
