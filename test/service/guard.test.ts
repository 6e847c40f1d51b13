/** IP allowlist parsing and matching, the token bucket, and log redaction. */
import { describe, expect, test } from "bun:test";
import { IpAllowlist, parseIp, RateLimiter } from "../../src/service/guard.ts";
import { createLogger } from "../../src/service/log.ts";

describe("IP allowlist", () => {
  test("IPv4, IPv6 and IPv4-mapped addresses match the right ranges", () => {
    const a = new IpAllowlist(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]);
    expect(a.allows("10.200.3.4")).toBe(true);
    expect(a.allows("11.0.0.1")).toBe(false);
    expect(a.allows("192.168.1.7")).toBe(true);
    expect(a.allows("192.168.1.8")).toBe(false);
    expect(a.allows("::ffff:10.1.2.3")).toBe(true);
    expect(a.allows("2001:db8:1::5")).toBe(true);
    expect(a.allows("2001:db9::5")).toBe(false);
    expect(a.allows("::1")).toBe(true);
    expect(a.allows(undefined)).toBe(false);
    expect(a.allows("not an ip")).toBe(false);
  });

  test("malformed addresses and ranges are refused", () => {
    for (const bad of ["1.2.3.256", "1.2.3", "1::2::3", "12345::", "g::1", ""]) expect(parseIp(bad)).toBeUndefined();
    for (const bad of ["10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8x", "nope/8"]) expect(() => new IpAllowlist([bad])).toThrow();
  });
});

describe("rate limiter", () => {
  test("a burst is admitted, then the rate refills the bucket", () => {
    let now = 0;
    const rl = new RateLimiter(2, 3, () => now);
    expect([rl.take("a"), rl.take("a"), rl.take("a")]).toEqual([0, 0, 0]);
    expect(rl.take("a")).toBeGreaterThanOrEqual(1);
    expect(rl.take("b")).toBe(0); // per key
    now += 500; // one token back at 2/s
    expect(rl.take("a")).toBe(0);
    expect(rl.take("a")).toBeGreaterThanOrEqual(1);
  });
});

describe("logs", () => {
  test("secret-looking fields and byte arrays are never written", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", service: "t", sink: (l) => lines.push(l) });
    log.info("x", { password: "hunter2", nested: { client_secret: "zq-secret-zq", authorization: "Bearer abc", ok: "visible" }, key: new Uint8Array([1, 2, 3]), blob: new Uint8Array(32) });
    log.child({ token: "zq-token-zq" }).warn("y");
    const out = lines.join("\n");
    for (const secret of ["hunter2", "zq-secret-zq", "Bearer abc", "zq-token-zq"]) expect(out).not.toContain(secret);
    expect(out).toContain("visible");
    expect(out).toContain("[32 bytes]");
    log.debug("z");
    expect(createLogger({ level: "warn", service: "t", sink: (l) => lines.push(l) }).enabled("info")).toBe(false);
  });
});
