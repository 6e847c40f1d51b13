/**
 * Real ACME clients against pki-ca, each through External Account Binding with a key from the
 * admin API, each obtaining, renewing and revoking a certificate: lego three times (http-01 on
 * its own loopback listener, tls-alpn-01 with its own acme-tls/1 responder, dns-01 through its
 * `exec` provider and a hook that edits a Knot DNS zone the test starts on loopback and the CA
 * uses as its resolver), certbot (standalone http-01), uacme (tls-alpn-01 through ualpn and a
 * hook script). openssl verifies each chain to pki-ca's root, and pki-ca's OCSP responder says
 * revoked after each revocation. The npm `acme-client` does the same over http-01, answered by a
 * listener of this test. Needs the Debian packages lego, certbot, uacme, knot and openssl; each
 * test skips with a printed reason when its client is missing (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { Agent } from "node:https";
import type { AddressInfo } from "node:net";
import * as acme from "acme-client";
import { join } from "node:path";
import { haveOpenssl, openssl, write, type CaFixture } from "./helpers.ts";
import { freePort, startAcmeCa } from "./acme-helpers.ts";
import { haveKnot, startKnot, type Knot } from "../support/knot.ts";
import { TestDns } from "../support/dns-server.ts";

function have(tool: string, pkg: string): boolean {
  const ok = Bun.which(tool) !== null;
  if (!ok && process.env.CI === "true") throw new Error(`${tool} is required in CI (apt-get install -y ${pkg})`);
  if (!ok) console.warn(`SKIPPED: ${tool} not installed (apt-get install -y ${pkg})`);
  return ok;
}
const sslOk = haveOpenssl();
const legoOk = have("lego", "lego") && sslOk;
const certbotOk = have("certbot", "certbot") && sslOk;
const uacmeOk = have("uacme", "uacme") && have("ualpn", "uacme") && have("unshare", "util-linux") && sslOk;
const knotOk = have("knotd", "knot") && haveKnot();

let f: CaFixture;
let port: number;
let alpnPort: number;
let trust: string;
let root: string;
let issuing: string;
/** The CA's resolver: Knot when installed (lego's dns-01 needs it), else the in-process test server for CAA lookups. */
let knot: Knot | undefined;
let fallbackDns: TestDns | undefined;

beforeAll(async () => {
  // The CA validates http-01 and tls-alpn-01 on these ports; the clients listen on them in turn.
  port = await freePort();
  alpnPort = await freePort();
  if (knotOk) knot = await startKnot();
  else fallbackDns = await TestDns.start();
  f = await startAcmeCa(port, {
    tenants: { acme: { profiles: ["acme-server"] }, eab: { profiles: ["acme-server"], external_account_required: true } },
    tls_alpn01_port: alpnPort,
    dns_resolvers: [knot?.address ?? fallbackDns!.address],
  });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  const get = async (p: string) => (await f.svc.call(p)).text();
  root = write(f.dir, "root.pem", await get("/pki/ca/root.pem"));
  issuing = write(f.dir, "issuing.pem", (await get("/pki/ca/issuing-p-256.pem")).split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
});
afterAll(async () => {
  await f?.stop();
  await knot?.stop();
  fallbackDns?.stop();
});

async function run(cmd: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

async function eabKey(tenant: string): Promise<{ kid: string; hmac_key: string }> {
  const r = await f.api("/acme/eab-keys", await f.token(tenant, "pki:admin"), { method: "POST", body: {} });
  expect(r.status).toBe(201);
  return (await r.json()) as { kid: string; hmac_key: string };
}

/** openssl verify of a leaf with its chain file against pki-ca's root. */
function verifyChain(leaf: string, chain: string) {
  const v = openssl(["verify", "-CAfile", root, "-untrusted", chain, leaf]);
  expect(v.out).toContain(": OK");
  expect(v.code).toBe(0);
}

/** pki-ca's OCSP answer about `leaf`, as openssl reads it. */
async function ocspStatus(leaf: string): Promise<string> {
  const req = join(f.dir, "ocsp.req");
  expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", req]).code).toBe(0);
  const res = await f.svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(req) });
  const resp = write(f.dir, "ocsp.resp", new Uint8Array(await res.arrayBuffer()));
  return openssl(["ocsp", "-respin", resp, "-issuer", issuing, "-cert", leaf, "-CAfile", root]).out;
}

