/**
 * The validation authority: the only part of pki-ca's ACME that makes outbound requests.
 *
 * http-01 (RFC 8555 §8.3): GET `http://<name>:<port>/.well-known/acme-challenge/<token>` must
 * answer 200 with the key authorization. dns-01 (§8.4): a TXT record at `_acme-challenge.<name>`
 * must hold base64url(SHA-256(key authorization)). tls-alpn-01 (RFC 8737): a TLS handshake with
 * ALPN `acme-tls/1` and SNI `<name>` must negotiate that protocol and present a certificate
 * naming exactly `<name>` with a critical `acmeIdentifier` extension holding SHA-256(key
 * authorization). CAA (RFC 8659): the closest non-empty CAA set up the tree decides.
 *
 * Guarantees: names are resolved through `dns_resolvers` (or the system's), once per hop, and the
 * connection goes to the checked address (no second lookup a rebinding DNS could answer
 * differently); loopback, private, link-local, reserved and multicast addresses are refused
 * unless `allow_private_addresses`; names under `localhost` are loopback without a lookup
 * (RFC 6761 §6.3); http-01 redirects are followed only to http: on the same port, at most
 * `max_redirects`, each target checked again; one attempt (every hop, connect and body) ends at
 * `validation_timeout_ms`; at most 8 KiB of body is read; a CAA lookup that fails (not an empty
 * answer) refuses issuance. Not done here: https redirects, multi-perspective validation.
 */
import { createHash } from "node:crypto";
import { lookup, Resolver } from "node:dns/promises";
import { connect, type TLSSocket } from "node:tls";
import * as x509 from "../../../src/pki/x509.ts";
import { ipBytes } from "../policy.ts";
import { isNonPublicAddress } from "../../../src/net/addresses.ts";
import { AcmeProblem } from "./problem.ts";
import type { AcmeConfig } from "./config.ts";

export { isNonPublicAddress };

const MAX_BODY = 8 * 1024;

/** The acmeIdentifier extension of a tls-alpn-01 certificate (RFC 8737 §6.1). */
const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";
const DNS_MISSING = new Set(["ENOTFOUND", "ENODATA", "NXDOMAIN", "NODATA"]);

export type ChallengeType = "http-01" | "dns-01" | "tls-alpn-01";

/** What the CAA check needs besides the name: the challenge type and the account URL (RFC 8657 parameters). */
export interface CaaContext {
  method: ChallengeType;
  accountUri: string;
}

export interface Http01Target {
  type: "dns" | "ip";
  value: string;
  token: string;
  keyAuthorization: string;
}

type VaConfig = Pick<AcmeConfig, "http01_port" | "tls_alpn01_port" | "allow_private_addresses" | "validation_timeout_ms" | "max_redirects" | "dns_resolvers" | "caa_identities">;

export class ValidationAuthority {
  private readonly resolver: Resolver | undefined;

  constructor(private readonly config: VaConfig) {
    if (config.dns_resolvers.length) {
      this.resolver = new Resolver({ timeout: Math.min(config.validation_timeout_ms, 5000), tries: 2 });
      this.resolver.setServers(config.dns_resolvers);
    }
  }

  /** Runs one validation of `type`. */
  validate(type: ChallengeType, t: Http01Target): Promise<void> {
    if (type === "http-01") return this.http01(t);
    if (type === "dns-01") return this.dns01(t);
    return this.tlsAlpn01(t);
  }

  /** dns-01: some TXT string at `_acme-challenge.<name>` is base64url(SHA-256(key authorization)). */
  async dns01(t: Http01Target): Promise<void> {
    const name = `_acme-challenge.${t.value}`;
    const want = createHash("sha256").update(t.keyAuthorization).digest("base64url");
    let records: string[][];
    try {
      records = await this.dns().resolveTxt(name);
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      if (DNS_MISSING.has(code)) throw new AcmeProblem("unauthorized", `no TXT record found at ${name}`);
      throw new AcmeProblem("dns", `the TXT lookup of ${name} failed (${code || "error"})`);
    }
    if (!records.some((chunks) => chunks.join("") === want)) throw new AcmeProblem("incorrectResponse", `no TXT record at ${name} holds the expected digest (${records.length} found)`);
  }

