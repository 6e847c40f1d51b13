/**
 * Two pki-ca instances started at the same moment on one empty PostgreSQL database (Debian
 * package postgresql), as a scaled-out deployment starts: they meet at the migration lock,
 * so each migration runs once (a second run of a CREATE TABLE would fail its instance's
 * start), they share one CA hierarchy, and afterwards both serve: a certificate issued
 * through one is read and revoked through the other. Each has its own data directory and
 * TLS certificate; they share the unseal secret, the database and the token issuer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import { pkiCa, pkiCaOf } from "../../apps/pki-ca/service.ts";
import { migrations as pkiMigrations } from "../../apps/pki-ca/migrations.ts";
import { templateMigrations } from "../../src/service/service.ts";
import { startPostgresEngine } from "../support/engine.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startTestService, tempDir, type TestService } from "../support/service.ts";
import { apiOver, BASE_URL, haveOpenssl, makeCsr, PROFILES } from "./helpers.ts";

const engine = await startPostgresEngine();
afterAll(() => engine?.server.stop());

describe("two pki-ca instances on one new PostgreSQL database (Debian package postgresql)", () => {
  if (!engine) return;
  const root = tempDir("cryptoutil-pki-pg-");
  let issuer: TestIssuer;
  let a: TestService;
  let b: TestService;

  beforeAll(async () => {
    issuer = await startTestIssuer({ audience: "pki-ca" });
    const url = await engine.server.createDatabase("two_instances");
    const unseal = join(root, "unseal.secret");
    writeFileSync(unseal, Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"), { mode: 0o600 });
    const start = (name: string) =>
      startTestService(pkiCa, {
        issuer,
        root: join(root, name),
        overrides: (c) => {
          c.database.url = url;
          c.database.password_file = engine.server.passwordFile;
          c.database.pool_size = 4;
          c.barrier.unseal_files = [unseal];
          c.log.level = "warn";
          c.app = { base_url: BASE_URL, issuing_cas: ["P-256", "P-384"], profiles: PROFILES };
        },
      });
    [a, b] = await Promise.all([start("a"), start("b")]);
    await Promise.all([pkiCaOf(a.ctx), pkiCaOf(b.ctx)]);
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await issuer?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test("each migration is recorded once and both are ready", async () => {
    expect(a.database.mode).toBe("postgres");
    const rows = await sql<{ app: string; n: number }>`select app, count(*) as n from schema_migrations group by app order by app`.execute(a.database.db);
    expect(rows.rows).toEqual([
      { app: "barrier", n: 1 },
      { app: "pki-ca", n: pkiMigrations.length },
      { app: "template", n: templateMigrations.length },
    ]);
    for (const s of [a, b]) expect((await s.admin("/admin/v1/readyz")).status).toBe(200);
  });

  test.skipIf(!haveOpenssl())("they share one hierarchy; a certificate issued through one is read and revoked through the other [needs Debian openssl]", async () => {
    const [rootA, rootB] = await Promise.all([a, b].map(async (s) => (await s.call("/pki/ca/root.pem")).text()));
    expect(rootA).toContain("BEGIN CERTIFICATE");
    expect(rootB).toBe(rootA);
    const tok = await issuer.mint({ tenant: "acme", scope: "pki:request pki:read pki:revoke" });
    const { csr } = makeCsr(root, "two", { subj: "/CN=two.example.com", san: "DNS:two.example.com" });
    const issued = await apiOver(a.call)("/certificates", tok, { body: { csr, profile: "server" } });
    expect(issued.status).toBe(201);
    const serial = ((await issued.json()) as { certificate: { serial: string } }).certificate.serial;
    const read = await apiOver(b.call)(`/certificates/${serial}`, tok);
    expect(read.status).toBe(200);
    expect((await apiOver(b.call)(`/certificates/${serial}/revoke`, tok, { body: { reason: "keyCompromise" } })).status).toBe(200);
    const after = await apiOver(a.call)(`/certificates/${serial}`, tok);
    expect(((await after.json()) as { status: string }).status).toBe("revoked");
  });
});
