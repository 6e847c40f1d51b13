/**
 * E-mail flows of identity-idp against a real SMTP server run by the test (npm smtp-server,
 * STARTTLS; the idp sends with nodemailer): magic links opened in headless Chromium (once,
 * expired with an injected clock, another browser refused, zero CSP violations), the same
 * answer for unknown addresses, rate limits; self-registration (off by default), password
 * reset and address change; the development outbox.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page as PwPage } from "playwright-core";
import { identityIdpService } from "../../apps/identity-idp/service.ts";
import { chromiumFor, startIdp, type IdpHarness } from "./support/idp-harness.ts";
import { startMailbox, type Mailbox } from "./support/mailbox.ts";
import { ScriptedBrowser, type Page } from "./support/browser.ts";
import { tempDir } from "../support/service.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";

setDefaultTimeout(60_000);
const PASSWORD = "harbour copper violin 58";
let h: IdpHarness;
let mailbox: Mailbox;
let browser: Browser | undefined;
/** The idp's clock for e-mail links runs this many seconds ahead of the real one. */
let skewS = 0;

beforeAll(async () => {
  mailbox = await startMailbox();
  const caFile = join(tempDir(), "smtp-ca.pem");
  writeFileSync(caFile, mailbox.caPem);
  h = await startIdp({
    def: identityIdpService({ now: () => Math.floor(Date.now() / 1000) + skewS }),
    app: { smtp: { host: "localhost", port: mailbox.port, tls: "starttls", from: "idp@example.test", ca_file: caFile }, mail_per_address: 4 },
  });
  await h.createUser("mia", PASSWORD, { email: "mia@example.test" });
  browser = await chromiumFor(h);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await h?.stop();
  await mailbox?.stop();
});

const url = (path: string) => `${h.idp.publicUrl}/t/${h.tenant}${path}`;

describe("magic links in Chromium", () => {
  async function askForLink(page: PwPage, email: string) {
    await page.goto(url("/login"));
    await page.getByRole("link", { name: "Email me a sign-in link" }).click();
    await page.getByLabel("E-mail address").fill(email);
    await page.getByRole("button", { name: "Email me a link" }).click();
    await page.getByRole("heading", { name: "Check your e-mail" }).waitFor();
  }

  test("signs in once; a second use, an expired link and a link opened in another browser are refused", async () => {
    if (!browser) return;
    const errors: string[] = [];
    const a = await browser.newContext();
    const page = await a.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
    });
    await askForLink(page, "mia@example.test");
    const link = mailbox.link(await mailbox.next("mia@example.test"));
    expect(link.startsWith(url("/magic/open?token="))).toBe(true);
    await page.goto(link);
    await page.waitForURL(url("/account"));
    expect(await page.locator("#account-username").textContent()).toBe("mia");

    // Second use, same browser.
    const again = await page.goto(link);
    expect(again!.status()).toBe(400);
    expect(await page.locator(".error").textContent()).toContain("not valid");

    // Opened in another browser (no nonce cookie): refused, and the link is not spent by it.
    await askForLink(page, "mia@example.test");
    const link2 = mailbox.link(await mailbox.next("mia@example.test"));
    const b = await browser.newContext();
    const other = await b.newPage();
    expect((await other.goto(link2))!.status()).toBe(400);
    await b.close();
    await page.goto(link2);
    await page.waitForURL(url("/account"));

    // Expired: the idp's clock moves 11 minutes on.
    await askForLink(page, "mia@example.test");
    const link3 = mailbox.link(await mailbox.next("mia@example.test"));
    skewS = 660;
    try {
      expect((await page.goto(link3))!.status()).toBe(400);
    } finally {
      skewS = 0;
    }
    expect(errors).toEqual([]);
    await a.close();
  });
});

