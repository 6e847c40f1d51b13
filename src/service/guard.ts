/**
 * Network guards of the public server: the IP allowlist (CIDR ranges, IPv4 and
 * IPv6, IPv4-mapped IPv6 folded to IPv4) and a token-bucket rate limiter per key.
 */
import { AppError } from "./errors.ts";

/** Parses an IP address to 16 bytes (IPv4 as IPv4-mapped IPv6), or undefined. */
export function parseIp(ip: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  const zone = ip.indexOf("%");
  if (zone >= 0) ip = ip.slice(0, zone);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) {
    const parts = ip.split(".").map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(parts, 12);
    return out;
  }
  if (!ip.includes(":")) return undefined;
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const tail = ip.match(/(\d{1,3}(\.\d{1,3}){3})$/);
  if (tail) {
    const v4 = parseIp(tail[1]!);
    if (!v4) return undefined;
    ip = ip.slice(0, -tail[1]!.length) + ((v4[12]! << 8) | v4[13]!).toString(16) + ":" + ((v4[14]! << 8) | v4[15]!).toString(16);
  }
  const halves = ip.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  return out;
}

interface Cidr {
  net: Uint8Array;
  bits: number; // prefix length in the 128-bit space
}

export function parseCidr(cidr: string): Cidr {
  const [addr, len] = cidr.split("/");
  const net = addr ? parseIp(addr) : undefined;
  if (!net) throw new AppError("config_invalid", `security.ip_allowlist: '${cidr}' is not an IP or CIDR`, { status: 400 });
  const v4 = !addr!.includes(":");
  const max = v4 ? 32 : 128;
  const n = len === undefined ? max : Number(len);
  if (!Number.isInteger(n) || n < 0 || n > max || (len !== undefined && !/^\d+$/.test(len))) {
    throw new AppError("config_invalid", `security.ip_allowlist: bad prefix length in '${cidr}'`, { status: 400 });
  }
  return { net, bits: v4 ? 96 + n : n };
}

function inCidr(ip: Uint8Array, c: Cidr): boolean {
  let bits = c.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (c.net[i]! & mask)) return false;
  }
  return true;
}

/** An allowlist of CIDR ranges. "0.0.0.0/0" admits all IPv4, "::/0" everything. */
export class IpAllowlist {
  private readonly ranges: Cidr[];
  readonly allowsAll: boolean;
  constructor(cidrs: string[]) {
    this.ranges = cidrs.map(parseCidr);
    this.allowsAll = this.ranges.some((r) => r.bits === 0);
  }
  allows(ip: string | undefined): boolean {
    if (this.allowsAll) return true;
    const parsed = ip ? parseIp(ip) : undefined;
    return !!parsed && this.ranges.some((r) => inCidr(parsed, r));
  }
}

/** Token bucket per key (client IP). Old idle buckets are swept so memory stays bounded. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;
  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds to wait (for Retry-After). */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.ratePerSec);
      b.at = t;
    }
    if (t - this.lastSweep > 60_000) this.sweep(t);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.ratePerSec));
  }

  private sweep(t: number): void {
    this.lastSweep = t;
    const full = (this.burst / this.ratePerSec) * 1000;
    for (const [k, b] of this.buckets) if (t - b.at > full) this.buckets.delete(k);
  }
}
