/**
 * Yubico OTPs for tests, made by Yubico's own `ykgenerate` (Debian package libyubikey-dev):
 * the key's public id followed by the AES-128 block of the given counters.
 */
import { expect } from "bun:test";
import { spawnSync } from "node:child_process";

export const TEST_KEY = { publicId: "vvccccdtbhrl", privateId: "a1b2c3d4e5f6", aes: "0f1e2d3c4b5a69788796a5b4c3d2e1f0" };
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** Whether ykgenerate is installed; missing under CI=true is an error, elsewhere a printed skip. */
export function haveYkgenerate(): boolean {
  const ok = !spawnSync("ykgenerate", [], { encoding: "utf8" }).error;
  if (!ok && process.env.CI === "true") throw new Error("ykgenerate is required (Debian package libyubikey-dev)");
  if (!ok) console.warn("skipping: ykgenerate is missing (apt-get install -y libyubikey-dev)");
  return ok;
}

/** An OTP with session counter `session` and use counter `use` (timestamp 0x561234). */
export function ykOtp(session: number, use: number, key: { publicId: string; privateId: string; aes: string } = TEST_KEY): string {
  const r = spawnSync("ykgenerate", [key.aes, key.privateId, hex(session, 4), hex(0x1234, 4), hex(0x56, 2), hex(use, 2)], { encoding: "utf8" });
  if (r.error) throw new Error("ykgenerate is required (Debian package libyubikey-dev)");
  expect(r.status).toBe(0);
  return key.publicId + r.stdout.trim();
}
