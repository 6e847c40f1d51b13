/**
 * A service's console: its pages under `/browser/`, each rendered on the server for the
 * signed-in user, framed by the shared layout, plus the kit's stylesheet and script.
 *
 * A page needs a browser session (the `/browser/login` of src/auth/bff.ts): without one it
 * sends the browser to sign in and come back. Reads call the same domain functions as the
 * API routes after checking the same scopes; changes go from the page to the service's own
 * `/browser/api/v1` (session cookie + CSRF token), so every rule lives once, in the domain
 * and the routes. A user who lacks a change's scope sees the page without its forms.
 *
 * @example
 *   pages: (ctx) => consolePages(ctx, { title: "Pet Store", sections: [...], pages: [
 *     { path: "/", title: "Pets", scopes: ["pets:read"], render: async (r) => ({ body: html`...` }) },
 *   ] })
 */
import { Elysia } from "elysia";
import * as v from "valibot";
import { readFileSync } from "node:fs";
import type { ServiceContext } from "../service/context.ts";
import { AppError } from "../service/errors.ts";
import { readCookie, SESSION_COOKIE } from "../auth/session.ts";
import { requireScopes, type Principal } from "../auth/bearer.ts";
import { html, type Fragment } from "./html.ts";
import { layout, type ConsoleLink } from "./layout.ts";

/** The signed-in user of a page request. */
export interface Viewer {
  principal: Principal;
  tenant: string;
  /** Whether the user holds every one of these scopes (to show or hide a change). */
  can(...scopes: string[]): boolean;
}

export interface PageRequest {
  request: Request;
  viewer: Viewer;
  /** The path parameters of the page's path (`:id`). */
  params: Record<string, string>;
  query: URLSearchParams;
  path: string;
}

export interface PageAnswer {
  /** Overrides the page's title (e.g. a record's name). */
  title?: string;
  body: Fragment;
}

export interface ConsolePage {
  /** Path under /browser (e.g. "/", "/keys/:id"). */
  path: string;
  title: string;
  /** Scopes needed to see the page at all (those of the API read it shows). */
  scopes: string[];
  render(p: PageRequest): Promise<PageAnswer | Response>;
}

export interface ConsoleInput {
  title: string;
  /** The service's own sections in its navigation. */
  sections: { label: string; href: string }[];
  pages: ConsolePage[];
}

const asset = (name: string) => readFileSync(new URL(`./assets/${name}`, import.meta.url), "utf8");
let assets: { js: string; css: string } | undefined;

const htmlResponse = (body: string, status = 200) => new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });

/** The consoles the navigation bar lists: the configured suite, else this service alone. */
export function consoleLinks(ctx: ServiceContext): ConsoleLink[] {
  const listed = ctx.config.browser.consoles;
  return listed.length > 0 ? listed : [{ name: ctx.name, url: "/browser/" }];
}

export function consolePages(ctx: ServiceContext, c: ConsoleInput) {
  assets ??= { js: asset("console.js"), css: asset("console.css") };
  const a = assets;
  const links = consoleLinks(ctx);
  const frame = (path: string, title: string, body: Fragment, user?: { name: string; tenant: string; csrf: string }) =>
    layout({ service: ctx.name, serviceTitle: c.title, consoles: links, sections: user ? c.sections : [], path, title, user, body }).text;

  async function serve(page: ConsolePage, request: Request, params: Record<string, string>): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (!ctx.config.browser.login) {
      return htmlResponse(frame(path, c.title, html`<p role="alert">Sign-in is not configured for this service (<code>browser.login</code>), so its console is not available.</p>`));
    }
    const sid = readCookie(request.headers.get("cookie"), SESSION_COOKIE);
    let principal: Principal | undefined;
    if (sid) {
      try {
        principal = await ctx.sessions.authenticate(sid);
      } catch (e) {
        if (!(e instanceof AppError) || e.code !== "unauthenticated") throw e;
      }
    }
    const login = `/browser/login?return_to=${encodeURIComponent(path + url.search)}`;
    // A session this service does not know (another console's on the same host, or ended
    // here): sign in again, which single sign-on at identity-idp passes without a password.
    if (sid && !principal) return seeOther(login);
    // No session at all (never signed in, or signed out): say so and offer the sign-in.
    if (!principal || !sid) {
      return htmlResponse(frame(path, c.title, html`<p id="status" role="status">You are not signed in.</p><p><a class="button" href="${login}">Sign in</a></p>`));
    }
    const p = principal;
    const user = { name: p.name ?? p.subject, tenant: p.tenant, csrf: await ctx.sessions.csrfToken(sid) };
    const viewer: Viewer = { principal: p, tenant: p.tenant, can: (...s) => s.every((x) => p.scopes.has(x)) };
    try {
      requireScopes(p, page.scopes);
      const answer = await page.render({ request, viewer, params, query: url.searchParams, path });
      if (answer instanceof Response) return answer;
      return htmlResponse(frame(path, answer.title ?? page.title, answer.body, user));
    } catch (e) {
      if (!(e instanceof AppError) || e.status >= 500) throw e;
      const why = e.code === "insufficient_scope" ? html`You may not see this page: ${e.message}.` : html`${e.message}`;
      return htmlResponse(frame(path, page.title, html`<p role="alert" class="flash error">${why}</p><p><a href="/browser/">Back to the start</a></p>`, user), e.status);
    }
  }

  let app: Elysia<any, any, any, any, any, any, any> = new Elysia({ name: `cryptoutil.console.${ctx.name}` })
    .get("/browser/ui/console.js", () => new Response(a.js, { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" } }), { detail: { hide: true } })
    .get("/browser/ui/console.css", () => new Response(a.css, { headers: { "content-type": "text/css; charset=utf-8", "cache-control": "no-cache" } }), { detail: { hide: true } });
  for (const page of c.pages) {
    const full = page.path === "/" ? "/browser/" : `/browser${page.path}`;
    app = app.get(full, ({ request, params }) => serve(page, request, params as Record<string, string>), { detail: { hide: true } });
  }
  return app;
}

/** A page's path or query value checked with the API's own schema; a bad one is a 400 page, never a 500. */
export function checked<T extends v.GenericSchema>(schema: T, value: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, value);
  if (!r.success) throw new AppError("bad_request", r.issues[0].message.replace(/ but received[\s\S]*$/, ""));
  return r.output;
}

/** An answer that sends the browser elsewhere (e.g. after a filter that names one record). */
export const seeOther = (location: string) => new Response(null, { status: 303, headers: { location, "cache-control": "no-store" } });
