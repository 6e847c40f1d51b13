/**
 * EST's HTTP layer (RFC 7030 §3.2.2) under `/.well-known/est/` and `/.well-known/est/<label>/`,
 * the label being a profile: cacerts and csrattrs (anonymous), simpleenroll and simplereenroll
 * (HTTP Basic). Bodies are base64 (Content-Transfer-Encoding: base64, RFC 7030 §4); answers are
 * base64 with 64-character lines. Every refusal is a 4xx with a text/plain body; bad input is
 * never a 5xx. Also `estAdminApi`: the tenant's EST credentials on the authenticated API (`pki:admin`).
 *
 * TLS client certificates: on the mTLS listener (`server.mtls_port`), which trusts the CA's
 * own issuing CAs, a certificate this CA issued authenticates simpleenroll and simplereenroll
 * for its own subject and SANs (`EstAuthority.authenticateCertificate`).
 */
import { Elysia } from "elysia";
import { appBase, requestInfo } from "../../../src/service/http.ts";
import { credentialAdminApi } from "../credential-api.ts";
import { AppError } from "../../../src/service/errors.ts";
import { toBase64 } from "../../../src/pki/codec.ts";
import type { EstAuthority } from "./domain.ts";

/** Bound on an EST request body: a base64 CSR is far below it. */
const MAX_BODY = 128 * 1024;
const LABEL = /^[a-z0-9][a-z0-9-]{0,63}$/;
const OPERATIONS = new Set(["cacerts", "simpleenroll", "simplereenroll", "serverkeygen", "csrattrs"]);

/** base64 in lines of 64 characters, CRLF-separated (RFC 2045 §6.8 allows at most 76). */
function base64Lines(der: Uint8Array): string {
  return (toBase64(der).match(/.{1,64}/g) ?? []).join("\r\n") + "\r\n";
}

function base64Response(status: number, der: Uint8Array, type: string, headers: Record<string, string> = {}): Response {
  return new Response(base64Lines(der), { status, headers: { "content-type": type, "content-transfer-encoding": "base64", "cache-control": "no-store", ...headers } });
}

/**
 * serverkeygen's answer (RFC 7030 §4.4.2): multipart/mixed, the private key as
 * application/pkcs8 (or, encrypted to the client, as a SignedData around an EnvelopedData,
 * smime-type=server-generated-key) then the certificate as a certs-only PKCS#7, each base64.
 */
function serverKeygenResponse(key: Uint8Array, keyType: string, pkcs7: Uint8Array): Response {
  const boundary = `est-${Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("hex")}`;
  const part = (type: string, der: Uint8Array) => `--${boundary}\r\nContent-Type: ${type}\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(der)}`;
  const body = `${part(keyType, key)}${part("application/pkcs7-mime; smime-type=certs-only", pkcs7)}--${boundary}--\r\n`;
  return new Response(body, { status: 200, headers: { "content-type": `multipart/mixed; boundary=${boundary}`, "cache-control": "no-store" } });
}

/** The one mapping of errors to EST answers: a status and a one-line text body. */
function errorText(request: Request, e: unknown): Response {
  const err = e instanceof AppError ? e : new AppError("internal", "internal error", { status: 500, cause: e });
  if (err.status >= 500) requestInfo(request).failure = e;
  const reasons = (err.details as { reasons?: Array<{ message: string }> } | undefined)?.reasons ?? [];
  const text = [err.message, ...reasons.map((r) => r.message)].join(": ");
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
  for (const [k, val] of Object.entries(err.headers ?? {})) headers[k.toLowerCase()] = String(val);
  return new Response(`${text}\n`, { status: err.status, headers });
}

