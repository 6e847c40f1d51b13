/**
 * The wiring of deploy/compose.yml, run: identity-authz, sm-kms, audit, both pki-ca instances
 * and identity-idp start as processes
 * (apps/<app>/main.ts, as the image's CMD runs them) with exactly the environment compose gives
 * their containers, but for what only a container has: the compose names of the services
 * (`https://identity-authz:18000`, `postgres:5432`, ...) become 127.0.0.1 and free ports, the
 * container paths (/data, /suite-ca, /run/secrets) folders of the test, the bind address
 * 127.0.0.1 and the admin port 0. PostgreSQL is a real server (Debian `postgresql`) on which
 * deploy/postgres/init.sql runs as the image would run it. Then a token that identity-authz
 * issues opens sm-kms's API, sm-kms's events reach audit over its mTLS port with sm-kms's
 * client certificate, pki-ca issues under compose's profiles and revokes across its instances,
 * and identity-idp's mTLS port trusts what pki-ca issues. No container engine runs here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { parse } from "yaml";
import { startPostgres, type PostgresServer } from "../support/postgres.ts";
import { freePort } from "../support/server-process.ts";
import { startServiceProcess, type ServiceProcess } from "../support/service-process.ts";
import { tempDir } from "../support/service.ts";
import { apiOver, makeCsr, openssl, write } from "../pki-ca/helpers.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const compose = parse(readFileSync(join(DEPLOY, "compose.yml"), "utf8"), { merge: true }) as { services: Record<string, any> };
const TENANT = "deployed";

/** Missing PostgreSQL fails the file under CI; elsewhere startPostgres prints why and the tests are skipped. */
const pgServer: PostgresServer | undefined = await startPostgres();
let root = "";
/** `host:port` on the compose network -> `127.0.0.1:<free port>` here. */
const hosts = new Map<string, string>();
const running: Record<string, ServiceProcess> = {};

