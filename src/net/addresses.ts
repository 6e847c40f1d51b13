/**
 * IP addresses as bytes, CIDR ranges, and which addresses are not on the public Internet: what
 * a service checks before it connects somewhere a client or a request named (ACME challenge
 * validation, a client's request_uri), so a caller cannot make it reach loopback, private,
 * link-local or reserved networks behind it.
 */

/** Parses an IPv4 or IPv6 address to 4 or 16 bytes, or undefined. */
export function ipBytes(ip: string): Uint8Array | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) {
    const parts = ip.split(".").map(Number);
    return parts.every((p) => p <= 255) ? new Uint8Array(parts) : undefined;
  }
  if (!/^[0-9a-fA-F:.]+$/.test(ip) || ip.split("::").length > 2) return undefined;
  let [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const parse = (s: string | undefined) => (s ? s.split(":") : []);
  let h = parse(head);
  let t = parse(tail);
  const v4 = (arr: string[]) => {
    const last = arr[arr.length - 1];
    if (last?.includes(".")) {
      const b = ipBytes(last);
      if (!b || b.length !== 4) return undefined;
      arr.splice(arr.length - 1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return arr;
  };
  if (tail === undefined) h = v4(h) ?? [];
  else t = v4(t) ?? [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  if (groups.length !== 8 || (tail !== undefined && h.length + t.length > 7)) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i]!)) return undefined;
    const n = parseInt(groups[i]!, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  return out;
}

/** True when `ip` lies in the CIDR range. */
export function ipInRange(range: string, ip: string): boolean {
  const [base, bitsText] = range.split("/");
  const a = ipBytes(base!);
  const b = ipBytes(ip);
  const bits = Number(bitsText);
  if (!a || !b || a.length !== b.length || bits > a.length * 8) return false;
  for (let i = 0; i < bits; i++) {
    const mask = 0x80 >> i % 8;
    if ((a[i >> 3]! & mask) !== (b[i >> 3]! & mask)) return false;
  }
  return true;
}

/** Loopback, private, shared, link-local, documentation, benchmarking, reserved and multicast ranges. */
const NON_PUBLIC = [
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
  "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
  "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
];

/** True when the address is loopback, private, link-local, reserved, documentation or multicast. */
export function isNonPublicAddress(ip: string): boolean {
  const b = ipBytes(ip);
  if (!b) return true;
  return NON_PUBLIC.some((r) => (r.includes(":") ? b.length === 16 : b.length === 4) && ipInRange(r, ip));
}
