/**
 * Real ACME clients against pki-ca: lego obtains, renews and revokes a certificate (http-01 on
 * its own loopback listener, External Account Binding with a key from the admin API), certbot
 * (standalone) obtains one. openssl verifies each chain to pki-ca's root, and pki-ca's OCSP
 * responder says revoked after lego's revocation. Needs the Debian packages lego, certbot and
 * openssl; each test skips with a printed reason when its client is missing (fails under CI=true).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { haveOpenssl, openssl, write, type CaFixture } from "./helpers.ts";
import { freePort, startAcmeCa } from "./acme-helpers.ts";

function have(tool: string, pkg: string): boolean {
  const ok = Bun.which(tool) !== null;
  if (!ok && process.env.CI === "true") throw new Error(`${tool} is required in CI (apt-get install -y ${pkg})`);
  if (!ok) console.warn(`SKIPPED: ${tool} not installed (apt-get install -y ${pkg})`);
  return ok;
}
const sslOk = haveOpenssl();
const legoOk = have("lego", "lego") && sslOk;
const certbotOk = have("certbot", "certbot") && sslOk;

let f: CaFixture;
let port: number;
let trust: string;
let root: string;
let issuing: string;

beforeAll(async () => {
  // The CA validates http-01 on this port; lego and certbot listen on it in turn.
  port = await freePort();
  f = await startAcmeCa(port, { tenants: { acme: { profiles: ["acme-server"] }, eab: { profiles: ["acme-server"], external_account_required: true } } });
  trust = write(f.dir, "trust.pem", f.svc.ca);
  const get = async (p: string) => (await f.svc.call(p)).text();
  root = write(f.dir, "root.pem", await get("/pki/ca/root.pem"));
  issuing = write(f.dir, "issuing.pem", (await get("/pki/ca/issuing-p-256.pem")).split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
});
afterAll(async () => {
  await f?.stop();
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

describe.skipIf(!legoOk)("lego [needs Debian lego and openssl]", () => {
  test("obtains with EAB over http-01, renews, revokes; OCSP then says revoked", async () => {
    const k = await eabKey("eab");
    const dir = join(f.dir, "lego");
    // (lego 4.9 sends IP addresses as dns identifiers, so IP orders are tested with acme.test.ts's client.)
    const base = [
      "lego", "--accept-tos", "--email", "ops@example.test", "--path", dir,
      "--server", `${f.svc.publicUrl}/acme/eab/directory`, "--eab", "--kid", k.kid, "--hmac", k.hmac_key,
      "--domains", "lego.localhost", "--http", "--http.port", `127.0.0.1:${port}`, "--key-type", "ec256",
    ];
    const env = { LEGO_CA_CERTIFICATES: trust };
    const obtained = await run([...base, "run"], env);
    expect(obtained.out).toContain("Server responded with a certificate");
    expect(obtained.code).toBe(0);
    const crt = join(dir, "certificates", "lego.localhost.crt");
    verifyChain(crt, crt);
    const text = openssl(["x509", "-in", crt, "-noout", "-ext", "subjectAltName", "-serial"]).out;
    expect(text).toContain("DNS:lego.localhost");
    const firstSerial = /serial=(\w+)/.exec(text)![1]!;

    const renewed = await run([...base, "renew", "--days", "90", "--no-random-sleep"], env);
    expect(renewed.code).toBe(0);
    const renewedSerial = /serial=(\w+)/.exec(openssl(["x509", "-in", crt, "-noout", "-serial"]).out)![1]!;
    expect(renewedSerial).not.toBe(firstSerial);
    verifyChain(crt, crt);
    expect(await ocspStatus(crt)).toContain(": good");

    const revoked = await run([...base, "revoke", "--reason", "1", "--keep"], env);
    expect(revoked.code).toBe(0);
    const ocsp = await ocspStatus(crt);
    expect(ocsp).toContain(": revoked");
    expect(ocsp).toContain("Reason: keyCompromise");
  }, 180_000);
});

describe.skipIf(!certbotOk)("certbot [needs Debian certbot and openssl]", () => {
  test("obtains a certificate with --standalone over http-01 and EAB", async () => {
    const k = await eabKey("eab");
    const dir = join(f.dir, "certbot");
    const r = await run(
      [
        "certbot", "certonly", "--standalone", "--http-01-port", String(port), "--http-01-address", "127.0.0.1",
        "--server", `${f.svc.publicUrl}/acme/eab/directory`, "--eab-kid", k.kid, "--eab-hmac-key", k.hmac_key,
        "--config-dir", join(dir, "config"), "--work-dir", join(dir, "work"), "--logs-dir", join(dir, "logs"),
        "--agree-tos", "-m", "ops@example.test", "--no-eff-email", "--non-interactive", "-d", "certbot.localhost",
      ],
      { REQUESTS_CA_BUNDLE: trust },
    );
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const live = join(dir, "config", "live", "certbot.localhost");
    expect(existsSync(join(live, "fullchain.pem"))).toBe(true);
    verifyChain(join(live, "cert.pem"), join(live, "chain.pem"));
    expect(openssl(["x509", "-in", join(live, "cert.pem"), "-noout", "-ext", "subjectAltName"]).out).toContain("DNS:certbot.localhost");
  }, 180_000);
});
