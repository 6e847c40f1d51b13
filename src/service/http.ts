/**
 * The request pipeline in front of every app's Elysia instance.
 *
 * Order for each public request: request id -> IP allowlist -> rate limit ->
 * body size and content type -> CORS preflight -> authentication by path
 * (`/service/api/**`: bearer JWT only, or on the mTLS port the client certificate only;
 * `/browser/api/**`: session cookie only, plus CSRF and Origin checks on unsafe methods)
 * -> the app -> security headers, metrics and the access log. Errors anywhere become the one JSON error body.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { AppError, errorBody } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { HttpMetrics } from "./metrics.ts";
import type { IpAllowlist, RateLimiter } from "./guard.ts";
import type { FastRoute } from "./context.ts";
import { turnBarrier } from "./turn.ts";
import { mapStorageError } from "../storage/errors.ts";
import { checkJsonShape, isJsonContentType } from "./json-body.ts";
import { requireScopes, type BearerVerifier, type Principal } from "../auth/bearer.ts";
import { readCookie, SESSION_COOKIE, type SessionStore } from "../auth/session.ts";
import { Span, SpanStatus, type Tracer } from "../telemetry/index.ts";
import type { ClientCertificate } from "../auth/client-cert.ts";

export interface RequestInfo {
  id: string;
  ip?: string;
  principal?: Principal;
  /** Session id, for /browser requests. */
  sessionId?: string;
  /** The client certificate, on the mTLS port (RFC 8705 bound tokens); `verified` says whether it chained to the CA. */
  clientCert?: ClientCertificate;
  /** Set when the request came in on the mTLS listener (with or without a certificate). */
  mtls?: boolean;
  route?: string;
  /** Why the request failed with a 5xx, for its one error log line. */
  failure?: unknown;
  /** The error code the request was answered with, when it failed (for its audit event). */
  errorCode?: string;
  /** The request's trace, when tracing is on (in its log lines). */
  traceId?: string;
  /** The JSON body the pipeline read, for a fast route that takes it (`FastRoute.bodyText`). */
  bodyText?: string;
}

// Kept on the Request itself under a private symbol: a WeakMap keyed by every request
// made the garbage collector trace one ephemeron per request in flight.
const INFO = Symbol("cryptoutil.requestInfo");
type WithInfo = Request & { [INFO]?: RequestInfo };

/** What the pipeline learned about a request (id, client IP, principal). */
export function requestInfo(req: Request): RequestInfo {
  let info = (req as WithInfo)[INFO];
  if (!info) {
    info = { id: crypto.randomUUID() };
    (req as WithInfo)[INFO] = info;
  }
  return info;
}

/** The authenticated principal of a request; throws 401 if there is none. */
export function principalOf(req: Request): Principal {
  const p = (req as WithInfo)[INFO]?.principal;
  if (!p) throw new AppError("unauthenticated", "authentication is required");
  return p;
}

/**
 * Validation stops at the first issue everywhere: one issue is all an error answer reports,
 * and collecting one per invalid item (each holding its parents) made refusing a body of many
 * bad items cost time quadratic in its size, inside the framework's error construction.
 */
v.setGlobalConfig({ abortEarly: true });

/** Standard Schema issue paths are arrays of keys or {key}; show them as a.b.0 */
function pathOf(p: unknown): string | undefined {
  // Elysia stringifies Standard Schema paths badly ("[object Object]"); drop those.
  if (typeof p === "string") return p.includes("[object") ? undefined : p;
  if (Array.isArray(p)) return p.map((k) => (typeof k === "object" && k !== null ? String((k as { key: unknown }).key) : String(k))).join(".");
  return undefined;
}

type Issue = { message: string; path?: readonly unknown[]; issues?: readonly Issue[] };

/** Longest message text an error answer repeats: messages may quote the offending input. */
const MAX_ISSUE_MESSAGE = 200;

/**
 * The issue to report for `issue`: a union's own issue ("Expected (string | Object)") names no
 * member, so the deepest issue among its options' is reported instead, with its full path.
 */