/** The compose service's environment, with `${NAME:-default}` at its default (nothing set), moved from the container to this machine. */
function environmentOf(name: string): Record<string, string> {
  const s = compose.services[name];
  const app: string = s.environment.APP;
  const local = (v: string) =>
    v
      .replace(/\$\{\w+:-([^}]*)\}/g, "$1")
      .replace(/\b(https:\/\/|postgres:\/\/[a-z_]+@)([a-z0-9-]+:\d+)/g, (m, scheme: string, host: string) => (hosts.has(host) ? scheme + hosts.get(host) : m))
      .replace(/(^|,)\/data(\/|$)/g, `$1${join(root, name)}$2`)
      .replace(/(^|,)\/suite-ca(\/|$)/g, `$1${join(root, "suite-ca")}$2`)
      .replace(/(^|,)\/run\/secrets\//g, `$1${join(root, "secrets")}/`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.environment as Record<string, unknown>)) env[k] = local(String(v));
  // An instance of a scaled service listens on its own port; the service's name reaches the first.
  const port = (containerPort: string) => (hosts.get(`${name}:${containerPort}`) ?? hosts.get(`${app}:${containerPort}`))!.split(":")[1]!;
  env.CRYPTOUTIL_SERVER_BIND = "127.0.0.1";
  env.CRYPTOUTIL_SERVER_PORT = port(String(s.environment.CRYPTOUTIL_SERVER_PORT));
  env.CRYPTOUTIL_SERVER_ADMIN_PORT = "0";
  if (s.environment.CRYPTOUTIL_SERVER_MTLS_PORT) env.CRYPTOUTIL_SERVER_MTLS_PORT = port(String(s.environment.CRYPTOUTIL_SERVER_MTLS_PORT));
  // Nothing of the container's is left: no compose name of a running service, no container path.
  for (const [k, v] of Object.entries(env)) {
    expect({ k, v: /https:\/\/(identity-authz|identity-idp|sm-kms|audit|pki-ca|postgres):|(^|,)\/(data|suite-ca|run)\//.test(v) }).toEqual({ k, v: false });
  }
  return env;
}

async function start(name: string): Promise<ServiceProcess> {
  const svc = await startServiceProcess(compose.services[name].environment.APP, { runtime: "bun", args: [], dataRoot: root, env: environmentOf(name) });
  running[name] = svc;
  return svc;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(200);
  }
}

const authz = () => running["identity-authz-1"]!;

async function token(tenant: string, client: { client_id: string; client_secret: string }, resource: string): Promise<string> {
  const r = await authz().call(`/t/${tenant}/token`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${client.client_id}:${client.client_secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", resource }),
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { access_token: string }).access_token;
}

const json = (method: string, body: unknown, bearer: string): RequestInit => ({
  method,
  headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
  body: JSON.stringify(body),
});

let operator: { client_id: string; client_secret: string };
let webClient: string;
const CALLBACK = "https://app.example/callback";

// After the group below, whether or not its setup completed.
afterAll(async () => {
  for (const name of ["identity-idp", "pki-ca-2", "pki-ca-1", "sm-kms-1", "audit", "identity-authz-1"]) await running[name]?.stop();
  await pgServer?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!pgServer)("compose's environment, run as processes [needs Debian postgresql]", () => {
  beforeAll(async () => {
    const server = pgServer!;
    root = tempDir("cryptoutil-compose-");
    // The databases init.sql creates, as compose's POSTGRES_USER (the test server's user is the same one).
    expect(server.user).toBe(compose.services.postgres.environment.POSTGRES_USER);
    const db = new pg.Client({ host: "127.0.0.1", port: server.port, user: server.user, database: "postgres", password: readFileSync(server.passwordFile, "utf8").trim() });
    await db.connect();
    try {
      for (const statement of readFileSync(join(DEPLOY, "postgres", "init.sql"), "utf8").replace(/--.*$/gm, "").split(";")) {
        if (statement.trim()) await db.query(statement);
      }
    } finally {
      await db.end();
    }
    hosts.set("postgres:5432", `127.0.0.1:${server.port}`);
    for (const [app, ports] of Object.entries({ "identity-authz": ["18000"], "sm-kms": ["8080"], audit: ["8800", "8801"], "identity-idp": ["18100", "18101"], "pki-ca": ["8443"], "pki-ca-2": ["8443"] })) {
      for (const p of ports) hosts.set(`${app}:${p}`, `127.0.0.1:${await freePort()}`);
    }
    // pki-ca's alias `pki-ca` (its public URL) reaches the first instance.
    hosts.set("pki-ca-1:8443", hosts.get("pki-ca:8443")!);
    // The secrets compose mounts: the unseal files, and the database password.
    mkdirSync(join(root, "secrets"), { recursive: true });
    for (const i of [1, 2]) writeFileSync(join(root, "secrets", `unseal_${i}`), crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 });
    copyFileSync(server.passwordFile, join(root, "secrets", "postgres_password"));

    await start("identity-authz-1");
    const bootFile = join(root, "identity-authz-1", "bootstrap-admin.secret");
    const bootSecret = await waitFor("the bootstrap admin", async () => (existsSync(bootFile) ? readFileSync(bootFile, "utf8").trim() : undefined));
    const admin = await token("root", { client_id: "bootstrap-admin", client_secret: bootSecret }, "identity-authz");
    const created = await authz().call("/service/api/v1/tenants", json("POST", { id: TENANT }, admin));
    expect(created.status).toBe(201);
    const client = await authz().call(
      `/service/api/v1/tenants/${TENANT}/clients`,
      json(
        "POST",
        { client_name: "operator", grant_types: ["client_credentials"], audiences: ["sm-kms", "audit", "pki-ca"], scopes: ["kms:admin", "kms:encrypt", "audit:read", "pki:request", "pki:revoke", "pki:read"] },
        admin,
      ),
    );
    expect(client.status).toBe(201);
    operator = (await client.json()) as typeof operator;
    const web = await authz().call(
      `/service/api/v1/tenants/${TENANT}/clients`,
      json("POST", { client_name: "Deployed web app", grant_types: ["authorization_code"], redirect_uris: [CALLBACK], scopes: ["openid"] }, admin),
    );
    expect(web.status).toBe(201);
    webClient = ((await web.json()) as { client_id: string }).client_id;
    // audit before sm-kms; either order works (events wait in the sender's spool). pki-ca's
    // instances start together on one database (the migrations' advisory lock), before
    // identity-idp, which fetches pki-ca's issuing CA at start.
    await start("audit");
    await Promise.all([start("sm-kms-1"), start("pki-ca-1"), start("pki-ca-2")]);
    await start("identity-idp");
  }, 240_000);

  test("sm-kms (on PostgreSQL) accepts identity-authz's token and refuses a request without one", async () => {
    const kms = running["sm-kms-1"]!;
    const bearer = await token(TENANT, operator, "sm-kms");
    const made = await kms.call("/service/api/v1/keys", json("POST", { name: "deployed-key", algorithm: "A256GCM" }, bearer));
    expect(made.status).toBe(201);
    const { id } = (await made.json()) as { id: string };
    const enc = await kms.call(`/service/api/v1/keys/${id}/encrypt`, json("POST", { plaintext: Buffer.from("wired").toString("base64url") }, bearer));
    expect(enc.status).toBe(200);
    const none = await kms.call("/service/api/v1/keys", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(none.status).toBe(401);
    // The same token for another audience is refused: sm-kms checks what identity-authz wrote.
    const forAudit = await token(TENANT, operator, "audit");
    expect((await kms.call("/service/api/v1/keys", json("POST", { name: "other", algorithm: "A256GCM" }, forAudit))).status).toBe(401);
  });

  test("sm-kms's events reach audit on its mTLS port, sent with sm-kms's client certificate", async () => {
    const bearer = await token(TENANT, operator, "audit");
    const entries = await waitFor("sm-kms's events in audit's log", async () => {
      const r = await running.audit!.call("/service/api/v1/events?service=sm-kms&limit=100", { headers: { authorization: `Bearer ${bearer}` } });
      expect(r.status).toBe(200);
      const items = ((await r.json()) as { items: Array<{ service: string; tenant: string; action: string }> }).items;
      return items.length > 0 ? items : undefined;
    });
    // The sender is the principal audit mapped sm-kms's certificate to; the tenant is the caller's.
    expect(entries.every((e) => e.service === "sm-kms" && e.tenant === TENANT)).toBe(true);
  }, 120_000);

  test("identity-authz hands a browser's sign-in to identity-idp, which verifies the challenge with identity-authz's keys and offers certificate sign-in on its mTLS port", async () => {
    const verifier = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const challenge = Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))).toString("base64url");
    const query = new URLSearchParams({ response_type: "code", client_id: webClient, redirect_uri: CALLBACK, scope: "openid", state: "s1", code_challenge: challenge, code_challenge_method: "S256" });
    const r = await authz().call(`/t/${TENANT}/authorize?${query}`, { redirect: "manual" });
    expect([302, 303]).toContain(r.status);
    const login = new URL(r.headers.get("location")!);
    const idp = running["identity-idp"]!;
    // The idp's public URL as compose gives it (CRYPTOUTIL_IDP_PUBLIC_URL's default, mapped here).
    expect(login.origin).toBe(`https://${hosts.get("identity-idp:18100")}`);
    expect(login.pathname).toBe(`/t/${TENANT}/login`);
    const page = await idp.call(login.pathname + login.search);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(html).toContain("Deployed web app");
    expect(html).toContain(`https://${hosts.get("identity-idp:18101")}/t/${TENANT}/login/certificate`);
    // A challenge identity-authz did not sign is refused.
    const forged = new URLSearchParams({ login_challenge: login.searchParams.get("login_challenge")!.slice(0, -4) + "AAAA" });
    const bad = await idp.call(`/t/${TENANT}/login?${forged}`);
    await bad.arrayBuffer();
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
    // The mTLS port listens, and refuses a client without a certificate from the CA it trusts.
    const mtls = await fetch(`https://${hosts.get("identity-idp:18101")}/t/${TENANT}/login/certificate`, { tls: { ca: idp.ca } } as RequestInit).then(
      (res) => res.status,
      () => "refused",
    );
    expect(mtls === "refused" || (typeof mtls === "number" && mtls >= 400 && mtls < 500)).toBe(true);
  });

  // pki-ca's two instances (and identity-idp's trust in what they issue).
  const dir = () => {
    const d = join(root, "certs");
    mkdirSync(d, { recursive: true });
    return d;
  };

  test("two instances on one database issue under compose's profiles; a revocation on one is in the other's OCSP; names outside the domain are refused", async () => {
    const [ca1, ca2] = [running["pki-ca-1"]!, running["pki-ca-2"]!];
    const bearer = await token(TENANT, operator, "pki-ca");
    const d = dir();
    const { csr } = makeCsr(d, "app", { subj: "/CN=app.internal", san: "DNS:app.internal" });
    const issued = await apiOver(ca1.call)("/certificates", bearer, { body: { csr, profile: "tls-server" } });
    expect(issued.status).toBe(201);
    const cert = ((await issued.json()) as { certificate: { serial: string; certificate_pem: string; chain_pem: string } }).certificate;
    // The profile admits names under the deployment's domain only (CRYPTOUTIL_CA_DOMAIN, default internal).
    const { csr: outside } = makeCsr(d, "outside", { subj: "/CN=app.example.com", san: "DNS:app.example.com" });
    const refused = await apiOver(ca2.call)("/certificates", bearer, { body: { csr: outside, profile: "tls-server" } });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);

    // One hierarchy for both instances; what is issued points at the public URL (the alias, instance 1 here).
    const leaf = write(d, "leaf.pem", cert.certificate_pem);
    const issuing = write(d, "issuing.pem", cert.chain_pem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    const rootPem = write(d, "root.pem", await (await ca2.call("/pki/ca/root.pem")).text());
    expect(openssl(["verify", "-CAfile", rootPem, "-untrusted", issuing, leaf]).code).toBe(0);
    expect(openssl(["x509", "-in", leaf, "-noout", "-ocsp_uri"]).out.trim()).toStartWith(`https://${hosts.get("pki-ca:8443")}/`);

    const ocspReq = join(d, "leaf.req");
    expect(openssl(["ocsp", "-issuer", issuing, "-cert", leaf, "-no_nonce", "-reqout", ocspReq]).code).toBe(0);
    const status = async (svc: ServiceProcess) => {
      const r = await svc.call("/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: readFileSync(ocspReq) });
      const resp = write(d, `r-${crypto.randomUUID()}.resp`, new Uint8Array(await r.arrayBuffer()));
      const out = openssl(["ocsp", "-issuer", issuing, "-reqin", ocspReq, "-respin", resp, "-CAfile", rootPem, "-resp_text"]).out;
      expect(out).toContain("Response verify OK");
      return /Cert Status: (\w+)/.exec(out)?.[1];
    };
    expect(await status(ca1)).toBe("good");
    expect((await apiOver(ca2.call)(`/certificates/${cert.serial}/revoke`, bearer, { body: { reason: "keyCompromise" } })).status).toBe(200);
    expect(await waitFor("the revocation in instance 1's OCSP", async () => ((await status(ca1)) === "revoked" ? true : undefined))).toBe(true);
  }, 120_000);

  test("identity-idp's mTLS port trusts what pki-ca issues (federation.ca) and nothing else", async () => {
    const bearer = await token(TENANT, operator, "pki-ca");
    const d = dir();
    const { csr, keyFile } = makeCsr(d, "person", { subj: "/CN=person.internal", san: "DNS:person.internal" });
    const issued = await running["pki-ca-1"]!.call("/service/api/v1/certificates", json("POST", { csr, profile: "tls-client" }, bearer));
    expect(issued.status).toBe(201);
    const cert = ((await issued.json()) as { certificate: { certificate_pem: string; chain_pem: string } }).certificate;
    const idp = running["identity-idp"]!;
    const url = `https://${hosts.get("identity-idp:18101")}/t/${TENANT}/login/certificate`;
    const handshake = (tls: Record<string, unknown>) =>
      fetch(url, { tls: { ca: idp.ca, ...tls } } as RequestInit).then(
        async (r) => ({ status: r.status, page: await r.text() }),
        () => "refused" as const,
      );
    // The issuing CA reaches identity-idp's trust at start (or at its next poll): the handshake
    // completes and the page shows the certificate's subject (registered to nobody here).
    const got = await waitFor("identity-idp to accept pki-ca's certificate", async () => {
      const s = await handshake({ cert: cert.certificate_pem + cert.chain_pem, key: readFileSync(keyFile, "utf8") });
      return s === "refused" ? undefined : s;
    });
    expect(got.status).toBe(200);
    expect(got.page).toContain("person.internal");
    // A certificate of a CA it does not trust is refused in the handshake.
    const self = join(d, "self.pem");
    expect(openssl(["req", "-x509", "-key", keyFile, "-subj", "/CN=person.internal", "-days", "1", "-out", self]).code).toBe(0);
    expect(await handshake({ cert: readFileSync(self, "utf8"), key: readFileSync(keyFile, "utf8") })).toBe("refused");
  }, 120_000);
});