/** The serial of a PEM certificate file, as openssl prints it. */
const serialOf = (file: string) => /serial=(\w+)/.exec(openssl(["x509", "-in", file, "-noout", "-serial"]).out)![1]!;

/** After a client's renewal and revocation: a new serial, a verifying chain, OCSP good before and revoked (keyCompromise) after. */
async function expectRevoked(crt: string) {
  const ocsp = await ocspStatus(crt);
  expect(ocsp).toContain(": revoked");
  expect(ocsp).toContain("Reason: keyCompromise");
}

describe.skipIf(!legoOk)("lego [needs Debian lego and openssl]", () => {
  /** lego run, renew and revoke for `name` with the given challenge flags; each step's chain verified. */
  async function lifecycle(name: string, challenge: string[], env: Record<string, string> = {}) {
    const k = await eabKey("eab");
    const dir = join(f.dir, `lego-${name}`);
    const base = [
      "lego", "--accept-tos", "--email", "ops@example.test", "--path", dir,
      "--server", `${f.svc.publicUrl}/acme/eab/directory`, "--eab", "--kid", k.kid, "--hmac", k.hmac_key,
      "--domains", name, ...challenge, "--key-type", "ec256",
    ];
    env = { LEGO_CA_CERTIFICATES: trust, ...env };
    const obtained = await run([...base, "run"], env);
    if (obtained.code !== 0) console.log(obtained.out);
    expect(obtained.out).toContain("Server responded with a certificate");
    expect(obtained.code).toBe(0);
    const crt = join(dir, "certificates", `${name.replace("*", "_")}.crt`);
    verifyChain(crt, crt);
    expect(openssl(["x509", "-in", crt, "-noout", "-ext", "subjectAltName"]).out).toContain(`DNS:${name}`);
    const firstSerial = serialOf(crt);

    const renewed = await run([...base, "renew", "--days", "90", "--no-random-sleep"], env);
    if (renewed.code !== 0) console.log(renewed.out);
    expect(renewed.code).toBe(0);
    expect(serialOf(crt)).not.toBe(firstSerial);
    verifyChain(crt, crt);
    expect(await ocspStatus(crt)).toContain(": good");

    const revoked = await run([...base, "revoke", "--reason", "1", "--keep"], env);
    expect(revoked.code).toBe(0);
    await expectRevoked(crt);
  }

  // (lego 4.9 sends IP addresses as dns identifiers, so IP orders are tested with acme.test.ts's client.)
  test("http-01: obtains with EAB, renews, revokes; OCSP then says revoked", async () => {
    await lifecycle("lego.localhost", ["--http", "--http.port", `127.0.0.1:${port}`]);
  }, 180_000);

  test("tls-alpn-01 (its own acme-tls/1 responder): obtains, renews, revokes", async () => {
    await lifecycle("lego-alpn.localhost", ["--tls", "--tls.port", `127.0.0.1:${alpnPort}`]);
  }, 180_000);

  test.skipIf(!knotOk)("dns-01 through a Knot DNS zone the CA resolves against (exec hook): obtains a wildcard, renews, revokes [needs Debian knot]", async () => {
    await lifecycle("*.lego-dns.localhost", ["--dns", "exec", "--dns.resolvers", knot!.address, "--dns.disable-cp"], {
      EXEC_PATH: knot!.hookScript(),
      EXEC_POLLING_INTERVAL: "1",
      EXEC_PROPAGATION_TIMEOUT: "60",
    });
  }, 180_000);
});

