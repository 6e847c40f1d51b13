/**
 * identity-spa: the reference single-page app. Static files only (a page, one hand-written ES
 * module, a style sheet) under the template's strict page CSP, no inline script or style; its
 * `connect-src` names just the origins the page calls. Two modes, chosen on the page:
 *  - BFF: signs in through identity-rp's session and calls identity-rs through its `/api/` proxy;
 *  - public client: authorization code + PKCE at identity-authz, the access token bound (DPoP,
 *    RFC 9449) to a non-extractable WebCrypto key kept in IndexedDB, identity-rs called with
 *    `Authorization: DPoP` and a fresh proof each time.
 */
import { Elysia } from "elysia";
import { readFileSync } from "node:fs";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { parseSpaConfig } from "./config.ts";

const file = (name: string) => readFileSync(new URL(`./pages/${name}`, import.meta.url));
const origins = (c: ServiceConfig) => {
  const cfg = parseSpaConfig(c.app);
  return [...new Set([cfg.rp_url, cfg.issuer, cfg.api_url].filter((u): u is string => !!u).map((u) => new URL(u).origin))];
};

function spaPages(ctx: ServiceContext) {
  const cfg = parseSpaConfig(ctx.config.app);
  const [html, js, css] = [file("index.html"), file("app.js"), file("app.css")];
  const asset = (body: Buffer, type: string) => () => new Response(new Uint8Array(body), { headers: { "content-type": type, "cache-control": "no-cache" } });
  const origin = (req: Request) => (ctx.config.server.public_url ?? ctx.urls.public ?? new URL(req.url).origin).replace(/\/+$/, "");
  return new Elysia({ name: "identity-spa.pages" })
    .get("/browser/", asset(html, "text/html; charset=utf-8"), { detail: { hide: true } })
    .get("/browser/app.js", asset(js, "text/javascript; charset=utf-8"), { detail: { hide: true } })
    .get("/browser/app.css", asset(css, "text/css; charset=utf-8"), { detail: { hide: true } })
    .get(
      "/browser/config.json",
      ({ request }) => ({
        rp_url: cfg.rp_url ?? null,
        issuer: cfg.issuer ?? null,
        client_id: cfg.client_id,
        scope: cfg.scope,
        resource: cfg.resource,
        api_url: cfg.api_url ?? null,
        redirect_uri: `${origin(request)}/browser/`,
        post_logout_redirect_uri: `${origin(request)}/`,
      }),
      { detail: { summary: "The page's settings: where each mode signs in and which API it calls" } },
    );
}

export const identitySpa: ServiceDefinition = {
  name: "identity-spa",
  title: "identity-spa: reference single-page app",
  description: "The single-page app to copy: signs in through identity-rp's session (BFF) or as a public client with PKCE and DPoP, and calls identity-rs.",
  version: "1.0.0",
  defaultPort: 18400,
  migrations: [],
  checkConfig: (c) => void parseSpaConfig(c.app),
  api: () => new Elysia(),
  pages: spaPages,
  pageConnect: origins,
};
