/**
 * pki-ca's revocation and CA-certificate paths as a Workers-style module, for an edge runtime
 * (workerd): OCSP (RFC 6960, POST and GET forms), CRLs and CA certificates. The edge holds no
 * key: it serves OCSP responses the origin signed, under the RFC 5019 lightweight profile
 * (no nonce, so one signed answer serves every client asking about the same certificates),
 * asks the origin on a miss and again once a copy is older than the refresh interval.
 *
 * Bindings: ORIGIN (service: pki-ca's read-only revocation listener, `app.http_revocation`),
 * REFRESH_S (text: seconds a copy is served before the origin is asked again; default 60).
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { OCSPRequest, OCSPResponse, OCSPResponseStatus, Request as OcspSingleRequest, TBSRequest } from "@peculiar/asn1-ocsp";
import { answer, EdgeCache, edgeError, fromOrigin, refreshMsOf, type Fetcher } from "./cache.ts";

interface Env {
  ORIGIN: Fetcher;
  REFRESH_S?: string;
}

const MAX_OCSP_REQUEST_BYTES = 16 * 1024;
const MAX_QUESTIONS = 16;
const CA_FILE = /^\/pki\/ca\/[A-Za-z0-9.-]{1,64}\.(pem|crt|p7c)$/;
const CRL_FILE = /^\/pki\/crl\/[a-z0-9-]{1,40}\.crl$/;

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** The RFC 6960 error form: an unsigned OCSPResponse with only a status. */
function ocspError(status: OCSPResponseStatus, http: number): Response {
  const body = new Uint8Array(AsnConvert.serialize(new OCSPResponse({ responseStatus: status })));
  return new Response(body, { status: http, headers: { "content-type": "application/ocsp-response", "cache-control": "no-store" } });
}

/**
 * The request reduced to what the answer depends on: its CertIDs, re-encoded without the
 * requestor name, signature or extensions (a nonce among them). Undefined when malformed.
 */
export function canonicalOcspRequest(der: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (der.length === 0 || der.length > MAX_OCSP_REQUEST_BYTES) return undefined;
  let req: OCSPRequest;
  try {
    req = AsnConvert.parse(der.slice().buffer as ArrayBuffer, OCSPRequest);
  } catch {
    return undefined;
  }
  const list = req.tbsRequest?.requestList ?? [];
  if (list.length === 0 || list.length > MAX_QUESTIONS) return undefined;
  const tbs = new TBSRequest({ requestList: list.map((r) => new OcspSingleRequest({ reqCert: r.reqCert })) });
  return new Uint8Array(AsnConvert.serialize(new OCSPRequest({ tbsRequest: tbs })));
}

function base64ToBytes(s: string): Uint8Array | undefined {
  try {
    const bin = atob(s);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

async function requestBytes(req: Request, path: string): Promise<Uint8Array | undefined> {
  if (req.method === "POST") {
    if (!/^application\/ocsp-request\s*(;|$)/i.test(req.headers.get("content-type") ?? "")) return undefined;
    const declared = Number(req.headers.get("content-length") ?? 0);
    if (declared > MAX_OCSP_REQUEST_BYTES) return undefined;
    const body = new Uint8Array(await req.arrayBuffer());
    return body.length > MAX_OCSP_REQUEST_BYTES ? undefined : body;
  }
  let encoded: string;
  try {
    encoded = decodeURIComponent(path.slice("/pki/ocsp/".length));
  } catch {
    return undefined;
  }
  return encoded.length > (MAX_OCSP_REQUEST_BYTES * 4) / 3 + 4 ? undefined : base64ToBytes(encoded);
}

let cache: EdgeCache | undefined;
/** Request bytes (hex) -> the canonical request; its cache key by identity. Per isolate, bounded. */
const canonicalOf = new Map<string, Uint8Array<ArrayBuffer>>();
const keyOf = new WeakMap<Uint8Array, string>();
const MAX_KNOWN_REQUESTS = 10_000;

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    cache ??= new EdgeCache(refreshMsOf(env));
    const c = cache;
    const path = new URL(req.url).pathname;
    const isOcsp = path === "/pki/ocsp" || path.startsWith("/pki/ocsp/");
    if (isOcsp && (req.method === "POST" ? path === "/pki/ocsp" : req.method === "GET")) {
      // The same request again (one client polling, or many clients of one library): its
      // canonical form is known, so decoding and the ASN.1 parse are skipped. GET: by its path.
      let canonical = req.method === "GET" ? canonicalOf.get(path) : undefined;
      if (!canonical) {
        const der = await requestBytes(req, path);
        if (!der) return ocspError(OCSPResponseStatus.malformedRequest, 400);
        const raw = req.method === "GET" ? path : hex(der);
        canonical = canonicalOf.get(raw) ?? canonicalOcspRequest(der);
        if (!canonical) return ocspError(OCSPResponseStatus.malformedRequest, 400);
        if (canonicalOf.size >= MAX_KNOWN_REQUESTS) canonicalOf.clear();
        canonicalOf.set(raw, canonical);
      }
      const body = canonical;
      try {
        const a = await c.get(`ocsp:${keyOf.get(body) ?? keyOf.set(body, hex(body)).get(body)}`, () =>
          fromOrigin(env.ORIGIN, "/pki/ocsp", { method: "POST", headers: { "content-type": "application/ocsp-request" }, body }),
        );
        return answer(c, a);
      } catch {
        return ocspError(OCSPResponseStatus.tryLater, 503);
      }
    }
    if (req.method !== "GET" && req.method !== "HEAD") return edgeError(405, "method_not_allowed", "only GET and HEAD, and POST for OCSP");
    if (CA_FILE.test(path) || CRL_FILE.test(path)) {
      try {
        return answer(c, await c.get(`get:${path}`, () => fromOrigin(env.ORIGIN, path)));
      } catch {
        return edgeError(503, "unavailable", "the origin cannot be reached and nothing is cached");
      }
    }
    return edgeError(404, "not_found", "not served at the edge");
  },
};
