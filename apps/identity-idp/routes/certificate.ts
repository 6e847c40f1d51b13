/**
 * Sign-in with a client certificate, on the idp's mutual-TLS port (`server.mtls_port`): the
 * login page links there; the page shows the certificate the browser presented and a form
 * (same origin, the session's CSRF token) that signs in as the user it is registered to. It
 * is a first factor (`amr` "swk": a key the browser holds): a user with a second factor is
 * asked for it next. The session cookie is host-only, so the login started on the public port
 * continues here. The certificate names its user by registration, or by its e-mail or UPN SAN
 * when it comes from pki-ca and the tenant allows it; one of pki-ca's must be good at its OCSP responder.
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { AppError } from "../../../src/service/errors.ts";
import { requestInfo } from "../../../src/service/http.ts";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import type { UserCertificates } from "../domain/certificates.ts";
import type { CertificateIssuers } from "../domain/certificate-issuers.ts";
import { asPage, html, loginFlow, TenantParam, type PageDeps } from "./flow.ts";
import * as H from "../pages/html.ts";

const Form = v.object({ csrf_token: v.optional(v.pipe(v.string(), v.maxLength(1024))) });

const noCertificate = () =>
  new AppError("certificate_required", "No client certificate was presented: certificate sign-in works on the identity service's mutual-TLS address, with a certificate your organisation issued.", { status: 400 });

export function certificateRoutes(d: PageDeps, certificates: UserCertificates, issuers: CertificateIssuers) {
  const f = loginFlow(d);
  const userOf = async (tenant: string, cert: ClientCertificate, peek = false) => {
    const policy = await d.users.policy(tenant);
    // Names in the certificate count only when pki-ca's CA vouches for them.
    const fromPkiCa = (policy.certificate_email || policy.certificate_upn) && !!(await issuers.issuerOf(cert));
    return certificates.userOf(tenant, cert, { byEmail: policy.certificate_email && fromPkiCa, byUpn: policy.certificate_upn && fromPkiCa, peek });
  };
  return new Elysia({ name: "identity-idp.certificate" })
    .get(
      "/t/:tenant/login/certificate",
      asPage(async ({ request, params }: { request: Request; params: { tenant: string } }) => {
        const cert = requestInfo(request).clientCert;
        if (!cert?.verified) throw noCertificate();
        const { s, fresh } = await f.sessionOf(request, params.tenant);
        const userId = await userOf(params.tenant, cert, true);
        if (userId) await issuers.assertNotRevoked(cert);
        const username = userId ? (await d.users.row(params.tenant, userId)).username : undefined;
        return html(H.certificatePage({ tenant: params.tenant, csrf: s.csrf, subject: cert.subject, username }), 200, fresh ? f.cookie(s) : {});
      }),
      { params: TenantParam, detail: { hide: true } },
    )
    .post(
      "/t/:tenant/login/certificate",
      asPage(async ({ request, params, body }: { request: Request; params: { tenant: string }; body: v.InferOutput<typeof Form> }) => {
        const tenant = params.tenant;
        const s = await d.sessions.load(request, tenant);
        d.sessions.verifyCsrf(s, body.csrf_token);
        const cert = requestInfo(request).clientCert;
        if (!cert?.verified) throw noCertificate();
        const notMapped = () => new AppError("certificate_not_registered", "This certificate is not registered to an account here.", { status: 401 });
        if (!(await userOf(tenant, cert, true))) throw notMapped();
        // Revocation before the use is recorded: a revoked certificate leaves no trace of a sign-in.
        await issuers.assertNotRevoked(cert);
        const userId = await userOf(tenant, cert);
        if (!userId) throw notMapped();
        const user = await d.users.row(tenant, userId);
        if (user.disabled) throw new AppError("account_disabled", "This account is disabled.", { status: 403 });
        return f.afterFirstFactor(request, s!, user, ["swk"]);
      }),
      { params: TenantParam, body: Form, detail: { hide: true } },
    );
}
