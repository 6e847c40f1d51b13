/**
 * identity-idp signs a user in with a TLS client certificate on its mutual-TLS port: the
 * certificate is issued by a CA the idp is configured to trust (`mtls.ca_file`), an
 * administrator registers it for the user, and the login started on the public port continues
 * on the mTLS port, through consent, back to the client with `amr: ["swk"]`. Refused: no
 * certificate (the public port), a certificate registered to nobody, a certificate of another
 * CA (the handshake), a form without the CSRF token; fuzzed form bodies get 4xx.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type * as oauth from "oauth4webapi";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createSuiteCa, trustBundlePem } from "../../src/pki/index.ts";
import { clientCertificate, type ClientCertificateFiles } from "../support/tls.ts";
import { fuzz, mutateJson, mutateText, rng } from "../support/fuzz.ts";
import { startIdentitySuite, type IdentitySuite } from "./support/e2e-suite.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { discover, finishCliLogin, startCliLogin } from "./support/cli-login.ts";
import { freePort } from "./support/authz.ts";

setDefaultTimeout(30_000);
let s: IdentitySuite;
let mtlsUrl: string;
let carol: { id: string };
let registered: ClientCertificateFiles;
let unregistered: ClientCertificateFiles;
let foreign: ClientCertificateFiles;
let as: oauth.AuthorizationServer;

beforeAll(async () => {
  const ca = await createSuiteCa();
  const mtlsPort = await freePort();
  s = await startIdentitySuite({
    idpOverrides: (c) => {
      c.server.mtls_port = mtlsPort;
      const caFile = join(c.data.dir, "..", "user-ca.pem");
      writeFileSync(caFile, trustBundlePem(ca));
      c.mtls.ca_file = caFile;
    },
  });
  mtlsUrl = `https://127.0.0.1:${mtlsPort}`;
  registered = await clientCertificate(ca, s.root, "carol-laptop", { dnsNames: ["carol.example"] });
  unregistered = await clientCertificate(ca, s.root, "someone-else", { dnsNames: ["other.example"] });
  foreign = await clientCertificate(await createSuiteCa(), s.root, "foreign", { dnsNames: ["carol.example"] });
  const made = await s.idpAdmin("POST", "/users", { username: "carol", password: "cobalt harbour willow 311", name: "Carol" });
  carol = (await made.json()) as { id: string };
  as = await discover(s);
}, 90_000);

afterAll(async () => {
  await s?.stop();
});

const atClient = (u: string) => u.startsWith(s.cliRedirect);

/** Starts the CLI client's authorization request in `b`; returns the idp's login page and the PKCE state. */
const startLogin = (b: ScriptedBrowser) => startCliLogin(s, as, b);

