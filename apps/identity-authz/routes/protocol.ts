/**
 * The HTTP side of OAuth endpoints: form bodies (RFC 6749 3.2: urlencoded, no
 * repeated parameters) and OAuth-shaped responses. Bad input becomes a 4xx with
 * an OAuth `error`, never a 5xx.
 */
import { AppError } from "../../../src/service/errors.ts";
import type { Logger } from "../../../src/service/log.ts";
import { JSON_HEADERS, requestInfo } from "../../../src/service/http.ts";
import { escapeHtml } from "../../../src/service/html.ts";
import { isOAuthCode, oauthError } from "../domain/oauth-error.ts";
import { FrontChannelError, RedirectError } from "../domain/authorize.ts";

const MAX_PARAM = 16_384;
export const NO_STORE = { "cache-control": "no-store" };

/** Parameters of a query string or form; empty values count as absent (RFC 6749 3.1). */
export function paramsOf(search: URLSearchParams): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of search) {
    if (m.has(k)) throw oauthError("invalid_request", `parameter '${k.slice(0, 64)}' is repeated`);
    if (v.length > MAX_PARAM) throw oauthError("invalid_request", `parameter '${k.slice(0, 64)}' is too long`);
    // No OAuth value holds a NUL, and PostgreSQL text cannot store one.
    if (v.includes("\u0000") || k.includes("\u0000")) throw oauthError("invalid_request", `parameter '${k.slice(0, 64).replace(/\u0000/g, "")}' holds a NUL character`);
    if (v !== "") m.set(k, v);
  }
  return m;
}

export async function readForm(req: Request): Promise<Map<string, string>> {
  const ct = req.headers.get("content-type") ?? "";
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(ct)) throw oauthError("invalid_request", "the body must be application/x-www-form-urlencoded");
  let text: string;
  try {
    text = await req.text();
  } catch {
    throw oauthError("invalid_request", "the body could not be read");
  }
  try {
    return paramsOf(new URLSearchParams(text));
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw oauthError("invalid_request", "the body is not a valid form");
  }
}

/** A JSON body (RFC 7591 registration requests); anything else is `invalid_client_metadata`. */
export async function readJson(req: Request): Promise<unknown> {
  const ct = req.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(ct)) throw oauthError("invalid_client_metadata", "the body must be application/json");
  try {
    return JSON.parse(await req.text());
  } catch {
    throw oauthError("invalid_client_metadata", "the body is not valid JSON");
  }
}

// The security headers go in when the response is made: setting them afterwards (as the
// pipeline does for responses that lack them) costs a native call each, on the busiest route.
export function json(body: unknown, status = 200, headers?: Record<string, string>): Response {
  const res = new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
  for (const k in headers) res.headers.set(k, headers[k]!);
  return res;
}

export function page(title: string, text: string, status: number, link?: { href: string; text: string }): Response {
  const a = link ? `<p><a href="${escapeHtml(link.href)}">${escapeHtml(link.text)}</a></p>` : "";
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p>${a}</main></body></html>`;
  return new Response(html, { status, headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE } });
}

export interface PageForm {
  action: string;
  /** Hidden fields. */
  hidden?: Record<string, string>;
  /** One text input. */
  input?: { name: string; label: string; value?: string };
  /** Submit buttons: the one pressed sends its name=value. */
  buttons: { name: string; value: string; label: string }[];
}

/** A page with one form that posts to this origin (the page CSP allows no script and `form-action 'self'`). */
export function formPage(title: string, lines: string[], f: PageForm, status = 200): Response {
  const hidden = Object.entries(f.hidden ?? {}).map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`).join("");
  const input = f.input
    ? `<p><label>${escapeHtml(f.input.label)} <input name="${escapeHtml(f.input.name)}" value="${escapeHtml(f.input.value ?? "")}" autocomplete="off" autocapitalize="characters" spellcheck="false" required></label></p>`
    : "";
  const buttons = f.buttons.map((b) => `<button type="submit" name="${escapeHtml(b.name)}" value="${escapeHtml(b.value)}">${escapeHtml(b.label)}</button>`).join(" ");
  const text = lines.map((l) => `<p>${escapeHtml(l)}</p>`).join("");
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1>${text}<form method="post" action="${escapeHtml(f.action)}">${hidden}${input}<p>${buttons}</p></form></main></body></html>`;
  return new Response(html, { status, headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE } });
}

export const redirect = (location: string) => new Response(null, { status: 303, headers: { location, ...NO_STORE } });

/** Maps any error of an OAuth endpoint to its OAuth response. */
export function oauthFailure(e: unknown, req: Request, logger: Logger): Response {
  if (e instanceof RedirectError) return redirect(e.location);
  if (e instanceof FrontChannelError) return page("Sign-in request refused", `${e.code}: ${e.message}`, e.status);
  if (e instanceof AppError) {
    if (isOAuthCode(e.code)) {
      if (e.status >= 500) logger.error("oauth endpoint failed", { request_id: requestInfo(req).id, code: e.code });
      return json({ error: e.code, error_description: e.message }, e.status, e.headers);
    }
    if (e.status === 404) return json({ error: "invalid_request", error_description: e.message }, 404);
    if (e.status === 413) return json({ error: "invalid_request", error_description: e.message }, 413);
    if (e.status < 500) return json({ error: "invalid_request", error_description: e.message }, 400);
    logger.error("oauth endpoint failed", { request_id: requestInfo(req).id, code: e.code, error: String(e.cause ?? e) });
    return json({ error: e.status === 503 ? "temporarily_unavailable" : "server_error", error_description: "the server could not complete the request" }, e.status);
  }
  logger.error("oauth endpoint failed", { request_id: requestInfo(req).id, error: String((e as Error)?.stack ?? e) });
  return json({ error: "server_error", error_description: "internal error" }, 500);
}
