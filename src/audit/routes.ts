/**
 * Security events of an app's API routes, recorded by one Elysia plugin instead of a call in
 * every handler: after each authenticated request to a route the app names, an event with the
 * caller (tenant, actor), the action, the resource (a path parameter) and the result (`ok`, or
 * the error code the request ended with) goes to the service's `AuditSender`: a success before
 * its answer is sent, a refusal right after. Requests without a principal never reached the app and are not recorded.
 *
 * @example
 *   new Elysia().use(auditedRoutes(ctx.audit, { "POST /keys": "key.create", "POST /keys/:id/rotate": "key.rotate" }))
 *     .post("/keys", ...)
 */
import { Elysia } from "elysia";
import { requestInfo } from "../service/http.ts";
import type { AuditSender, SecurityEvent } from "./sender.ts";

/** The route part after the API prefix (`/service/api/v1` or `/browser/api/v1`). */
const routeOf = (route: string) => route.replace(/^\/(service|browser)\/api\/v1/, "");

/** The caller's side of an event of this request, or undefined without a principal. */
export function callerEvent(request: Request, e: Omit<SecurityEvent, "tenant" | "actor" | "request_id"> & { tenant?: string }): SecurityEvent | undefined {
  const info = requestInfo(request);
  const p = info.principal;
  if (!p) return undefined;
  const { tenant, ...rest } = e;
  return { ...rest, tenant: tenant ?? p.tenant, actor: p.clientId ?? p.subject, request_id: info.id, ...(info.ip ? { sensitive: { client_ip: info.ip, ...e.sensitive } } : {}) };
}

/**
 * The plugin: `actions` maps "METHOD /route" (the route as declared, e.g. `/keys/:id`) to an
 * action name; other routes are not recorded. `resource` picks the resource from the params
 * (default the `id` parameter); `tenant` the tenant the event is about (default the caller's).
 */
export function auditedRoutes(
  sender: AuditSender,
  actions: Record<string, string>,
  opts: { resource?: (params: Record<string, string>) => string; tenant?: (params: Record<string, string>) => string | undefined } = {},
) {
  const resource = opts.resource ?? ((p) => p.id ?? "");
  const actionOf = (request: Request, route: string | undefined) => (route ? actions[`${request.method} ${routeOf(route)}`] : undefined);
  const record = async (request: Request, route: string | undefined, params: unknown, result: string) => {
    if (!sender.enabled) return;
    const action = actionOf(request, route);
    if (!action) return;
    const p = (params ?? {}) as Record<string, string>;
    const e = callerEvent(request, { action, resource: resource(p), result, tenant: opts.tenant?.(p) });
    if (e) await sender.record(e);
  };
  return new Elysia({ name: "cryptoutil.audited-routes", seed: actions })
    // A success is spooled before its answer leaves; a failure (nothing changed) right after.
    .onAfterHandle({ as: "scoped" }, async ({ request, route, params }) => {
      await record(request, route, params, "ok");
    })
    .onAfterResponse({ as: "scoped" }, async ({ request, route, params }) => {
      const code = requestInfo(request).errorCode;
      if (code) await record(request, route, params, /^[a-z0-9_.-]{1,64}$/.test(code) ? code : "error");
    });
}