function innermost(issue: Issue, prefix: readonly unknown[] = []): { path: readonly unknown[]; message: string } {
  const path = [...prefix, ...(issue.path ?? [])];
  let best: { path: readonly unknown[]; message: string } = { path, message: issue.message };
  for (const sub of issue.issues ?? []) {
    const candidate = innermost(sub, path);
    if (candidate.path.length > best.path.length) best = candidate;
  }
  return best;
}

/** Issues as the `details` of a `validation_failed` error: where, which member, and a bounded message. */
function issueDetails(where: unknown, issues: readonly Issue[]) {
  return issues.slice(0, 10).map((i) => {
    const { path, message: raw } = innermost(i);
    // valibot's messages end in "but received <the value>": the value may be a secret (a plaintext,
    // a password), so an answer says what was expected and never what was sent.
    const message = raw.replace(/ but received [\s\S]*$/, "");
    const text = message.length > MAX_ISSUE_MESSAGE ? `${message.slice(0, MAX_ISSUE_MESSAGE)}...` : message;
    return { in: where, path: path.length > 0 ? pathOf(path) : undefined, message: text };
  });
}
type StandardLike = { "~standard": { validate(value: unknown): unknown } };

/** The issues of a Standard Schema validator (as Elysia keeps it: the schema or `{schema}`), if synchronous. */
function standardIssues(validator: unknown, value: unknown): readonly Issue[] | undefined {
  if (!validator || typeof validator !== "object") return undefined;
  const s = ("~standard" in validator ? validator : (validator as { schema?: unknown }).schema) as StandardLike | undefined;
  if (!s || typeof s !== "object" || !("~standard" in s)) return undefined;
  try {
    const r = s["~standard"].validate(value) as { issues?: readonly Issue[] } | Promise<unknown>;
    return r instanceof Promise ? undefined : r.issues;
  } catch {
    return undefined;
  }
}

/** The path of an absolute URL without building a URL object (hot path). */
function pathOfUrl(u: string): string {
  const start = u.indexOf("/", u.indexOf("//") + 2);
  if (start < 0) return "/";
  const q = u.indexOf("?", start);
  const h = u.indexOf("#", start);
  const end = q < 0 ? h : h < 0 ? q : Math.min(q, h);
  return end < 0 ? u.slice(start) : u.slice(start, end);
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

function matchFast(routes: FastRoute[], method: string, path: string): { route: FastRoute; params: string[] } | undefined {
  for (const route of routes) {
    if (route.method !== method) continue;
    const m = route.pattern.exec(path);
    if (m) {
      try {
        return { route, params: m.slice(1).map((x) => (x && x.includes("%") ? decodeURIComponent(x) : (x ?? ""))) };
      } catch {
        throw new AppError("bad_request", "the request path is not valid percent-encoding");
      }
    }
  }
  return undefined;
}

const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/** Headers on every public response; JSON APIs are never cached. */
export const SECURITY_HEADERS: Record<string, string> = {
  "strict-transport-security": "max-age=63072000; includeSubDomains",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "content-security-policy": API_CSP,
  "cache-control": "no-store",
};
const SECURITY_ENTRIES = Object.entries(SECURITY_HEADERS);
/**
 * The headers of a plain JSON answer (security headers included). A Response copies the
 * Headers it is given, so one prebuilt set serves every answer: about a third of the cost of
 * building them from an object per response.
 */
export const JSON_HEADERS = new Headers({ ...SECURITY_HEADERS, "content-type": "application/json;charset=utf-8" });
const pageCsp = (connect: string[]) =>
  `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src ${["'self'", ...connect].join(" ")}; ` +
  "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";
// Scalar injects styles and uses workers; still no third-party origin anywhere, except the
// token endpoint the explorer's OAuth flow calls (`explorer.token_url`).
const docsCsp = (connect: string[]) =>
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; " +
  `font-src 'self' data:; connect-src ${["'self'", ...connect].join(" ")}; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'`;

/** The one error log line of a request answered with a 5xx (never the request's content). */
export function logServerError(logger: Logger, fields: { request_id: string; trace_id?: string; method?: string; route?: string; status: number; failure?: unknown }): void {
  const f = fields.failure;
  const appErr = f instanceof AppError ? f : undefined;
  logger.error("request failed", {
    request_id: fields.request_id,
    trace_id: fields.trace_id,
    method: fields.method,
    route: fields.route,
    status: fields.status,
    code: appErr?.code,
    error: appErr ? (appErr.cause ?? appErr) : f,
  });
}

/** The JSON error answer for `err`; a 5xx is logged when a logger is given. */
/**
 * The AppError of anything a handler threw: AppErrors as they are; a storage error the
 * database layer classifies (a busy or unreachable database: 503 `unavailable`; a constraint:
 * 409) as classified; anything else 500 `internal`, saying nothing about its cause.
 */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const mapped = mapStorageError(err);
  return mapped.code === "internal" ? new AppError("internal", "internal error", { status: 500, cause: err }) : mapped;
}

