import { expect, test } from "bun:test";
import { moduleUrl, runOnDeno } from "../support/deno.ts";

// src/ must run unchanged on Deno: create a suite CA, a leaf and stored TLS material there.
test("src/pki runs on Deno", async () => {
  const result = await runOnDeno(["--allow-read", "--allow-write", "--allow-env"], (dir) => `import * as pki from ${moduleUrl("src/pki/index.ts")};
const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
const dir = ${JSON.stringify(dir)};
const opts = {
  store: new pki.DirectoryStore(dir + "/svc"), sealer: new pki.AesGcmSealer(key), serviceName: "jose-ja",
  sans: pki.serverSans({ bindAddresses: ["127.0.0.1"] }),
  suiteCa: { store: new pki.DirectoryStore(dir + "/suite-ca"), sealer: await pki.suiteCaSealerFromSecrets([new Uint8Array(32).fill(7)]) },
};
const a = await pki.loadOrCreateTlsMaterial(opts);
const b = await pki.loadOrCreateTlsMaterial(opts);
console.log(JSON.stringify({ first: a.outcome, second: b.outcome, same: a.material.certChainPem === b.material.certChainPem }));
`);
  expect(result).toEqual({ first: "absent", second: "loaded", same: true });
}, 30_000);

// The relying party's OCSP request (src/pki/ocsp-client.ts) names the certificate's own serial
// on Deno too, whose small Buffers share a pool (a view's `.buffer` is the whole pool).
test("src/pki/ocsp-client builds the request for the certificate's serial on Deno", async () => {
  const result = await runOnDeno(["--allow-read", "--allow-env"], () => `import * as pki from ${moduleUrl("src/pki/index.ts")};
import { ocspRequest, serialOf } from ${moduleUrl("src/pki/ocsp-client.ts")};
const ca = await pki.createSuiteCa();
const leaf = await pki.issueLeaf(ca, { serviceName: "ocsp-client", dnsNames: [], ipAddresses: [], uris: ["spiffe://cryptoutil/ocsp-client"], usage: "client", validityDays: 2 });
const { der } = await ocspRequest(leaf.cert, ca.intermediate.cert);
const asked = pki.parseOcspRequest(der).questions.map((q) => q.serialHex);
console.log(JSON.stringify({ asked, serial: serialOf(leaf.cert) }));
`);
  const { asked, serial } = result as { asked: string[]; serial: string };
  expect(serial).toMatch(/^[0-9a-f]+$/);
  expect(asked).toEqual([serial]);
}, 30_000);
