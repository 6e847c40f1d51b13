/**
 * Two pki-ca instances, each in its own process, on one database file, as several instances
 * share one database: a revocation made through one reaches the other's cached OCSP answers
 * within `revocation_check_ms`; revocations through both at once leave CRLs that list every
 * one of them, with full and delta CRLs numbered from one sequence.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CRLNumber, id_ce_cRLNumber } from "@peculiar/asn1-x509";
import * as x509 from "../../src/pki/x509.ts";
import { apiOver, haveOpenssl, makeCsr, openssl, spawnPeer, startCa, write, type CaFixture } from "./helpers.ts";
import { pkiCaOf } from "../../apps/pki-ca/service.ts";

const CHECK_MS = 50;
const APP = { revocation_check_ms: CHECK_MS };
let a: CaFixture;
let peer: Awaited<ReturnType<typeof spawnPeer>> | undefined;
/** The second instance: the first's API shape, over HTTPS to the other process. */
let b: Pick<CaFixture, "api" | "svc">;
beforeAll(async () => {
  a = await startCa(APP);
  await pkiCaOf(a.svc.ctx);
  peer = await spawnPeer(a, APP);
  const url = peer.url;
  const call = (path: string, init: RequestInit = {}) => fetch(url + path, { ...init, tls: { ca: a.svc.ca } } as RequestInit);
  b = { svc: { call } as CaFixture["svc"], api: apiOver(call) };
}, 30_000);
afterAll(async () => {
  await peer?.stop();
  await a?.stop();
});

const crlNumberOf = (der: Uint8Array) => {
  const ext = new x509.X509Crl(new Uint8Array(der)).getExtension(id_ce_cRLNumber);
  return Number(AsnConvert.parse(ext!.value, CRLNumber).value);
};

test.skipIf(!haveOpenssl())("a revocation through one instance reaches the other's cached OCSP answers [needs Debian openssl]", async () => {
  const tok = await a.token("acme", "pki:request pki:revoke");
  const { csr } = makeCsr(a.dir, "peer", { subj: "/CN=peer.example.com", san: "DNS:peer.example.com" });
  const issued = await a.api("/certificates", tok, { body: { csr, profile: "server" } });
  expect(issued.status).toBe(201);
  const cert = ((await issued.json()) as any).certificate;
  const leaf = write(a.dir, "peer.pem", cert.certificate_pem);
  const issuing = write(a.dir, "peer-issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
  write(a.dir, "peer-root.pem", await (await b.svc.call("/pki/ca/root.pem")).text());
  const req = join(a.dir, "peer.req");
  expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", req]).code).toBe(0);

  const status = async (via: Pick<CaFixture, "svc">) => {
    const r = await via.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(req) });
    expect(r.status).toBe(200);
    const resp = write(a.dir, `peer-${crypto.randomUUID()}.resp`, new Uint8Array(await r.arrayBuffer()));
    const out = openssl(["ocsp", "-issuer", issuing, "-reqin", req, "-respin", resp, "-CAfile", join(a.dir, "peer-root.pem"), "-resp_text"]).out;
    expect(out).toContain("Response verify OK");
    return /Cert Status: (\w+)/.exec(out)?.[1];
  };
  // Both answer "good"; the second question to each is answered from its cache.
  for (let i = 0; i < 2; i++) {
    expect(await status(a)).toBe("good");
    expect(await status(b)).toBe("good");
  }

  const rv = await b.api(`/certificates/${cert.serial}/revoke`, tok, { body: { reason: "keyCompromise" } });
  expect(rv.status).toBe(200);
  const revokedAt = performance.now();
  // The revoking instance answers "revoked" at once; the other within its check interval.
  expect(await status(b)).toBe("revoked");
  let other = await status(a);
  while (other !== "revoked" && performance.now() - revokedAt < 5_000) {
    await Bun.sleep(CHECK_MS / 2);
    other = await status(a);
  }
  expect(other).toBe("revoked");
  expect(performance.now() - revokedAt).toBeLessThan(2_000);
});

test.skipIf(!haveOpenssl())("revocations through both instances at once: the CRLs list every one, numbered from one sequence [needs Debian openssl]", async () => {
  const tok = await a.token("acme", "pki:request pki:revoke");
  const serials: string[] = [];
  let issuing = "";
  for (let i = 0; i < 8; i++) {
    const { csr } = makeCsr(a.dir, `many${i}`, { subj: `/CN=m${i}.example.com`, san: `DNS:m${i}.example.com` });
    const r = await (i % 2 ? b : a).api("/certificates", tok, { body: { csr, profile: "server" } });
    expect(r.status).toBe(201);
    const cert = ((await r.json()) as any).certificate;
    serials.push(cert.serial);
    issuing = cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0];
  }
  const revoked = await Promise.all(serials.map((s, i) => (i % 2 ? a : b).api(`/certificates/${s}/revoke`, tok, { body: { reason: "superseded" } })));
  expect(revoked.map((r) => r.status)).toEqual(serials.map(() => 200));

  const ca = await pkiCaOf(a.svc.ctx);
  const id = ca.hierarchy.issuing.get("P-256")!.id;
  const issuingFile = write(a.dir, "many-issuing.pem", issuing);
  for (const via of [a, b]) {
    const der = new Uint8Array(await (await via.svc.call(`/pki/crl/${id}.crl`)).arrayBuffer());
    const out = openssl(["crl", "-inform", "DER", "-in", write(a.dir, `many-${crypto.randomUUID()}.crl`, der), "-CAfile", issuingFile, "-verify", "-noout", "-text"]).out;
    expect(out).toContain("verify OK");
    for (const s of serials) expect(out.toUpperCase()).toContain(`SERIAL NUMBER: ${s.toUpperCase()}`);
  }
  const full = (await ca.store.crl(id))!;
  const delta = (await ca.store.crl(`${id}#delta`))!;
  expect(crlNumberOf(full.der)).toBe(full.number);
  expect(crlNumberOf(delta.der)).toBe(delta.number);
  // Eight revocations, each followed by a full and a delta CRL: 16 numbers at least, none twice.
  expect(Math.max(full.number, delta.number)).toBeGreaterThanOrEqual(16);
  expect(full.number).not.toBe(delta.number);
});
