/**
 * Passkeys at identity-idp in headless Chromium with its virtual authenticator (DevTools
 * protocol `WebAuthn.*`, through playwright-core): registration of named passkeys on the
 * account page, username-less sign-in (discoverable credential), passkey as second factor,
 * a cloned credential with a lower counter refused, user verification by tenant policy,
 * removal; zero CSP violations; and a fuzz of the JSON ceremony endpoints.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, BrowserContext, CDPSession, Page } from "playwright-core";
import { chromiumFor, startIdp, type IdpHarness } from "./support/idp-harness.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";

setDefaultTimeout(60_000);
const PASSWORD = "quartz meadow lantern 77";
let h: IdpHarness;
let browser: Browser | undefined;
let origin: string;
let user: { id: string };

/** WebAuthn needs a domain (not an IP address) as RP ID: the pages are opened at localhost. */
beforeAll(async () => {
  h = await startIdp({ overrides: (c) => void (c.tls.hostnames = ["localhost"]) });
  origin = h.idp.publicUrl.replace("127.0.0.1", "localhost");
  user = await h.createUser("pia", PASSWORD);
  browser = await chromiumFor(h);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await h?.stop();
});

interface Tab {
  context: BrowserContext;
  page: Page;
  cdp: CDPSession;
  authenticatorId: string;
  /** Console errors (CSP violations, script errors); failed loads are checked by status instead. */
  errors: string[];
}

/** A browser context with one virtual platform authenticator; `uv: false`: a security key without PIN instead. */
async function tab(opts: { uv?: boolean } = {}): Promise<Tab> {
  const context = await browser!.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  // authz's login callback (the stub does not serve it) answers here, so the hop completes.
  await context.route(`${h.authz.url}/**`, (r) => r.fulfill({ status: 200, contentType: "text/plain", body: "authz login callback" }));
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: opts.uv === false ? "usb" : "internal", hasResidentKey: true, hasUserVerification: opts.uv ?? true, isUserVerified: opts.uv ?? true, automaticPresenceSimulation: true },
  });
  return { context, page, cdp, authenticatorId, errors };
}

