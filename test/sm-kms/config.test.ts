/** sm-kms's own config section: defaults, bounds, and one clear message naming the key. */
import { describe, expect, test } from "bun:test";
import { parseKmsConfig } from "../../apps/sm-kms/domain.ts";
import { b64u, fromB64u } from "../../apps/sm-kms/domain.ts";

describe("app config", () => {
  test("defaults", () => {
    expect(parseKmsConfig(undefined)).toEqual({ batch_max: 100, rotation_check_s: 60, key_cache_size: 1000, keyring_software_fallback: false });
    expect(parseKmsConfig({ keyring_software_fallback: true }).keyring_software_fallback).toBe(true);
  });
  test("bad values name the key", () => {
    for (const [cfg, key] of [[{ batch_max: 0 }, "app.batch_max"], [{ rotation_check_s: "x" }, "app.rotation_check_s"], [{ keyring_software_fallback: 1 }, "app.keyring_software_fallback"], [{ typo: 1 }, "app"]] as const) {
      let err: { code?: string; message?: string } = {};
      try {
        parseKmsConfig(cfg);
      } catch (e) {
        err = e as typeof err;
      }
      expect(err.code).toBe("config_invalid");
      expect(err.message!.startsWith(key)).toBe(true);
    }
  });
  test("base64url helpers round-trip and refuse non-base64url", () => {
    for (const n of [0, 1, 2, 3, 100, 70_000]) {
      const b = crypto.getRandomValues(new Uint8Array(n));
      expect(b64u(b)).toBe(Buffer.from(b).toString("base64url"));
      expect(fromB64u(b64u(b))).toEqual(b);
    }
    for (const bad of ["a", "ab+c", "ab/c", "ab=="]) expect(() => fromB64u(bad)).toThrow();
  });
});
