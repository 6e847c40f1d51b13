/**
 * pki-ca's OCSP responder, CRLs and CA certificates served by the edge module in workerd, with
 * pki-ca (on Bun) as the origin behind its read-only plain-HTTP revocation listener. `openssl
 * ocsp` asks the edge directly and verifies what it answers: good, then revoked once the origin
 * revoked the certificate and the refresh interval passed; `openssl crl -verify` accepts the
 * CRL the edge serves. Malformed requests get OCSP's own error form, never a 5xx.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { haveOpenssl, makeCsr, openssl, startCa, write, type CaFixture } from "../pki-ca/helpers.ts";
import { freePort } from "../support/server-process.ts";
import { fuzz, mutateDer, rng } from "../support/fuzz.ts";
import { startEdge, type RunningEdge } from "../../edge/workerd.ts";

const REFRESH_S = 2;
const ok = haveOpenssl();

/** `openssl ocsp` against a URL, run without blocking this process (the origin lives in it). */
async function ocspAt(url: string, dir: string, issuing: string, leaf: string): Promise<string> {
  const p = Bun.spawn(["openssl", "ocsp", "-issuer", issuing, "-cert", leaf, "-url", url, "-CAfile", join(dir, "root.pem"), "-no_nonce", "-timeout", "20"], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return out + err;
}

describe.skipIf(!ok)("pki-ca at the edge (workerd) [needs Debian openssl]", () => {
  let f: CaFixture;
  let edge: RunningEdge;
  let leaf: string;
  let issuing: string;
  let serial: string;
  let issuingCa: string;
  let token: string;

  beforeAll(async () => {
    const originPort = await freePort();
    f = await startCa({ http_revocation: { port: originPort, bind: "127.0.0.1" } });
    token = await f.token("acme", "pki:request pki:read pki:revoke");
    write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
    const { csr } = makeCsr(f.dir, "edge-leaf", { subj: "/CN=edge.example.com", san: "DNS:edge.example.com" });
    const r = await f.api("/certificates", token, { body: { csr, profile: "server" } });
    expect(r.status).toBe(201);
    const cert = ((await r.json()) as any).certificate;
    serial = cert.serial;
    issuingCa = cert.issuing_ca;
    leaf = write(f.dir, "edge-leaf.pem", cert.certificate_pem);
    issuing = write(f.dir, "edge-issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
    edge = await startEdge({ module: "pki-ca", port: await freePort(), origin: { address: `127.0.0.1:${originPort}` }, vars: { REFRESH_S: String(REFRESH_S) } });
  }, 120_000);
  afterAll(async () => {
    await edge?.stop();
    await f?.stop();
  });

  test("openssl ocsp verifies the edge's answer: good, then revoked after a revocation at the origin", async () => {
    const good = await ocspAt(`${edge.url}/pki/ocsp`, f.dir, issuing, leaf);
    expect(good).toContain("Response verify OK");
    expect(good).toContain(": good");
    // Asked again within the interval: the copy at the edge.
    expect(await ocspAt(`${edge.url}/pki/ocsp`, f.dir, issuing, leaf)).toContain(": good");

    const rv = await f.api(`/certificates/${serial}/revoke`, token, { body: { reason: "keyCompromise" } });
    expect(rv.status).toBe(200);
    // Within the refresh interval (plus the origin's own answer cache) the edge answers revoked.
    let last = "";
    for (let i = 0; i < 20 && !last.includes(": revoked"); i++) {
      await Bun.sleep(REFRESH_S * 500);
      last = await ocspAt(`${edge.url}/pki/ocsp`, f.dir, issuing, leaf);
    }
    expect(last).toContain("Response verify OK");
    expect(last).toContain(": revoked");
    expect(last).toContain("Reason: keyCompromise");
  }, 120_000);

  test("the GET form (RFC 6960 A.1) is answered too", async () => {
    const reqFile = join(f.dir, "get.der");
    expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", reqFile]).code).toBe(0);
    const der = await Bun.file(reqFile).bytes();
    const r = await fetch(`${edge.url}/pki/ocsp/${encodeURIComponent(Buffer.from(der).toString("base64"))}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/ocsp-response");
    const respFile = write(f.dir, "get-resp.der", new Uint8Array(await r.arrayBuffer()));
    const out = openssl(["ocsp", "-issuer", issuing, "-reqin", reqFile, "-respin", respFile, "-CAfile", join(f.dir, "root.pem")]).out;
    expect(out).toContain("Response verify OK");
  });

  test("openssl crl -verify accepts the CRL the edge serves, and the CA certificates match the origin's", async () => {
    const r = await fetch(`${edge.url}/pki/crl/${issuingCa}.crl`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/pkix-crl");
    const crlFile = write(f.dir, "edge.crl", new Uint8Array(await r.arrayBuffer()));
    const crl = openssl(["crl", "-inform", "DER", "-in", crlFile, "-CAfile", issuing, "-verify", "-noout"]);
    expect(crl.out).toContain("verify OK");
    for (const file of ["root.pem", `${issuingCa}.pem`, `${issuingCa}.crt`]) {
      const atEdge = await fetch(`${edge.url}/pki/ca/${file}`);
      expect(atEdge.status).toBe(200);
      const atOrigin = await f.svc.call(`/pki/ca/${file}`);
      expect(new Uint8Array(await atEdge.arrayBuffer())).toEqual(new Uint8Array(await atOrigin.arrayBuffer()));
    }
  });

  test("bad input: OCSP errors in OCSP's form, other paths 404/405, never a 5xx", async () => {
    const bad = await fetch(`${edge.url}/pki/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: "not der" });
    expect(bad.status).toBe(400);
    expect(new Uint8Array(await bad.arrayBuffer())).toEqual(new Uint8Array([0x30, 0x03, 0x0a, 0x01, 0x01])); // malformedRequest
    expect((await fetch(`${edge.url}/pki/ocsp`, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })).status).toBe(400);
    expect((await fetch(`${edge.url}/pki/ocsp/%zz`)).status).toBe(400);
    expect((await fetch(`${edge.url}/pki/ca/../../etc/passwd`)).status).toBe(404);
    expect((await fetch(`${edge.url}/service/api/v1/certificates`)).status).toBe(404);
    expect((await fetch(`${edge.url}/pki/crl/x.crl`, { method: "DELETE" })).status).toBe(405);
    // Mutations of a real request: each is malformed (400) or a question the origin answers.
    const reqFile = join(f.dir, "fuzz-seed.der");
    expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-reqout", reqFile]).code).toBe(0);
    const seed = await Bun.file(reqFile).bytes();
    const r = rng(22);
    const cases = Array.from({ length: 300 }, () => mutateDer(seed, r));
    await fuzz(cases, (body) => fetch(`${edge.url}/pki/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: body as Uint8Array<ArrayBuffer> }), {
      describe: (b) => Buffer.from(b).toString("hex"),
      maxMs: 20_000,
      concurrency: 8,
    });
  }, 60_000);
});
