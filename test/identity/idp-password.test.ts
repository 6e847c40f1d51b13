/** Argon2id hashing and the NIST 800-63B password rules. */
import { expect, test } from "bun:test";
import { commonPasswords, hashPassword, needsRehash, OWASP_ARGON2, parseHash, passwordProblem, verifyDummy, verifyPassword } from "../../apps/identity-idp/domain/password.ts";
import { argon2id } from "hash-wasm";
import { Argon2Pool, inThread } from "../../apps/identity-idp/domain/argon2-pool.ts";

const rules = { minLength: 12, maxLength: 128 };

test("Argon2id PHC hash at OWASP parameters verifies only the right password", async () => {
  const h = await hashPassword("a long passphrase here");
  expect(h).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  expect(parseHash(h).params).toEqual(OWASP_ARGON2);
  expect(await verifyPassword("a long passphrase here", h)).toBe(true);
  expect(await verifyPassword("a long passphrase herE", h)).toBe(false);
  expect(await verifyDummy("anything")).toBe(false);
  // The stored hash is the standard Argon2id of the salt: an independent encoding agrees.
  const { salt, hash } = parseHash(h);
  const ref = await argon2id({ password: "a long passphrase here", salt, parallelism: 1, iterations: 2, memorySize: 19456, hashLength: 32, outputType: "encoded" });
  expect(ref.split("$").pop()).toBe(btoa(String.fromCharCode(...hash)).replace(/=+$/, ""));
  expect(needsRehash(h, { m: 65536, t: 3, p: 1 })).toBe(true);
  expect(needsRehash(h)).toBe(false);
  expect(() => parseHash("$argon2i$v=19$m=1,t=1,p=1$abc$def")).toThrow();
});

test("length and blocklist rules, no composition rules", () => {
  expect(passwordProblem("short", rules)).toContain("at least 12");
  expect(passwordProblem("x".repeat(129) + "y", rules)).toContain("at most 128");
  expect(commonPasswords().size).toBeGreaterThan(3000);
  expect(passwordProblem("password1234", rules)).toContain("too common");
  expect(passwordProblem("QwertyUiop123", rules)).toContain("too common");
  expect(passwordProblem("aaaaaaaaaaaaaa", rules)).toBeDefined();
  expect(passwordProblem("alice-is-my-password", rules, ["alice"])).toContain("username");
  // all lower-case letters and spaces: fine under NIST rules
  expect(passwordProblem("purple monkey dishwasher", rules)).toBeUndefined();
  expect(passwordProblem("zebra lamp quantum river", { minLength: 30, maxLength: 128 })).toContain("at least 30");
});

test("the worker pool derives the same Argon2id as the calling thread, concurrently", async () => {
  const pool = Argon2Pool.create(2);
  expect(pool).toBeInstanceOf(Argon2Pool);
  expect(Argon2Pool.create(2)).toBe(pool); // one pool per process and size
  expect(Argon2Pool.create(0)).toBe(inThread);
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const p = { m: 1024, t: 2, p: 1 };
  const [a, b, c] = await Promise.all([pool.derive("pw one", salt, p, 32), pool.derive("pw two", salt, p, 32), inThread.derive("pw one", salt, p, 32)]);
  expect(a).toEqual(c);
  expect(a).not.toEqual(b);
  const h = await hashPassword("through the pool 123", OWASP_ARGON2, pool);
  expect(await verifyPassword("through the pool 123", h)).toBe(true);
  expect(await verifyPassword("through the pool 124", h, pool)).toBe(false);
});

test("app config: defaults, and bad values refused with the key named", async () => {
  const { parseAppConfig } = await import("../../apps/identity-idp/config.ts");
  const ok = parseAppConfig({ app: {} } as never);
  expect(ok).toMatchObject({ password_min_length: 12, password_max_length: 128, argon2_memory_kib: 19456, argon2_iterations: 2, mfa_default: "optional", totp_drift_steps: 1 });
  expect(() => parseAppConfig({ app: { password_min_length: 3 } } as never)).toThrow(/^app\.password_min_length: /);
  expect(() => parseAppConfig({ app: { argon2_memory_kib: 4096 } } as never)).toThrow(/^app\.argon2_memory_kib: /); // below OWASP
  expect(() => parseAppConfig({ app: { mfa_default: "sometimes" } } as never)).toThrow(/^app\.mfa_default: /);
  expect(() => parseAppConfig({ app: { typo_key: 1 } } as never)).toThrow(/^app\.typo_key: /);
});
