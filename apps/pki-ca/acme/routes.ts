/**
 * ACME's HTTP layer (RFC 8555), under `/acme/{tenant}/`: the directory, nonces, the JWS checks
 * of every POST (jws.ts), status codes, Location/Link/Retry-After headers and problem documents
 * (`application/problem+json`, every error). No 5xx for bad input: anything the domain or the
 * JWS checks refuse is an `AcmeProblem` with a 4xx. Also `acmeAdminApi`: the tenant's External
 * Account Binding keys on the authenticated API (`pki:admin`).
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { appBase, principalOf, requestBodyText, requestInfo } from "../../../src/service/http.ts";
import type { FastRoute } from "../../../src/service/context.ts";
import { AppError, notFound } from "../../../src/service/errors.ts";
import { AcmeProblem, malformed, unauthorized } from "./problem.ts";
import { AcmeUrls, type AcmeAuthority } from "./domain.ts";
import { verifyRequest, type VerifiedRequest } from "./jws.ts";
import type { AccountRow } from "./store.ts";

/** Bound on an ACME request body: a CSR or certificate in base64url inside a JWS is far below it. */
export const MAX_BODY = 64 * 1024;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

interface Ctx {
  request: Request;
  params: Record<string, string>;
}

/** One ACME endpoint: served by Elysia (and so in the API document) and by the pipeline directly. */
interface AcmeEndpoint {
  method: "GET" | "POST";
  path: string;
  summary: string;
  handle: (c: Ctx) => Promise<Response>;
}

