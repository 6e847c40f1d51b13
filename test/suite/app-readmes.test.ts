/**
 * Every app's README opens with a "Try it" block: a token for the demo tenant's client of that
 * service, then its HTTP API with curl and full JSON bodies. A newcomer pastes it after
 * `npm start`; this test does the same: `npm start` once in a fresh project folder, then each
 * README's block verbatim with bash (`set -euo pipefail`), and checks what the answers say.
 *
 * Needs the Debian package openssl for pki-ca's block (CSR, chain, OCSP and CRL checks).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bash, freshProject, npmStart, REPO, type RunningSuite } from "../support/project.ts";

setDefaultTimeout(60_000);
let dir: string;
let suite: RunningSuite;

const APPS = ["sm-kms", "jose-ja", "pki-ca", "identity-authz", "identity-idp", "learn-ps", "sm-secrets", "sm-im", "identity-rs", "audit"];
const readme = (app: string) => readFileSync(join(REPO, "apps", app, "README.md"), "utf8");

/** The README's try block, verbatim (exactly one per README). */
function tryBlock(app: string): string {
  const blocks = [...readme(app).matchAll(/<!-- try:begin -->\n```sh\n([\s\S]*?)```\n<!-- try:end -->/g)];
  if (blocks.length !== 1) throw new Error(`apps/${app}/README.md has ${blocks.length} try blocks, not 1`);
  return blocks[0]![1]!;
}

type Run = { code: number; out: string; err: string };
const runBlock = (app: string): Promise<Run> => bash(dir, `set -euo pipefail\n${tryBlock(app)}`);

/** The JSON answers a block printed, one per line, in order. */
function answers(out: string): any[] {
  return out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
}

/** The run succeeded, with no stack trace anywhere; prints its stderr otherwise. */
function succeeded(run: Run): void {
  if (run.code !== 0) console.error(run.out.slice(-2000), run.err.slice(-2000));
  expect(run.code).toBe(0);
  expect(run.err).not.toContain("    at ");
}

beforeAll(async () => {
  if (!Bun.which("openssl") && process.env.CI === "true") throw new Error("the Debian package openssl is required");
  dir = freshProject();
  suite = await npmStart(dir);
  if (!suite.out().includes("press Ctrl-C to stop")) throw new Error(`npm start did not come up:\n${suite.err().slice(-2000)}`);
}, 150_000);

afterAll(async () => {
  if (suite) expect(await suite.stop()).toBe(true);
});

