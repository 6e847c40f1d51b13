/** identity-idp's signing-key rotation: new key at once, the old one published until retention ends. */
import { expect, test } from "bun:test";
import { createLocalJWKSet, jwtVerify, SignJWT } from "jose";
import { Barrier } from "../../src/barrier/index.ts";
import { openDatabase, runMigrations } from "../../src/storage/index.ts";
import { migrations } from "../../apps/identity-idp/migrations.ts";
import { IdpStore } from "../../apps/identity-idp/store.ts";
import { IdpKeys } from "../../apps/identity-idp/domain/handoff.ts";

test("rotation: the new key signs, the old one stays in the JWKS until retention ends", async () => {
  const d = await openDatabase<any>({ service: "identity-idp", url: ":memory:" });
  await runMigrations(d.db, "identity-idp", migrations);
  const barrier = new Barrier({ db: d.db, service: "identity-idp" });
  await barrier.unseal([crypto.getRandomValues(new Uint8Array(32))]);
  let now = 1_800_000_000_000;
  const keys = new IdpKeys(new IdpStore(d.db), barrier, () => now);

  const first = await keys.signingKey();
  const signed = await new SignJWT({ a: 1 }).setProtectedHeader({ alg: "ES256", kid: first.kid }).sign(first.key);
  expect(await keys.rotateDue(90 * 86_400_000)).toBe(false); // young key: nothing to do

  now += 91 * 86_400_000;
  expect(await keys.rotateDue(90 * 86_400_000)).toBe(true);
  const second = await keys.signingKey();
  expect(second.kid).not.toBe(first.kid);
  let jwks = await keys.jwks();
  expect(jwks.keys.map((k) => k.kid)).toEqual([second.kid, first.kid]); // current first
  await jwtVerify(signed, createLocalJWKSet(jwks)); // a verifier signed before the rotation still verifies

  now += IdpKeys.RETAIN_RETIRED_MS + 1;
  await keys.rotateDue(90 * 86_400_000); // prunes the retired key
  jwks = await keys.jwks();
  expect(jwks.keys.map((k) => k.kid)).toEqual([second.kid]);
  await expect(jwtVerify(signed, createLocalJWKSet(jwks))).rejects.toThrow();

  const third = await keys.rotate();
  expect((await keys.signingKey()).kid).toBe(third);
  expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([third, second.kid]);
  await barrier.seal();
  await d.close();
});