/** The protocol routes; `authority` resolves once pki-ca's hierarchy is loaded. */
export function estRoutes(authority: () => Promise<EstAuthority>) {
  const handle = async (request: Request, label: string | undefined, op: string): Promise<Response> => {
    try {
      if (label !== undefined && !LABEL.test(label)) throw new AppError("not_found", "no such EST label", { status: 404 });
      if (!OPERATIONS.has(op)) throw new AppError("not_found", "no such EST operation", { status: 404 });
      const enroll = op === "simpleenroll" || op === "simplereenroll" || op === "serverkeygen";
      if (enroll !== (request.method === "POST")) throw new AppError("method_not_allowed", `${op} is ${enroll ? "POST" : "GET"}`, { status: 405, headers: { Allow: enroll ? "POST" : "GET" } });
      const est = await authority();
      if (op === "cacerts") return base64Response(200, est.cacerts(est.profileOf(label)), "application/pkcs7-mime");
      if (op === "csrattrs") return base64Response(200, est.csrattrs(est.profileOf(label)), "application/csrattrs");
      est.profileOf(label);
      // A client certificate (the mTLS port) authenticates when no Basic credential is sent.
      const cert = requestInfo(request).clientCert;
      const authorization = request.headers.get("authorization");
      const client = cert && !authorization ? await est.authenticateCertificate(cert, label) : await est.authenticate(authorization, label);
      const ct = request.headers.get("content-type") ?? "";
      if (!/^application\/pkcs10\s*(;|$)/i.test(ct)) throw new AppError("unsupported_media_type", "the CSR is application/pkcs10", { status: 415 });
      const body = new Uint8Array(await request.arrayBuffer());
      if (body.length > MAX_BODY) throw new AppError("payload_too_large", `an EST request is at most ${MAX_BODY} bytes`, { status: 413 });
      // base64 per RFC 7030 §4.2.1; a client sending binary DER is read too (the first byte of a SEQUENCE is not base64 text).
      const text = body[0] === 0x30 ? toBase64(body) : new TextDecoder().decode(body);
      if (op === "serverkeygen") {
        const made = await est.serverKeygen(client, text);
        try {
          return serverKeygenResponse(made.key, made.keyType, made.pkcs7);
        } finally {
          made.key.fill(0);
        }
      }
      const out = await est.enroll(client, text, op === "simplereenroll");
      if (out.status === "pending") return new Response("the request awaits approval; send it again after Retry-After\n", { status: 202, headers: { "retry-after": String(out.retryAfter), "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
      return base64Response(200, out.pkcs7, "application/pkcs7-mime; smime-type=certs-only");
    } catch (e) {
      return errorText(request, e);
    }
  };
  const detail = (summary: string) => ({ parse: "none" as const, detail: { summary } });
  return new Elysia({ tags: ["est"] } as never)
    .use(appBase)
    // One parameter name at the first level (the router needs it): an operation, or a label before one.
    .get("/.well-known/est/:first", ({ request, params }) => handle(request, undefined, params.first), detail("EST (RFC 7030) cacerts and csrattrs of the default profile"))
    .post("/.well-known/est/:first", ({ request, params }) => handle(request, undefined, params.first), detail("EST simpleenroll and simplereenroll (HTTP Basic) under the credential's profile"))
    .get("/.well-known/est/:first/:op", ({ request, params }) => handle(request, params.first, params.op), detail("EST cacerts and csrattrs of the profile named by the label"))
    .post("/.well-known/est/:first/:op", ({ request, params }) => handle(request, params.first, params.op), detail("EST simpleenroll and simplereenroll (HTTP Basic) under the label's profile"));
}


/** The tenant's EST credentials (the tenant comes from the token), on the authenticated API. */
export function estAdminApi(authority: () => Promise<EstAuthority>) {
  return credentialAdminApi(
    {
      tag: "est",
      idField: "username",
      secretField: "password",
      summaries: {
        create: "A new EST credential (HTTP Basic username and password, the password shown only now) for one of this tenant's EST profiles",
        list: "This tenant's EST credentials (never their passwords)",
        remove: "Delete an EST credential",
      },
    },
    authority,
  );
}
