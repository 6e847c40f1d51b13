/** Elysia alone over the same TLS: one route returning the same JSON, no pipeline, no database. */
import { Elysia } from "elysia";
import { createSuiteCa, issueLeaf, toPem, trustBundlePem } from "../../src/pki/index.ts";
import { TLS13_ONLY } from "../../src/service/service.ts";

const ca = await createSuiteCa();
const leaf = await issueLeaf(ca, { serviceName: "elysia", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
const cert = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData));
const pet = JSON.parse(process.argv[2] ?? "{}");
const app = new Elysia().get("/service/api/v1/pets/:id", () => pet);
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert, key, secureOptions: TLS13_ONLY }, fetch: (req) => app.handle(req) });
console.log(JSON.stringify({ url: `https://127.0.0.1:${server.port}`, ca: trustBundlePem(ca) }));
