/**
 * `cryptoutil login --browser` end to end: the CLI listens on a random loopback port, a
 * scripted browser logs a user in through identity-idp's real pages, identity-authz redirects
 * to `http://127.0.0.1:<port>/callback` although the client registered the URI without a port
 * (RFC 8252 §7.3), and per-service tokens then come from the refresh token with `resource=`
 * (RFC 8707). Also the two identity-authz rules this needs, on their own.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, statSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { redirectMatches } from "../../apps/identity-authz/domain/authorize.ts";
import { ScriptedBrowser } from "../identity/support/browser.ts";
import { oneErrorLine, REPO, startCliSuite, type CliSuite } from "./support/suite.ts";

setDefaultTimeout(60_000);
let s: CliSuite;
const PASSWORD = "cobalt harbour willow 311";

beforeAll(async () => {
  s = await startCliSuite(["sm-kms", "identity-idp"]);
  const admin = await s.loggedInHome();
  const pw = join(admin, "alice.pw");
  writeFileSync(pw, PASSWORD);
  const r = await s.cli(admin, ["identity", "user", "create", "alice", "--password-file", pw, "--name", "Alice"]);
  if (r.code !== 0) throw new Error(`user create: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  await s?.stop();
});

describe("RFC 8252 §7.3 loopback redirect URIs (identity-authz)", () => {
  test("a registered loopback IP URI without a port matches any port; nothing else changes", () => {
    const reg = ["http://127.0.0.1/callback", "http://[::1]/cb", "http://localhost/callback", "https://app.example/cb"];
    expect(redirectMatches(reg, "http://127.0.0.1:49152/callback")).toBe(true);
    expect(redirectMatches(reg, "http://[::1]:8080/cb")).toBe(true);
    expect(redirectMatches(reg, "http://127.0.0.1/callback")).toBe(true);
    expect(redirectMatches(reg, "https://app.example/cb")).toBe(true);
    expect(redirectMatches(reg, "http://127.0.0.1:49152/other")).toBe(false);
    expect(redirectMatches(reg, "http://127.0.0.1:49152/callback/x")).toBe(false);
    expect(redirectMatches(reg, "http://localhost:49152/callback")).toBe(false);
    expect(redirectMatches(reg, "https://app.example:8443/cb")).toBe(false);
    expect(redirectMatches(reg, "http://127.0.0.1:0/callback")).toBe(false);
    expect(redirectMatches(reg, "http://127.0.0.1:99999/callback")).toBe(false);
    expect(redirectMatches(reg, "http://user@127.0.0.1:5000/callback")).toBe(false);
    expect(redirectMatches(["http://127.0.0.1:5000/callback"], "http://127.0.0.1:5001/callback")).toBe(false);
  });
});

/** Runs `login --browser --no-open`, logs alice in with a scripted browser, returns the CLI's result. */
async function browserLogin(home: string, extra: string[] = []) {
  const p = Bun.spawn([process.execPath, join(REPO, "cli/main.ts"), "login", "--browser", "--no-open", ...extra], {
    cwd: home,
    env: { ...process.env, CRYPTOUTIL_HOME: home, CRYPTOUTIL_SUITE: s.suiteFile },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  // The login URL arrives on stderr; read until it is there.
  const reader = p.stderr.getReader();
  let err = "";
  while (!/https:\/\/\S+\n/.test(err)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the CLI ended before printing a URL: ${err}`);
    err += new TextDecoder().decode(value);
  }
  const url = /(https:\/\/\S+)\n/.exec(err)![1]!;
  const redirect = new URL(url).searchParams.get("redirect_uri")!;
  const atCli = (u: string) => u.startsWith("http://127.0.0.1:");
  const b = new ScriptedBrowser(s.ca);
  const login = await b.get(url, atCli);
  expect(login.url).toContain("/login?login_challenge=");
  let page = await b.submit(login, "/login", { username: "alice", password: PASSWORD }, atCli);
  if (page.status !== 0) page = await b.submit(page, "/consent", { decision: "allow" }, atCli);
  expect(page.status).toBe(0);
  expect(page.url.startsWith(`${redirect}?`)).toBe(true);
  // The browser's last hop: the CLI's loopback listener.
  const done = await fetch(page.url);
  expect(done.status).toBe(200);
  const [stdout, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  reader.releaseLock();
  return { code, stdout, redirect };
}

describe("login --browser", () => {
  let home: string;

  test("authorization code + PKCE on a random loopback port; the refresh token is kept 0600", async () => {
    home = s.newHome();
    const r = await browserLogin(home);
    expect(r.code).toBe(0);
    expect(r.redirect).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(r.stdout).toContain("browser login");
    const rt = join(home, "tokens", "demo", "refresh.json");
    expect(statSync(rt).mode & 0o777).toBe(0o600);
  });

  test("per-service tokens come from the refresh token with resource= (RFC 8707), as alice", async () => {
    const keys = await s.cli(home, ["kms", "key", "create", "alices-key", "--alg", "A256GCM"]);
    expect(keys.stderr).toBe("");
    expect(keys.code).toBe(0);
    const kmsToken = decodeJwt(JSON.parse(readFileSync(join(home, "tokens", "demo", "sm-kms.json"), "utf8")).access_token);
    expect(kmsToken.aud).toBe("sm-kms");
    expect(kmsToken.client_id).toBe("cryptoutil-cli");
    const users = await s.cli(home, ["identity", "user", "list", "--json"]);
    expect(users.code).toBe(0);
    const idpToken = decodeJwt(JSON.parse(readFileSync(join(home, "tokens", "demo", "identity-idp.json"), "utf8")).access_token);
    expect(idpToken.aud).toBe("identity-idp");
    expect(idpToken.sub).toBe(kmsToken.sub);
  });

  test("parallel commands that all need a new token share the rotating refresh token", async () => {
    rmSync(join(home, "tokens", "demo", "sm-kms.json"), { force: true });
    const runs = await Promise.all([1, 2, 3].map(() => s.cli(home, ["kms", "key", "list"])));
    for (const r of runs) {
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
    }
  });

  test("identity-authz refuses a resource the grant does not cover, and the refresh token stays usable", async () => {
    const rt = (JSON.parse(readFileSync(join(home, "tokens", "demo", "refresh.json"), "utf8")) as { refresh_token: string }).refresh_token;
    const token = (resource: string) =>
      fetch(`${s.authzUrl}/t/demo/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: rt, client_id: "cryptoutil-cli", resource }),
        tls: { ca: s.ca },
      } as RequestInit);
    const refused = await token("learn-ps");
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe("invalid_target");
    const ok = await token("identity-authz");
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { access_token: string; refresh_token: string };
    expect(decodeJwt(body.access_token).aud).toBe("identity-authz");
    writeFileSync(join(home, "tokens", "demo", "refresh.json"), JSON.stringify({ refresh_token: body.refresh_token, scope: "" }), { mode: 0o600 });
  });

  test("a revoked grant: exit 1 with invalid_grant and the way out; logout forgets the tokens", async () => {
    const other = s.newHome();
    expect((await browserLogin(other)).code).toBe(0);
    const refresh = JSON.parse(readFileSync(join(other, "tokens", "demo", "refresh.json"), "utf8")) as { refresh_token: string };
    // Reuse of a rotated refresh token revokes the whole grant.
    rmSync(join(other, "tokens", "demo", "sm-kms.json"), { force: true });
    expect((await s.cli(other, ["kms", "key", "list"])).code).toBe(0);
    writeFileSync(join(other, "tokens", "demo", "refresh.json"), JSON.stringify({ ...refresh, scope: "" }), { mode: 0o600 });
    rmSync(join(other, "tokens", "demo", "sm-kms.json"), { force: true });
    const r = await s.cli(other, ["kms", "key", "list"]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: invalid_grant: .*login --browser/);

    const out = await s.cli(home, ["logout", "--json"]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout).revoked_refresh_token).toBe(true);
    const after = await s.cli(home, ["kms", "key", "list"]);
    expect(after.code).toBe(2);
    expect(oneErrorLine(after.stderr)).toContain("login --browser");
  });
});

