/**
 * Certificate sign-in with certificates pki-ca issues, wired as `npm start` wires it: the idp's
 * mTLS port trusts pki-ca's issuing CA, which the idp fetches from pki-ca itself (federation.ca)
 * — pki-ca starts after the idp here, so the trust arrives at run time. Keys and CSRs are made
 * with openssl, the certificates issued by pki-ca's API (profile tls-client). A certificate whose
 * e-mail SAN is a user's verified address signs that user in when the tenant's policy says so
 * (`certificate_email`), through the OAuth flow to the client with `amr: ["swk"]`, and in headless
 * Chromium (playwright-core presenting the certificate) from learn-ps's Sign in; refused: the
 * policy off, an address nobody verified, a certificate of another CA (the handshake), a revoked
 * certificate (pki-ca's OCSP responder, registered certificates too), and while pki-ca cannot
 * answer for the certificate's status (503). Likewise a certificate whose UPN SAN (Microsoft
 * otherName) is a user's username, case-insensitively (`certificate_upn`); refused: that policy
 * off, a UPN nobody has, UPN and e-mail naming two users; a UPN outside the profile's
 * `upn_domains` is not even issued.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type * as oauth from "oauth4webapi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { clientToken } from "../../scripts/suite/demo.ts";
import { quiet, startTestService, trustIdentity, type TestService } from "../support/service.ts";
import { startIdentitySuite, type IdentitySuite } from "./support/e2e-suite.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { discover, finishCliLogin, startCliLogin } from "./support/cli-login.ts";
import { freePort } from "./support/authz.ts";
import { chromiumPath, launchChromium } from "../support/chromium.ts";

setDefaultTimeout(60_000);
let s: IdentitySuite;
let ca: TestService;
let mtlsUrl: string;
let pkiToken: string;
let carol: { id: string };
let alice: { id: string };
let as: oauth.AuthorizationServer;

function openssl(args: string[], cwd: string): string {
  const p = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

type Issued = { cert: string; key: string; serial: string };

/** A P-256 key and CSR made by openssl, issued by pki-ca under `profile` with the given SANs. */
async function issue(name: string, sans: string[], profile = "tls-client"): Promise<Issued> {
  const dir = s.root;
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`, "-addext", `subjectAltName=${sans.join(",")}`, "-keyout", `${name}.key`, "-out", `${name}.csr`], dir);
  const res = await ca.call("/service/api/v1/certificates", {
    method: "POST",
    headers: { authorization: `Bearer ${pkiToken}`, "content-type": "application/json" },
    body: JSON.stringify({ profile, csr: readFileSync(join(dir, `${name}.csr`), "utf8"), validity_days: 7 }),
  });
  const body = (await res.json()) as { certificate: { serial: string; certificate_pem: string; chain_pem: string } };
  if (res.status !== 201) throw new Error(`issue ${name}: ${res.status} ${JSON.stringify(body)}`);
  return { cert: body.certificate.certificate_pem + body.certificate.chain_pem, key: readFileSync(join(dir, `${name}.key`), "utf8"), serial: body.certificate.serial };
}

/** A CA of its own (openssl) and a clientAuth certificate from it naming carol's address. */
function foreignCertificate(): { cert: string; key: string } {
  const dir = s.root;
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Foreign CA", "-days", "2", "-keyout", "foreign-ca.key", "-out", "foreign-ca.crt"], dir);
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=carol", "-keyout", "foreign.key", "-out", "foreign.csr"], dir);
  Bun.write(join(dir, "foreign.ext"), "subjectAltName=email:carol@example.com\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n");
  openssl(["x509", "-req", "-in", "foreign.csr", "-CA", "foreign-ca.crt", "-CAkey", "foreign-ca.key", "-CAcreateserial", "-days", "2", "-extfile", "foreign.ext", "-out", "foreign.crt"], dir);
  return { cert: readFileSync(join(dir, "foreign.crt"), "utf8"), key: readFileSync(join(dir, "foreign.key"), "utf8") };
}

const page = (b: ScriptedBrowser) => b.request(`${mtlsUrl}/t/${s.tenant}/login/certificate`);

/** GETs the certificate page, then posts its form: the answer to signing in with `b`'s certificate. */
async function signIn(b: ScriptedBrowser) {
  const confirm = await b.get(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
  if (confirm.status !== 200) return confirm;
  return b.submit(confirm, "/login/certificate", {}, (u) => u.startsWith(s.cliRedirect));
}

/** The OAuth flow of the CLI client, signed in with `b`'s certificate as `username`: the ID token's claims. */
async function signInThroughClient(b: ScriptedBrowser, username: string) {
  const login = await startCliLogin(s, as, b);
  const confirm = await b.get(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
  expect(confirm.html).toContain(`signs you in as <strong id="certificate-user">${username}</strong>`);
  const consent = await b.submit(confirm, "/login/certificate", {}, (x) => x.startsWith(s.cliRedirect));
  const back = consent.url.includes("/consent") ? await b.submit(consent, "/consent", { decision: "allow" }, (x) => x.startsWith(s.cliRedirect)) : consent;
  return finishCliLogin(s, as, login, back.url);
}

beforeAll(async () => {
  if (!Bun.which("openssl")) throw new Error("the Debian package openssl is required");
  const [mtlsPort, pkiPort] = [await freePort(), await freePort()];
  const pkiUrl = `https://127.0.0.1:${pkiPort}`;
  s = await startIdentitySuite({
    idpOverrides: (c) => {
      c.server.mtls_port = mtlsPort;
      c.federation.ca = { ...c.federation.ca, url: pkiUrl, ca_file: join(c.data.dir, "trust-bundle.pem") };
    },
  });
  mtlsUrl = `https://127.0.0.1:${mtlsPort}`;
  // pki-ca after the idp: the idp keeps asking for its CA until it answers.
  ca = await startTestService(pkiCa, {
    root: s.root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, s.authz.publicUrl, join(s.root, "pki-ca", "trust-bundle.pem"), "pki-ca");
      c.server.port = pkiPort;
      c.app = { base_url: pkiUrl };
    },
  });
  const client = await s.authzAdmin(`/tenants/${s.tenant}/clients`, { client_name: "pki", grant_types: ["client_credentials"], scopes: ["pki:request", "pki:read", "pki:revoke"], audiences: ["pki-ca"] });
  pkiToken = await clientToken(s.ca, s.issuer, client.client_id, client.client_secret, "pki-ca");
  carol = (await (await s.idpAdmin("POST", "/users", { username: "carol", password: "cobalt harbour willow 311", name: "Carol", email: "carol@example.com", email_verified: true })).json()) as { id: string };
  await s.idpAdmin("POST", "/users", { username: "dave", password: "saffron meadow quiver 82", name: "Dave", email: "dave@example.com", email_verified: false });
  // A username in UPN form, and no e-mail address: only a UPN can name her.
  alice = (await (await s.idpAdmin("POST", "/users", { username: "alice@example.com", password: "juniper lantern oxide 47", name: "Alice" })).json()) as { id: string };
  as = await discover(s);
}, 120_000);

