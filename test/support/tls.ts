/**
 * A throwaway TLS identity for test and benchmark servers: a fresh suite CA (P-256 root ->
 * intermediate) and a leaf for localhost / 127.0.0.1, as PEM, plus the Bun.serve options
 * (TLS 1.3 only, like the services).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createSuiteCa, issueLeaf, toPem, trustBundlePem, type SuiteCa } from "../../src/pki/index.ts";
import { TLS13_ONLY } from "../../src/service/service.ts";

export interface ThrowawayTls {
  /** Leaf then intermediate. */
  certPem: string;
  keyPem: string;
  /** The root, for clients. */
  caPem: string;
  /** Ready for `Bun.serve({ tls })`. */
  serve: { cert: string; key: string; secureOptions: number };
}

export async function throwawayTls(serviceName: string, dnsNames = ["localhost"]): Promise<ThrowawayTls> {
  const ca = await createSuiteCa();
  const leaf = await issueLeaf(ca, { serviceName, dnsNames, ipAddresses: ["127.0.0.1"] });
  const keyPem = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
  const certPem = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData));
  return { certPem, keyPem, caPem: trustBundlePem(ca), serve: { cert: certPem, key: keyPem, secureOptions: TLS13_ONLY } };
}

/** A client certificate (leaf then intermediate) and its key. */
export interface ClientCertificateFiles {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/**
 * A 2-day clientAuth certificate from `ca` named by `sans`, as PEM strings (for fetch and
 * grpc-js) and as files in `dir` (for curl, openssl, buf and Python).
 */
export async function clientCertificate(ca: SuiteCa, dir: string, name: string, sans: { uris?: string[]; dnsNames?: string[] }): Promise<ClientCertificateFiles> {
  const leaf = await issueLeaf(ca, { serviceName: name, dnsNames: sans.dnsNames ?? [], ipAddresses: [], uris: sans.uris, usage: "client", validityDays: 2 });
  const key = toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", leaf.keys.privateKey)));
  const cert = toPem("CERTIFICATE", new Uint8Array(leaf.cert.rawData)) + toPem("CERTIFICATE", new Uint8Array(ca.intermediate.cert.rawData));
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  writeFileSync(certFile, cert);
  writeFileSync(keyFile, key, { mode: 0o600 });
  return { cert, key, certFile, keyFile };
}

/** A loopback HTTPS server run by a test (a client's receiver or document host), with its CA. */
export interface TestHttpsServer {
  server: ReturnType<typeof Bun.serve>;
  /** `https://127.0.0.1:<port>` */
  url: string;
  caPem: string;
  stop(): void;
}

/** Serves `fetch` over TLS 1.3 on a free loopback port with a throwaway CA named after `name` (certificate for `dnsNames` and 127.0.0.1). */
export async function serveHttps(name: string, fetch: (req: Request) => Response | Promise<Response>, dnsNames?: string[]): Promise<TestHttpsServer> {
  const tls = await throwawayTls(name, dnsNames);
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: tls.serve, fetch });
  return { server, url: `https://127.0.0.1:${server.port}`, caPem: tls.caPem, stop: () => void server.stop(true) };
}
