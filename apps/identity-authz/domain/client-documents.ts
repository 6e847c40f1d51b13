/**
 * Requests to URLs a client chose when it registered: GETs of its `jwks_uri`, its
 * `sector_identifier_uri` and its `request_uris`, and the POST of logout tokens to its
 * `backchannel_logout_uri`. Registration can be open to anyone (RFC 7591), so each of these is
 * an outbound request that a client, not the operator, aims: all go through
 * src/net/small-document.ts's rules (https, no redirects, one deadline, a size bound for
 * documents, and no loopback, private, link-local or reserved address unless
 * `app.client_urls_allow_private_addresses`, or the URL's origin is one of
 * `app.client_urls_allowed_origins`), trusting `app.ca_file`.
 */
import { fetchChecked, fetchSmallDocument, OutboundRefused, type OutboundRequest } from "../../../src/net/small-document.ts";
import type { AuthzConfig } from "../config.ts";

/** A client's JWK Set: larger than any sane set of public keys. */
export const JWKS_MAX_BYTES = 64 * 1024;
/** A sector_identifier_uri's JSON array of redirect URIs. */
export const SECTOR_MAX_BYTES = 64 * 1024;
const DOCUMENT_TIMEOUT_MS = 5000;

export interface ClientDocumentRequest {
  accept: string;
  maxBytes: number;
  timeoutMs?: number;
}

/** GETs a client-chosen URL; failures are `OutboundRefused` with a reason fit for the client. */
export type ClientDocuments = (url: string, r: ClientDocumentRequest) => Promise<string>;

/** Sends one request to a client-chosen URL and resolves to the answer (its body for the caller to read or cancel). */
export type ClientRequests = (url: string, timeoutMs: number, req: OutboundRequest) => Promise<Response>;

/** Whether `url` may be on a private address: always (development, tests), or by its origin. */
function allowsPrivate(cfg: AuthzConfig, url: string): boolean {
  if (cfg.client_urls_allow_private_addresses || cfg.request_uri_allow_private_addresses) return true;
  if (!cfg.client_urls_allowed_origins.length || !URL.canParse(url)) return false;
  return cfg.client_urls_allowed_origins.includes(new URL(url).origin);
}

export function clientDocuments(cfg: AuthzConfig, caPem: () => string | undefined): ClientDocuments {
  return (url, r) =>
    fetchSmallDocument(url, {
      timeoutMs: r.timeoutMs ?? DOCUMENT_TIMEOUT_MS,
      maxBytes: r.maxBytes,
      allowPrivate: allowsPrivate(cfg, url),
      ca: caPem(),
      accept: r.accept,
    });
}

export function clientRequests(cfg: AuthzConfig, caPem: () => string | undefined): ClientRequests {
  return (url, timeoutMs, req) => fetchChecked(url, { timeoutMs, maxBytes: 0, allowPrivate: allowsPrivate(cfg, url), ca: caPem() }, req);
}

/**
 * jose's `customFetch` for a client's `jwks_uri`: the document fetched under the rules above,
 * handed to jose as a 200 JSON answer (jose checks the status and parses the set itself).
 */
export function jwksFetch(documents: ClientDocuments): (url: string) => Promise<Response> {
  return async (url) => {
    const body = await documents(url, { accept: "application/jwk-set+json, application/json", maxBytes: JWKS_MAX_BYTES });
    return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
  };
}

/** A sector_identifier_uri's JSON, or an Error whose message says why it was not fetched. */
export async function sectorDocument(documents: ClientDocuments, url: string): Promise<unknown> {
  const text = await documents(url, { accept: "application/json", maxBytes: SECTOR_MAX_BYTES });
  try {
    return JSON.parse(text);
  } catch {
    throw new OutboundRefused("the document is not JSON");
  }
}
