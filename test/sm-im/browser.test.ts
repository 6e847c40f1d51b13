/**
 * sm-im in headless Chromium (Playwright, Debian `chromium`): two users of identity, each in
 * their own browser context, signed in through identity-authz and identity-idp (password +
 * TOTP). Bob's browser makes its device key; Alice's page encrypts a message with an
 * attachment to Bob's device and her own; Bob's page decrypts both. Then: the database and
 * logs hold no plaintext; a browser Bob signs in with later (a new device) cannot open the
 * earlier message; a message whose stored ciphertext was altered is refused on Bob's device.
 * No page logs a CSP violation or script error.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { smIm } from "../../apps/sm-im/service.ts";
import { chromiumPath, launchChromium } from "../support/chromium.ts";
import type { TestService } from "../support/service.ts";
import { startIdentitySuite, type IdentitySuite } from "../identity/support/e2e-suite.ts";

setDefaultTimeout(120_000);
const PASSWORD = "cobalt harbour willow 311";
const SECRET_BODY = "meet at the north gate, 06:40, bring the blue folder";
const ATTACHMENT = "quarterly numbers: 17, 23, 42";
const PQ_BODY = "harvest now, decrypt later will not work on this one";
let s: IdentitySuite;
let im: TestService;
let browser: Browser | undefined;
let alice: Awaited<ReturnType<IdentitySuite["userWithTotp"]>>;
let bob: Awaited<ReturnType<IdentitySuite["userWithTotp"]>>;
const errors: string[] = [];

beforeAll(async () => {
  s = await startIdentitySuite();
  im = await s.withBrowserApp(smIm, "openid profile im:read im:write");
  alice = await s.userWithTotp("alice", PASSWORD);
  bob = await s.userWithTotp("bob", PASSWORD);
  const exe = chromiumPath();
  if (!exe) {
    if (process.env.CI === "true") throw new Error("chromium is required (Debian package chromium)");
    return;
  }
  browser = await launchChromium(exe, await s.spkiPins());
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

/** A fresh context (its own IndexedDB: a new device) signed in to sm-im as `username`. */
async function signIn(username: string, codes: { nextCode(): Promise<string> }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser!.newContext();
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(`${username}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${username}: ${e.message}`));
  page.on("dialog", (d) => void d.accept());
  await page.goto(`${im.publicUrl}/browser/login`);
  await page.waitForURL((u) => u.pathname === `/t/${s.tenant}/login`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.waitForURL((u) => u.pathname.endsWith("/mfa"));
  await page.getByLabel("Code").fill(await codes.nextCode());
  await page.getByRole("button", { name: "Verify" }).click();
  // Consent is asked once per user and client; a second sign-in goes straight back.
  await page.waitForURL((u) => u.pathname.endsWith("/consent") || u.href === `${im.publicUrl}/browser/`);
  if (new URL(page.url()).pathname.endsWith("/consent")) await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL(`${im.publicUrl}/browser/`);
  await page.locator("#device", { hasText: "This browser is device" }).waitFor();
  return { context, page };
}

async function openFirst(page: Page, box: "Inbox" | "Sent") {
  await page.getByRole("button", { name: box, exact: true }).click();
  await page.locator("#messages tbody tr").first().waitFor();
  await page.locator("#messages tbody tr").first().getByRole("button", { name: "Open" }).click();
  await page.locator("#reader-status").filter({ hasNotText: "Decrypting" }).waitFor();
}