describe("login --device (RFC 8628)", () => {
  test("the CLI prints a code; alice enters it, signs in at identity-idp and approves; the CLI gets her tokens", async () => {
    const home = s.newHome();
    const p = Bun.spawn([process.execPath, join(REPO, "cli/main.ts"), "login", "--device", "--json"], {
      cwd: home,
      env: { ...process.env, CRYPTOUTIL_HOME: home, CRYPTOUTIL_SUITE: s.suiteFile },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = p.stderr.getReader();
    let err = "";
    while (!/Waiting up to/.test(err)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the CLI ended before printing a code: ${err}`);
      err += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const uri = /open (https:\/\/\S+) in a browser/.exec(err)![1]!;
    expect(uri).toBe(`${s.authzUrl}/t/demo/device`);
    const code = /^ {4}([A-Z]{4}-[A-Z]{4})$/m.exec(err)![1]!;

    const b = new ScriptedBrowser(s.ca);
    const entry = await b.get(uri);
    let page = await b.submit(entry, "/device", { user_code: code });
    expect(page.url).toContain("/login?login_challenge=");
    page = await b.submit(page, "/login", { username: "alice", password: PASSWORD });
    if (page.html.includes("/consent")) page = await b.submit(page, "/consent", { decision: "allow" });
    expect(page.html).toContain(code);
    const approved = await b.submit(page, "/device/confirm", { decision: "approve" });
    expect(approved.html).toContain("Device approved");

    const [stdout, exit] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(exit).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ context: "demo", auth: "browser", client_id: "cryptoutil-cli" });
    const rt = join(home, "tokens", "demo", "refresh.json");
    expect(statSync(rt).mode & 0o777).toBe(0o600);
    // Per-service tokens come from the device grant's refresh token, as alice.
    const keys = await s.cli(home, ["kms", "key", "list"]);
    expect(keys.code).toBe(0);
    const kmsToken = decodeJwt(JSON.parse(readFileSync(join(home, "tokens", "demo", "sm-kms.json"), "utf8")).access_token);
    expect(kmsToken.client_id).toBe("cryptoutil-cli");
    expect(kmsToken.sub).not.toBe("cryptoutil-cli");
  });
});
