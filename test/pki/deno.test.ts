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
