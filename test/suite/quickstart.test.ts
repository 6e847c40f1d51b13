/**
 * Day one, as a newcomer: `npm start` in a fresh project folder (its table of services and
 * pki-ca's enrollment endpoints of the demo tenant, each asked at its printed URL), then the README's quickstart
 * verbatim (CLI login, a key, encrypt and decrypt, a certificate checked by `openssl verify` and
 * `openssl ocsp` before and after revocation, a JWT verified by the `jose` library with the
 * service's JWKS), the README's certificate sign-in with curl (a pki-ca client certificate signs
 * the demo user in at identity-idp's mTLS port, and no longer once revoked), then headless
 * Chromium signs into learn-ps through its "Sign in" link as the demo user, adds a pet and opens identity-authz's console from the navigation bar (the same
 * sign-in), and the sm-kms explorer's Test Request gets a 200.
 *
 * Needs the Debian packages openssl (the quickstart's openssl lines) and chromium.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRemoteJWKSet, customFetch, jwtVerify } from "jose";
import { bash, freshProject, npmStart, REPO, type RunningSuite } from "../support/project.ts";
import { chromiumPath, launchChromium, spkiPins } from "../support/chromium.ts";

setDefaultTimeout(120_000);
let dir: string;
let suite: RunningSuite;
let ca: string;

const SERVICES = ["identity-authz", "identity-idp", "jose-ja", "learn-ps", "pki-ca", "sm-kms", "sm-secrets"];
const PORTS = [18000, 18100, 9443, 8888, 8443, 8080, 8090];

/** A block of the README between `<!-- name:begin -->` and `<!-- name:end -->`, verbatim. */
function readmeBlock(name: string): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const block = new RegExp(`<!-- ${name}:begin -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(readme);
  if (!block) throw new Error(`README.md has no ${name} block`);
  return block[1]!;
}

/** The README's quickstart block, verbatim. */
const quickstart = () => readmeBlock("quickstart");

beforeAll(async () => {
  if (!Bun.which("openssl") && process.env.CI === "true") throw new Error("the Debian package openssl is required");
  dir = freshProject();
  suite = await npmStart(dir, [], { CRYPTOUTIL_HOME: join(dir, ".cryptoutil-home") });
  ca = readFileSync(join(dir, "data", "identity-authz", "trust-bundle.pem"), "utf8");
}, 150_000);

afterAll(async () => {
  if (suite) expect(await suite.stop()).toBe(true);
});

test("npm start prints every service with its URLs and memory, then the next steps", () => {
  const out = suite.out();
  expect(out).toContain("cryptoutil is running");
  for (const [i, name] of SERVICES.entries()) {
    const row = out.split("\n").find((l) => l.startsWith(name + " "));
    expect(row).toBeDefined();
    const [, pub, admin, docs, rss] = row!.trim().split(/\s+/);
    expect(pub).toBe(`https://127.0.0.1:${PORTS[i]}`);
    expect(admin).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(docs).toBe(`${pub}/docs`);
    expect(Number(rss)).toBeGreaterThan(0);
  }
  expect(out).toContain("next steps:");
  expect(out).toContain("npx cryptoutil login");
});

test("npm start prints pki-ca's enrollment endpoints of the demo tenant, and each answers its protocol at the printed URL", async () => {
  const out = suite.out();
  const lines = out.split("\n");
  const head = lines.findIndex((l) => l.startsWith('pki-ca endpoints (tenant "demo")'));
  expect(head).toBeGreaterThan(0);
  const printed = new Map<string, string>();
  for (const l of lines.slice(head + 1)) {
    const m = /^  (.+?)\s{2,}(https?:\/\/\S+)$/.exec(l);
    if (!m) break;
    printed.set(m[1]!, m[2]!);
  }
  const pki = "https://127.0.0.1:8443";
  expect(Object.fromEntries(printed)).toEqual({
    "ACME directory": `${pki}/acme/demo/directory`,
    "EST (profile tls-client)": `${pki}/.well-known/est/tls-client`,
    "EST (profile tls-server)": `${pki}/.well-known/est/tls-server`,
    "SCEP (profile tls-client)": `${pki}/scep/demo/tls-client`,
    "CMP (profile tls-client)": `${pki}/.well-known/cmp/p/tls-client`,
    "CMP (profile tls-server)": `${pki}/.well-known/cmp/p/tls-server`,
    CMC: `${pki}/cmc`,
  });
  const get = (url: string, init: RequestInit = {}) => fetch(url, { ...init, tls: { ca } } as RequestInit);
  const directory = (await (await get(printed.get("ACME directory")!)).json()) as { newNonce?: string };
  expect(directory.newNonce).toBe(`${pki}/acme/demo/new-nonce`);
  const cacerts = await get(`${printed.get("EST (profile tls-client)")}/cacerts`);
  expect([cacerts.status, cacerts.headers.get("content-type")]).toEqual([200, "application/pkcs7-mime"]);
  expect(await (await get(`${printed.get("SCEP (profile tls-client)")}?operation=GetCACaps`)).text()).toContain("SCEPStandard");
  // CMP and CMC refuse a body that is not theirs with their own 4xx: the paths exist.
  const cmp = await get(printed.get("CMP (profile tls-server)")!, { method: "POST", headers: { "content-type": "application/pkixcmp" }, body: new Uint8Array([0x30, 0x00]) });
  expect(cmp.status).toBe(400);
  const cmc = await get(printed.get("CMC")!, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" });
  expect(cmc.status).toBe(415);
});

/** Resident memory (MiB) of the service process started with this data directory, from /proc. */
function rssOf(service: string): number | undefined {
  const marker = `--data.dir=${join(dir, "data", service)}`;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(marker)) continue;
      return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
    } catch {
      // the process went away between the listing and the read
    }
  }
  return undefined;
}

