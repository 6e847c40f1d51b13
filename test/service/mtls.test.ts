/**
 * Issue 15 (4) and issue 14 (5): the mutual-TLS listener (`server.mtls_port`, node:http2 with
 * allowHTTP1) in front of the same pipeline as the public server.
 *
 * learn-ps runs with an mTLS port whose `/service/api` accepts its own client certificate
 * (`spiffe://cryptoutil/learn-ps`) and a DNS-named one, each mapped to a tenant. A client
 * without a certificate, or with one from another CA, fails the handshake; an unmapped suite
 * certificate gets 403; a mapped one reads that tenant's pets. ALPN: h2 and http/1.1 are
 * negotiated, a client offering only other protocols is refused. The client certificate
 * renews on the periodic check once less than a third of its validity remains, without a
 * restart: the service's clock starts 2.2 days back with a 3-day client certificate, and is
 * then set to the present, where only 0.8 days remain.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { tlsFetch } from "../../src/federation/index.ts";
import { createSuiteCa, DirectoryStore, issueLeaf, loadOrCreateSuiteCa, suiteCaSealerFromFiles, toPem, trustBundlePem, type SuiteCa } from "../../src/pki/index.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, tempDir, type TestService } from "../support/service.ts";
import { clientCertificate } from "../support/tls.ts";

const DAY_MS = 86_400_000;
let shiftMs = -2.2 * DAY_MS;
const clock = () => new Date(Date.now() + shiftMs);

let issuer: TestIssuer;
let svc: TestService;
let root: string;
let suiteCa: SuiteCa;
let mtlsUrl: string;

/** A client certificate from `ca`, as PEM files for curl and openssl, and as strings for fetch. */
const clientCert = (ca: SuiteCa, name: string, sans: { uris?: string[]; dnsNames?: string[] }) => clientCertificate(ca, root, name, sans);

const viaMtls = (path: string, tls: { cert: string; key: string }, init: RequestInit = {}) =>
  tlsFetch({ ca: svc.ca, clientTls: () => tls })(mtlsUrl + path, init);

/** Runs a tool without blocking the event loop (the service answers in this process). */
async function run(cmd: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), 60_000);
  const [stdout, stderr, status] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { status, stdout, stderr };
}

const curl = (args: string[]) => run(["curl", "-sS", "--max-time", "60", "--cacert", svc.trustBundlePath, ...args]);

const sClient = (args: string[]) =>
  run(["openssl", "s_client", "-connect", `127.0.0.1:${new URL(mtlsUrl).port}`, "-CAfile", svc.trustBundlePath, "-tls1_3", ...args]);

const has = (tool: string) => spawnSync(tool, ["--version"]).status === 0 || spawnSync(tool, ["version"]).status === 0;

beforeAll(async () => {
  issuer = await startTestIssuer({ audience: "learn-ps" });
  root = tempDir("cryptoutil-mtls-");
  svc = await startTestService(learnPs, {
    issuer,
    root,
    clock,
    overrides: (c) => {
      quiet(c);
      c.server.mtls_port = 0;
      c.mtls.client_validity_days = 3;
      c.mtls.renew_check_s = 1;
      c.mtls.principals = [
        { uri: "spiffe://cryptoutil/learn-ps", tenant: "tenant-m", scopes: ["pets:read", "pets:write"] },
        { dns: "batch.example", tenant: "tenant-d", subject: "batch", scopes: ["pets:read"] },
      ];
    },
  });
  mtlsUrl = svc.mtlsUrl!;
  suiteCa = (await loadOrCreateSuiteCa({ store: new DirectoryStore(join(root, "suite-ca")), sealer: await suiteCaSealerFromFiles([join(root, "dev-unseal.secret")]) })).ca;
});
afterAll(async () => {
  await svc?.stop();
  await issuer?.stop();
});

const own = () => ({ cert: svc.certificates.client!.current.certChainPem, key: svc.certificates.client!.current.keyPem });

