import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DirectoryStore } from "../../src/pki/store.ts";
import { suiteCaSealerFromSecrets } from "../../src/pki/sealer.ts";
import { loadOrCreateTlsMaterial, writeTrustBundle, type TlsMaterial } from "../../src/pki/tls-material.ts";
import { serverSans } from "../../src/pki/sans.ts";
import { barrierSealer, haveOpenssl, tempDir } from "./helpers.ts";

let dir = "";
let cleanup = async () => {};
let material: TlsMaterial;
let server: ReturnType<typeof Bun.serve>;
let rootPath = "";

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir("handshake"));
  ({ material } = await loadOrCreateTlsMaterial({
    store: new DirectoryStore(join(dir, "learn-ps")),
    sealer: (await barrierSealer()).sealer,
    serviceName: "learn-ps",
    sans: serverSans({ bindAddresses: ["127.0.0.1"] }),
    suiteCa: { store: new DirectoryStore(join(dir, "suite-ca")), sealer: await suiteCaSealerFromSecrets([crypto.getRandomValues(new Uint8Array(32))]) },
  }));
  rootPath = join(dir, "root.pem");
  await writeTrustBundle(rootPath, material);
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    tls: { cert: material.certChainPem, key: material.keyPem },
    fetch: () => new Response("pong"),
  });
});

afterAll(async () => {
  server?.stop(true);
  await cleanup();
});

describe("TLS handshake with the auto material", () => {
  test("fetch trusts the server with the trust bundle as CA, and only then", async () => {
    const url = `https://127.0.0.1:${server.port}/`;
    const res = await fetch(url, { tls: { ca: material.caBundlePem } } as RequestInit);
    expect(await res.text()).toBe("pong");
    const untrusted = await fetch(url).then(() => "connected", (e: unknown) => String(e));
    expect(untrusted).not.toBe("connected");
  });

  test("openssl s_client completes a verified TLS 1.3 handshake", async () => {
    if (!haveOpenssl()) return;
    const p = Bun.spawn(
      ["openssl", "s_client", "-connect", `127.0.0.1:${server.port}`, "-CAfile", rootPath, "-verify_return_error",
        "-verify_ip", "127.0.0.1", "-tls1_3", "-servername", "localhost", "-brief"],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    const code = await p.exited;
    const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
    expect(out).toContain("Protocol version: TLSv1.3");
    expect(out).toContain("Verification: OK");
    expect(code).toBe(0);
    // The same command against a different trust anchor must fail: the verification above is real.
    const other = join(dir, "other-root.pem");
    const ca2 = await (await import("../../src/pki/suite-ca.ts")).createSuiteCa();
    await writeFile(other, ca2.root.cert.toString("pem"));
    const bad = Bun.spawn(
      ["openssl", "s_client", "-connect", `127.0.0.1:${server.port}`, "-CAfile", other, "-verify_return_error", "-tls1_3", "-brief"],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    expect(await bad.exited).not.toBe(0);
  });
});
