/**
 * pki-ca's HTTP layer. `caApi` is the authenticated API (RA, search, revocation);
 * `caPublicRoutes` serves what relying parties fetch anonymously: CA certificates,
 * CRLs, OCSP and time-stamping. Rules live in domain.ts.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf } from "../../src/service/http.ts";
import { AppError } from "../../src/service/errors.ts";
import { MAX_OCSP_REQUEST_BYTES } from "../../src/pki/ocsp.ts";
import { fromBase64 } from "../../src/pki/codec.ts";
import { toPem } from "../../src/pki/keys.ts";
import { certsOnlyPkcs7 } from "../../src/pki/pkcs7.ts";
import type * as x509 from "../../src/pki/x509.ts";
import {
  Certificate,
  CertificateList,
  CertificateRequest,
  IssuingCaList,
  ProfileList,
  ListRequestsQuery,
  RejectRequest,
  RequestIdParam,
  RequestList,
  RevokeCertificate,
  SearchCertificatesQuery,
  SerialParam,
  SubmitCertificate,
  SubmitResult,
} from "../../schemas/pki-ca.ts";
import { timestamp, type PkiCa } from "./domain.ts";
import { issuingCaViews, profileViews } from "./catalog.ts";
import { MAX_TSP_REQUEST_BYTES } from "../../src/pki/tsp.ts";

const REQUEST = ["pki:request"];
const READ = ["pki:read"];
const APPROVE = ["pki:approve"];
const REVOKE = ["pki:revoke"];

/** The authenticated API; `ca` resolves once the hierarchy is loaded. */
export function caApi(ca: () => Promise<PkiCa>) {
  return new Elysia({ tags: ["certificates"] } as never)
    .use(appBase)
    .post(
      "/certificates",
      async ({ request, body, set }) => {
        const out = await (await ca()).submit(principalOf(request).tenant, body);
        set.status = out.status === "issued" ? 201 : 202;
        return out;
      },
      {
        body: SubmitCertificate,
        response: { 201: SubmitResult, 202: SubmitResult },
        scopes: REQUEST,
        detail: { summary: "Submit a PKCS#10 CSR: issued (201), queued for approval (202), or refused with reasons (400/422)" },
      },
    )
    .get("/certificates", async ({ request, query }) => ({ items: await (await ca()).search(principalOf(request).tenant, { ...query, limit: query.limit ?? 100 }) }), {
      query: SearchCertificatesQuery,
      response: CertificateList,
      scopes: READ,
      detail: { summary: "Search issued certificates by serial, subject, SAN, status, expiry" },
    })
    .get("/certificates/:serial", async ({ request, params }) => (await ca()).getCertificate(principalOf(request).tenant, params.serial), {
      params: SerialParam,
      response: Certificate,
      scopes: READ,
      detail: { summary: "Get an issued certificate" },
    })
    .post("/certificates/:serial/revoke", async ({ request, params, body }) => (await ca()).revoke(principalOf(request).tenant, params.serial, body.reason), {
      params: SerialParam,
      body: RevokeCertificate,
      response: Certificate,
      scopes: REVOKE,
      detail: { summary: "Revoke a certificate with an RFC 5280 reason" },
    })
    .get("/requests", async ({ request, query }) => ({ items: await (await ca()).listRequests(principalOf(request).tenant, query.status ?? "pending", query.limit ?? 100) }), {
      query: ListRequestsQuery,
      response: RequestList,
      scopes: APPROVE,
      detail: { summary: "List certificate requests (pending by default)" },
    })
    .get("/requests/:id", async ({ request, params }) => (await ca()).getRequest(principalOf(request).tenant, params.id), {
      params: RequestIdParam,
      response: CertificateRequest,
      scopes: APPROVE,
      detail: { summary: "Get a certificate request" },
    })
    .post(
      "/requests/:id/approve",
      async ({ request, params, set }) => {
        const p = principalOf(request);
        set.status = 201;
        return (await ca()).approve(p.tenant, params.id, p.subject);
      },
      { params: RequestIdParam, response: { 201: Certificate }, scopes: APPROVE, detail: { summary: "Approve a queued request and issue its certificate" } },
    )
    .post(
      "/requests/:id/reject",
      async ({ request, params, body }) => {
        const p = principalOf(request);
        return (await ca()).reject(p.tenant, params.id, p.subject, body.reason);
      },
      { params: RequestIdParam, body: RejectRequest, response: CertificateRequest, scopes: APPROVE, detail: { summary: "Reject a queued request" } },
    )
    .get("/issuing-cas", async () => ({ items: issuingCaViews(await ca()) }), { response: IssuingCaList, scopes: READ, detail: { summary: "List the issuing CAs" } })
    .get("/profiles", async () => ({ items: profileViews(await ca()) }), { response: ProfileList, scopes: READ, detail: { summary: "List the certificate profiles a CSR may name" } })
    // --- admin: issuing CAs under an offline root (app.root: external) ---
    .get(
      "/cas/:type/csr",
      async ({ params }) => new Response(await externalRoot(await ca()).csr(params.type), { headers: { "content-type": "application/pkcs10; charset=utf-8", "cache-control": "no-store" } }),
      { params: caTypeParam, scopes: ADMIN, detail: { summary: "The PEM CSR of an issuing CA that awaits its certificate from the offline root" } },
    )
    .put(
      "/cas/:type/certificate",
      async ({ params, body }) => {
        const c = await ca();
        const out = await externalRoot(c).importCertificate(params.type, body.chain_pem);
        c.onHierarchyChange?.();
        return out;
      },
      {
        params: caTypeParam,
        body: ImportCaCertificate,
        scopes: ADMIN,
        detail: { summary: "Import the issuing CA's certificate from the offline root: `{chain_pem}` = its certificate then the root's; checked against the stored key and the root's signature" },
      },
    );
}