test("each service settles at or under 128 MiB RSS when idle", async () => {
  // Start-up work (the demo user's Argon2 hash, its worker) is released within about 30 s.
  const settled = new Map<string, number>();
  for (let i = 0; i < 90 && settled.size < SERVICES.length; i++) {
    for (const name of SERVICES) {
      const rss = rssOf(name);
      expect(rss).toBeDefined();
      if (rss! <= 128) settled.set(name, rss!);
    }
    if (settled.size < SERVICES.length) await Bun.sleep(1000);
  }
  expect([...SERVICES].filter((s) => !settled.has(s))).toEqual([]);
});

test("the first encrypt takes at most 3 commands and the first certificate at most 2", () => {
  const commands = quickstart()
    .split("\n")
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter((l) => l.startsWith("npx ") || l.includes("| npx "));
  const firstEncrypt = commands.findIndex((l) => l.includes("kms encrypt")) + 1;
  const certificate = commands.filter((l) => !l.includes(" kms ")).findIndex((l) => l.includes("ca certificate")) + 1;
  expect(firstEncrypt).toBeGreaterThan(0);
  expect(firstEncrypt).toBeLessThanOrEqual(3);
  expect(certificate).toBeGreaterThan(0);
  expect(certificate).toBeLessThanOrEqual(2);
});

describe("the README quickstart, verbatim", () => {
  let run: { code: number; out: string; err: string };
  beforeAll(async () => {
    if (!Bun.which("openssl")) {
      console.warn("skipping the quickstart: the Debian package openssl is missing");
      return;
    }
    run = await bash(dir, `set -euo pipefail\n${quickstart()}`, { CRYPTOUTIL_HOME: join(dir, ".cryptoutil-home") });
  }, 120_000);

  test("every line succeeds; decrypt gives the plaintext back", () => {
    if (!run) return;
    if (run.code !== 0) console.error(run.err);
    expect(run.code).toBe(0);
    expect(run.out).toContain("hello, world");
    expect(run.err).not.toContain("    at "); // no stack trace anywhere
  });

  test("openssl verify accepts the certificate; openssl ocsp says good, then revoked", () => {
    if (!run) return;
    expect(run.out).toContain("localhost.crt: OK");
    const statuses = [...run.out.matchAll(/^localhost\.crt: (good|revoked|unknown)$/gm)].map((m) => m[1]);
    expect(statuses).toEqual(["good", "revoked"]);
    expect(run.out + run.err).toContain("Response verify OK");
  });

  test("the JWT verifies with the jose library against jose-ja's public JWKS", async () => {
    if (!run) return;
    const jwt = readFileSync(join(dir, "alice.jwt"), "utf8").trim();
    const jwks = createRemoteJWKSet(new URL("https://127.0.0.1:9443/t/demo/jwks"), {
      [customFetch]: (url, init) => fetch(url, { ...init, tls: { ca } } as RequestInit),
    });
    const { payload, protectedHeader } = await jwtVerify(jwt, jwks);
    expect(payload.sub).toBe("alice");
    expect(protectedHeader.alg).toBe("ES256");
  });
});