export function errorResponse(err: unknown, requestId: string, logger?: Logger): Response {
  const appErr = toAppError(err);
  if (appErr.status >= 500 && logger) logServerError(logger, { request_id: requestId, status: appErr.status, failure: appErr });
  return new Response(JSON.stringify(errorBody(appErr, requestId)), {
    status: appErr.status,
    headers: { "content-type": "application/json", ...appErr.headers },
  });
}

/** The message of each refusal of the HTTP/1.1 parser. */
const MALFORMED_MESSAGES = {
  header_too_large: "the request's headers are too large",
  http_version_not_supported: "only HTTP/1.1 and HTTP/2 are served",
  malformed_request: "the request is not well-formed HTTP",
} as const;

/**
 * The answer to a request the HTTP parser refused before any handler saw it: the error model,
 * the security headers and a request id like any other answer, counted under the route
 * `(malformed)` (the node listener calls it; Bun.serve answers such requests itself).
 */
export function malformedResponse(kind: keyof typeof MALFORMED_MESSAGES, metrics?: HttpMetrics): Response {
  const id = crypto.randomUUID();
  const res = errorResponse(new AppError(kind, MALFORMED_MESSAGES[kind]), id);
  for (const [k, v] of SECURITY_ENTRIES) if (k !== "content-type") res.headers.set(k, v);
  res.headers.set("x-request-id", id);
  metrics?.observe("UNKNOWN", "(malformed)", res.status, 0);
  return res;
}

export interface PipelineDeps {
  app: { handle(req: Request): Promise<Response> | Response };
  /** Routes dispatched before the app (never under /service/ or /browser/; checked at start). */
  fastRoutes?: FastRoute[];
  logger: Logger;
  metrics: HttpMetrics;
  allowlist: IpAllowlist;
  limiter: RateLimiter;
  bodyLimit: number;
  corsOrigins: string[];
  /**
   * Protocol endpoints that pages of other origins may call without credentials (an OAuth
   * token endpoint for API explorers and SPAs): their paths and the origins allowed.
   */
  protocolCors?: { paths: RegExp; origins: string[] };
  /** Origins the API explorer may connect to besides its own (the token endpoint's). */
  docsConnect?: string[];
  /** Origins the service's pages may connect to besides their own (the page CSP's connect-src). */
  pageConnect?: string[];
  /** Origins whose pages may call /service/api/ with a token in the request (CORS, no credentials). */
  serviceCorsOrigins?: string[];
  /** While this says true (the barrier is sealed), every request but the API document is refused. */
  sealed?: () => boolean;
  /**
   * While this says true (a graceful stop has begun), new requests are answered 503 with
   * `Connection: close`, so a client on a kept-alive connection learns its request was not
   * processed instead of meeting a reset connection.
   */
  draining?: () => boolean;
  bearer: BearerVerifier;
  /**
   * This listener's base URL as configured (`server.public_url`, or the listener's address):
   * the DPoP proofs' `htu` must name it, never the request's own Host header.
   */
  origin?: () => string | undefined;
  /**
   * How `/service/api/**` requests authenticate; default the bearer token. The mTLS port
   * passes the client certificate's mapping here instead.
   */
  serviceAuth?: (req: Request, info: RequestInfo) => Principal | Promise<Principal>;
  sessions?: SessionStore;
  accessLog: boolean;
  /** Set when tracing is on: each request gets a server span (see `tracedHandler`). */
  tracer?: Tracer;
}