afterAll(async () => {
  await ca?.stop();
  await s?.stop();
});

describe("certificate sign-in with pki-ca's certificates", () => {
  let carolCert: Issued;

  test("the idp fetches pki-ca's issuing CA once pki-ca is up: its certificates complete the handshake", async () => {
    carolCert = await issue("carol", ["email:carol@example.com"]);
    const b = new ScriptedBrowser(s.ca, carolCert);
    let status = 0;
    for (let i = 0; i < 120 && status !== 200; i++) {
      status = await page(b).then(
        (p) => p.status,
        () => 0,
      );
      if (status !== 200) await Bun.sleep(500);
    }
    expect(status).toBe(200);
  });

  test("policy off (the default): the e-mail SAN signs nobody in", async () => {
    expect(((await (await s.idpAdmin("GET", "/policy")).json()) as { certificate_email: boolean }).certificate_email).toBe(false);
    const b = new ScriptedBrowser(s.ca, carolCert);
    expect((await page(b)).html).toContain("not registered to an account");
    expect((await signIn(b)).status).toBe(401);
  });

  test("policy on: the certificate naming carol's verified address signs carol in through to the client, amr swk", async () => {
    const put = await s.idpAdmin("PUT", "/policy", { certificate_email: true });
    expect(put.status).toBe(200);
    expect(((await put.json()) as { certificate_email: boolean }).certificate_email).toBe(true);

    const id = await signInThroughClient(new ScriptedBrowser(s.ca, carolCert), "carol");
    expect(id.sub).toBe(carol.id);
    expect(id.amr).toEqual(["swk"]);
  });

  test("Chromium: learn-ps's Sign in, the idp's 'Sign in with a certificate', the certificate picked for the mTLS origin, back at learn-ps as carol", async () => {
    const exe = chromiumPath();
    if (!exe) return;
    const browser = await launchChromium(exe, await s.spkiPins());
    try {
      // Playwright presents client certificates from a TLS proxy of its own, which checks the server
      // against the system's CAs only: the suite CA is unknown there, so that leg skips the check
      // (every page of this test is one of the suite's own loopback servers).
      const context = await browser.newContext({ ignoreHTTPSErrors: true, clientCertificates: [{ origin: mtlsUrl, cert: Buffer.from(carolCert.cert), key: Buffer.from(carolCert.key) }] });
      const page = await context.newPage();
      await page.goto(`${s.ps.publicUrl}/browser/`);
      await page.getByRole("link", { name: "Sign in" }).click();
      await page.getByRole("link", { name: "Sign in with a certificate" }).click();
      await page.waitForURL((u) => u.origin === mtlsUrl);
      await page.locator("#certificate-user", { hasText: "carol" }).waitFor();
      await page.getByRole("button", { name: "Sign in with this certificate" }).click();
      await page.waitForURL((u) => u.pathname.endsWith("/consent") || u.origin === s.ps.publicUrl);
      if (page.url().includes("/consent")) await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(`${s.ps.publicUrl}/browser/`);
      await page.locator("#who", { hasText: "Signed in as carol" }).waitFor();
    } finally {
      await browser.close();
    }
  });

  test("refused: an address nobody has, an address not verified, a certificate of another CA", async () => {
    const nobody = new ScriptedBrowser(s.ca, await issue("nobody", ["email:nobody@example.com"]));
    expect((await signIn(nobody)).status).toBe(401);
    const dave = new ScriptedBrowser(s.ca, await issue("dave", ["email:dave@example.com"]));
    expect((await page(dave)).html).toContain("not registered to an account");
    expect((await signIn(dave)).status).toBe(401);
    const foreign = new ScriptedBrowser(s.ca, foreignCertificate());
    await expect(page(foreign)).rejects.toThrow();
  });

  test("UPN, policy certificate_upn off (the default): a UPN SAN signs nobody in", async () => {
    expect(((await (await s.idpAdmin("GET", "/policy")).json()) as { certificate_upn: boolean }).certificate_upn).toBe(false);
    const b = new ScriptedBrowser(s.ca, await issue("alice-off", ["otherName:msUPN;UTF8:alice@example.com"]));
    expect((await page(b)).html).toContain("not registered to an account");
    expect((await signIn(b)).status).toBe(401);
  });

  test("UPN, policy on: the certificate whose UPN is alice's username, in any case, signs alice in through to the client, amr swk", async () => {
    const put = await s.idpAdmin("PUT", "/policy", { certificate_upn: true });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ certificate_email: true, certificate_upn: true });
    const aliceCert = await issue("alice", ["otherName:msUPN;UTF8:Alice@Example.COM"]);
    const id = await signInThroughClient(new ScriptedBrowser(s.ca, aliceCert), "alice@example.com");
    expect(id.sub).toBe(alice.id);
    expect(id.amr).toEqual(["swk"]);
  });

  test("UPN refused: a UPN nobody has, UPN and e-mail naming two users, and a UPN outside upn_domains is not issued", async () => {
    const nobody = new ScriptedBrowser(s.ca, await issue("upn-nobody", ["otherName:msUPN;UTF8:nobody@example.com"]));
    expect((await page(nobody)).html).toContain("not registered to an account");
    expect((await signIn(nobody)).status).toBe(401);
    const two = new ScriptedBrowser(s.ca, await issue("upn-two", ["otherName:msUPN;UTF8:alice@example.com", "email:carol@example.com"]));
    expect((await signIn(two)).status).toBe(401);
    await expect(issue("upn-evil", ["otherName:msUPN;UTF8:alice@evil.test"])).rejects.toThrow(/422.*upn_not_allowed/);
  });

  test("a revoked certificate signs nobody in, by e-mail or registered", async () => {
    const registered = await issue("carol-laptop", ["DNS:carol-laptop.test"]);
    expect((await s.idpAdmin("POST", `/users/${carol.id}/certificates`, { certificate: registered.cert, name: "laptop" })).status).toBe(201);
    expect((await page(new ScriptedBrowser(s.ca, registered))).html).toContain('id="certificate-user">carol<');
    for (const c of [carolCert, registered]) {
      const r = await ca.call(`/service/api/v1/certificates/${c.serial}/revoke`, { method: "POST", headers: { authorization: `Bearer ${pkiToken}`, "content-type": "application/json" }, body: JSON.stringify({ reason: "keyCompromise" }) });
      expect(r.status).toBe(200);
      const b = new ScriptedBrowser(s.ca, c);
      const shown = await page(b);
      expect(shown.status).toBe(401);
      expect(shown.html).toContain("This certificate is revoked");
      expect((await signIn(b)).status).toBe(401);
    }
  });

  test("while pki-ca cannot answer for a certificate's status, its certificates sign nobody in (503)", async () => {
    const good = await issue("carol-phone", ["email:carol@example.com"]);
    expect((await page(new ScriptedBrowser(s.ca, good))).status).toBe(200);
    await ca.stop();
    const shown = await page(new ScriptedBrowser(s.ca, good));
    expect(shown.status).toBe(503);
    expect(shown.html).toContain("revocation status could not be checked");
  });
});