describe("magic link requests", () => {
  test("same answer for an unknown address (and no mail); per-address limit counts unknown addresses too", async () => {
    const b = new ScriptedBrowser(h.idp.ca);
    const form = await b.get(url("/magic"));
    const known = await b.submit(form, "/magic", { email: "mia@example.test" });
    const unknown = await b.submit(form, "/magic", { email: "nobody@example.test" });
    expect(unknown.status).toBe(known.status);
    expect(unknown.html.replace(/csrf_token" value="[^"]+"/, "")).toBe(known.html.replace(/csrf_token" value="[^"]+"/, ""));
    expect(unknown.headers.getSetCookie()[0]).toStartWith("__Host-idp_magic=");
    await mailbox.next("mia@example.test");
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await b.submit(form, "/magic", { email: "nobody@example.test" })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(mailbox.received.some((m) => m.to.includes("nobody@example.test"))).toBe(false);
    expect((await b.submit(form, "/magic", { email: "not an address" })).status).toBe(400);
  });
});

describe("account life cycle", () => {
  test("self-registration is off by default; on for the tenant it creates the account when the link is opened", async () => {
    const b = new ScriptedBrowser(h.idp.ca);
    expect((await b.get(url("/register"))).status).toBe(404);
    expect((await b.get(url("/login"))).html).not.toContain("Create an account");
    expect(((await (await h.admin("/policy")).json()) as { self_registration: boolean }).self_registration).toBe(false);
    expect((await h.admin("/policy", "PUT", { self_registration: true })).status).toBe(200);
    const login = await b.get(url("/login"));
    expect(login.html).toContain("Create an account");
    const form = await b.get(url("/register"));
    const weak = await b.submit(form, "/register", { username: "noor", email: "noor@example.test", password: "password1234" });
    expect(weak.status).toBe(400);
    const taken = await b.submit(form, "/register", { username: "mia", email: "other@example.test", password: PASSWORD });
    expect(taken.status).toBe(409);
    const sent = await b.submit(form, "/register", { username: "noor", email: "Noor@Example.test", name: "Noor", password: PASSWORD });
    expect(sent.status).toBe(200);
    // Not yet an account.
    const users = async () => ((await (await h.admin("/users?limit=100")).json()) as { items: Array<{ username: string; email: string; email_verified: boolean }> }).items;
    expect((await users()).some((u) => u.username === "noor")).toBe(false);
    const link = mailbox.link(await mailbox.next("noor@example.test"));
    const done = await b.get(link);
    expect(done.status).toBe(200);
    expect(done.html).toContain("noor");
    expect((await b.get(link)).status).toBe(400);
    expect((await users()).find((u) => u.username === "noor")).toMatchObject({ email: "noor@example.test", email_verified: true });
    const signIn = await b.submit(await b.get(url("/login")), "/login", { username: "noor", password: PASSWORD });
    expect(signIn.url).toBe(url("/account"));
  });

  test("password reset by e-mail: same answer for unknown addresses; the link works once and ends the sessions", async () => {
    await h.createUser("rosa", PASSWORD, { email: "rosa@example.test" });
    const signedIn = new ScriptedBrowser(h.idp.ca);
    await signedIn.submit(await signedIn.get(url("/login")), "/login", { username: "rosa", password: PASSWORD });
    expect((await signedIn.get(url("/account"))).status).toBe(200);

    const b = new ScriptedBrowser(h.idp.ca);
    const form = await b.get(url("/password/forgot"));
    const known = await b.submit(form, "/password/forgot", { email: "rosa@example.test" });
    const unknown = await b.submit(form, "/password/forgot", { email: "ghost@example.test" });
    expect([unknown.status, unknown.html]).toEqual([known.status, known.html]);
    const link = mailbox.link(await mailbox.next("rosa@example.test"));
    const resetForm = await b.get(link);
    expect(resetForm.status).toBe(200);
    const weak = await b.submit(resetForm, "/password/reset", { new_password: "short" });
    expect(weak.status).toBe(400);
    const NEW = "a fresh and long passphrase 19";
    const done = await b.submit(resetForm, "/password/reset", { new_password: NEW });
    expect(done.status).toBe(200);
    expect((await b.get(link)).status).toBe(400);
    expect((await b.submit(resetForm, "/password/reset", { new_password: "yet another passphrase 20" })).status).toBe(400);
    // The old session ended; the new password works, the old one does not.
    expect((await signedIn.get(url("/account"))).url).toBe(url("/login"));
    const c = new ScriptedBrowser(h.idp.ca);
    expect((await c.submit(await c.get(url("/login")), "/login", { username: "rosa", password: PASSWORD })).status).toBe(401);
    expect((await c.submit(await c.get(url("/login")), "/login", { username: "rosa", password: NEW })).url).toBe(url("/account"));
  });

  test("e-mail change: a link to the new address verifies it", async () => {
    const u = await h.createUser("sami", PASSWORD, { email: "sami@example.test" });
    const b = new ScriptedBrowser(h.idp.ca);
    const account = await b.submit(await b.get(url("/login")), "/login", { username: "sami", password: PASSWORD });
    expect(account.html).toContain("sami@example.test");
    const asked = await b.submit(account, "/account/email", { new_email: "sami.new@example.test" });
    expect(asked.html).toContain("We sent a confirmation link");
    expect(((await (await h.admin(`/users/${u.id}`)).json()) as { email: string }).email).toBe("sami@example.test");
    const link = mailbox.link(await mailbox.next("sami.new@example.test"));
    // The current address is told.
    expect(mailbox.text(await mailbox.next("sami@example.test"))).toContain("sami.new@example.test");
    expect((await b.get(link)).status).toBe(200);
    expect((await (await h.admin(`/users/${u.id}`)).json()) as object).toMatchObject({ email: "sami.new@example.test", email_verified: true });
    expect((await b.get(link)).status).toBe(400);
  });

  test("fuzz: the policy endpoint never answers 5xx", async () => {
    const r = rng(18_006);
    const bodies = Array.from({ length: 150 }, () => mutateJson({ mfa: "optional", self_registration: true, user_verification: "preferred" }, r));
    await fuzz(bodies, (body) => h.idp.call("/service/api/v1/policy", { method: "PUT", headers: { authorization: `Bearer ${h.token}`, "content-type": "application/json" }, body }), {
      describe: (b) => b,
      maxMs: 15_000,
      concurrency: 4,
    });
    await h.admin("/policy", "PUT", { mfa: "optional", self_registration: false, user_verification: "preferred" });
  });
});

describe("development outbox", () => {
  test("without SMTP in development, mails are listed at /dev/outbox; with SMTP there is no outbox; per-IP limit", async () => {
    expect((await h.idp.call("/dev/outbox")).status).toBe(404);
    const dev = await startIdp({ app: { mail_per_ip: 2 } });
    try {
      await dev.createUser("tara", PASSWORD, { email: "tara@example.test" });
      const b = new ScriptedBrowser(dev.idp.ca);
      const form = await b.get(`${dev.idp.publicUrl}/t/${dev.tenant}/magic`);
      expect((await b.submit(form, "/magic", { email: "tara@example.test" })).status).toBe(200);
      const outbox: Page = await b.get(`${dev.idp.publicUrl}/dev/outbox`);
      expect(outbox.status).toBe(200);
      expect(outbox.html).toContain("tara@example.test");
      expect(outbox.html).toContain(`/t/${dev.tenant}/magic/open?token=`);
      // The IP's second request passes, its third (another address) is over the limit.
      expect((await b.submit(form, "/magic", { email: "x1@example.test" })).status).toBe(200);
      expect((await b.submit(form, "/magic", { email: "x2@example.test" })).status).toBe(429);
    } finally {
      await dev.stop();
    }
  });
});