async function passwordLogin(t: Tab, username = "pia") {
  await t.page.goto(`${origin}/t/${h.tenant}/login`);
  await t.page.getByLabel("Username").fill(username);
  await t.page.getByLabel("Password").fill(PASSWORD);
  await t.page.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function addPasskey(t: Tab, name: string) {
  await t.page.getByLabel("Name of a new passkey").fill(name);
  const registered = t.page.waitForResponse((r) => r.url().endsWith(`/t/${h.tenant}/passkeys/register`));
  await t.page.getByRole("button", { name: "Add a passkey" }).click();
  expect((await registered).status()).toBe(200);
  await t.page.waitForURL(`${origin}/t/${h.tenant}/account`);
  await t.page.locator(".factor-name", { hasText: name }).waitFor();
  const view = (await (await h.admin(`/users/${user.id}`)).json()) as { mfa: { factors: Array<{ kind: string; name?: string; attestation?: string }> } };
  return view.mfa.factors.find((f) => f.name === name)!;
}

async function signOut(t: Tab) {
  await t.page.goto(`${origin}/t/${h.tenant}/logout`);
  await t.page.getByRole("button", { name: "Sign out" }).click();
  await t.page.waitForURL((u) => u.pathname.endsWith("/logout"));
}

async function atAuthz(t: Tab): Promise<string> {
  await t.page.waitForURL((u) => u.href.startsWith(`${h.authz.url}/t/${h.tenant}/login/callback`));
  return t.page.url();
}

/** The verifier's claims from authz's callback URL the idp sent the browser to. */
const verifierOf = (url: string) => JSON.parse(Buffer.from(new URL(url).searchParams.get("login_verifier")!.split(".")[1]!, "base64url").toString());

describe("passkeys in Chromium (virtual authenticator)", () => {
  let laptop: Tab;

  test("register two named passkeys; username-less sign-in; second factor; zero CSP violations", async () => {
    if (!browser) return;
    laptop = await tab();
    await passwordLogin(laptop);
    await laptop.page.waitForURL(`${origin}/t/${h.tenant}/account`);
    const first = await addPasskey(laptop, "Laptop");
    // Attestation: asked `direct`, the virtual authenticator sends a `packed` statement, verified.
    expect(first.attestation).toBe("packed");

    const view = (await (await h.admin(`/users/${user.id}`)).json()) as { mfa: { factors: Array<{ kind: string }> } };
    expect(view.mfa.factors.map((f) => f.kind)).toEqual(["passkey"]);

    // Username-less: nothing typed, the authenticator offers pia's discoverable credential.
    await signOut(laptop);
    const ch = await h.authz.challenge(h.tenant, { scope: "openid profile" });
    await laptop.page.goto(`${origin}/t/${h.tenant}/login?login_challenge=${encodeURIComponent(ch)}`);
    await laptop.page.getByRole("button", { name: "Sign in with a passkey" }).click();
    await laptop.page.waitForURL((u) => u.pathname.endsWith("/consent"));
    await laptop.page.getByRole("button", { name: "Allow" }).click();
    const claims = verifierOf(await atAuthz(laptop));
    expect(claims).toMatchObject({ sub: user.id, amr: ["hwk", "user"], acr: "urn:cryptoutil:acr:mfa" });

    // Second factor: password, then the passkey.
    await signOut(laptop);
    const ch2 = await h.authz.challenge(h.tenant, { scope: "openid profile" });
    await laptop.page.goto(`${origin}/t/${h.tenant}/login?login_challenge=${encodeURIComponent(ch2)}`);
    await laptop.page.getByLabel("Username").fill("pia");
    await laptop.page.getByLabel("Password").fill(PASSWORD);
    await laptop.page.getByRole("button", { name: "Sign in", exact: true }).click();
    await laptop.page.waitForURL((u) => u.pathname.endsWith("/mfa"));
    await laptop.page.getByRole("button", { name: "Use your passkey or security key" }).click();
    expect(verifierOf(await atAuthz(laptop))).toMatchObject({ sub: user.id, amr: ["pwd", "hwk"], acr: "urn:cryptoutil:acr:mfa" });

    // A second named passkey from another authenticator (the first is unplugged: it would
    // refuse the registration, its credential being in excludeCredentials).
    await laptop.page.goto(`${origin}/t/${h.tenant}/account`);
    const { authenticatorId: key2 } = await laptop.cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "usb", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    await laptop.cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: laptop.authenticatorId });
    await addPasskey(laptop, "Security key");
    const names = await laptop.page.locator(".factor-name").allTextContents();
    expect(names).toEqual(["Laptop", "Security key"]);
    laptop.authenticatorId = key2;
    expect(laptop.errors).toEqual([]);
  });

  test("a cloned credential with a lower signature counter is refused", async () => {
    if (!browser) return;
    const { credentials } = await laptop.cdp.send("WebAuthn.getCredentials", { authenticatorId: laptop.authenticatorId });
    expect(credentials.length).toBe(1);
    const original = credentials[0]!;
    // Sign in once more with the original so the server's counter is ahead of any copy at 0.
    await signOut(laptop);
    await laptop.page.goto(`${origin}/t/${h.tenant}/login`);
    await laptop.page.getByRole("button", { name: "Sign in with a passkey" }).click();
    await laptop.page.waitForURL(`${origin}/t/${h.tenant}/account`);

    const clone = await tab();
    await clone.cdp.send("WebAuthn.addCredential", { authenticatorId: clone.authenticatorId, credential: { ...original, signCount: 0 } });
    await clone.page.goto(`${origin}/t/${h.tenant}/login`);
    const answer = clone.page.waitForResponse((r) => r.url().endsWith(`/t/${h.tenant}/passkeys/login`));
    await clone.page.getByRole("button", { name: "Sign in with a passkey" }).click();
    const res = await answer;
    expect(res.status()).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("passkey_refused");
    await clone.page.locator("#passkey-status", { hasText: "not accepted" }).waitFor();
    expect(new URL(clone.page.url()).pathname).toBe(`/t/${h.tenant}/login`);
    expect(clone.errors).toEqual([]);
    await clone.context.close();
  });

  test("user verification required by the tenant: an assertion without it is refused", async () => {
    if (!browser) return;
    const { credentials } = await laptop.cdp.send("WebAuthn.getCredentials", { authenticatorId: laptop.authenticatorId });
    const noUv = await tab({ uv: false });
    // Same key with a counter far ahead: only user verification can fail.
    await noUv.cdp.send("WebAuthn.addCredential", { authenticatorId: noUv.authenticatorId, credential: { ...credentials[0]!, signCount: 100_000 } });
    // As second factor (the request lists the credential: a discoverable-only request would
    // need user verification to find it on a CTAP2.1 key). The options ask "preferred" (Chromium
    // would not even ask this key under "required"); the tenant's policy turns to "required"
    // before the assertion arrives.
    await passwordLogin(noUv);
    await noUv.page.waitForURL((u) => u.pathname.endsWith("/mfa"));
    await noUv.page.route(`${origin}/t/${h.tenant}/passkeys/login`, async (route) => {
      expect((await h.admin("/policy", "PUT", { user_verification: "required" })).status).toBe(200);
      await route.continue();
    });
    try {
      const answer = noUv.page.waitForResponse((r) => r.url() === `${origin}/t/${h.tenant}/passkeys/login`);
      await noUv.page.getByRole("button", { name: "Use your passkey or security key" }).click();
      const res = await answer;
      expect(res.status()).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message.toLowerCase()).toContain("user verification required");
      expect(new URL(noUv.page.url()).pathname).toBe(`/t/${h.tenant}/mfa`);
      expect((await (await h.admin("/policy")).json()) as object).toMatchObject({ user_verification: "required" });
    } finally {
      await h.admin("/policy", "PUT", { user_verification: "preferred" });
      await noUv.context.close();
    }
  });

  test("removal on the account page (with the password)", async () => {
    if (!browser) return;
    await laptop.page.goto(`${origin}/t/${h.tenant}/account`);
    const item = laptop.page.locator("#factors li", { hasText: "Laptop" });
    await item.getByLabel("Password to confirm").fill(PASSWORD);
    await item.getByRole("button", { name: "Remove" }).click();
    await laptop.page.locator("[role=status]", { hasText: "removed" }).waitFor();
    expect(await laptop.page.locator(".factor-name").allTextContents()).toEqual(["Security key"]);
    const view = (await (await h.admin(`/users/${user.id}`)).json()) as { mfa: { factors: Array<{ kind: string }> } };
    expect(view.mfa.factors.map((f) => f.kind)).toEqual(["passkey"]);
    expect(laptop.errors).toEqual([]);
  });
});