describe.skipIf(!certbotOk)("certbot [needs Debian certbot and openssl]", () => {
  test("obtains with --standalone over http-01 and EAB, renews, revokes", async () => {
    const k = await eabKey("eab");
    const dir = join(f.dir, "certbot");
    const common = [
      "--server", `${f.svc.publicUrl}/acme/eab/directory`,
      "--config-dir", join(dir, "config"), "--work-dir", join(dir, "work"), "--logs-dir", join(dir, "logs"), "--non-interactive",
    ];
    const env = { REQUESTS_CA_BUNDLE: trust };
    const r = await run(
      [
        "certbot", "certonly", "--standalone", "--http-01-port", String(port), "--http-01-address", "127.0.0.1", ...common,
        "--eab-kid", k.kid, "--eab-hmac-key", k.hmac_key, "--agree-tos", "-m", "ops@example.test", "--no-eff-email", "-d", "certbot.localhost",
      ],
      env,
    );
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const live = join(dir, "config", "live", "certbot.localhost");
    expect(existsSync(join(live, "fullchain.pem"))).toBe(true);
    verifyChain(join(live, "cert.pem"), join(live, "chain.pem"));
    expect(openssl(["x509", "-in", join(live, "cert.pem"), "-noout", "-ext", "subjectAltName"]).out).toContain("DNS:certbot.localhost");
    const firstSerial = serialOf(join(live, "cert.pem"));

    const renewed = await run(["certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew", ...common], env);
    if (renewed.code !== 0) console.log(renewed.out);
    expect(renewed.code).toBe(0);
    expect(serialOf(join(live, "cert.pem"))).not.toBe(firstSerial);
    verifyChain(join(live, "cert.pem"), join(live, "chain.pem"));

    const revoked = await run(["certbot", "revoke", "--cert-path", join(live, "cert.pem"), "--reason", "keycompromise", "--no-delete-after-revoke", ...common], env);
    if (revoked.code !== 0) console.log(revoked.out);
    expect(revoked.code).toBe(0);
    await expectRevoked(join(live, "cert.pem"));
  }, 400_000);
});

