/**
 * CMC's HTTP layer (RFC 5273): `POST /cmc`. A Simple PKI Request is `application/pkcs10`
 * (HTTP Basic with a CMC credential); a Full PKI Request is `application/pkcs7-mime`
 * (smime-type=CMC-request). Bodies are binary DER; base64 (Content-Transfer-Encoding: base64)
 * is read too. Answers: `application/pkcs7-mime; smime-type=certs-only` (Simple PKI Response)
 * or `application/pkcs7-mime; smime-type=CMC-response` (Full PKI Response, also every refusal
 * of a request that reached CMC). HTTP-level refusals (media type, size, authentication of a
 * Simple PKI Request) are 4xx text; bad input is never a 5xx. Also `cmcAdminApi`: the tenant's
 * CMC credentials on the authenticated API (`pki:admin`).
 */
import { Elysia } from "elysia";
import { appBase, requestInfo } from "../../../src/service/http.ts";
import { credentialAdminApi } from "../credential-api.ts";
import { AppError } from "../../../src/service/errors.ts";
import { fromBase64 } from "../../../src/pki/codec.ts";
import type { CmcAnswer, CmcAuthority } from "./domain.ts";

/** Bound on a CMC request: a signed PKIData with one CSR and a short chain is far below it. */
const MAX_BODY = 64 * 1024;

function errorText(request: Request, e: unknown): Response {
  const err = e instanceof AppError ? e : new AppError("internal", "internal error", { status: 500, cause: e });
  if (err.status >= 500) requestInfo(request).failure = e;
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
  for (const [k, val] of Object.entries(err.headers ?? {})) headers[k.toLowerCase()] = String(val);
  return new Response(`${err.message}\n`, { status: err.status, headers });
}

function answer(a: CmcAnswer): Response {
  const type = a.kind === "certs-only" ? "application/pkcs7-mime; smime-type=certs-only" : "application/pkcs7-mime; smime-type=CMC-response";
  return new Response(a.body.slice().buffer as ArrayBuffer, { headers: { "content-type": type, "cache-control": "no-store" } });
}

/** The DER of a body: binary, or base64 text (a DER SEQUENCE never starts with a base64 character). */
function derOf(body: Uint8Array): Uint8Array {
  if (body[0] === 0x30) return body;
  const text = new TextDecoder().decode(body).replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new AppError("malformed_input", "the body is neither DER nor base64", { status: 400 });
  try {
    return fromBase64(text);
  } catch {
    throw new AppError("malformed_input", "the body is neither DER nor base64", { status: 400 });
  }
}

/** The protocol route; `authority` resolves once pki-ca's hierarchy is loaded. */
export function cmcRoutes(authority: () => Promise<CmcAuthority>) {
  return new Elysia({ tags: ["cmc"] } as never).use(appBase).post(
    "/cmc",
    async ({ request }) => {
      try {
        const cmc = await authority();
        if (!cmc.enabled) throw new AppError("not_found", "CMC is not enabled", { status: 404 });
        const ct = (request.headers.get("content-type") ?? "").toLowerCase();
        const simple = /^application\/pkcs10\s*(;|$)/.test(ct);
        const full = /^application\/pkcs7-mime\s*(;|$)/.test(ct) && (!/smime-type=/.test(ct) || /smime-type="?cmc-request"?/.test(ct));
        if (!simple && !full) throw new AppError("unsupported_media_type", "a CMC request is application/pkcs10 or application/pkcs7-mime; smime-type=CMC-request", { status: 415 });
        // A Simple PKI Request is authenticated before its body is read.
        const client = simple ? await cmc.authenticateBasic(request.headers.get("authorization")) : undefined;
        const body = new Uint8Array(await request.arrayBuffer());
        if (body.length > MAX_BODY) throw new AppError("payload_too_large", `a CMC request is at most ${MAX_BODY} bytes`, { status: 413 });
        if (body.length === 0) throw new AppError("malformed_input", "the request body is empty", { status: 400 });
        const der = derOf(body);
        return answer(client ? await cmc.simple(client, der) : await cmc.fullRequest(der));
      } catch (e) {
        return errorText(request, e);
      }
    },
    { parse: "none" as const, detail: { summary: "CMC (RFC 5272-5274): a Simple PKI Request (application/pkcs10, HTTP Basic) or a Full PKI Request (application/pkcs7-mime; smime-type=CMC-request)" } },
  );
}

/** The tenant's CMC credentials (the tenant comes from the token), on the authenticated API. */
export function cmcAdminApi(authority: () => Promise<CmcAuthority>) {
  return credentialAdminApi(
    {
      tag: "cmc",
      idField: "identification",
      secretField: "secret",
      summaries: {
        create: "A new CMC credential (identification and shared secret, the secret shown only now) for one of this tenant's CMC profiles",
        list: "This tenant's CMC credentials (never their secrets)",
        remove: "Delete a CMC credential",
      },
    },
    authority,
  );
}