type ClientIp = (req: Request) => string | undefined;

/** The request's JSON body, read and checked against the size limit and the shape bounds (`checkJsonShape`). */
async function boundedJsonText(req: Request, bodyLimit: number): Promise<string> {
  const text = await req.text();
  if (text.length > bodyLimit || Buffer.byteLength(text) > bodyLimit) throw new AppError("payload_too_large", `request body exceeds ${bodyLimit} bytes`);
  checkJsonShape(text);
  return text;
}

/** A new Request carrying `text` as its body and the same RequestInfo, for the app to parse. */
function withBody(req: Request, info: RequestInfo, text: string): Request {
  const copy = new Request(req.url, { method: req.method, headers: req.headers, body: text }) as WithInfo;
  copy[INFO] = info;
  return copy;
}

/**
 * The body text of a request a fast route with `bodyText` handles: what the pipeline read (a
 * JSON body), else the request's own body.
 */
export function requestBodyText(req: Request): Promise<string> {
  const text = (req as WithInfo)[INFO]?.bodyText;
  return text !== undefined ? Promise.resolve(text) : req.text();
}

/**
 * The runtime's own cap on a request body, far above any `body_limit`: the pipeline answers
 * oversized bodies itself (a declared length before reading, a chunked body as it streams in).
 */
export const RUNTIME_BODY_CAP = 1 << 30;

/**
 * A request whose body came without Content-Length (chunked), read up to `limit` bytes:
 * one byte more is a 413, and nothing past it is buffered.
 */