describe.skipIf(!uacmeOk)("uacme [needs Debian uacme (with ualpn), util-linux unshare and openssl]", () => {
  test("tls-alpn-01 through ualpn and a hook script, with EAB: obtains, renews, revokes", async () => {
    const k = await eabKey("eab");
    const dir = join(f.dir, "uacme");
    const sock = join(f.dir, "ualpn.sock");
    // ualpn in server mode answers the CA's acme-tls/1 handshakes for the names the hook authorizes.
    // (-c: the backend other TLS connections would be proxied to; none come here.)
    const ualpn = Bun.spawn(["ualpn", "-b", `127.0.0.1@${alpnPort}`, "-c", `127.0.0.1@${await freePort()}`, "-s", sock, "-p", join(f.dir, "ualpn.pid"), "-n", "1", "-v"], { stdout: "pipe", stderr: "pipe" });
    try {
      for (let i = 0; !existsSync(sock); i++) {
        if (i > 200 || ualpn.exitCode !== null) throw new Error(`ualpn did not start: ${await new Response(ualpn.stderr as ReadableStream).text()}`);
        await Bun.sleep(50);
      }
      // uacme's hook: method type ident token auth. Only tls-alpn-01 is answered (others: exit 1, uacme tries the next).
      const hook = join(f.dir, "uacme-hook.sh");
      writeFileSync(
        hook,
        [
          "#!/bin/sh",
          '[ "$2" = "tls-alpn-01" ] || exit 1',
          'case "$1" in',
          `  begin) OUT=$(echo "auth $3 $5" | ualpn -s "${sock}") ;;`,
          `  done|failed) OUT=$(echo "unauth $3" | ualpn -s "${sock}") ;;`,
          "  *) exit 1 ;;",
          "esac",
          '[ "$OUT" = "OK" ]',
          "",
        ].join("\n"),
        { mode: 0o755 },
      );
      // uacme (libcurl with GnuTLS) trusts only the system bundle: give it pki-ca's root there, in a private mount namespace.
      const uacme = (args: string[]) =>
        run(["unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"', trust, "uacme", "-v", "-c", dir, "-a", `${f.svc.publicUrl}/acme/eab/directory`, ...args], {});
      const created = await uacme(["-e", `${k.kid}:${k.hmac_key}`, "-y", "new", "ops@example.test"]);
      if (created.code !== 0) console.log(created.out);
      expect(created.code).toBe(0);
      const issued = await uacme(["-h", hook, "-t", "EC", "issue", "uacme.localhost"]);
      if (issued.code !== 0) console.log(issued.out);
      expect(issued.code).toBe(0);
      const crt = join(dir, "uacme.localhost", "cert.pem");
      verifyChain(crt, crt);
      expect(openssl(["x509", "-in", crt, "-noout", "-ext", "subjectAltName"]).out).toContain("DNS:uacme.localhost");
      const firstSerial = serialOf(crt);

      const renewed = await uacme(["-h", hook, "-t", "EC", "-f", "issue", "uacme.localhost"]);
      if (renewed.code !== 0) console.log(renewed.out);
      expect(renewed.code).toBe(0);
      expect(serialOf(crt)).not.toBe(firstSerial);
      verifyChain(crt, crt);

      // uacme renames a certificate file it revoked: keep a copy to ask OCSP about.
      const kept = write(f.dir, "uacme-revoked.pem", readFileSync(crt));
      const revoked = await uacme(["-r", "1", "revoke", crt]);
      if (revoked.code !== 0) console.log(revoked.out);
      expect(revoked.code).toBe(0);
      await expectRevoked(kept);
    } finally {
      ualpn.kill("SIGTERM");
      await ualpn.exited;
    }
  }, 240_000);
});

describe.skipIf(!sslOk)("acme-client (npm) [needs openssl]", () => {
  test("http-01 answered by the test, with EAB: obtains, renews (reusing the valid authorization), revokes", async () => {
    const k = await eabKey("eab");
    // The CA's TLS: acme-client speaks through axios, which takes an https agent trusting pki-ca's TLS root.
    acme.axios.defaults.httpsAgent = new Agent({ ca: f.svc.ca });
    const answers = new Map<string, string>();
    let served = 0;
    const responder = createServer((req, res) => {
      const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "")?.[1];
      const body = token ? answers.get(token) : undefined;
      if (body) served++;
      res.writeHead(body ? 200 : 404, { "content-type": "text/plain" }).end(body ?? "");
    });
    await new Promise<void>((ok) => responder.listen(port, "127.0.0.1", ok));
    expect((responder.address() as AddressInfo).port).toBe(port);
    try {
      const client = new acme.Client({
        directoryUrl: `${f.svc.publicUrl}/acme/eab/directory`,
        accountKey: await acme.crypto.createPrivateEcdsaKey(),
        externalAccountBinding: { kid: k.kid, hmacKey: k.hmac_key },
        backoffMin: 200,
        backoffMax: 2000,
      });
      let created = 0;
      const order = async () => {
        const [, csr] = await acme.crypto.createCsr({ altNames: ["acme-client.localhost"] }, await acme.crypto.createPrivateEcdsaKey());
        return client.auto({
          csr,
          email: "ops@example.test",
          termsOfServiceAgreed: true,
          // Its own pre-check fetches the name on port 80; the CA's validation is the one that counts.
          skipChallengeVerification: true,
          challengePriority: ["http-01"],
          challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
            created++;
            answers.set(challenge.token, keyAuthorization);
          },
          challengeRemoveFn: async (_authz, challenge) => {
            answers.delete(challenge.token);
          },
        });
      };
      const crt = join(f.dir, "acme-client.pem");
      write(f.dir, "acme-client.pem", await order());
      expect(created).toBe(1);
      expect(served).toBeGreaterThanOrEqual(1);
      verifyChain(crt, crt);
      expect(openssl(["x509", "-in", crt, "-noout", "-ext", "subjectAltName"]).out).toContain("DNS:acme-client.localhost");
      const firstSerial = serialOf(crt);

      // Renewal: a new order and key; the account's valid authorization is reused, no new challenge.
      const renewed = await order();
      write(f.dir, "acme-client.pem", renewed);
      expect(created).toBe(1);
      expect(serialOf(crt)).not.toBe(firstSerial);
      verifyChain(crt, crt);
      expect(await ocspStatus(crt)).toContain(": good");

      await client.revokeCertificate(renewed, { reason: 1 });
      await expectRevoked(crt);
      // Revoked twice: the ACME error reaches the client as alreadyRevoked.
      await expect(client.revokeCertificate(renewed, { reason: 1 })).rejects.toThrow(/already revoked/i);
    } finally {
      await new Promise((ok) => responder.close(ok));
    }
  }, 180_000);
});