async function createPet(tenant: string, name: string): Promise<string> {
  const token = await issuer.mint({ tenant, scope: "pets:write pets:read" });
  const res = await svc.call("/service/api/v1/pets", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name, species: "cat" }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe("the service's client certificate", () => {
  test("is a clientAuth-only certificate named spiffe://cryptoutil/learn-ps from the suite CA", async () => {
    const m = svc.certificates.client!.current;
    expect(m.leaf.sans.uris).toEqual(["spiffe://cryptoutil/learn-ps"]);
    const { X509Certificate } = await import("node:crypto");
    const cert = new X509Certificate(m.certChainPem);
    expect(cert.checkIssued(new X509Certificate(toPem("CERTIFICATE", new Uint8Array(suiteCa.intermediate.cert.rawData))))).toBe(true);
    const eku = spawnSync("openssl", ["x509", "-noout", "-ext", "extendedKeyUsage"], { input: m.certChainPem, encoding: "utf8" }).stdout;
    expect(eku).toContain("TLS Web Client Authentication");
    expect(eku).not.toContain("Server Authentication");
  });
});

describe("mTLS port", () => {
  test("a mapped certificate reads its tenant's pets, over h2 and HTTP/1.1; another tenant's pet is 404", async () => {
    const mine = await createPet("tenant-m", "Mia");
    const theirs = await createPet("tenant-x", "Xan");
    const res = await viaMtls(`/service/api/v1/pets/${mine}`, own());
    expect(res.status).toBe(200);
    expect(((await res.json()) as { name: string }).name).toBe("Mia");
    expect(res.headers.get("x-request-id")).toBeTruthy();
    expect(res.headers.get("strict-transport-security")).toBeTruthy();
    const other = await viaMtls(`/service/api/v1/pets/${theirs}`, own());
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("not_found");

    const files = { certFile: join(root, "own.crt"), keyFile: join(root, "own.key") };
    writeFileSync(files.certFile, own().cert);
    writeFileSync(files.keyFile, own().key, { mode: 0o600 });
    for (const version of ["--http2", "--http1.1"]) {
      const out = await curl([version, "--cert", files.certFile, "--key", files.keyFile, "-w", "\n%{http_code} %{http_version}", `${mtlsUrl}/service/api/v1/pets/${mine}`]);
      expect(out.status).toBe(0);
      const [body, status] = out.stdout.split("\n");
      expect(JSON.parse(body!).name).toBe("Mia");
      expect(status).toBe(version === "--http2" ? "200 2" : "200 1.1");
    }
  });

  test("a request body streams through: a pet created over mTLS belongs to the mapped tenant", async () => {
    const res = await viaMtls("/service/api/v1/pets", own(), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Moss", species: "dog", owner_note: "n".repeat(3000) }),
    });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as { id: string }).id;
    const token = await issuer.mint({ tenant: "tenant-m", scope: "pets:read" });
    const back = await svc.call(`/service/api/v1/pets/${id}`, { headers: { authorization: `Bearer ${token}` } });
    expect(back.status).toBe(200);
    const bad = await viaMtls("/service/api/v1/pets", own(), { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    expect(bad.status).toBe(400);
  });

  test("a DNS-mapped certificate gets its own tenant and scopes", async () => {
    const batch = await clientCert(suiteCa, "batch", { dnsNames: ["batch.example"] });
    const pet = await createPet("tenant-d", "Dot");
    expect((await viaMtls(`/service/api/v1/pets/${pet}`, batch)).status).toBe(200);
    const write = await viaMtls("/service/api/v1/pets", batch, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "No", species: "cat" }) });
    expect(write.status).toBe(403);
    expect(((await write.json()) as { error: { code: string } }).error.code).toBe("insufficient_scope");
  });

  test("an unmapped certificate from the suite CA completes the handshake and gets 403", async () => {
    const stranger = await clientCert(suiteCa, "stranger", { uris: ["spiffe://cryptoutil/stranger"] });
    const res = await viaMtls("/service/api/v1/pets/p1", stranger);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("forbidden");
    // Paths outside /service/api need no mapping: the handshake is the only check there.
    expect((await viaMtls("/livez", stranger)).status).toBe(200);
  });

  test("a bearer token is refused on the mTLS port: the certificate is the one credential", async () => {
    const token = await issuer.mint({ tenant: "tenant-m", scope: "pets:read" });
    const res = await viaMtls("/service/api/v1/pets", own(), { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(401);
  });

  test("no client certificate, or one from another CA, fails the handshake", async () => {
    const foreign = await clientCert(await createSuiteCa(), "foreign", { uris: ["spiffe://cryptoutil/learn-ps"] });
    const none = await curl(["-o", "/dev/null", "-w", "%{http_code}", `${mtlsUrl}/livez`]);
    expect(none.status).not.toBe(0);
    expect(none.stdout).toBe("000");
    const alien = await curl(["--cert", foreign.certFile, "--key", foreign.keyFile, "-o", "/dev/null", "-w", "%{http_code}", `${mtlsUrl}/livez`]);
    expect(alien.status).not.toBe(0);
    expect(alien.stdout).toBe("000");
    // Bun's fetch the same way (fresh connections: the handshake fails each time).
    await expect(tlsFetch({ ca: svc.ca })(`${mtlsUrl}/livez`, {})).rejects.toThrow();
    await expect(viaMtls("/livez", foreign)).rejects.toThrow();
  });

  test("the mTLS port counts in the same metrics as the public port", async () => {
    const metrics = await (await svc.admin("/admin/v1/metrics")).text();
    expect(metrics).toMatch(/route="\/service\/api\/v1\/pets\/:id",status="404"/);
  });
});