  /**
   * tls-alpn-01 (RFC 8737; IP identifiers as RFC 8738, SNI the reverse-DNS name): the peer must
   * negotiate `acme-tls/1` and show a certificate naming exactly the identifier, with the critical
   * acmeIdentifier extension holding SHA-256 of the key authorization.
   */
  async tlsAlpn01(t: Http01Target): Promise<void> {
    const deadline = Date.now() + this.config.validation_timeout_ms;
    const servername = t.type === "ip" ? reverseName(t.value) : t.value;
    let der: Uint8Array | undefined;
    let failure = "";
    for await (const addr of this.addresses(t.value)) {
      // RFC 8737 sets no keyUsage, and some responders (lego's) mark their RSA certificate for
      // key encipherment only, which a TLS 1.3 client refuses: then once more with TLS 1.2 RSA key exchange.
      for (const rsaKeyExchange of [false, true]) {
        try {
          der = await this.alpnHandshake(addr, servername, deadline, rsaKeyExchange);
          break;
        } catch (e) {
          if (e instanceof AcmeProblem) throw e;
          failure = (e as Error)?.message ?? String(e);
          if (!/KEY_USAGE_BIT_INCORRECT/.test(failure)) break;
        }
      }
      if (der) break;
    }
    if (!der) throw new AcmeProblem("connection", `could not complete a TLS handshake with ${t.value}:${this.config.tls_alpn01_port}: ${failure.slice(0, 200)}`);
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(der.slice().buffer as ArrayBuffer);
    } catch {
      throw new AcmeProblem("tls", "the tls-alpn-01 certificate is not X.509");
    }
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const names = san?.names.items ?? [];
    const want = t.type === "ip" ? Buffer.from(ipBytes(t.value)!).toString("hex") : t.value;
    const got = names.map((n) => (n.type === "ip" ? Buffer.from(ipBytes(n.value) ?? []).toString("hex") : n.type === "dns" ? n.value.toLowerCase() : `${n.type}:${n.value}`));
    if (got.length !== 1 || got[0] !== want || names[0]!.type !== t.type) throw new AcmeProblem("unauthorized", `the tls-alpn-01 certificate must name exactly ${t.value}`);
    const ext = cert.extensions.find((e) => e.type === ACME_IDENTIFIER_OID);
    if (!ext || !ext.critical) throw new AcmeProblem("unauthorized", "the tls-alpn-01 certificate lacks the critical acmeIdentifier extension");
    const digest = createHash("sha256").update(t.keyAuthorization).digest();
    const value = new Uint8Array(ext.value);
    // The extension's value is an OCTET STRING of the 32-byte digest: 04 20 <digest>.
    if (value.length !== 34 || value[0] !== 0x04 || value[1] !== 0x20 || Buffer.compare(Buffer.from(value.subarray(2)), digest) !== 0) {
      throw new AcmeProblem("incorrectResponse", "the acmeIdentifier extension does not hold the expected key authorization digest");
    }
  }

  private alpnHandshake(addr: string, servername: string, deadline: number, rsaKeyExchange: boolean): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const left = deadline - Date.now();
      if (left <= 0) return reject(new AcmeProblem("connection", `no answer within ${this.config.validation_timeout_ms} ms`));
      let socket: TLSSocket;
      const timer = setTimeout(() => {
        socket?.destroy();
        reject(new AcmeProblem("connection", `no TLS handshake within ${this.config.validation_timeout_ms} ms`));
      }, left);
      const done = (fn: () => void) => {
        clearTimeout(timer);
        socket.destroy();
        fn();
      };
      // The peer's certificate is self-signed by design: its content is what gets checked, not its chain.
      const legacy = rsaKeyExchange ? { maxVersion: "TLSv1.2" as const, ciphers: "AES128-GCM-SHA256:AES256-GCM-SHA384" } : {};
      socket = connect({ host: addr, port: this.config.tls_alpn01_port, servername, ALPNProtocols: ["acme-tls/1"], rejectUnauthorized: false, ...legacy }, () => {
        if (socket.alpnProtocol !== "acme-tls/1") return done(() => reject(new AcmeProblem("tls", `the server did not negotiate acme-tls/1 (got ${socket.alpnProtocol || "none"})`)));
        const peer = socket.getPeerCertificate(false);
        if (!peer?.raw) return done(() => reject(new AcmeProblem("tls", "the server presented no certificate")));
        done(() => resolve(new Uint8Array(peer.raw)));
      });
      socket.once("error", (e) => done(() => reject(e)));
    });
  }

  /**
   * CAA (RFC 8659 §3): from the name up, the first non-empty CAA set decides; no set anywhere,
   * or a set without issue properties, permits. Only when the CA has `caa_identities`.
   */
  async caa(name: string, wildcard: boolean, ctx: CaaContext): Promise<void> {
    const ids = this.config.caa_identities;
    if (!ids.length) return;
    const labels = name.split(".");
    for (let i = 0; i < labels.length; i++) {
      const at = labels.slice(i).join(".");
      let records: Array<Record<string, unknown>>;
      try {
        records = (await this.dns().resolveCaa(at)) as unknown as Array<Record<string, unknown>>;
      } catch (e) {
        const code = (e as { code?: string }).code ?? "";
        if (DNS_MISSING.has(code)) continue;
        throw new AcmeProblem("caa", `the CAA lookup of ${at} failed (${code || "error"}), so issuance is refused`);
      }
      if (!records.length) continue;
      const props = records.map(caaProperty);
      const unknownCritical = props.find((p) => p.critical && !["issue", "issuewild", "iodef"].includes(p.tag));
      if (unknownCritical) throw new AcmeProblem("caa", `the CAA set at ${at} has a critical property this CA does not know (${unknownCritical.tag})`);
      const wild = props.filter((p) => p.tag === "issuewild");
      const relevant = wildcard && wild.length ? wild : props.filter((p) => p.tag === "issue");
      if (!relevant.length) return;
      const ok = relevant.some((p) => {
        const v = parseIssueValue(p.value);
        if (!v || !ids.includes(v.domain)) return false;
        if (v.params.accounturi !== undefined && v.params.accounturi !== ctx.accountUri) return false;
        if (v.params.validationmethods !== undefined && !v.params.validationmethods.split(",").includes(ctx.method)) return false;
        return true;
      });
      if (!ok) throw new AcmeProblem("caa", `the CAA records at ${at} do not permit this CA (${ids.join(", ")}) to issue for ${wildcard ? "*." : ""}${name}${relevant.length ? "" : ""}`);
      return;
    }
  }

  private dns(): Resolver {
    return this.resolver ?? (this.systemResolver ??= new Resolver({ timeout: Math.min(this.config.validation_timeout_ms, 5000), tries: 2 }));
  }
  private systemResolver: Resolver | undefined;

  /** http-01: resolves when the key authorization is served; throws an AcmeProblem saying why not. */
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

  /**
   * The addresses a validation may connect to for `host` (a name or an IP literal), in the order
   * to try them: IPv4 first (the common case on the networks this runs on), the next one on
   * failure. Through a configured resolver the AAAA records are asked for only once every IPv4
   * address has been tried (or there was none), so a validation that the first address answers
   * makes one lookup. Throws `dns` when the name has no address at all and `connection` when it
   * has only ones this CA may not connect to.
   */
  private async *addresses(host: string): AsyncGenerator<string> {
    const bare = host.startsWith("[") ? host.slice(1, -1) : host;
    const usable = (a: string) => this.config.allow_private_addresses || !isNonPublicAddress(a);
    const lookups: Array<() => Promise<string[]>> = [];
    if (ipBytes(bare)) lookups.push(async () => [bare]);
    else if (bare === "localhost" || bare.endsWith(".localhost")) lookups.push(async () => ["127.0.0.1"]);
    else if (this.resolver) {
      const resolver = this.resolver;
      lookups.push(
        () => resolver.resolve4(bare).catch(() => []),
        () => resolver.resolve6(bare).catch(() => []),
      );
    } else {
      lookups.push(async () => {
        try {
          const all = (await lookup(bare, { all: true, verbatim: true })).map((a) => a.address);
          return [...all.filter((a) => !a.includes(":")), ...all.filter((a) => a.includes(":"))];
        } catch {
          return [];
        }
      });
    }
    let found = 0;
    let allowed = 0;
    for (const next of lookups) {
      for (const a of await next()) {
        found++;
        if (!usable(a)) continue;
        allowed++;
        yield a;
      }
    }
    if (found === 0) throw new AcmeProblem("dns", `${bare} did not resolve`);
    if (allowed === 0) throw new AcmeProblem("connection", `${bare} resolves only to loopback, private or reserved addresses, which this CA does not connect to`);
  }

  private async get(url: URL, deadline: AbortSignal): Promise<{ status: number; location: string | null; body: string }> {
    let failure = "";
    for await (const addr of this.addresses(url.hostname)) {
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

/** One CAA record as node:dns gives it ({critical, <tag>: value}). */
function caaProperty(r: Record<string, unknown>): { critical: boolean; tag: string; value: string } {
  const tag = Object.keys(r).find((k) => k !== "critical") ?? "";
  return { critical: ((r.critical as number) & 128) !== 0, tag: tag.toLowerCase(), value: String(r[tag] ?? "") };
}

/** An issue/issuewild value (RFC 8659 §4.2): `[domain] *(";" key=value)`; undefined when unreadable or empty (no CA). */
export function parseIssueValue(value: string): { domain: string; params: Record<string, string> } | undefined {
  const [head = "", ...rest] = value.split(";");
  const domain = head.trim().toLowerCase().replace(/\.$/, "");
  if (!domain) return undefined;
  const params: Record<string, string> = {};
  for (const part of rest) {
    const m = /^\s*([A-Za-z0-9]+)\s*=\s*([\x21-\x3a\x3c-\x7e]*)\s*$/.exec(part);
    if (!m) {
      if (part.trim() === "") continue;
      return undefined;
    }
    params[m[1]!.toLowerCase()] = m[2]!;
  }
  return { domain, params };
}

/** The reverse-DNS name of an IP address (RFC 8738 §6: the SNI of an IP tls-alpn-01). */
export function reverseName(ip: string): string {
  const b = ipBytes(ip)!;
  if (b.length === 4) return `${[...b].reverse().join(".")}.in-addr.arpa`;
  return `${[...Buffer.from(b).toString("hex")].reverse().join(".")}.ip6.arpa`;
}