describe("ceremony endpoints", () => {
  test("CSRF required; fuzzed bodies never answer 5xx", async () => {
    const b = new ScriptedBrowser(h.idp.ca);
    const login = await b.get(`${h.idp.publicUrl}/t/${h.tenant}/login`);
    const csrf = /data-csrf="([^"]+)"/.exec(login.html)![1]!;
    const post = (path: string, body: string, token = csrf) =>
      fetch(`${h.idp.publicUrl}/t/${h.tenant}/passkeys/${path}`, {
        method: "POST",
        headers: { cookie: b.cookieHeader(), "content-type": "application/json", "x-csrf-token": token },
        body,
        tls: { ca: h.idp.ca },
      } as RequestInit);
    expect((await post("login/options", '{"purpose":"login"}', "wrong")).status).toBe(403);
    const options = await post("login/options", '{"purpose":"login"}');
    expect(options.status).toBe(200);
    expect(options.headers.get("content-security-policy")).toContain("default-src 'none'");
    const o = (await options.json()) as { challenge: string; rpId: string; userVerification: string };
    expect(o).toMatchObject({ rpId: "127.0.0.1", userVerification: "preferred" });
    // Registration needs a signed-in session.
    expect((await post("register/options", '{"name":"x"}')).status).toBe(403);
    const seed = {
      response: {
        id: "AAAA",
        rawId: "AAAA",
        type: "public-key",
        clientExtensionResults: {},
        response: { clientDataJSON: "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0", authenticatorData: "AAAA", signature: "AAAA", userHandle: "AAAA" },
      },
    };
    const r = rng(18_002);
    const cases = Array.from({ length: 120 }, (_, i) => ({ path: ["login", "login/options", "register", "register/options"][i % 4]!, body: mutateJson(seed, r) }));
    await fuzz(cases, (c) => post(c.path, c.body), { describe: (c) => `${c.path} ${c.body}`, maxMs: 15_000, concurrency: 4 });
  });
});
