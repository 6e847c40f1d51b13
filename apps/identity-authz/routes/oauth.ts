/** identity-authz's protocol endpoints under /t/{tenant}: discovery, JWKS, authorize, PAR, token, userinfo, introspection, revocation, logout. */
import { Elysia } from "elysia";
import { appBase, requestInfo } from "../../../src/service/http.ts";
import { AppError } from "../../../src/service/errors.ts";
import type { Logger } from "../../../src/service/log.ts";
import { TENANT_ID, SIGNING_ALGS, AUTH_METHODS, MTLS_AUTH_METHODS } from "../../../schemas/identity-authz.ts";
import type { Authz } from "../domain/authz.ts";
import { oauthError } from "../domain/oauth-error.ts";
import { DPOP_ALGS } from "../domain/dpop.ts";
import { formPage, json, NO_STORE, oauthFailure, page, paramsOf, readForm, readJson, redirect } from "./protocol.ts";
import { DEVICE_GRANT } from "../domain/tokens.ts";
import { displayUserCode } from "../domain/device.ts";
import { REQUEST_OBJECT_ALGS } from "../domain/authorize.ts";
import { notFound } from "../../../src/service/errors.ts";
import type { FastRoute } from "../../../src/service/context.ts";

type Ctx = { request: Request; params: Record<string, string> };
const GRANTS = ["authorization_code", "refresh_token", "client_credentials", DEVICE_GRANT];
const ASSERTION_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];

/** Every endpoint: tenant check, bootstrap done, errors as OAuth responses. */
const endpointOf = (authz: Authz, logger: Logger) => (fn: (tenant: string, c: Ctx) => Promise<Response>) => async (c: Ctx) => {
  try {
    authz.baseUrl(c.request);
    await authz.ready;
    const tenant = c.params.tenant ?? "";
    if (!TENANT_ID.test(tenant) || !(await authz.registry.tenant(tenant))) throw notFound("tenant");
    return await fn(tenant, c);
  } catch (e) {
    return oauthFailure(e, c.request, logger);
  }
};

/**
 * Where a request to a tenant endpoint was addressed: the public listener's URL, or the mTLS
 * listener's (RFC 8705 aliases). DPoP `htu` must name it; client assertions may name either.
 */
function endpointUrls(authz: Authz, tenant: string, path: string, req: Request): { here: string; audiences: string[] } {
  const publicUrl = `${authz.issuer(tenant)}/${path}`;
  const mtls = requestInfo(req).mtls ? authz.mtlsIssuerBase(tenant) : undefined;
  const here = mtls ? `${mtls}/${path}` : publicUrl;
  return { here, audiences: [...new Set([authz.issuer(tenant), publicUrl, here])] };
}

/**
 * The token endpoint (RFC 6749 §3.2): authorization_code, refresh_token, client_credentials.
 * On the mTLS listener every access token is bound to the client certificate (RFC 8705 §3).
 */
function tokenEndpoint(authz: Authz, logger: Logger) {
  return endpointOf(authz, logger)(async (tenant, c) => {
    const form = await readForm(c.request);
    const grantType = form.get("grant_type");
    if (!grantType) throw oauthError("invalid_request", "grant_type is missing");
    const at = endpointUrls(authz, tenant, "token", c.request);
    const cert = requestInfo(c.request).clientCert;
    const client = await authz.clientAuth.authenticate(tenant, c.request, form, at.audiences, cert);
    const jkt = await authz.dpop.verify(tenant, c.request, at.here);
    if (client.dpop_bound_access_tokens && !jkt) throw oauthError("invalid_dpop_proof", "this client's tokens must be DPoP-bound");
    const x5t = cert?.x5tS256;
    if (client.tls_client_certificate_bound_access_tokens && !x5t) throw oauthError("invalid_request", "this client's tokens must be certificate-bound: use the mTLS token endpoint with a client certificate");
    const t = authz.tokens;
    const issued = <R extends { scope?: string }>(r: R) => recordToken(authz, c.request, tenant, client.client_id, grantType, "ok", r.scope, r);
    try {
      switch (grantType) {
        case "client_credentials":
          return json(await issued(await t.clientCredentials(tenant, client, form, jkt, x5t)));
        case "authorization_code":
          return json(await issued(await t.authorizationCode(tenant, client, form, jkt, x5t)));
        case "refresh_token":
          return json(await issued(await t.refresh(tenant, client, form, jkt, x5t)));
        case DEVICE_GRANT:
          return json(await issued(await t.deviceCode(tenant, client, form, jkt, x5t)));
        default:
          throw oauthError("unsupported_grant_type", "grant_type is not supported");
      }
    } catch (e) {
      await recordToken(authz, c.request, tenant, client.client_id, grantType, e instanceof AppError ? e.code : "server_error");
      throw e;
    }
  });
}

