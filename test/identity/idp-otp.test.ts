/** HOTP/TOTP against the RFC 4226 Appendix D and RFC 6238 Appendix B vectors, plus window, replay and resync rules. */
import { describe, expect, test } from "bun:test";
import { base32Decode, base32Encode, hotp, otpauthUri, resyncHotp, totp, verifyHotp, verifyTotp } from "../../apps/identity-idp/domain/otp.ts";

const ascii = (s: string) => new TextEncoder().encode(s);
const SEED20 = ascii("12345678901234567890");

describe("RFC 4226 HOTP", () => {
  const expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
  test("Appendix D values for counters 0..9", async () => {
    for (let c = 0; c < 10; c++) expect(await hotp(SEED20, c)).toBe(expected[c]!);
  });
  test("look-ahead window accepts a code ahead and returns the next counter", async () => {
    expect(await verifyHotp(SEED20, "969429", 0, 10)).toBe(4);
    expect(await verifyHotp(SEED20, "969429", 4, 10)).toBeUndefined(); // behind the counter: used
    expect(await verifyHotp(SEED20, "520489", 0, 5)).toBeUndefined(); // beyond the window
    expect(await verifyHotp(SEED20, "12345", 0, 10)).toBeUndefined();
    expect(await verifyHotp(SEED20, "75522a", 0, 10)).toBeUndefined();
  });
  test("resync needs two consecutive codes", async () => {
    const c50 = await hotp(SEED20, 50);
    const c51 = await hotp(SEED20, 51);
    expect(await resyncHotp(SEED20, c50, c51, 0, 100)).toBe(52);
    expect(await resyncHotp(SEED20, c51, c50, 0, 100)).toBeUndefined();
    expect(await resyncHotp(SEED20, c50, c51, 0, 20)).toBeUndefined();
  });
});

describe("RFC 6238 TOTP", () => {
  const seeds = {
    "SHA-1": SEED20,
    "SHA-256": ascii("12345678901234567890123456789012"),
    "SHA-512": ascii("1234567890123456789012345678901234567890123456789012345678901234"),
  } as const;
  const table: Array<[number, string, string, string]> = [
    [59, "94287082", "46119246", "90693936"],
    [1111111109, "07081804", "68084774", "25091201"],
    [1111111111, "14050471", "67062674", "99943326"],
    [1234567890, "89005924", "91819424", "93441116"],
    [2000000000, "69279037", "90698825", "38618901"],
    [20000000000, "65353130", "77737706", "47863826"],
  ];
  test("Appendix B values (8 digits, SHA-1/256/512)", async () => {
    for (const [t, s1, s256, s512] of table) {
      expect(await totp(seeds["SHA-1"], t, { digits: 8, alg: "SHA-1" })).toBe(s1);
      expect(await totp(seeds["SHA-256"], t, { digits: 8, alg: "SHA-256" })).toBe(s256);
      expect(await totp(seeds["SHA-512"], t, { digits: 8, alg: "SHA-512" })).toBe(s512);
    }
  });
  test("±1 step drift, nothing further; replay of the last step refused", async () => {
    const t = 1_700_000_000;
    const step = Math.floor(t / 30);
    const now = await totp(SEED20, t);
    expect(await verifyTotp(SEED20, now, t, null)).toBe(step);
    expect(await verifyTotp(SEED20, await totp(SEED20, t - 30), t, null)).toBe(step - 1);
    expect(await verifyTotp(SEED20, await totp(SEED20, t + 30), t, null)).toBe(step + 1);
    expect(await verifyTotp(SEED20, await totp(SEED20, t - 60), t, null)).toBeUndefined();
    expect(await verifyTotp(SEED20, await totp(SEED20, t + 60), t, null)).toBeUndefined();
    // replay: the same step (or an older one) after it was used
    expect(await verifyTotp(SEED20, now, t, step)).toBeUndefined();
    expect(await verifyTotp(SEED20, await totp(SEED20, t - 30), t, step)).toBeUndefined();
    expect(await verifyTotp(SEED20, await totp(SEED20, t + 30), t, step)).toBe(step + 1);
  });
});

test("base32 round trip and RFC 4648 vector; otpauth URI", () => {
  expect(base32Encode(ascii("foobar"))).toBe("MZXW6YTBOI");
  expect(new TextDecoder().decode(base32Decode("MZXW6YTBOI======"))).toBe("foobar");
  const r = crypto.getRandomValues(new Uint8Array(20));
  expect(base32Decode(base32Encode(r))).toEqual(r);
  expect(() => base32Decode("M1")).toThrow();
  const uri = otpauthUri({ kind: "totp", issuer: "Acme Co", account: "alice@acme", secret: SEED20 });
  expect(uri).toBe("otpauth://totp/Acme%20Co:alice%40acme?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Co&algorithm=SHA1&digits=6&period=30");
});