const ADMIN = ["pki:admin"];
/** `{chain_pem}`: the issuing CA's certificate, then the root's, as PEM. */
const ImportCaCertificate = v.strictObject({ chain_pem: v.pipe(v.string(), v.minLength(1), v.maxLength(64 * 1024)) });
const caTypeParam = v.object({ type: v.pipe(v.string(), v.regex(/^[A-Za-z0-9-]{1,16}$/)) });

function externalRoot(c: PkiCa) {
  if (!c.hierarchy.external) throw new AppError("conflict", "this instance's root is online (app.root: instance); there is no issuing CA to import");
  return c.hierarchy.external;
}

const der = (body: Uint8Array, type: string, maxAge: number) =>
  new Response(body.slice().buffer as ArrayBuffer, { headers: { "content-type": type, "cache-control": `public, max-age=${maxAge}` } });

const caFile = v.object({ file: v.pipe(v.string(), v.regex(/^[a-z0-9-]{1,40}\.(pem|crt|p7c)$/)) });
const crlFile = v.object({ file: v.pipe(v.string(), v.regex(/^[a-z0-9-]{1,40}\.crl$/)) });

/**
 * Unauthenticated routes for relying parties: CA certificates, CRLs, OCSP, and (unless
 * `revocationOnly`, as on the plain-HTTP listener) time-stamping.
 */
