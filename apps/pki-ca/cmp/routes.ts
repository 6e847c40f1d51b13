/**
 * CMP's HTTP transfer (RFC 6712, path shape of RFC 9811 §3): `POST /.well-known/cmp` (the
 * default profile) and `POST /.well-known/cmp/p/<label>` (the label is a profile), body and
 * answer `application/pkixcmp`. A CMP-level refusal is a 200 with an `error` (or rejecting)
 * PKIMessage, as RFC 6712 §3.3 wants; a body that is not a PKIMessage is a 400 that still
 * carries an `error` PKIMessage (badDataFormat); HTTP-level faults (unknown label, wrong media
 * type, oversized body) are 4xx with a text reason. Bad input is never a 5xx. Also
 * `cmpAdminApi`: the tenant's PBM shared secrets on the authenticated API (`pki:admin`).
 */
import { Elysia } from "elysia";
import { appBase, requestInfo } from "../../../src/service/http.ts";
import { credentialAdminApi } from "../credential-api.ts";
import { AppError } from "../../../src/service/errors.ts";
import type { CmpAuthority } from "./domain.ts";

/** Bound on a PKIMessage: a request with a certificate chain in extraCerts is far below it. */
const MAX_MESSAGE = 64 * 1024;
const LABEL = /^[a-z0-9][a-z0-9-]{0,63}$/;

function errorText(request: Request, e: unknown): Response {
  const err = e instanceof AppError ? e : new AppError("internal", "internal error", { status: 500, cause: e });
  if (err.status >= 500) requestInfo(request).failure = e;
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
  for (const [k, val] of Object.entries(err.headers ?? {})) headers[k.toLowerCase()] = String(val);
  return new Response(`${err.message}\n`, { status: err.status, headers });
}

/** The protocol routes; `authority` resolves once pki-ca's hierarchy is loaded. */
export function cmpRoutes(authority: () => Promise<CmpAuthority>) {
  const handle = async (request: Request, label: string | undefined): Promise<Response> => {
    try {
      if (label !== undefined && !LABEL.test(label)) throw new AppError("not_found", "no such CMP label", { status: 404 });
      const cmp = await authority();
      cmp.profileOf(label);
      const ct = request.headers.get("content-type") ?? "";
      if (!/^application\/pkixcmp\s*(;|$)/i.test(ct)) throw new AppError("unsupported_media_type", "a CMP message is application/pkixcmp", { status: 415 });
      const der = new Uint8Array(await request.arrayBuffer());
      if (der.length > MAX_MESSAGE) throw new AppError("payload_too_large", `a PKIMessage is at most ${MAX_MESSAGE} bytes`, { status: 413 });
      const out = await cmp.handle(label, der);
      return new Response(out.der.slice().buffer as ArrayBuffer, { status: out.wellFormed ? 200 : 400, headers: { "content-type": "application/pkixcmp", "cache-control": "no-store" } });
    } catch (e) {
      return errorText(request, e);
    }
  };
  const detail = (summary: string) => ({ parse: "none" as const, detail: { summary } });
  const notPost = (request: Request) => errorText(request, new AppError("method_not_allowed", "CMP messages are POSTed", { status: 405, headers: { Allow: "POST" } }));
  return new Elysia({ tags: ["cmp"] } as never)
    .use(appBase)
    .post("/.well-known/cmp", ({ request }) => handle(request, undefined), detail("CMP (RFC 9810, RFC 9483 over RFC 6712 HTTP) of the default profile: a DER PKIMessage, application/pkixcmp"))
    .post("/.well-known/cmp/p/:label", ({ request, params }) => handle(request, params.label), detail("CMP of the profile named by the label (RFC 9811 path): a DER PKIMessage, application/pkixcmp"))
    .get("/.well-known/cmp", ({ request }) => notPost(request), detail("CMP answers POST only (405)"))
    .get("/.well-known/cmp/p/:label", ({ request }) => notPost(request), detail("CMP answers POST only (405)"));
}


/** The tenant's CMP shared secrets (the tenant comes from the token), on the authenticated API. */
export function cmpAdminApi(authority: () => Promise<CmpAuthority>) {
  return credentialAdminApi(
    {
      tag: "cmp",
      idField: "kid",
      secretField: "secret",
      summaries: {
        create: "A new CMP shared secret (key id for senderKID and the PBM secret, the secret shown only now) for one of this tenant's CMP profiles",
        list: "This tenant's CMP shared secrets (never the secrets)",
        remove: "Delete a CMP shared secret",
      },
    },
    authority,
  );
}
