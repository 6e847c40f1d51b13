/**
 * SCEP's HTTP layer (RFC 8894 §4): `/scep`, `/scep/<tenant>` and `/scep/<tenant>/<profile>`
 * with `?operation=GetCACaps|GetCACert|PKIOperation`; PKIOperation by POST (DER body) or GET
 * (`message=` base64). Answers: text/plain caps, `application/x-x509-ca-ra-cert` (degenerate
 * PKCS#7) and `application/x-pki-message` CertReps. A message that is not a verifiable
 * pkiMessage is a 4xx with a text body; bad input is never a 5xx. Also `scepAdminApi`: one-time
 * challenge passwords on the authenticated API (`pki:admin`).
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf, requestInfo } from "../../../src/service/http.ts";
import { AppError } from "../../../src/service/errors.ts";
import { fromBase64 } from "../../../src/pki/codec.ts";
import type { ScepAuthority } from "./domain.ts";

/** Bound on a pkiMessage: an enveloped, signed CSR is far below it. */
const MAX_MESSAGE = 64 * 1024;
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function errorText(request: Request, e: unknown): Response {
  const err = e instanceof AppError ? e : new AppError("internal", "internal error", { status: 500, cause: e });
  if (err.status >= 500) requestInfo(request).failure = e;
  return new Response(`${err.message}\n`, { status: err.status, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
}

const binary = (body: Uint8Array, type: string) => new Response(body.slice().buffer as ArrayBuffer, { headers: { "content-type": type, "cache-control": "no-store" } });

/** The protocol routes; `authority` resolves once pki-ca's hierarchy is loaded. */
export function scepRoutes(authority: () => Promise<ScepAuthority>) {
  const handle = async (request: Request, tenant?: string, profile?: string): Promise<Response> => {
    try {
      if ((tenant !== undefined && !NAME.test(tenant)) || (profile !== undefined && !NAME.test(profile))) throw new AppError("not_found", "no SCEP service at this path", { status: 404 });
      const url = new URL(request.url);
      const op = url.searchParams.get("operation");
      const scep = await authority();
      const t = scep.target(tenant, profile);
      if (op === "GetCACaps") return new Response(scep.caps(), { headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
      if (op === "GetCACert") return binary(await scep.caCert(t), "application/x-x509-ca-ra-cert");
      if (op !== "PKIOperation") throw new AppError("bad_request", "operation must be GetCACaps, GetCACert or PKIOperation", { status: 400 });
      let der: Uint8Array;
      if (request.method === "POST") {
        der = new Uint8Array(await request.arrayBuffer());
        if (der.length > MAX_MESSAGE) throw new AppError("payload_too_large", `a pkiMessage is at most ${MAX_MESSAGE} bytes`, { status: 413 });
      } else {
        const message = url.searchParams.get("message") ?? "";
        if (message.length > MAX_MESSAGE * 2 || !/^[A-Za-z0-9+/=_\-\s]*$/.test(message)) throw new AppError("malformed_input", "message must be base64", { status: 400 });
        try {
          der = fromBase64(message.replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/"));
        } catch {
          throw new AppError("malformed_input", "message must be base64", { status: 400 });
        }
      }
      if (der.length === 0) throw new AppError("malformed_input", "the pkiMessage is empty", { status: 400 });
      return binary(await scep.pkiOperation(t, der), "application/x-pki-message");
    } catch (e) {
      return errorText(request, e);
    }
  };
  const detail = (summary: string) => ({ parse: "none" as const, detail: { summary } });
  return new Elysia({ tags: ["scep"] } as never)
    .use(appBase)
    .get("/scep", ({ request }) => handle(request), detail("SCEP (RFC 8894) of the first tenant's first profile: ?operation=GetCACaps|GetCACert|PKIOperation"))
    .post("/scep", ({ request }) => handle(request), detail("SCEP PKIOperation (DER pkiMessage) of the first tenant's first profile"))
    .get("/scep/:tenant", ({ request, params }) => handle(request, params.tenant), detail("SCEP of a tenant's first profile"))
    .post("/scep/:tenant", ({ request, params }) => handle(request, params.tenant), detail("SCEP PKIOperation of a tenant's first profile"))
    .get("/scep/:tenant/:profile", ({ request, params }) => handle(request, params.tenant, params.profile), detail("SCEP of a tenant's profile"))
    .post("/scep/:tenant/:profile", ({ request, params }) => handle(request, params.tenant, params.profile), detail("SCEP PKIOperation of a tenant's profile"));
}

const Challenge = v.object({ challenge: v.string(), profile: v.string(), expires_at: v.string() });

/** One-time SCEP challenge passwords of the tenant (from the token), on the authenticated API. */
export function scepAdminApi(authority: () => Promise<ScepAuthority>) {
  return new Elysia({ tags: ["scep"] } as never).use(appBase).post(
    "/scep/challenges",
    async ({ request, body, set }) => {
      const out = await (await authority()).createChallenge(principalOf(request).tenant, body.profile);
      set.status = 201;
      return out;
    },
    {
      body: v.strictObject({ profile: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)) }),
      response: { 201: Challenge },
      scopes: ["pki:admin"],
      detail: { summary: "A one-time SCEP challenge password for one of this tenant's SCEP profiles (shown only now; app.scep.challenge_ttl_minutes)" },
    },
  );
}