/** A token request of an authenticated client, to the audit service; returns `r`. */
async function recordToken<R>(authz: Authz, request: Request, tenant: string, clientId: string, grantType: string, result: string, scope?: string, r?: R): Promise<R> {
  await authz.audit.record({
    tenant,
    actor: clientId,
    action: "token.issue",
    resource: clientId,
    result: /^[a-z0-9_.-]{1,64}$/.test(result) ? result : "error",
    request_id: requestInfo(request).id,
    details: { grant_type: grantType.slice(0, 64), ...(scope ? { scope: scope.slice(0, 512) } : {}) },
  });
  return r as R;
}

/**
 * The token endpoint again, for the pipeline to dispatch without the router: it is the busiest
 * route (every machine client's grant) and authenticates clients itself. Same handler as the
 * Elysia route in `oauthRoutes`, which documents it and serves it on any other path shape.
 */
export function oauthFastRoutes(authz: Authz, logger: Logger): FastRoute[] {
  const token = tokenEndpoint(authz, logger);
  return [{ method: "POST", pattern: /^\/t\/([^/]+)\/token$/, route: "/t/:tenant/token", handle: (request, [tenant]) => token({ request, params: { tenant: tenant ?? "" } }) }];
}

export function oauthRoutes(authz: Authz, logger: Logger) {
  const endpoint = endpointOf(authz, logger);
  const clientOf = (tenant: string, req: Request, form: Map<string, string>, path: string) =>
    authz.clientAuth.authenticate(tenant, req, form, endpointUrls(authz, tenant, path, req).audiences, requestInfo(req).clientCert);

  const discovery = async (tenant: string) => {
    const iss = authz.issuer(tenant);
    const scopes = await authz.registry.scopeClaims(tenant);
    const claims = new Set(["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "azp", "sid", ...[...scopes.values()].flat()]);
    const mtls = authz.mtlsIssuerBase(tenant);
    const registration = await authz.registration.enabled(tenant);
    return json(
      {
        issuer: iss,
        authorization_endpoint: `${iss}/authorize`,
        pushed_authorization_request_endpoint: `${iss}/par`,
        token_endpoint: `${iss}/token`,
        userinfo_endpoint: `${iss}/userinfo`,
        jwks_uri: `${iss}/jwks`,
        introspection_endpoint: `${iss}/introspect`,
        revocation_endpoint: `${iss}/revoke`,
        end_session_endpoint: `${iss}/logout`,
        device_authorization_endpoint: `${iss}/device_authorization`,
        // RFC 7591: only where the tenant turned registration on.
        ...(registration ? { registration_endpoint: `${iss}/register` } : {}),
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        response_types_supported: ["code"],
        response_modes_supported: ["query"],
        grant_types_supported: GRANTS,
        subject_types_supported: ["public", "pairwise"],
        scopes_supported: [...scopes.keys()],
        claims_supported: [...claims],
        id_token_signing_alg_values_supported: [...SIGNING_ALGS],
        token_endpoint_auth_methods_supported: mtls ? [...AUTH_METHODS] : AUTH_METHODS.filter((m) => !MTLS_AUTH_METHODS.includes(m)),
        token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
        introspection_endpoint_auth_methods_supported: AUTH_METHODS.filter((m) => m !== "none" && (mtls || !MTLS_AUTH_METHODS.includes(m))),
        introspection_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
        revocation_endpoint_auth_methods_supported: mtls ? [...AUTH_METHODS] : AUTH_METHODS.filter((m) => !MTLS_AUTH_METHODS.includes(m)),
        revocation_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
        code_challenge_methods_supported: ["S256"],
        dpop_signing_alg_values_supported: DPOP_ALGS.filter((a) => a !== "Ed25519"),
        authorization_response_iss_parameter_supported: true,
        require_pushed_authorization_requests: false,
        prompt_values_supported: ["none", "login", "consent", "select_account"],
        request_parameter_supported: true,
        request_object_signing_alg_values_supported: REQUEST_OBJECT_ALGS,
        require_signed_request_object: false,
        // Remote request_uri values (RFC 9101 §5.2): only those the client registered in request_uris.
        request_uri_parameter_supported: true,
        require_request_uri_registration: true,
        claims_parameter_supported: false,
        // RFC 8705: certificate-bound tokens and client certificates, on the mTLS listener only
        // (the public listener cannot see client certificates).
        tls_client_certificate_bound_access_tokens: !!mtls,
        ...(mtls && {
          mtls_endpoint_aliases: {
            token_endpoint: `${mtls}/token`,
            pushed_authorization_request_endpoint: `${mtls}/par`,
            userinfo_endpoint: `${mtls}/userinfo`,
            introspection_endpoint: `${mtls}/introspect`,
            revocation_endpoint: `${mtls}/revoke`,
          },
        }),
      },
      200,
      { "cache-control": "public, max-age=300" },
    );
  };

  const authorize = endpoint(async (tenant, c) => {
    const q = c.request.method === "POST" ? await readForm(c.request) : paramsOf(new URL(c.request.url).searchParams);
    return redirect(await authz.front.authorize(tenant, q));
  });

  const userinfo = endpoint(async (tenant, c) =>
    json(await authz.tokens.userinfo(tenant, c.request, endpointUrls(authz, tenant, "userinfo", c.request).here, requestInfo(c.request).clientCert)),
  );

  const logout = endpoint(async (tenant, c) => {
    const q = c.request.method === "POST" ? await readForm(c.request) : paramsOf(new URL(c.request.url).searchParams);
    const r = await authz.front.logout(tenant, q);
    // The idp session is the idp's: offer its sign-out page as well.
    return "redirect" in r ? redirect(r.redirect) : page("Signed out", r.page, r.status, { href: `${authz.cfg.idp_url.replace(/\/+$/, "")}/t/${tenant}/logout`, text: "Also sign out of your account" });
  });

  return new Elysia({ tags: ["oauth"] } as never)
    .use(appBase)
    .get("/t/:tenant/.well-known/openid-configuration", endpoint((t) => discovery(t)), { detail: { summary: "OpenID Connect discovery" } })
    .get("/t/:tenant/.well-known/oauth-authorization-server", endpoint((t) => discovery(t)), { detail: { summary: "OAuth 2.0 AS metadata" } })
    .get("/.well-known/oauth-authorization-server/t/:tenant", endpoint((t) => discovery(t)), { detail: { summary: "OAuth 2.0 AS metadata (RFC 8414 path form)" } })
    .get(
      "/t/:tenant/jwks",
      endpoint(async (tenant, c) => {
        const { body, etag } = await authz.keys.jwks(tenant);
        const headers = { etag, "cache-control": "public, max-age=300, must-revalidate" };
        if (c.request.headers.get("if-none-match") === etag) return new Response(null, { status: 304, headers });
        return new Response(body, { headers: { "content-type": "application/jwk-set+json", ...headers } });
      }),
      { detail: { summary: "The tenant's public signing keys" } },
    )
    .get("/t/:tenant/authorize", authorize, { detail: { summary: "Authorization endpoint (code flow, PKCE S256)" } })
    .post("/t/:tenant/authorize", authorize, { parse: "none", detail: { summary: "Authorization endpoint (form post)" } })
    .post(
      "/t/:tenant/par",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const client = await clientOf(tenant, c.request, form, "par");
        const jkt = await authz.dpop.verify(tenant, c.request, endpointUrls(authz, tenant, "par", c.request).here);
        return json(await authz.front.par(tenant, client, form, jkt), 201);
      }),
      { parse: "none", detail: { summary: "Pushed authorization request (RFC 9126)" } },
    )
    .get(
      "/t/:tenant/login/callback",
      endpoint(async (tenant, c) => {
        const r = await authz.front.callback(tenant, new URL(c.request.url).searchParams.get("login_verifier") ?? undefined);
        if (typeof r === "string") return redirect(r);
        // A device request's user signed in: ask them to approve it, with a one-time token.
        const d = r.device;
        const confirmation = await authz.device.signedIn(tenant, d.hash, d.login);
        const client = await authz.registry.client(tenant, d.client_id);
        return formPage(
          "Approve the device?",
          [
            `The application "${client?.client_name ?? d.client_id}" asks to act on your behalf on a device showing the code ${displayUserCode(d.user_code)}.`,
            d.scope ? `It asks for: ${d.scope}.` : "It asks for no particular scope.",
            "Approve only if you started this sign-in yourself on that device and it shows this code.",
          ],
          { action: `${authz.issuer(tenant)}/device/confirm`, hidden: { confirmation }, buttons: [{ name: "decision", value: "approve", label: "Approve" }, { name: "decision", value: "deny", label: "Deny" }] },
        );
      }),
      { detail: { summary: "Return from identity-idp with a signed login verifier" } },
    )
    .post(
      "/t/:tenant/register",
      endpoint(async (tenant, c) => json(await authz.registration.register(tenant, c.request, await readJson(c.request)), 201, NO_STORE)),
      { parse: "none", detail: { summary: "Dynamic client registration (RFC 7591), when the tenant enables it" } },
    )
    .get(
      "/t/:tenant/register/:client_id",
      endpoint(async (tenant, c) => json(await authz.registration.read(tenant, c.params.client_id ?? "", c.request), 200, NO_STORE)),
      { detail: { summary: "Read a registered client's configuration (RFC 7592, registration access token)" } },
    )
    .put(
      "/t/:tenant/register/:client_id",
      endpoint(async (tenant, c) => json(await authz.registration.update(tenant, c.params.client_id ?? "", c.request, await readJson(c.request)), 200, NO_STORE)),
      { parse: "none", detail: { summary: "Replace a registered client's metadata (RFC 7592, registration access token)" } },
    )
    .delete(
      "/t/:tenant/register/:client_id",
      endpoint(async (tenant, c) => {
        await authz.registration.remove(tenant, c.params.client_id ?? "", c.request);
        return new Response(null, { status: 204, headers: NO_STORE });
      }),
      { detail: { summary: "Delete a registered client (RFC 7592, registration access token)" } },
    )
    .post(
      "/t/:tenant/device_authorization",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const client = await clientOf(tenant, c.request, form, "device_authorization");
        return json(await authz.device.authorize(tenant, client, form), 200, NO_STORE);
      }),
      { parse: "none", detail: { summary: "Device authorization request (RFC 8628)" } },
    )
    .get(
      "/t/:tenant/device",
      endpoint(async (tenant, c) => {
        const typed = new URL(c.request.url).searchParams.get("user_code") ?? "";
        return formPage("Sign in a device", ["Enter the code your device shows, then sign in to approve it."], {
          action: `${authz.issuer(tenant)}/device`,
          input: { name: "user_code", label: "Code", value: typed.slice(0, 20) },
          buttons: [{ name: "go", value: "1", label: "Continue" }],
        });
      }),
      { detail: { summary: "Device sign-in: the page where the user enters the user code (RFC 8628)" } },
    )
    .post(
      "/t/:tenant/device",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const row = await authz.device.enter(tenant, form.get("user_code"), requestInfo(c.request).ip ?? "unknown");
        const client = await authz.registry.client(tenant, row.client_id);
        if (!client) throw notFound("client");
        const scope = await authz.device.scopeOf(row);
        return redirect(await authz.front.deviceHandOff(tenant, client, { hash: row.hash, user_code: row.user_code, scope }));
      }),
      { parse: "none", detail: { summary: "Device sign-in: the user code entered; hands off to identity-idp's sign-in" } },
    )
    .post(
      "/t/:tenant/device/confirm",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const decision = form.get("decision");
        if (decision !== "approve" && decision !== "deny") throw oauthError("invalid_request", "decision must be approve or deny");
        await authz.device.decide(tenant, form.get("confirmation"), decision === "approve");
        return decision === "approve"
          ? page("Device approved", "You can return to your device; it signs in within a few seconds.", 200)
          : page("Device denied", "The device was not signed in.", 200);
      }),
      { parse: "none", detail: { summary: "Device sign-in: the signed-in user approves or denies the request" } },
    )
    .post(
      "/t/:tenant/token",
      tokenEndpoint(authz, logger),
      { parse: "none", detail: { summary: "Token endpoint" } },
    )
    .get("/t/:tenant/userinfo", userinfo, { detail: { summary: "OpenID Connect userinfo" } })
    .post("/t/:tenant/userinfo", userinfo, { parse: "none", detail: { summary: "OpenID Connect userinfo" } })
    .post(
      "/t/:tenant/introspect",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const client = await clientOf(tenant, c.request, form, "introspect");
        if (client.token_endpoint_auth_method === "none") throw oauthError("invalid_client", "introspection needs an authenticated client");
        return json(await authz.tokens.introspect(tenant, form.get("token"), form.get("token_type_hint")));
      }),
      { parse: "none", detail: { summary: "Token introspection (RFC 7662)" } },
    )
    .post(
      "/t/:tenant/revoke",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const client = await clientOf(tenant, c.request, form, "revoke");
        await authz.tokens.revoke(tenant, client, form.get("token"), form.get("token_type_hint"));
        return new Response(null, { status: 200, headers: { "cache-control": "no-store" } });
      }),
      { parse: "none", detail: { summary: "Token revocation (RFC 7009)" } },
    )
    .post(
      "/t/:tenant/sessions/ended",
      endpoint(async (tenant, c) => {
        const form = await readForm(c.request);
        const ended = await authz.front.verifySessionEnded(tenant, form.get("session_ended"));
        const told = await authz.backchannel.sessionEnded(tenant, ended);
        return json({ clients_notified: told });
      }),
      { parse: "none", detail: { summary: "identity-idp reports ended sessions (a signed JWT); their clients get back-channel logout tokens" } },
    )
    .get("/t/:tenant/logout", logout, { detail: { summary: "RP-initiated logout" } })
    .post("/t/:tenant/logout", logout, { parse: "none", detail: { summary: "RP-initiated logout" } });
}
