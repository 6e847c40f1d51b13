/**
 * `npm start` with per-service files under config/: a bad key stops the start with one line
 * naming the service and the key before anything is written; a production configuration (real
 * unseal files) gets the suite's wiring but no demo tenant, client, user or secret.
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freshProject, npmStart, type RunningSuite } from "../support/project.ts";
import { clientToken } from "../../scripts/suite/demo.ts";

setDefaultTimeout(120_000);
let running: RunningSuite | undefined;
afterAll(async () => {
  await running?.stop();
});

test("a bad key in config/<service>.yaml stops the start with one line naming the service and the key, before anything is written", async () => {
  const dir = freshProject();
  mkdirSync(join(dir, "config"));
  writeFileSync(join(dir, "config", "sm-kms.yaml"), "server:\n  prot: 9000\n");
  writeFileSync(join(dir, "config", "pki-ca.yaml"), "app:\n  crl_validity_hours: 0\n");
  const s = await npmStart(dir);
  expect(await s.exited).not.toBe(0);
  const lines = s.err().split("\n").filter((l) => l.includes("cannot start"));
  expect(lines.sort()).toEqual([
    expect.stringMatching(/^pki-ca: cannot start: config_invalid: app\.crl_validity_hours: /),
    expect.stringMatching(/^sm-kms: cannot start: config_invalid: server\.prot: /),
  ]);
  expect(s.err()).not.toContain("    at "); // no stack trace
  expect(existsSync(join(dir, "data"))).toBe(false);
});

test("a production configuration: wired to identity-authz, but no demo tenant, client, user or secret", async () => {
  const dir = freshProject();
  mkdirSync(join(dir, "config"));
  mkdirSync(join(dir, "secrets"), { mode: 0o700 });
  writeFileSync(join(dir, "secrets", "unseal"), Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64") + "\n", { mode: 0o600 });
  const services = ["identity-authz", "identity-idp", "learn-ps", "sm-kms"];
  for (const s of services) writeFileSync(join(dir, "config", `${s}.yaml`), "barrier:\n  unseal_files: [secrets/unseal]\n");
  running = await npmStart(dir, [`--only=${services.join(",")}`]);
  const out = running.out();
  expect(out).toContain("cryptoutil is running");
  expect(out).not.toContain("next steps");
  expect(out).not.toContain("demo");
  const data = join(dir, "data");
  expect(existsSync(join(data, "demo"))).toBe(false);
  expect(readdirSync(data).some((f) => f.includes("demo") || f === "dev-unseal.secret")).toBe(false);
  const suite = JSON.parse(readFileSync(join(data, "suite.json"), "utf8"));
  expect(suite.development).toBe(false);
  expect(Object.keys(suite.contexts)).toEqual(["admin"]);
  expect(suite.demo_user).toBeUndefined();

  // The suite administrator reaches every service; only tenant root exists; no users.
  const ca = readFileSync(join(data, "identity-authz", "trust-bundle.pem"), "utf8");
  const secret = readFileSync(join(data, "identity-authz", "bootstrap-admin.secret"), "utf8").trim();
  const issuer = "https://127.0.0.1:18000/t/root";
  const tls = { tls: { ca } } as RequestInit;
  const authzToken = await clientToken(ca, issuer, "bootstrap-admin", secret, "identity-authz");
  const tenants = await fetch("https://127.0.0.1:18000/service/api/v1/tenants", { ...tls, headers: { authorization: `Bearer ${authzToken}` } });
  expect((await tenants.json()).items.map((t: { id: string }) => t.id)).toEqual(["root"]);
  const idpToken = await clientToken(ca, issuer, "bootstrap-admin", secret, "identity-idp");
  const users = await fetch("https://127.0.0.1:18100/service/api/v1/users", { ...tls, headers: { authorization: `Bearer ${idpToken}` } });
  expect(users.status).toBe(200);
  expect((await users.json()).items).toEqual([]);
  const kmsToken = await clientToken(ca, issuer, "bootstrap-admin", secret, "sm-kms");
  const keys = await fetch("https://127.0.0.1:8080/service/api/v1/keys", { ...tls, headers: { authorization: `Bearer ${kmsToken}` } });
  expect(keys.status).toBe(200);
  // learn-ps has no browser login without the demo tenant.
  expect((await fetch("https://127.0.0.1:8888/browser/login", { ...tls, redirect: "manual" })).status).toBe(404);
  expect(await running.stop()).toBe(true);
  running = undefined;
});