describe("certificate sign-in", () => {
  test("an administrator registers a user's certificate; listing shows its fingerprint", async () => {
    const r = await s.idpAdmin("POST", `/users/${carol.id}/certificates`, { certificate: registered.cert, name: "laptop" });
    expect(r.status).toBe(201);
    const c = (await r.json()) as { x5t_s256: string; subject: string; name: string };
    expect(c.name).toBe("laptop");
    expect(c.x5t_s256).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await s.idpAdmin("POST", `/users/${carol.id}/certificates`, { certificate: registered.cert })).status).toBe(409);
    expect((await s.idpAdmin("POST", `/users/${carol.id}/certificates`, { certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" })).status).toBe(400);
    const list = (await (await s.idpAdmin("GET", `/users/${carol.id}/certificates`)).json()) as { items: unknown[] };
    expect(list.items).toHaveLength(1);
  });

  test("the login page links to the mTLS port; the certificate signs carol in through to the client, amr swk", async () => {
    const b = new ScriptedBrowser(s.ca, registered);
    const login = await startLogin(b);
    const page = login.page;
    const link = page.html.match(/<a href="([^"]+\/login\/certificate)">Sign in with a certificate<\/a>/)?.[1];
    expect(link).toBe(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
    const confirm = await b.get(link!);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain("carol-laptop");
    const consent = await b.submit(confirm, "/login/certificate", {}, atClient);
    const back = consent.url.includes("/consent") ? await b.submit(consent, "/consent", { decision: "allow" }, atClient) : consent;
    expect(back.status).toBe(0); // stopped at the client's redirect URI
    const id = await finishCliLogin(s, as, login, back.url);
    expect(id.sub).toBe(carol.id);
    expect(id.amr).toEqual(["swk"]);
  });

  test("refused: no certificate on the public port, an unregistered certificate, a missing CSRF token", async () => {
    const plain = new ScriptedBrowser(s.ca);
    const none = await plain.get(`${s.idp.publicUrl}/t/${s.tenant}/login/certificate`);
    expect(none.status).toBe(400);
    expect(none.html).toContain("No client certificate");

    const other = new ScriptedBrowser(s.ca, unregistered);
    await startLogin(other);
    const confirm = await other.get(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
    const refused = await other.submit(confirm, "/login/certificate", {});
    expect(refused.status).toBe(401);
    expect(refused.html).toContain("not registered");

    const noCsrf = await other.request(`${mtlsUrl}/t/${s.tenant}/login/certificate`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", origin: mtlsUrl }, body: "" });
    expect(noCsrf.status === 400 || noCsrf.status === 403).toBe(true);
  });

  test("a certificate of a CA the idp does not trust fails the handshake", async () => {
    const b = new ScriptedBrowser(s.ca, foreign);
    await expect(b.request(`${mtlsUrl}/t/${s.tenant}/login/certificate`)).rejects.toThrow();
  });

  test("a removed certificate signs nobody in", async () => {
    const list = (await (await s.idpAdmin("GET", `/users/${carol.id}/certificates`)).json()) as { items: Array<{ id: string }> };
    expect((await s.idpAdmin("DELETE", `/users/${carol.id}/certificates/${list.items[0]!.id}`)).status).toBe(204);
    const b = new ScriptedBrowser(s.ca, registered);
    await startLogin(b);
    const confirm = await b.get(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
    expect((await b.submit(confirm, "/login/certificate", {})).status).toBe(401);
  });

  test("fuzz: mutated forms on the mTLS port get 4xx", async () => {
    const b = new ScriptedBrowser(s.ca, registered);
    const confirm = await b.get(`${mtlsUrl}/t/${s.tenant}/login/certificate`);
    const token = confirm.html.match(/name="csrf_token" value="([^"]+)"/)![1]!;
    const r = rng(0x18_0400);
    const cases = Array.from({ length: 120 }, () => mutateText(`csrf_token=${token}`, r));
    const { statuses } = await fuzz(cases, (body) => b.request(`${mtlsUrl}/t/${s.tenant}/login/certificate`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", origin: mtlsUrl }, body }).then((p) => new Response(null, { status: p.status })), { describe: (x) => x, concurrency: 4, maxMs: 120_000 });
    for (const st of statuses.keys()) expect(st >= 400 && st < 500).toBe(true);
  }, 120_000);

  test("fuzz: mutated registrations at the admin API get 4xx", async () => {
    const r = rng(0x18_0401);
    // The suite's admin helper sends JSON: the mutations that still parse (malformed JSON is the pipeline's, fuzzed elsewhere).
    const cases = Array.from({ length: 150 }, () => mutateJson({ certificate: unregistered.cert, name: "n" }, r)).filter(isJson);
    const { statuses } = await fuzz(
      cases,
      async (body) => {
        const res = await s.idpAdmin("POST", `/users/${carol.id}/certificates`, JSON.parse(body));
        // A mutation that still is this valid certificate registers it: remove it again for the next case.
        if (res.status === 201) await s.idpAdmin("DELETE", `/users/${carol.id}/certificates/${((await res.clone().json()) as { id: string }).id}`);
        return res;
      },
      { describe: (x) => x.slice(0, 200), concurrency: 4, maxMs: 120_000 },
    );
    for (const st of statuses.keys()) expect((st >= 400 && st < 500) || st === 201).toBe(true);
  }, 120_000);
});

const isJson = (s: string) => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};
