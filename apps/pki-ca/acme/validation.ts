/**
 * The validation authority: the only part of pki-ca's ACME that makes outbound requests.
 *
 * http-01 (RFC 8555 §8.3): GET `http://<name>:<port>/.well-known/acme-challenge/<token>` must
 * answer 200 with the key authorization. Guarantees: a name is resolved once per hop and the
 * request goes to the checked address (no second lookup a rebinding DNS could answer
 * differently); loopback, private, link-local, reserved and multicast addresses are refused
 * unless `allow_private_addresses`; names under `localhost` are loopback without a lookup
 * (RFC 6761 §6.3); redirects are followed only to http: on the same port, at most
 * `max_redirects`, each target checked again; the whole validation (every hop, connect and body)
 * ends at `validation_timeout_ms`; at most 8 KiB of body is read. Not done here: https
 * redirects, dns-01, tls-alpn-01, CAA, multi-perspective validation.
 */
import { lookup } from "node:dns/promises";
import { ipBytes, ipInRange } from "../policy.ts";
import { AcmeProblem } from "./problem.ts";
import type { AcmeConfig } from "./config.ts";

const MAX_BODY = 8 * 1024;

/** Ranges a validation never connects to unless private addresses are allowed. */
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

export interface Http01Target {
  type: "dns" | "ip";
  value: string;
  token: string;
  keyAuthorization: string;
}

export class ValidationAuthority {
  constructor(private readonly config: Pick<AcmeConfig, "http01_port" | "allow_private_addresses" | "validation_timeout_ms" | "max_redirects">) {}

  /** Resolves when the key authorization is served; throws an AcmeProblem saying why not. */
  async http01(t: Http01Target): Promise<void> {
    const deadline = AbortSignal.timeout(this.config.validation_timeout_ms);
    let url = new URL(`http://${t.type === "ip" && t.value.includes(":") ? `[${t.value}]` : t.value}:${this.config.http01_port}/.well-known/acme-challenge/${t.token}`);
    for (let hop = 0; ; hop++) {
      const res = await this.get(url, deadline);
      if (res.status >= 300 && res.status < 400 && res.location !== null) {
        if (hop >= this.config.max_redirects) throw new AcmeProblem("connection", `more than ${this.config.max_redirects} redirects`);
        let next: URL;
        try {
          next = new URL(res.location, url);
        } catch {
          throw new AcmeProblem("connection", "a redirect to an invalid URL");
        }
        if (next.protocol !== "http:" || (next.port || "80") !== String(this.config.http01_port)) {
          throw new AcmeProblem("connection", `a redirect to ${next.protocol}//…:${next.port || (next.protocol === "https:" ? 443 : 80)}; only http: on port ${this.config.http01_port} is followed`);
        }
        url = next;
        continue;
      }
      if (res.status !== 200) throw new AcmeProblem("unauthorized", `the challenge URL answered ${res.status}, not 200`);
      if (res.body.trim() !== t.keyAuthorization) throw new AcmeProblem("incorrectResponse", "the challenge URL did not serve the expected key authorization");
      return;
    }
  }

  /** The addresses a validation may connect to for `host` (a name or an IP literal). */
  private async addresses(host: string): Promise<string[]> {
    const bare = host.startsWith("[") ? host.slice(1, -1) : host;
    let all: string[];
    if (ipBytes(bare)) all = [bare];
    else if (bare === "localhost" || bare.endsWith(".localhost")) all = ["127.0.0.1"];
    else {
      try {
        all = (await lookup(bare, { all: true, verbatim: true })).map((a) => a.address);
      } catch {
        throw new AcmeProblem("dns", `${bare} did not resolve`);
      }
    }
    const allowed = this.config.allow_private_addresses ? all : all.filter((a) => !isNonPublicAddress(a));
    if (allowed.length === 0) throw new AcmeProblem("connection", `${bare} resolves only to loopback, private or reserved addresses, which this CA does not connect to`);
    // IPv4 first: the common case on the networks this runs on; the next address is tried on failure.
    return [...allowed.filter((a) => !a.includes(":")), ...allowed.filter((a) => a.includes(":"))];
  }

  private async get(url: URL, deadline: AbortSignal): Promise<{ status: number; location: string | null; body: string }> {
    const addrs = await this.addresses(url.hostname);
    let failure = "";
    for (const addr of addrs) {
      const target = `http://${addr.includes(":") ? `[${addr}]` : addr}:${url.port || 80}${url.pathname}${url.search}`;
      try {
        const res = await fetch(target, { headers: { host: url.host, accept: "*/*", "user-agent": "cryptoutil-pki-ca-acme" }, redirect: "manual", signal: deadline });
        return { status: res.status, location: res.headers.get("location"), body: await readCapped(res) };
      } catch (e) {
        if (deadline.aborted) throw new AcmeProblem("connection", `no answer within ${this.config.validation_timeout_ms} ms`);
        failure = (e as Error)?.message ?? String(e);
      }
    }
    throw new AcmeProblem("connection", `could not connect to ${url.hostname}:${url.port || 80}: ${failure.slice(0, 200)}`);
  }
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= MAX_BODY) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel().catch(() => undefined);
  const all = new Uint8Array(Math.min(size, MAX_BODY + 1));
  let o = 0;
  for (const c of chunks) {
    const part = c.subarray(0, all.length - o);
    all.set(part, o);
    o += part.length;
    if (o >= all.length) break;
  }
  return new TextDecoder().decode(all);
}