describe("the README's certificate sign-in, verbatim", () => {
  test("pki-ca's certificate naming demo@example.com signs the demo user in at identity-idp's mTLS port; revoked, it is refused", async () => {
    // The quickstart's `login` first (the block follows it in the README).
    const run = await bash(dir, `set -euo pipefail\nnpx cryptoutil login >/dev/null\n${readmeBlock("certificate-login")}`, { CRYPTOUTIL_HOME: join(dir, ".cryptoutil-home") });
    if (run.code !== 0) console.error(run.out.slice(-2000), run.err.slice(-2000));
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/signs you in as <strong[^>]*>demo\n/);
    expect(run.out).toMatch(/Signed in as <strong[^>]*>demo\n/);
    expect(run.out).toContain("This certificate is revoked\n");
    expect(suite.out()).toContain("identity-idp certificate sign-in (mutual TLS): https://127.0.0.1:18101/t/<tenant>/login/certificate");
  });
});

describe("headless Chromium", () => {
  test("signs into learn-ps through its Sign in link as the demo user, sees who is signed in, adds a pet, reaches identity-authz's console", async () => {
    const exe = chromiumPath();
    if (!exe) return;
    const browser = await launchChromium(exe, await spkiPins(PORTS, ca));
    try {
      const page = await (await browser.newContext()).newPage();
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
      });
      page.on("response", (r) => {
        // Before signing in, the page's own probes answer 401; anything else is a fault.
        if (r.status() >= 400 && !r.url().endsWith("/favicon.ico") && r.status() !== 401) errors.push(`${r.status()} ${r.url()}`);
      });
      await page.goto("https://127.0.0.1:8888/browser/");
      const signIn = page.getByRole("link", { name: "Sign in" });
      await signIn.waitFor();
      expect(await page.getByRole("button", { name: "Sign out" }).isVisible()).toBe(false);
      await signIn.click();
      await page.waitForURL((u) => u.port === "18100" && u.pathname === "/t/demo/login");
      await page.getByLabel("Username").fill("demo");
      await page.getByLabel("Password").fill(readFileSync(join(dir, "data", "demo", "user.password"), "utf8").trim());
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL((u) => u.pathname.endsWith("/consent"));
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL("https://127.0.0.1:8888/browser/");
      await page.locator("#who", { hasText: "Signed in as demo" }).waitFor();
      expect(await page.getByRole("button", { name: "Sign out" }).isVisible()).toBe(true);
      expect(await signIn.isVisible()).toBe(false);

      await page.getByLabel("Name").fill("Biscuit");
      await page.getByLabel("Species", { exact: true }).first().selectOption("dog");
      await page.getByLabel("Age").fill("3");
      await page.getByLabel("Tags").fill("friendly, small");
      await page.getByRole("button", { name: "Add" }).click();
      await page.locator("#flash", { hasText: "Added Biscuit." }).waitFor();
      await page.locator("#pets tbody tr", { hasText: "Biscuit" }).waitFor();
      expect(await page.locator("#pets tbody").textContent()).toContain("friendly, small");

      // identity-authz's console from the navigation bar: the same sign-in (consent once).
      await page.getByRole("navigation", { name: "Consoles" }).getByRole("link", { name: "identity-authz" }).click();
      await page.waitForURL((u) => (u.port === "18000" && u.pathname === "/browser/") || u.pathname.endsWith("/consent"));
      if (page.url().includes("/consent")) await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL("https://127.0.0.1:18000/browser/");
      await page.locator("#who", { hasText: "Signed in as demo" }).waitFor();
      expect(await page.locator("#tenants tbody").textContent()).toContain("demo");
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  test("the sm-kms explorer's Test Request gets a token and a 200 for GET /service/api/v1/keys", async () => {
    const exe = chromiumPath();
    if (!exe) return;
    const browser = await launchChromium(exe, await spkiPins(PORTS, ca));
    try {
      const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
      await page.goto("https://127.0.0.1:8080/docs");
      const secret = readFileSync(join(dir, "data", "demo", "demo-sm-kms.secret"), "utf8").trim();
      await page.locator("input[placeholder=XYZ123]:visible").first().fill(secret);
      const token = page.waitForResponse((r) => r.url() === "https://127.0.0.1:18000/t/demo/token");
      await page.getByRole("button", { name: "Authorize" }).first().click();
      expect((await token).status()).toBe(200);
      const section = page.locator('section[id$="/GET/service/api/v1/keys"]');
      await section.scrollIntoViewIfNeeded();
      await section.locator("button", { hasText: "Test Request" }).first().click();
      const keys = page.waitForResponse((r) => /^https:\/\/127\.0\.0\.1:8080\/service\/api\/v1\/keys(\?|$)/.test(r.url()));
      await page.getByRole("button", { name: "Send" }).first().click();
      const res = await keys;
      expect(res.status()).toBe(200);
      // The key the quickstart created is in the answer (when the quickstart ran).
      if (Bun.which("openssl")) expect(JSON.stringify(await res.json())).toContain("demo-key");
    } finally {
      await browser.close();
    }
  });
});