describe("ALPN on the mTLS port", () => {
  test("h2 and http/1.1 are negotiated; a client offering only imap is refused with no_application_protocol", async () => {
    const own2 = own();
    const cert = join(root, "alpn.crt");
    const key = join(root, "alpn.key");
    writeFileSync(cert, own2.cert);
    writeFileSync(key, own2.key, { mode: 0o600 });
    const both = await sClient(["-alpn", "h2,http/1.1", "-cert", cert, "-key", key]);
    expect(both.stdout).toContain("ALPN protocol: h2");
    const h1 = await sClient(["-alpn", "http/1.1", "-cert", cert, "-key", key]);
    expect(h1.stdout).toContain("ALPN protocol: http/1.1");
    const imap = await sClient(["-alpn", "imap", "-cert", cert, "-key", key]);
    expect(imap.stdout + imap.stderr).toContain("no application protocol");
    expect(imap.stdout).not.toContain("ALPN protocol: imap");
  });

  test("gnutls-cli: imap-only refused, h2 negotiated (Debian package gnutls-bin)", async () => {
    if (!has("gnutls-cli")) {
      if (process.env.CI === "true") throw new Error("gnutls-cli is required (Debian package gnutls-bin)");
      console.warn("skipped: gnutls-cli not installed (Debian package gnutls-bin)");
      return;
    }
    const port = new URL(mtlsUrl).port;
    const cert = join(root, "alpn.crt");
    const key = join(root, "alpn.key");
    const gnutls = (alpn: string[]) =>
      run(["gnutls-cli", "--x509cafile", svc.trustBundlePath, "--x509certfile", cert, "--x509keyfile", key, ...alpn.flatMap((a) => ["--alpn", a]), "-p", port, "127.0.0.1"]);
    const ok = await gnutls(["h2", "http/1.1"]);
    expect(ok.stdout + ok.stderr).toContain("Application protocol: h2");
    const imap = await gnutls(["imap"]);
    expect(imap.stdout + imap.stderr).toContain("No supported application protocol could be negotiated");
  });
});

describe("renewal", () => {
  test("the client certificate renews on the periodic check once a third of its validity remains, without a restart", async () => {
    const before = svc.certificates.client!.current.leaf;
    expect(before.notAfter.getTime() - Date.now()).toBeLessThan(DAY_MS); // issued 2.2 days back, 3 days valid
    shiftMs = 0; // the present: 0.8 of 3 days remain
    // renew_check_s is 1: wait for the timer, however loaded the machine (no timing assertion).
    while (svc.certificates.client!.current.leaf.serialNumber === before.serialNumber) await Bun.sleep(100);
    const after = svc.certificates.client!.current.leaf;
    expect(after.notAfter.getTime() - Date.now()).toBeGreaterThan(2.9 * DAY_MS);
    // The new certificate works on the running service, from a fresh client process.
    const certFile = join(root, "renewed.crt");
    const keyFile = join(root, "renewed.key");
    writeFileSync(certFile, own().cert);
    writeFileSync(keyFile, own().key, { mode: 0o600 });
    const out = await curl(["--cert", certFile, "--key", keyFile, "-o", "/dev/null", "-w", "%{http_code}", `${mtlsUrl}/service/api/v1/pets?limit=1`]);
    expect(out.stdout).toBe("200");
    // Renewal is stored: the next check finds nothing due.
    expect(await svc.certificates.client!.renewIfDue()).toBe(false);
  }, 120_000);
});
