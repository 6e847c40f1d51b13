/**
 * Checks shared by the HSM tests of the keyring's apps (sm-kms, jose-ja): every material row
 * of a running service is a sealed token reference without private or secret JWK members, its
 * token objects are sensitive, non-extractable and unreadable, and known key bytes appear
 * nowhere in the raw database files.
 */
import { expect } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RunningService } from "../../src/service/service.ts";
import { TokenKeyObjects } from "../../src/crypto/pkcs11/index.ts";
import { algorithmSpec } from "../../src/keyring/algorithms.ts";
import { tokenObjectLabel, tokenSpecOf } from "../../src/keyring/hsm.ts";
import type { TokenObjectRef } from "../../src/crypto/pkcs11/index.ts";

const PRIVATE = new Set(["d", "p", "q", "dp", "dq", "qi", "k", "priv", "oth"]);

function expectNoPrivateMembers(doc: unknown): void {
  if (!doc || typeof doc !== "object") return;
  for (const [k, v] of Object.entries(doc)) {
    expect(PRIVATE.has(k)).toBe(false);
    expectNoPrivateMembers(v);
  }
}

/**
 * Unseals every material row of the service and checks it: token rows hold only their own
 * reference (and a public JWK), their objects are locked in the token. Returns how many rows
 * were in the token and how many were software (public-only imports, or allowed fallbacks).
 */
export async function expectMaterialInToken(svc: RunningService, software: (algorithm: string) => boolean = () => false): Promise<{ token: number; software: number }> {
  const { db, protector, hsm } = svc.ctx;
  expect(hsm).toBeDefined();
  const objects = new TokenKeyObjects(hsm!);
  const rows = await db
    .selectFrom("material_keys as m")
    .innerJoin("elastic_keys as e", "e.id", "m.key_id")
    .select(["m.key_id", "m.version", "m.tenant", "m.origin", "m.material", "e.algorithm"])
    .execute();
  expect(rows.length).toBeGreaterThan(0);
  const counts = { token: 0, software: 0 };
  for (const r of rows as Array<{ key_id: string; version: number; tenant: string; origin: string; material: Uint8Array; algorithm: string }>) {
    const doc = JSON.parse(new TextDecoder().decode(await protector.decrypt(r.material, `keyring/${r.tenant}/${r.key_id}/v${r.version}`)));
    if (r.origin === "hsm" || r.origin === "hsm-imported") {
      expectNoPrivateMembers(doc);
      expect(doc.hsm).toEqual({ token: hsm!.token, label: tokenObjectLabel(r.tenant, r.key_id, r.version), id: expect.stringMatching(/^[0-9a-f]{32}$/) });
      const obj = await objects.find(doc.hsm, tokenSpecOf(algorithmSpec(r.algorithm))!);
      expect(await objects.protection(obj)).toMatchObject({ sensitive: true, extractable: false, persistent: true });
      await expect(objects.readValue(obj)).rejects.toMatchObject({ code: "forbidden" });
      counts.token++;
    } else {
      // Software material is allowed only for public-only imports or algorithms the caller allows.
      const publicOnly = !Object.keys(doc).some((k) => PRIVATE.has(k));
      expect([r.algorithm, publicOnly || software(r.algorithm)]).toEqual([r.algorithm, true]);
      counts.software++;
    }
  }
  return counts;
}

/** The token reference a version's row holds (unsealed). */
export async function tokenRefOf(svc: RunningService, tenant: string, keyId: string, version: number): Promise<TokenObjectRef> {
  const { db, protector } = svc.ctx;
  const row = await db.selectFrom("material_keys").select(["material"]).where("tenant", "=", tenant).where("key_id", "=", keyId).where("version", "=", version).executeTakeFirstOrThrow();
  return JSON.parse(new TextDecoder().decode(await protector.decrypt(row.material, `keyring/${tenant}/${keyId}/v${version}`))).hsm;
}

/** Asserts none of `secrets` (raw bytes) appears in the service's database files, raw, hex or base64url. */
export function expectBytesAbsentFromDatabase(dataDir: string, secrets: Uint8Array[]): void {
  const files = readdirSync(dataDir).filter((f) => /\.db(-wal|-shm)?$/.test(f)).map((f) => join(dataDir, f)).filter(existsSync);
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) {
    const raw = readFileSync(f);
    for (const s of secrets) {
      expect(s.length).toBeGreaterThanOrEqual(16);
      const b = Buffer.from(s);
      expect(raw.indexOf(b)).toBe(-1);
      expect(raw.indexOf(Buffer.from(b.toString("base64url")))).toBe(-1);
      expect(raw.indexOf(Buffer.from(b.toString("hex")))).toBe(-1);
    }
  }
}
