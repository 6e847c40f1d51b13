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
 * Not guaranteed: the connection goes through the runtime's fetch, which resolves the name once
 * more; a DNS answer that changes between the check and the connection (rebinding) is not
 * caught here.
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

/** Refuses `host` unless every address it has is public (or private ones are allowed). */
async function checkHost(host: string, o: SmallDocumentOptions, deadline: AbortSignal): Promise<void> {
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  let addresses: string[];
  if (ipBytes(bare)) addresses = [bare];
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
}

/** GETs `url` under the rules above; resolves to the body as text. */
export async function fetchSmallDocument(url: string, o: SmallDocumentOptions): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OutboundRefused("not a URL");
  }
  if (u.protocol !== "https:") throw new OutboundRefused("only https URLs are fetched");
  if (u.username || u.password) throw new OutboundRefused("URLs with credentials are not fetched");
  const deadline = AbortSignal.timeout(o.timeoutMs);
  await checkHost(u.hostname, o, deadline);
  let res: Response;
  try {
    res = await runtime.fetch(u, { headers: { accept: o.accept ?? "*/*" }, redirect: "manual", signal: deadline }, { ca: o.ca });
  } catch (e) {
    if (deadline.aborted) throw new OutboundRefused(`no answer within ${o.timeoutMs} ms`);
    throw new OutboundRefused(`the connection failed (${e instanceof Error ? e.name : "error"})`);
  }
  const refuse = async (why: string): Promise<never> => {
    await res.body?.cancel().catch(() => undefined);
    throw new OutboundRefused(why);
  };
  if (res.status >= 300 && res.status < 400) return refuse(`the server answered a redirect (${res.status}), which is not followed`);
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