async function boundedChunkedRequest(req: Request, limit: number): Promise<Request> {
  const reader = req.body!.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new AppError("payload_too_large", `request body exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.byteLength;
  }
  const copy = new Request(req.url, { method: req.method, headers: req.headers, body }) as WithInfo;
  copy[INFO] = requestInfo(req);
  return copy;
}

/** The admin server's fetch handler: the admin app, plus the log line of any request that failed with a 5xx. */
export function adminHandler(app: { handle(req: Request): Promise<Response> }, logger: Logger) {
  return async (req: Request): Promise<Response> => {
    const res = await app.handle(req);
    const info = requestInfo(req);
    if (res.status >= 500 && info.failure !== undefined) logServerError(logger, { request_id: info.id, method: req.method, route: info.route, status: res.status, failure: info.failure });
    return res;
  };
}

/** Builds the public server's fetch handler. */
export function publicHandler(d: PipelineDeps, clientIp: ClientIp) {
  const cors = new Set(d.corsOrigins);
  const protocolOrigins = new Set(d.protocolCors?.origins ?? []);
  const DOCS_CSP = docsCsp(d.docsConnect ?? []);
  const PAGE_CSP = pageCsp(d.pageConnect ?? []);
  const serviceCors = new Set(d.serviceCorsOrigins ?? []);
  const fastRoutes = d.fastRoutes ?? [];
  for (const r of fastRoutes) {
    if (r.scopes) {
      // A scoped API route: its pattern is anchored under /service/api/, so the pipeline's
      // bearer verification has always run before it.
      if (!r.route.startsWith("/service/api/") || !r.pattern.source.startsWith("^\\/service\\/api\\/")) {
        throw new Error(`fast route ${r.route} has scopes but does not lie under /service/api/`);
      }
    } else if (r.route.startsWith("/service/") || r.route.startsWith("/browser/") || r.pattern.test("/service/api/v1/x") || r.pattern.test("/browser/api/v1/x")) {
      throw new Error(`fast route ${r.route} may not serve /service/ or /browser/ paths`);
    }
  }
  // DPoP proofs name this listener's configured URL; built once, not per request.
  const tokenRequest = { htu: (req: Request) => `${d.origin?.() ?? new URL(req.url).origin}${pathOfUrl(req.url)}` };
  const nextTurn = turnBarrier();
  const handle = async (received: Request): Promise<Response> => {
    let req = received;
    const start = performance.now();
    const info = requestInfo(req);
    info.ip = clientIp(req);
    // The requests of one event-loop turn run together (see turn.ts).
    await nextTurn();
    const path = pathOfUrl(req.url);
    const isService = path.startsWith("/service/");
    const isBrowser = path.startsWith("/browser/");
    // Origin matters only on /browser/ (CORS and CSRF) and on protocol endpoints open to other
    // origins; each header read is a native call.
    const protocolCors = protocolOrigins.size > 0 && !isService && !isBrowser && d.protocolCors!.paths.test(path);
    const serviceCorsPath = serviceCors.size > 0 && path.startsWith("/service/api/");
    const origin = isBrowser || protocolCors || serviceCorsPath ? req.headers.get("origin") : null;
    let res: Response;
    try {
      if (d.draining?.()) throw new AppError("shutting_down", "the service is shutting down; retry on another instance or later", { headers: { Connection: "close", "Retry-After": "1" } });
      if (!d.allowlist.allows(info.ip)) throw new AppError("ip_not_allowed", "this address may not use the service");
      const wait = d.limiter.take(info.ip ?? "unknown");
      if (wait) throw new AppError("rate_limited", "too many requests", { headers: { "Retry-After": String(wait) } });
      // Sealed as Vault is sealed: no operation at all until an operator unseals, not only the
      // ones that would decrypt something (keys already in memory were dropped at seal).
      if (d.sealed?.() && !path.startsWith("/docs")) {
        throw new AppError("sealed", "the service is sealed; an operator unseals it through the admin API", { headers: { "Retry-After": "5" } });
      }

      const len = req.headers.get("content-length");
      if (len !== null && Number(len) > d.bodyLimit) {
        throw new AppError("payload_too_large", `request body exceeds ${d.bodyLimit} bytes`);
      }
      const hasBody = len === null ? req.body !== null : len !== "0";
      if (hasBody && len === null && req.method !== "GET" && req.method !== "HEAD") req = await boundedChunkedRequest(req, d.bodyLimit);
      const ct = hasBody ? req.headers.get("content-type") : null;
      if (UNSAFE.has(req.method) && (isService || isBrowser) && path.includes("/api/") && hasBody && !isJsonContentType(ct)) {
        throw new AppError("unsupported_media_type", "request bodies must be application/json");
      }
      const fast = fastRoutes.length > 0 ? matchFast(fastRoutes, req.method, path) : undefined;
      // Every JSON body, on any path, is bounded here before the app parses and validates it; a
      // fast route that takes the text gets it as it is, the others a request carrying it.
      if (hasBody && isJsonContentType(ct)) {
        const text = await boundedJsonText(req, d.bodyLimit);
        if (fast?.route.bodyText) info.bodyText = text;
        else req = withBody(req, info, text);
      }

      if (protocolCors && req.method === "OPTIONS") {
        if (!origin || !protocolOrigins.has(origin)) throw new AppError("forbidden", "origin not allowed");
        res = new Response(null, {
          status: 204,
          headers: {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": "GET, POST",
            "access-control-allow-headers": "authorization, content-type, dpop",
            "access-control-max-age": "600",
            vary: "Origin",
          },
        });
      } else if (serviceCorsPath && req.method === "OPTIONS") {
        if (!origin || !serviceCors.has(origin)) throw new AppError("forbidden", "origin not allowed");
        res = new Response(null, {
          status: 204,
          headers: {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
            "access-control-allow-headers": "authorization, content-type, dpop",
            "access-control-max-age": "600",
            vary: "Origin",
          },
        });
      } else if (isBrowser && req.method === "OPTIONS") {
        if (!origin || !cors.has(origin)) throw new AppError("forbidden", "origin not allowed");
        res = new Response(null, {
          status: 204,
          headers: {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
            "access-control-allow-headers": "content-type, x-csrf-token",
            "access-control-max-age": "600",
            vary: "Origin",
          },
        });
      } else {
        if (isService && path.startsWith("/service/api/")) {
          if (readCookie(req.headers.get("cookie"), SESSION_COOKIE)) {
            throw new AppError("unauthenticated", "session cookies are not accepted on /service; use a bearer token");
          }
          info.principal = d.serviceAuth ? await d.serviceAuth(req, info) : await d.bearer.verify(req.headers.get("authorization"), req, tokenRequest);
        } else if (isBrowser && path.startsWith("/browser/api/")) {
          if (req.headers.has("authorization")) {
            throw new AppError("unauthenticated", "bearer tokens are not accepted on /browser; use the session");
          }
          if (!d.sessions) throw new AppError("unauthenticated", "browser sessions are not enabled");
          const sid = readCookie(req.headers.get("cookie"), SESSION_COOKIE);
          if (!sid) throw new AppError("unauthenticated", "no session; log in first");
          info.principal = await d.sessions.authenticate(sid);
          info.sessionId = sid;
          if (UNSAFE.has(req.method)) {
            // Same-origin requests or allowlisted origins only, plus the CSRF token.
            if (origin && origin !== new URL(req.url).origin && !cors.has(origin)) throw new AppError("csrf_failed", "cross-origin request refused");
            await d.sessions.verifyCsrf(sid, req.headers.get("x-csrf-token"));
          }
        }
        if (fast) {
          info.route = fast.route.route;
          if (fast.route.scopes) requireScopes(principalOf(req), fast.route.scopes);
          res = await fast.route.handle(req, fast.params);
        } else {
          res = await d.app.handle(req);
        }
      }
    } catch (e) {
      if (!(e instanceof AppError) || e.status >= 500) info.failure = e;
      res = errorResponse(e, info.id);
    }

    const h = res.headers;
    h.set("x-request-id", info.id);
    // Responses built by the app already carry SECURITY_HEADERS (Elysia's .headers());
    // errors made here or by the router's 404 do not.
    if (!h.has("x-content-type-options")) for (const [k, v] of SECURITY_ENTRIES) h.set(k, v);
    // HTML (pages, the explorer) gets a CSP that allows same-origin scripts; JSON keeps 'none'.
    // (API responses are JSON: only other paths can carry a page.)
    if (!path.includes("/api/") && h.get("content-type")?.startsWith("text/html")) h.set("content-security-policy", path.startsWith("/docs") ? DOCS_CSP : PAGE_CSP);
    else if (path.startsWith("/docs")) h.set("content-security-policy", DOCS_CSP);
    if (isBrowser && origin && cors.has(origin)) {
      h.set("access-control-allow-origin", origin);
      h.set("access-control-allow-credentials", "true");
      h.append("vary", "Origin");
    } else if (origin && req.method !== "OPTIONS" && ((protocolCors && protocolOrigins.has(origin)) || (serviceCorsPath && serviceCors.has(origin)))) {
      // No credentials: the caller authenticates in the request itself (client authentication).
      h.set("access-control-allow-origin", origin);
      h.set("access-control-expose-headers", "dpop-nonce, www-authenticate");
      h.append("vary", "Origin");
    }

    const seconds = (performance.now() - start) / 1000;
    const route = routeLabel(info, res.status, path);
    d.metrics.observe(req.method, route, res.status, seconds);
    if (res.status >= 500) logServerError(d.logger, { request_id: info.id, trace_id: info.traceId, method: req.method, route, status: res.status, failure: info.failure });
    if (d.accessLog) {
      d.logger.info("request", {
        request_id: info.id,
        trace_id: info.traceId,
        method: req.method,
        route,
        status: res.status,
        ms: Math.round(seconds * 1e4) / 10,
        ip: info.ip,
        tenant: info.principal?.tenant,
      });
    }
    return res;
  };
  // Tracing off (the default): the pipeline is untouched.
  return d.tracer ? tracedHandler(d.tracer, handle) : handle;
}

/** The route a request is counted and logged under: its pattern, `/docs`, or `unmatched`. */
function routeLabel(info: RequestInfo, status: number, path: string): string {
  return info.route ?? (status === 404 ? "unmatched" : path.startsWith("/docs") ? "/docs" : "unmatched");
}

/**
 * The pipeline `handle` inside a server span: a child of the request's `traceparent` when it
 * carries a valid one, else a new trace. The span is active for everything the request does
 * (database, crypto, federated calls) and is named and finished from the answer: `METHOD
 * route`, HTTP semantic-convention attributes, error status on a 5xx.
 */
function tracedHandler(tracer: Tracer, handle: (req: Request) => Promise<Response>) {
  return (req: Request): Promise<Response> => {
    const info = requestInfo(req);
    const url = req.url;
    const path = pathOfUrl(url);
    const hostStart = url.indexOf("//") + 2;
    const host = url.slice(hostStart, url.indexOf("/", hostStart));
    const colon = host.lastIndexOf(":");
    const hasPort = colon > host.lastIndexOf("]");
    const ctx = tracer.startServer(req.method, req.headers.get("traceparent"), {
      "http.request.method": req.method,
      "url.scheme": "https",
      "url.path": path,
      "server.address": hasPort ? host.slice(0, colon) : host,
      "server.port": hasPort ? Number(host.slice(colon + 1)) : 443,
      "cryptoutil.request_id": info.id,
    });
    info.traceId = ctx.traceId;
    if (!(ctx instanceof Span)) return tracer.run(ctx, () => handle(req));
    const span = ctx;
    return tracer.run(span, async () => {
      let res: Response;
      try {
        res = await handle(req);
      } catch (e) {
        span.recordError(e);
        span.end();
        throw e;
      }
      const route = routeLabel(info, res.status, path);
      if (route !== "unmatched") {
        span.name = `${req.method} ${route}`;
        span.setAttribute("http.route", route);
      }
      span.setAttribute("http.response.status_code", res.status);
      if (res.status >= 500) {
        if (info.failure !== undefined) span.recordError(info.failure);
        else span.setStatus(SpanStatus.ERROR);
        span.setAttribute("error.type", span.statusMessage ?? String(res.status));
      }
      span.end();
      return res;
    });
  };
}

/** Maps any error inside Elysia to the one JSON error body. Used by every Elysia instance. */
export function mapError({ code, error, request, set }: { code: unknown; error: unknown; request: Request; set: { status?: number | string; headers: Record<string, string | number> } }) {
    const id = requestInfo(request).id;
    let err: AppError;
    if (error instanceof AppError) err = error;
    else if (code === "PARSE") err = new AppError("malformed_json", "the request body is not valid JSON");
    else if (code === "VALIDATION") {
      const e = error as { type?: string; all?: Array<{ path?: unknown; summary?: string; message?: string }>; validator?: unknown; value?: unknown };
      // Elysia flattens a Standard Schema issue's path to "[object Object]"; the schema's own
      // issues keep it, so they are asked again (an error path only).
      const issues = standardIssues(e.validator, e.value);
      const summary = issues
        ? issueDetails(e.type, issues)
        : issueDetails(e.type, (e.all ?? []).map((x) => ({ path: typeof x.path === "string" && !x.path.includes("[object") ? x.path.split(".") : undefined, message: x.summary ?? x.message ?? "invalid" })));
      err = new AppError("validation_failed", "the request does not match the schema", { details: summary });
    } else if (code === "NOT_FOUND") err = new AppError("not_found", "no such route");
    else if (code === "INVALID_COOKIE_SIGNATURE") err = new AppError("unauthenticated", "bad cookie");
    else err = toAppError(error);
    // The pipeline (or the admin server) writes the one log line of a 5xx: it knows the logger.
    if (err.status >= 500) requestInfo(request).failure = err;
    requestInfo(request).errorCode = err.code;
    set.status = err.status;
    for (const [k, v] of Object.entries(err.headers ?? {})) set.headers[k] = v;
    set.headers["content-type"] = "application/json";
    return errorBody(err, id);
  }

/**
 * Whether this runtime's Response refuses an empty-string body with a null-body status (204,
 * 205, 304), as the Fetch standard says and Deno does; Bun lets it pass. Elysia answers a
 * handler that returns nothing with such a body.
 */
const STRICT_NULL_BODY = (() => {
  try {
    new Response("", { status: 204 });
    return false;
  } catch {
    return true;
  }
})();

/** A handler's empty answer with a null-body status, as a Response with no body at all. */
const nullBodyAnswer = ({ set, responseValue }: { set: { status?: number | string; headers: Record<string, string | string[]> }; responseValue: unknown }) => {
  const status = set.status;
  if ((status === 204 || status === 205 || status === 304) && (responseValue === undefined || responseValue === null || responseValue === "")) {
    return new Response(null, { status, headers: set.headers as unknown as HeadersInit });
  }
};

const baseApp = new Elysia({ name: "cryptoutil.base" })
  .error({ AppError })
  .onTransform({ as: "global" }, ({ request, route }) => {
    requestInfo(request).route = route;
  })
  .onError({ as: "global" }, mapError)
  .macro({
    /** Required scopes of a route; checked against the request's principal. */
    scopes: (required: string[]) => ({
      beforeHandle({ request }: { request: Request }) {
        requireScopes(principalOf(request), required);
      },
    }),
  });

/**
 * Elysia plugin every app uses first: maps errors to the one JSON body,
 * records the matched route for metrics, and offers the `scopes` macro.
 *
 * @example
 *   new Elysia().use(appBase).get("/pets", handler, { scopes: ["pets:read"] })
 *
 * On a runtime whose Response is strict about null-body statuses, it also answers an empty
 * 204/205/304 with no body (see STRICT_NULL_BODY).
 */
export const appBase = STRICT_NULL_BODY ? baseApp.mapResponse({ as: "global" }, nullBodyAnswer as never) : baseApp;

/** valibot issues as the `details` of a `validation_failed` error (the shape `mapError` gives Elysia's). */
function validationFailed(where: "params" | "response", issues: readonly v.BaseIssue<unknown>[]): AppError {
  const details = issueDetails(where, issues as readonly Issue[]);
  return new AppError("validation_failed", "the request does not match the schema", { details });
}

/**
 * A scoped GET of the machine API as a fast route (see `ServiceDefinition.fastRoutes`): the
 * path's parameters and the answer are checked with the same valibot schemas as the route's
 * Elysia declaration, which stays for the API document and for /browser/.
 *
 * @example
 *   apiRoute("/service/api/v1/pets/:id", { params: PetId, response: Pet, scopes: ["pets:read"] },
 *     (req, { id }) => pets.get(principalOf(req).tenant, id))
 */
export function apiRoute<P extends v.GenericSchema<Record<string, string>, Record<string, string>>, R extends v.GenericSchema>(
  path: string,
  spec: { params: P; response: R; scopes: string[] },
  handler: (req: Request, params: v.InferOutput<P>) => Promise<v.InferInput<R>> | v.InferInput<R>,
): FastRoute {
  if (!path.startsWith("/service/api/")) throw new Error(`apiRoute ${path}: only /service/api/ paths`);
  const names: string[] = [];
  const source = path
    .split("/")
    .map((seg) => {
      if (!seg.startsWith(":")) return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      names.push(seg.slice(1));
      return "([^/]+)";
    })
    .join("\\/");
  return {
    method: "GET",
    pattern: new RegExp(`^${source}$`),
    route: path,
    scopes: spec.scopes,
    async handle(req, values) {
      const raw: Record<string, string> = {};
      names.forEach((n, i) => (raw[n] = values[i] ?? ""));
      const params = v.safeParse(spec.params, raw);
      if (!params.success) throw validationFailed("params", params.issues);
      const answer = v.safeParse(spec.response, await handler(req, params.output));
      if (!answer.success) throw validationFailed("response", answer.issues);
      return new Response(JSON.stringify(answer.output), { headers: JSON_HEADERS });
    },
  };
}