/** The protocol's endpoints; `authority` resolves once pki-ca's hierarchy is loaded. */
function acmeEndpoints(authority: () => Promise<AcmeAuthority>): AcmeEndpoint[] {
  const urlsOf = (request: Request, tenant: string) => new AcmeUrls(new URL(request.url).origin, tenant);

  /** Runs a handler, turning problems into problem documents; every answer carries a fresh nonce and the index link. */
  const guarded =
    (fn: (c: Ctx, acme: AcmeAuthority, u: AcmeUrls) => Promise<Response>) =>
    async (c: Ctx): Promise<Response> => {
      const tenant = c.params.tenant ?? "";
      const u = urlsOf(c.request, ID.test(tenant) ? tenant : "-");
      let res: Response;
      let acme: AcmeAuthority | undefined;
      try {
        if (!ID.test(tenant)) throw malformed("no such tenant", 404);
        acme = await authority();
        acme.tenant(tenant);
        res = await fn(c, acme, u);
      } catch (e) {
        res = problemResponse(c.request, e);
      }
      if (acme) res.headers.set("replay-nonce", await acme.nonces.issue());
      res.headers.append("link", `<${u.directory()}>;rel="index"`);
      if (!res.headers.has("cache-control")) res.headers.set("cache-control", "no-store");
      return res;
    };

  /** A POST: reads and verifies the JWS, resolving a kid to its (valid) account. */
  const signed =
    (accept: "jwk" | "kid" | "either", fn: (c: Ctx, acme: AcmeAuthority, u: AcmeUrls, r: VerifiedRequest & { account?: AccountRow }) => Promise<Response>) =>
    guarded(async (c, acme, u) => {
      const ct = c.request.headers.get("content-type") ?? "";
      if (!/^application\/jose\+json\s*(;|$)/i.test(ct)) throw malformed("ACME requests are application/jose+json", 415);
      const text = await requestBodyText(c.request);
      if (text.length > MAX_BODY) throw malformed(`the request is over ${MAX_BODY} bytes`, 413);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw malformed("the body is not JSON");
      }
      let account: AccountRow | undefined;
      const r = await verifyRequest(body, {
        url: c.request.url,
        nonces: acme.nonces,
        accept,
        keyOf: async (kid) => {
          account = await acme.accountByKid(u, kid);
          return account.jwk;
        },
      });
      return fn(c, acme, u, { ...r, account });
    });

  const kid = (fn: (c: Ctx, acme: AcmeAuthority, u: AcmeUrls, account: AccountRow, r: VerifiedRequest) => Promise<Response>) =>
    signed("kid", (c, acme, u, r) => fn(c, acme, u, r.account!, r));

  const pathId = (c: Ctx, name: string) => {
    const id = c.params[name] ?? "";
    if (!ID.test(id)) throw malformed("no such resource", 404);
    return id;
  };

  // HEAD reaches the GET route too: 200 for HEAD, 204 for GET (RFC 8555 §7.2).
  const nonce = guarded(async (c) => new Response(null, { status: c.request.method === "HEAD" ? 200 : 204 }));

  return [
    {
      method: "GET",
      path: "/acme/:tenant/directory",
      summary: "ACME directory (RFC 8555 §7.1.1) of a tenant: resource URLs and meta (termsOfService, website, caaIdentities, externalAccountRequired, profiles)",
      handle: guarded(async (_c, acme, u) => json(200, acme.directory(u), { "cache-control": "public, max-age=300" })),
    },
    {
      method: "GET",
      path: "/acme/:tenant/new-nonce",
      summary: "A fresh Replay-Nonce (HEAD: 200, GET: 204)",
      handle: nonce,
    },
    {
      method: "POST",
      path: "/acme/:tenant/new-account",
      summary: "newAccount: JWS with jwk; onlyReturnExisting; externalAccountBinding (required when the tenant says so)",
      handle: signed("jwk", async (_c, acme, u, r) => {
        const { account, created } = await acme.newAccount(u, r.jwk!, r.payload, requestInfo(_c.request).ip ?? "");
        return json(created ? 201 : 200, acme.accountView(u, account), { location: u.account(account.id) });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/acct/:id",
      summary: "Account: POST-as-GET, contact update or deactivation",
      handle: kid(async (c, acme, u, account, r) => {
        if (pathId(c, "id") !== account.id) throw unauthorized("the kid is not this account");
        const out = r.postAsGet ? account : await acme.updateAccount(u.tenant, account, r.payload);
        return json(200, acme.accountView(u, out), { location: u.account(account.id) });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/acct/:id/orders",
      summary: "The account's orders (newest first, at most 1000)",
      handle: kid(async (c, acme, u, account) => {
        if (pathId(c, "id") !== account.id) throw unauthorized("the kid is not this account");
        return json(200, await acme.ordersList(u, account));
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/new-order",
      summary: "newOrder: dns (wildcards too) and ip identifiers, optional profile (the profiles draft) and replaces (ARI); rate limited per account and identifier",
      handle: kid(async (_c, acme, u, account, r) => {
        const o = await acme.newOrder(u, account, r.payload);
        return json(201, await acme.orderView(u, o), { location: u.order(o.id) });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/order/:id",
      summary: "An order (POST-as-GET)",
      handle: kid(async (c, acme, u, account) => {
        const o = await acme.order(u.tenant, account, pathId(c, "id"));
        return json(200, await acme.orderView(u, o), o.status === "processing" ? { "retry-after": "2" } : {});
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/order/:id/finalize",
      summary: "Finalize with a CSR naming exactly the order's identifiers; the RA issues under the order's profile",
      handle: kid(async (c, acme, u, account, r) => {
        const o = await acme.finalize(u.tenant, account, pathId(c, "id"), r.payload);
        return json(200, await acme.orderView(u, o), { location: u.order(o.id), ...(o.status === "processing" ? { "retry-after": "2" } : {}) });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/authz/:id",
      summary: "An authorization (POST-as-GET) or its deactivation",
      handle: kid(async (c, acme, u, account, r) => {
        const id = pathId(c, "id");
        const a = r.postAsGet ? await acme.authorization(u.tenant, account, id) : await acme.deactivateAuthorization(u.tenant, account, id, r.payload);
        return json(200, acme.authorizationView(u, a), a.challenge_status === "processing" ? { "retry-after": "1" } : {});
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/chall/:id/:type",
      summary: "A challenge (http-01, dns-01, tls-alpn-01): POST {} to have it validated, POST-as-GET to read it",
      handle: kid(async (c, acme, u, account, r) => {
        const id = pathId(c, "id");
        const type = c.params.type ?? "";
        const a = r.postAsGet ? await acme.authorization(u.tenant, account, id) : await acme.respondToChallenge(u, account, id, type);
        const t = acme.challengeType(a, type);
        return json(200, acme.challengeView(u, a, t), { link: `<${u.authz(a.id)}>;rel="up"`, ...(a.challenge_status === "processing" && a.challenge_type === t ? { "retry-after": "1" } : {}) });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/cert/:serial",
      summary: "The certificate of an order and its issuing CA (application/pem-certificate-chain)",
      handle: kid(async (c, acme, u, account, r) => {
        if (!r.postAsGet) throw malformed("certificates are fetched with POST-as-GET");
        const pem = await acme.certificateChain(u.tenant, account, (c.params.serial ?? "").toLowerCase());
        return new Response(pem, { status: 200, headers: { "content-type": "application/pem-certificate-chain" } });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/revoke-cert",
      summary: "revokeCert: signed by the ordering account (kid) or by the certificate's key (jwk), with an RFC 5280 reason",
      handle: signed("either", async (_c, acme, u, r) => {
        await acme.revoke(u.tenant, r.account ? { account: r.account } : { jwk: r.jwk!, alg: r.header.alg! }, r.payload);
        return new Response(null, { status: 200 });
      }),
    },
    {
      method: "POST",
      path: "/acme/:tenant/key-change",
      summary: "keyChange (RFC 8555 §7.3.5): an inner JWS by the new key over {account, oldKey}; 409 with Location when another account has the new key",
      handle: kid(async (c, acme, u, account, r) => {
        const out = await acme.keyChange(u, account, c.request.url, r.payload);
        return json(200, acme.accountView(u, out), { location: u.account(out.id) });
      }),
    },
    {
      method: "GET",
      path: "/acme/:tenant/renewal-info/:certid",
      summary: "ARI (RFC 9773): the suggested renewal window of a certificate named by base64url(AKI).base64url(serial)",
      handle: guarded(async (c, acme, u) => json(200, await acme.renewalInfo(u.tenant, c.params.certid ?? ""), { "retry-after": "21600" })),
    },
  ];
}

/** The protocol routes for Elysia: the API document lists them; they serve HEAD (newNonce) and whatever the pipeline does not take first. */
export function acmeRoutes(authority: () => Promise<AcmeAuthority>) {
  let app = new Elysia({ tags: ["acme"] } as never).use(appBase);
  for (const e of acmeEndpoints(authority)) {
    const opts = { ...(e.method === "POST" ? { parse: "none" } : {}), detail: { summary: e.summary } } as never;
    app = (e.method === "GET" ? app.get(e.path, e.handle, opts) : app.post(e.path, e.handle, opts)) as never;
  }
  return app;
}

/**
 * The same endpoints dispatched by the pipeline itself (`ServiceDefinition.fastRoutes`), before
 * Elysia: the same handlers without the router's per-request work. Path parameters come
 * percent-decoded, as Elysia gives them.
 */
export function acmeFastRoutes(authority: () => Promise<AcmeAuthority>): FastRoute[] {
  return acmeEndpoints(authority).map((e) => {
    const names: string[] = [];
    const source = e.path.replace(/:([a-z]+)/g, (_m, name: string) => {
      names.push(name);
      return "([^/]+)";
    });
    return {
      method: e.method,
      pattern: new RegExp(`^${source}$`),
      route: e.path,
      bodyText: true,
      handle: (request: Request, values: string[]) => e.handle({ request, params: Object.fromEntries(names.map((n, i) => [n, values[i] ?? ""])) }),
    };
  });
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** The one mapping of errors to problem documents; faults of ours are serverInternal (logged by the pipeline). */
function problemResponse(request: Request, e: unknown): Response {
  let p: AcmeProblem;
  if (e instanceof AcmeProblem) p = e;
  else if (e instanceof AppError && e.status < 500) p = malformed(e.message, e.status);
  else {
    requestInfo(request).failure = e;
    const status = e instanceof AppError ? e.status : 500;
    p = new AcmeProblem("serverInternal", e instanceof AppError ? e.message : "internal error", { status });
  }
  const headers: Record<string, string> = { "content-type": "application/problem+json" };
  if (e instanceof AppError) for (const [k, val] of Object.entries(e.headers ?? {})) headers[k.toLowerCase()] = val;
  for (const [k, val] of Object.entries(p.headers)) headers[k] = val;
  return new Response(JSON.stringify(p.toJSON()), { status: p.status, headers });
}

const EabKey = v.object({ kid: v.string(), hmac_key: v.string(), created_at: v.string() });
const EabKeyInfo = v.object({ kid: v.string(), account_id: v.nullable(v.string()), created_at: v.string(), bound_at: v.nullable(v.string()) });
const KidParam = v.object({ kid: v.pipe(v.string(), v.regex(/^eab_[A-Za-z0-9_-]{1,64}$/)) });
const ADMIN = ["pki:admin"];

/** The tenant's External Account Binding keys (the tenant comes from the token), on the authenticated API. */
export function acmeAdminApi(authority: () => Promise<AcmeAuthority>) {
  return new Elysia({ tags: ["acme"] } as never)
    .use(appBase)
    .post(
      "/acme/eab-keys",
      async ({ request, set }) => {
        const tenant = principalOf(request).tenant;
        const acme = await authority();
        if (!Object.hasOwn(acme.config.tenants, tenant)) throw new AppError("conflict", `tenant ${tenant} does not serve ACME (app.acme.tenants)`);
        set.status = 201;
        return acme.createEabKey(tenant);
      },
      {
        response: { 201: EabKey },
        scopes: ADMIN,
        detail: { summary: "A new External Account Binding key for this tenant's ACME: `kid` and `hmac_key` (base64url, shown only now) for the client's --eab-kid/--eab-hmac-key" },
      },
    )
    .get("/acme/eab-keys", async ({ request }) => ({ items: await (await authority()).store.eabKeys(principalOf(request).tenant) }), {
      response: v.object({ items: v.array(EabKeyInfo) }),
      scopes: ADMIN,
      detail: { summary: "This tenant's EAB keys (never their HMAC keys) and the account each is bound to" },
    })
    .delete(
      "/acme/eab-keys/:kid",
      async ({ request, params, set }) => {
        if (!(await (await authority()).store.deleteEabKey(principalOf(request).tenant, params.kid))) throw notFound("EAB key");
        set.status = 204;
        return undefined;
      },
      { params: KidParam, scopes: ADMIN, detail: { summary: "Delete an EAB key (an account already bound to it stays)" } },
    );
}