test("two users exchange an end-to-end encrypted message with an attachment", async () => {
  if (!browser) return console.warn("skipped: chromium not installed (Debian package chromium)");
  const b = await signIn("bob", bob);
  const a = await signIn("alice", alice);

  await a.page.getByLabel("To").selectOption(bob.id);
  await a.page.getByLabel("Subject").fill("the plan");
  await a.page.getByLabel("Text", { exact: true }).fill(SECRET_BODY);
  await a.page.getByLabel("Attachment").setInputFiles({ name: "numbers.txt", mimeType: "text/plain", buffer: Buffer.from(ATTACHMENT) });
  await a.page.getByRole("button", { name: "Encrypt and send" }).click();
  await a.page.locator("#compose-status", { hasText: "Sent, encrypted for 2 devices" }).waitFor();

  await openFirst(b.page, "Inbox");
  expect(await b.page.locator("#reader-status").textContent()).toBe("Decrypted on this device.");
  expect(await b.page.locator("#reader-subject").textContent()).toBe("the plan");
  expect(await b.page.locator("#reader-body").textContent()).toBe(SECRET_BODY);
  const download = b.page.waitForEvent("download");
  await b.page.getByRole("link", { name: /numbers\.txt/ }).click();
  expect(readFileSync((await (await download).path())!, "utf8")).toBe(ATTACHMENT);

  // Alice reads her own copy in the sent box.
  await openFirst(a.page, "Sent");
  expect(await a.page.locator("#reader-body").textContent()).toBe(SECRET_BODY);

  // Nothing readable at rest or in the logs.
  for (const f of readdirSync(im.dataDir).filter((n) => n.includes(".db"))) {
    const bytes = readFileSync(join(im.dataDir, f));
    for (const text of [SECRET_BODY, ATTACHMENT, "numbers.txt", "the plan"]) expect(bytes.includes(Buffer.from(text))).toBe(false);
  }
  for (const text of [SECRET_BODY, ATTACHMENT]) expect(im.logs.join("\n")).not.toContain(text);

  // A browser Bob signs in with now is a new device: the earlier message holds no copy for it.
  const later = await signIn("bob", bob);
  await openFirst(later.page, "Inbox");
  expect(await later.page.locator("#reader-status").textContent()).toContain("holds no copy");
  expect(await later.page.locator("#reader-body").textContent()).toBe("");

  // Altered ciphertext (changed where it is stored) is refused on Bob's device.
  const [row] = (await im.ctx.db.selectFrom("im_messages" as never).select(["id", "ciphertext"] as never).execute()) as Array<{ id: string; ciphertext: string }>;
  const flipped = Buffer.from(row!.ciphertext, "base64url");
  flipped[3]! ^= 0x20;
  await im.ctx.db.updateTable("im_messages" as never).set({ ciphertext: flipped.toString("base64url") } as never).where("id" as never, "=", row!.id as never).execute();
  await openFirst(b.page, "Inbox");
  expect(await b.page.locator("#reader-status").textContent()).toContain("altered or does not decrypt");
  expect(await b.page.locator("#reader-body").textContent()).toBe("");

  expect(errors).toEqual([]);
});

test("an opt-in hybrid (ECDH + ML-KEM-768) message: each copy carries an ML-KEM ciphertext; altering it is refused", async () => {
  if (!browser) return console.warn("skipped: chromium not installed (Debian package chromium)");
  errors.length = 0;
  const b = await signIn("bob", bob);
  const a = await signIn("alice", alice);
  await b.page.locator("#device", { hasText: "ML-KEM-768 key" }).waitFor();
  // Every device in this file was made by the page, so each has published an ML-KEM-768 key.
  await a.page.getByLabel("To").selectOption(bob.id);
  await a.page.getByLabel("Subject").fill("post-quantum");
  await a.page.getByLabel("Text", { exact: true }).fill(PQ_BODY);
  await a.page.getByLabel(/Post-quantum hybrid/).check();
  await a.page.getByRole("button", { name: "Encrypt and send" }).click();
  await a.page.locator("#compose-status", { hasText: "(ECDH + ML-KEM-768)" }).waitFor();

  const copies = (await im.ctx.db.selectFrom("im_copies" as never).select(["message_id", "device_id", "header"] as never).execute()) as Array<{ message_id: string; device_id: string; header: string }>;
  const newest = copies.filter((c) => JSON.parse(c.header).alg === "ECDH-ES+ML-KEM-768+A256KW");
  expect(newest.length).toBeGreaterThanOrEqual(2);
  for (const c of newest) expect(Buffer.from(JSON.parse(c.header).ek, "base64url").length).toBe(1088);

  await openFirst(b.page, "Inbox");
  expect(await b.page.locator("#reader-status").textContent()).toBe("Decrypted on this device.");
  expect(await b.page.locator("#reader-body").textContent()).toBe(PQ_BODY);

  // Change one bit of the ML-KEM ciphertext in the copies: ML-KEM's implicit rejection gives
  // another shared secret, so the key unwrap fails on the device.
  for (const c of newest) {
    const header = JSON.parse(c.header);
    const ek = Buffer.from(header.ek, "base64url");
    ek[100]! ^= 0x01;
    await im.ctx.db
      .updateTable("im_copies" as never)
      .set({ header: JSON.stringify({ ...header, ek: ek.toString("base64url") }) } as never)
      .where("message_id" as never, "=", c.message_id as never)
      .where("device_id" as never, "=", c.device_id as never)
      .execute();
  }
  await openFirst(b.page, "Inbox");
  expect(await b.page.locator("#reader-status").textContent()).toContain("altered or does not decrypt");
  expect(await b.page.locator("#reader-body").textContent()).toBe("");
  for (const f of readdirSync(im.dataDir).filter((n) => n.includes(".db"))) expect(readFileSync(join(im.dataDir, f)).includes(Buffer.from(PQ_BODY))).toBe(false);
  expect(errors).toEqual([]);
});
