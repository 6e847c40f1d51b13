/**
 * Fetches a small document at a URL that a client, not an operator, chose (identity-authz's
 * request_uri): the one outbound request such input may cause, with its own address rules.
 *
 * Guarantees: https only; redirects are never followed (a 3xx is refused); one deadline covers
 * the lookup, connection, answer and body; only 200 is accepted; at most `maxBytes` are read
 * (a longer body, or a Content-Length above it, is refused); the host (name or IP literal) is
 * resolved first and refused when any of its addresses is loopback, private, link-local,
 * reserved or multicast (src/net/addresses.ts), unless `allowPrivate` (development and tests);
 * names under `localhost` count as loopback without a lookup. Failures are `OutboundRefused`
 * with a reason fit for the requester (no stack, no address).
 *
 * The connection goes to a checked address (`runtime.fetchAt`, the name kept for TLS and Host),
 * the others tried in turn if it fails, so a DNS answer that changes after the check (rebinding)
 * cannot redirect it. Not on Deno, whose fetch cannot choose the address
 * (`runtime.pinsAddresses` false): there the name is resolved once more.
 */
import { lookup } from "node:dns/promises";
import { runtime } from "../runtime/index.ts";
import { ipBytes, isNonPublicAddress } from "./addresses.ts";

/** Why a document was not fetched; the message is safe to show the party that named the URL. */
export class OutboundRefused extends Error {}

export interface SmallDocumentOptions {
  timeoutMs: number;
  maxBytes: number;
  /** Loopback, private and reserved addresses allowed (development, tests). */
  allowPrivate: boolean;
  /** PEM bundle trusted for the server's certificate (default: the runtime's store). */
  ca?: string;
  /** The Accept header. */
  accept?: string;
  /** Name resolution (default `node:dns` lookup, every address). */
  resolve?: (host: string) => Promise<string[]>;
}

const systemResolve = async (host: string) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/**
 * The addresses of a host name (IPv4 first) once every one of them is public (or private ones
 * are allowed); undefined for an IP literal that passes.
 */
async function checkHost(host: string, o: SmallDocumentOptions, deadline: AbortSignal): Promise<string[] | undefined> {
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  let addresses: string[];
  const literal = ipBytes(bare) !== undefined;
  if (literal) addresses = [bare];
  else if (bare === "localhost" || bare.endsWith(".localhost")) addresses = ["127.0.0.1"];
  else {
    try {
      addresses = await Promise.race([
        (o.resolve ?? systemResolve)(bare),
        new Promise<never>((_, reject) => deadline.addEventListener("abort", () => reject(deadline.reason), { once: true })),
      ]);
    } catch {
      throw new OutboundRefused(deadline.aborted ? `no answer within ${o.timeoutMs} ms` : `${bare} does not resolve`);
    }
    if (!addresses.length) throw new OutboundRefused(`${bare} does not resolve`);
  }
  if (!o.allowPrivate && addresses.some(isNonPublicAddress)) throw new OutboundRefused(`${bare} is a loopback, private or reserved address, which is not fetched`);
  return literal ? undefined : [...addresses.filter((a) => !a.includes(":")), ...addresses.filter((a) => a.includes(":"))];
}

/** What a checked request sends (a GET without a body when absent). */
export interface OutboundRequest {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Sends one request to `url` under the rules above (https, no credentials in the URL, checked
 * addresses, one deadline, no redirect followed) and resolves to its answer, whose status the
 * caller judges; a 3xx is refused here, its body cancelled. The body of the answer must be read
 * or cancelled by the caller.
 */
export async function fetchChecked(url: string, o: SmallDocumentOptions, req: OutboundRequest = {}): Promise<Response> {
  return (await send(url, o, req)).res;
}

/** fetchChecked's work, with the deadline that also bounds reading the answer's body. */
async function send(url: string, o: SmallDocumentOptions, req: OutboundRequest): Promise<{ res: Response; deadline: AbortSignal }> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OutboundRefused("not a URL");
  }
  if (u.protocol !== "https:") throw new OutboundRefused("only https URLs are fetched");
  if (u.username || u.password) throw new OutboundRefused("URLs with credentials are not fetched");
  const deadline = AbortSignal.timeout(o.timeoutMs);
  const addresses = await checkHost(u.hostname, o, deadline);
  const init: RequestInit = { method: req.method ?? "GET", headers: { accept: o.accept ?? "*/*", ...req.headers }, body: req.body, redirect: "manual", signal: deadline };
  let res: Response | undefined;
  let failure = "";
  for (const address of addresses ?? [undefined]) {
    try {
      res = await (address === undefined ? runtime.fetch(u, init, { ca: o.ca }) : runtime.fetchAt(u, address, init, { ca: o.ca }));
      break;
    } catch (e) {
      if (deadline.aborted) throw new OutboundRefused(`no answer within ${o.timeoutMs} ms`);
      failure = e instanceof Error ? e.name : "error";
    }
  }
  if (!res) throw new OutboundRefused(`the connection failed (${failure})`);
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel().catch(() => undefined);
    throw new OutboundRefused(`the server answered a redirect (${res.status}), which is not followed`);
  }
  return { res, deadline };
}

/** GETs `url` under the rules above; resolves to the body as text. */
export async function fetchSmallDocument(url: string, o: SmallDocumentOptions): Promise<string> {
  const { res, deadline } = await send(url, o, {});
  const answer = res;
  const refuse = async (why: string): Promise<never> => {
    await answer.body?.cancel().catch(() => undefined);
    throw new OutboundRefused(why);
  };
  if (res.status !== 200) return refuse(`the server answered ${res.status}`);
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > o.maxBytes) return refuse(`the document is larger than ${o.maxBytes} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    const reader = res.body?.getReader();
    for (;;) {
      const r = await reader?.read();
      if (!r || r.done) break;
      size += r.value.length;
      if (size > o.maxBytes) {
        await reader!.cancel().catch(() => undefined);
        throw new OutboundRefused(`the document is larger than ${o.maxBytes} bytes`);
      }
      chunks.push(r.value);
    }
  } catch (e) {
    if (e instanceof OutboundRefused) throw e;
    throw new OutboundRefused(deadline.aborted ? `no answer within ${o.timeoutMs} ms` : "the answer broke off");
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(body);
}