describe("every app's README", () => {
  test.each(APPS)("%s: one try block under a 'Try it' heading near the top; no bare bun, no jq", (app) => {
    const text = readme(app);
    const headings = [...text.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    expect(headings.indexOf("Try it")).toBeGreaterThanOrEqual(0);
    expect(headings.indexOf("Try it")).toBeLessThanOrEqual(1);
    const block = tryBlock(app);
    expect(block).toContain(`-u "demo-${app}:$(cat data/demo/demo-${app}.secret)"`);
    expect(block).toContain(`-d resource=${app} https://127.0.0.1:18000/t/demo/token`);
    expect(text).not.toMatch(/(?<!npx )\bbun run\b/);
    expect(text).not.toMatch(/\bjq\b/);
  });
});

describe("the try blocks, verbatim, after npm start", () => {
  test("sm-kms: create a key, encrypt, decrypt back to the plaintext, sign and verify, random bytes, list by tag", async () => {
    const run = await runBlock("sm-kms");
    succeeded(run);
    expect(run.out.split("\n")).toContain("hello, world");
    const [key, encrypted, decrypted, signer, signed, verified, random, list] = answers(run.out);
    expect(key).toMatchObject({ name: "orders", algorithm: "A256GCM", purpose: "encrypt", status: "enabled" });
    expect(encrypted.kid).toBe(`${key.id}.v1`);
    expect(decrypted).toEqual({ kid: `${key.id}.v1`, plaintext: Buffer.from("hello, world").toString("base64url") });
    expect(signer).toMatchObject({ name: "signer", algorithm: "ES256", purpose: "sign" });
    expect(signed.jws.split(".")[1]).toBe(decrypted.plaintext);
    expect(verified).toEqual({ valid: true, kid: `${signer.id}.v1` });
    expect(Buffer.from(random.random, "base64url")).toHaveLength(32);
    expect(list.items.map((k: { name: string }) => k.name)).toEqual(["orders"]);
  });

  test("jose-ja: a JWK, a JWT issued and validated, a JWS signed and verified, the public JWKS, the audit log", async () => {
    const run = await runBlock("jose-ja");
    succeeded(run);
    const [key, jwk, issued, validated, signed, verified, jwks, audit] = answers(run.out);
    expect(key).toMatchObject({ name: "api-tokens", algorithm: "ES256" });
    expect(jwk).toMatchObject({ kty: "EC", crv: "P-256", kid: `${key.id}.v1` });
    expect(jwk.d).toBeUndefined();
    expect(issued.kid).toBe(`${key.id}.v1`);
    expect(validated.valid).toBe(true);
    expect(validated.claims).toMatchObject({ sub: "alice", iss: "https://app.test", aud: "orders-api", role: "reader" });
    expect(validated.claims.exp - validated.claims.iat).toBe(900);
    expect(signed.kid).toBe(`${key.id}.v1`);
    expect(verified).toMatchObject({ valid: true, payload: Buffer.from("hello, world").toString("base64url") });
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(`${key.id}.v1`);
    const ops = audit.items.map((e: { operation: string; result: string }) => `${e.operation}:${e.result}`);
    expect(ops).toEqual(["verify:ok", "sign:ok", "jwt_validate:ok", "jwt_issue:ok", "get_jwk:ok", "generate:ok"]);
  });

  test("pki-ca (needs the Debian package openssl): profiles, a CSR issued, chain and OCSP good, revoked, OCSP and CRL say so", async () => {
    if (!Bun.which("openssl")) {
      console.warn("skipping pki-ca's try block: the Debian package openssl is missing");
      return;
    }
    const run = await runBlock("pki-ca");
    succeeded(run);
    const [profiles, issued, found, revoked] = answers(run.out);
    expect(profiles.items.map((p: { name: string }) => p.name)).toContain("tls-server");
    expect(issued.status).toBe("issued");
    expect(issued.certificate).toMatchObject({ subject: "CN=app.test", sans: ["dns:app.test"], profile: "tls-server", status: "valid" });
    const serial = issued.certificate.serial;
    expect(found.items.map((c: { serial: string }) => c.serial)).toContain(serial);
    expect(revoked).toMatchObject({ serial, status: "revoked", revocation_reason: "keyCompromise" });
    expect(run.out).toContain("subject=CN = app.test");
    expect(run.out).toMatch(/DNS:app\.test/);
    expect(run.out).toContain("app.crt: OK");
    const statuses = [...run.out.matchAll(/^app\.crt: (good|revoked|unknown)$/gm)].map((m) => m[1]);
    expect(statuses).toEqual(["good", "revoked"]);
    expect(run.err.match(/Response verify OK/g)).toHaveLength(2);
    expect(run.out).toMatch(new RegExp(`Serial Number: ${serial.toUpperCase()}\\n[\\s\\S]*?Key Compromise`));
    expect(run.err).toMatch(/^verify OK$/m); // openssl crl checked the CRL's signature
  });

  test("identity-authz: its tenant, discovery, a client made, its token introspected and used, patched, deleted; runs twice", async () => {
    for (let round = 0; round < 2; round++) {
      const run = await runBlock("identity-authz");
      succeeded(run);
      const [tenants, discovery, client, token, introspected, pets, patched] = answers(run.out);
      expect(tenants.items.map((t: { id: string }) => t.id)).toEqual(["demo"]);
      expect(discovery.issuer).toBe("https://127.0.0.1:18000/t/demo");
      expect(client).toMatchObject({ client_id: "pets-report", scopes: ["pets:read"], audiences: ["learn-ps"] });
      expect(client.client_secret).toBeString();
      expect(token).toMatchObject({ token_type: "Bearer", scope: "pets:read" });
      expect(introspected).toMatchObject({ active: true, sub: "pets-report", aud: "learn-ps", scope: "pets:read" });
      expect(pets.items).toBeArray();
      expect(patched.scopes).toEqual(["pets:read", "pets:write"]);
    }
  });

  test("identity-idp: a user created, listed, read, renamed, password reset, disabled and enabled; a second run is a conflict", async () => {
    const run = await runBlock("identity-idp");
    succeeded(run);
    const [user, list, got, renamed, disabled, enabled, policy, yubikey] = answers(run.out);
    expect(user).toMatchObject({ username: "alice", name: "Alice Example", has_password: true, disabled: false });
    expect(list.items.map((u: { username: string }) => u.username)).toEqual(expect.arrayContaining(["demo", "alice"]));
    expect(got.id).toBe(user.id);
    expect(renamed.name).toBe("Alice A. Example");
    expect(disabled.disabled).toBe(true);
    expect(enabled.disabled).toBe(false);
    expect(policy).toEqual({ mfa: "optional", self_registration: false, user_verification: "preferred", password_min_length: 12, certificate_email: true, certificate_upn: true });
    expect(yubikey).toMatchObject({ public_id: "vvccccdtbhrl", name: "Blue key", last_used_at: null });

    const again = await runBlock("identity-idp");
    expect(again.code).not.toBe(0);
    expect(again.out).toContain('"code":"conflict"');
  });

  test("learn-ps: a pet created, found, read, patched, deleted, then 404; runs twice", async () => {
    for (let round = 0; round < 2; round++) {
      const run = await runBlock("learn-ps");
      succeeded(run);
      const [pet, list, got, patched, gone] = answers(run.out);
      expect(pet).toMatchObject({ name: "Biscuit", species: "dog", age_years: 3, owner_note: "allergic to chicken" });
      expect(list.items.map((p: { id: string }) => p.id)).toEqual([pet.id]);
      expect(got).toEqual(pet);
      expect(patched).toMatchObject({ id: pet.id, age_years: 4, tags: ["friendly"], owner_note: null });
      expect(gone.error.code).toBe("not_found");
      expect(run.out).toContain("(404, as expected)");
    }
  });

  test("sm-secrets: a version, check-and-set won then refused, reads, list, metadata, the Vault view; runs twice", async () => {
    for (let round = 0; round < 2; round++) {
      const run = await runBlock("sm-secrets");
      succeeded(run);
      const [first, second, refused, current, old, list, meta, vault] = answers(run.out);
      expect(second.version).toBe(first.version + 1);
      expect(refused.error.code).toBe("cas_mismatch");
      expect(run.out).toContain("(409, as expected)");
      expect(current).toMatchObject({ path: "team-a/db", data: { user: "app", password: "n3w" }, metadata: { version: second.version } });
      expect(old).toMatchObject({ data: { password: "s3cret" }, metadata: { version: first.version } });
      expect(list).toEqual({ prefix: "team-a/", keys: ["db"] });
      expect(meta.current_version).toBe(second.version);
      expect(vault).toMatchObject({ mount_type: "kv", data: { data: { password: "n3w" }, metadata: { version: second.version } } });
    }
  });

  test.each(["identity-rs", "audit"])("%s: the block runs to the end and its answers are JSON", async (app) => {
    const run = await runBlock(app);
    succeeded(run);
    expect(answers(run.out).length).toBeGreaterThan(0);
  });

  test("sm-im: a device from an openssl key, contacts with its public key, an empty inbox", async () => {
    const run = await runBlock("sm-im");
    succeeded(run);
    const [device, contacts, inbox] = answers(run.out);
    expect(device).toMatchObject({ name: "laptop", alg: "ECDH-ES+A256KW", public_key: { kty: "EC", crv: "P-256", kid: device.id } });
    const mine = contacts.items.find((c: { devices: Array<{ id: string }> }) => c.devices.some((d) => d.id === device.id));
    expect(mine).toBeDefined();
    expect(inbox).toEqual({ items: [], next_page_token: null });
  });
});
