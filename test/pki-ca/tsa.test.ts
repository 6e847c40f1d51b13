/**
 * RFC 3161 time-stamping round trip with openssl: `openssl ts -query` builds the
 * request, the TSA answers over HTTPS, `openssl ts -verify` checks the token
 * against the data, the TSA chain and the root; nonce echo, certReq, policy,
 * accuracy and refusals (bad algorithm, foreign policy, malformed DER) are checked.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, openssl, startCa, write, type CaFixture } from "./helpers.ts";

const ok = haveOpenssl();
let f: CaFixture;
let root: string;
let chain: string;
let data: string;

beforeAll(async () => {
  f = await startCa({ tsa_policy: "1.3.6.1.4.1.99999.1" });
  root = write(f.dir, "root.pem", await (await f.svc.call("/pki/ca/root.pem")).text());
  const tsaPem = await (await f.svc.call("/pki/ca/tsa.pem")).text();
  // The TSA certificate and the issuing CA, without the root (which is the trust anchor).
  chain = write(f.dir, "tsa-chain.pem", tsaPem.split(/(?<=-----END CERTIFICATE-----\n)/).slice(0, 2).join(""));
  data = write(f.dir, "data.txt", "the document being time-stamped\n");
});
afterAll(async () => {
  await f?.stop();
});

async function tsa(body: Uint8Array, contentType = "application/timestamp-query") {
  return f.svc.call("/pki/tsa", { method: "POST", headers: { "content-type": contentType }, body: body.slice().buffer as ArrayBuffer });
}

describe.skipIf(!ok)("time-stamping authority [needs Debian openssl]", () => {
  test("openssl ts -query / -reply / -verify round trip with nonce, certReq, policy and accuracy", async () => {
    for (const digest of ["-sha256", "-sha384", "-sha512"]) {
      const q = join(f.dir, `q${digest}.tsq`);
      expect(openssl(["ts", "-query", "-data", data, digest, "-cert", "-out", q]).code).toBe(0);
      const res = await tsa(new Uint8Array(readFileSync(q)));
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/timestamp-reply");
      const reply = write(f.dir, `r${digest}.tsr`, new Uint8Array(await res.arrayBuffer()));
      const text = openssl(["ts", "-reply", "-in", reply, "-text"]).out;
      expect(text).toContain("Status: Granted.");
      expect(text).toContain("Policy OID: 1.3.6.1.4.1.99999.1");
      expect(text).toContain("Accuracy: 0x01 seconds");
      const nonceQ = openssl(["ts", "-query", "-in", q, "-text"]).out.match(/Nonce: (0x[0-9A-F]+)/)?.[1];
      expect(nonceQ).toBeDefined();
      expect(text).toContain(`Nonce: ${nonceQ}`);
      const v = openssl(["ts", "-verify", "-queryfile", q, "-in", reply, "-CAfile", root, "-untrusted", chain]);
      expect(v.out).toContain("Verification: OK");
      const v2 = openssl(["ts", "-verify", "-data", data, "-in", reply, "-CAfile", root, "-untrusted", chain]);
      expect(v2.out).toContain("Verification: OK");
      // A different document does not verify against the token.
      const other = write(f.dir, "other.txt", "something else\n");
      expect(openssl(["ts", "-verify", "-data", other, "-in", reply, "-CAfile", root, "-untrusted", chain]).out).not.toContain("Verification: OK");
    }
  });

  test("the TSA certificate has a critical id-kp-timeStamping; without certReq the token carries no certificate", async () => {
    const tsaCert = write(f.dir, "tsa.pem", readFileSync(chain, "utf8").split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    const text = openssl(["x509", "-in", tsaCert, "-noout", "-text"]).out;
    expect(text).toMatch(/X509v3 Extended Key Usage: critical\s+Time Stamping/);
    const q = join(f.dir, "nocert.tsq");
    expect(openssl(["ts", "-query", "-data", data, "-sha256", "-out", q]).code).toBe(0);
    const reply = write(f.dir, "nocert.tsr", new Uint8Array(await (await tsa(new Uint8Array(readFileSync(q)))).arrayBuffer()));
    // Without the certificate in the token, verification needs it supplied: -untrusted with the TSA certificate.
    expect(openssl(["ts", "-verify", "-queryfile", q, "-in", reply, "-CAfile", root, "-untrusted", chain]).out).toContain("Verification: OK");
    const token = write(f.dir, "nocert.tok", new Uint8Array(0));
    expect(openssl(["ts", "-reply", "-in", reply, "-token_out", "-out", token]).code).toBe(0);
    expect(openssl(["pkcs7", "-inform", "DER", "-in", token, "-print_certs"]).out).not.toContain("BEGIN CERTIFICATE");
  });

  test("refusals: SHA-1 imprint (badAlg), a foreign policy, malformed DER, wrong content type", async () => {
    const sha1 = join(f.dir, "sha1.tsq");
    expect(openssl(["ts", "-query", "-data", data, "-sha1", "-out", sha1]).code).toBe(0);
    const r1 = await tsa(new Uint8Array(readFileSync(sha1)));
    expect(r1.status).toBe(200);
    const t1 = openssl(["ts", "-reply", "-in", write(f.dir, "sha1.tsr", new Uint8Array(await r1.arrayBuffer())), "-text"]).out;
    expect(t1).toContain("Status: Rejected.");
    expect(t1).toContain("unrecognized or unsupported algorithm");

    const pol = join(f.dir, "pol.tsq");
    expect(openssl(["ts", "-query", "-data", data, "-sha256", "-tspolicy", "1.2.3.4.5", "-out", pol]).code).toBe(0);
    const t2 = openssl(["ts", "-reply", "-in", write(f.dir, "pol.tsr", new Uint8Array(await (await tsa(new Uint8Array(readFileSync(pol)))).arrayBuffer())), "-text"]).out;
    expect(t2).toContain("Status: Rejected.");
    expect(t2).toContain("requested TSA policy is not supported");

    const bad = await tsa(new Uint8Array([0x30, 0x03, 0x02, 0x01]));
    expect(bad.status).toBe(400);
    expect(bad.headers.get("content-type")).toBe("application/timestamp-reply");
    expect((await tsa(new Uint8Array([0x30, 0x00]), "application/json")).status).toBe(415);
  });
});
