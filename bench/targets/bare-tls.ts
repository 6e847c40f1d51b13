/** The framework ceiling: a bare Bun.serve TLS 1.3 server answering the same JSON as learn-ps. */
import { createSuiteCa, issueLeaf, toPem, trustBundlePem } from "../../src/pki/index.ts";
import { TLS13_ONLY } from "../../src/service/service.ts";

const ca = await createSuiteCa();
const leaf = await issueLeaf(ca, { serviceName: "bare", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
const cert = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData));
const pet = JSON.parse(process.argv[2] ?? "{}");
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  tls: { cert, key, secureOptions: TLS13_ONLY },
  fetch: () => Response.json(pet),
});
console.log(JSON.stringify({ url: `https://127.0.0.1:${server.port}`, ca: trustBundlePem(ca) }));