export function caPublicRoutes(ca: () => Promise<PkiCa>, opts: { revocationOnly?: boolean } = {}) {
  const app = new Elysia({ tags: ["revocation"] } as never)
    .use(appBase)
    .get(
      "/pki/ca/:file",
      async ({ params }) => {
        const c = await ca();
        const [id, ext] = params.file.split(".") as [string, string];
        const level = id === "root" ? c.hierarchy.root : id === "tsa" ? c.hierarchy.tsa : [...c.hierarchy.issuing.values()].find((i) => i.id === id);
        if (!level) throw new AppError("not_found", "no such CA");
        if (ext === "crt") return der(new Uint8Array(level.cert.rawData), "application/pkix-cert", 3600);
        const chain = id === "root" ? [c.hierarchy.root.cert] : id === "tsa" ? [level.cert, ...chainAbove(c, c.hierarchy.tsa.cert)] : [level.cert, c.hierarchy.root.cert];
        if (ext === "p7c") return der(certsOnlyPkcs7(chain), "application/pkcs7-mime", 3600);
        // PEM: the certificate and, below the root, its chain up to the root, so one download completes it.
        const pem = chain.map((x) => toPem("CERTIFICATE", x.rawData)).join("");
        return new Response(pem, { headers: { "content-type": "application/pem-certificate-chain", "cache-control": "public, max-age=3600" } });
      },
      { params: caFile, detail: { summary: "A CA certificate: .crt (DER), .pem or .p7c (PKCS#7 certs-only) with its chain to the root" } },
    )
    .get("/pki/crl/:file", async ({ params }) => der(await (await ca()).currentCrl(params.file.slice(0, -4)), "application/pkix-crl", 300), {
      params: crlFile,
      detail: { summary: "A CRL of an issuing CA (DER): `<ca>` complete, `<ca>-s<k>` one shard (crl_shards), each also as `-delta`" },
    })
    .post(
      "/pki/ocsp",
      async ({ request }) => {
        const ct = request.headers.get("content-type") ?? "";
        if (!/^application\/ocsp-request\s*(;|$)/i.test(ct)) throw new AppError("unsupported_media_type", "OCSP requests are application/ocsp-request");
        const body = await readCapped(request, MAX_OCSP_REQUEST_BYTES);
        return ocspResponse(await (await ca()).ocsp(body));
      },
      { parse: "none", detail: { summary: "OCSP (RFC 6960) over POST" } },
    )
    .get(
      "/pki/ocsp/*",
      async ({ request }) => {
        // The request is the rest of the path: URL-encoded base64 of the DER (RFC 6960 Appendix A.1).
        const path = new URL(request.url).pathname;
        let bytes: Uint8Array;
        try {
          const b64 = decodeURIComponent(path.slice("/pki/ocsp/".length));
          if (b64.length > MAX_OCSP_REQUEST_BYTES * 2) throw new Error("too long");
          bytes = fromBase64(b64.replace(/-/g, "+").replace(/_/g, "/"));
        } catch {
          bytes = new Uint8Array(0);
        }
        return ocspResponse(await (await ca()).ocsp(bytes));
      },
      { detail: { summary: "OCSP (RFC 6960) over GET, base64 request in the path" } },
    );
  if (opts.revocationOnly) return app;
  return app
    .post(
      "/pki/revoke",
      async ({ body }) => {
        let sig: Uint8Array;
        try {
          sig = fromBase64(body.signature.replace(/-/g, "+").replace(/_/g, "/"));
        } catch {
          throw new AppError("malformed_input", "signature is not base64");
        }
        return (await ca()).revokeByKeyProof(body.certificate, body.timestamp, sig);
      },
      {
        body: v.strictObject({
          certificate: v.pipe(v.string(), v.maxLength(16384)),
          timestamp: v.pipe(v.string(), v.maxLength(64)),
          signature: v.pipe(v.string(), v.maxLength(2048)),
        }),
        detail: {
          summary: "Revoke for key compromise, proven with the certificate's private key: a signature over `revoke:<serial hex>:<timestamp>`",
        },
      },
    )
    .post(
      "/pki/tsa",
      async ({ request }) => {
        const ct = request.headers.get("content-type") ?? "";
        if (!/^application\/timestamp-query\s*(;|$)/i.test(ct)) throw new AppError("unsupported_media_type", "time-stamp requests are application/timestamp-query");
        const r = await timestamp(await ca(), await readCapped(request, MAX_TSP_REQUEST_BYTES));
        return new Response(r.body.slice().buffer as ArrayBuffer, { status: r.status, headers: { "content-type": "application/timestamp-reply", "cache-control": "no-store" } });
      },
      { parse: "none", detail: { summary: "RFC 3161 time-stamping (TimeStampReq over POST)" } },
    );
}

/** The issuing CA above the TSA certificate, then the root. */
function chainAbove(c: PkiCa, cert: x509.X509Certificate): x509.X509Certificate[] {
  const issuing = [...c.hierarchy.issuing.values()].find((i) => i.cert.subject === cert.issuer);
  return issuing ? [issuing.cert, c.hierarchy.root.cert] : [c.hierarchy.root.cert];
}

function ocspResponse(r: { status: number; body: Uint8Array }): Response {
  return new Response(r.body.slice().buffer as ArrayBuffer, { status: r.status, headers: { "content-type": "application/ocsp-response", "cache-control": r.status === 200 ? "public, max-age=60" : "no-store" } });
}

async function readCapped(request: Request, max: number): Promise<Uint8Array> {
  const buf = new Uint8Array(await request.arrayBuffer());
  if (buf.length > max) throw new AppError("payload_too_large", `this request is at most ${max} bytes`);
  return buf;
}
