/** The `app` config section of identity-rp, validated once at start. */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";

const Origin = v.pipe(v.string(), v.url(), v.regex(/^https:\/\/[^/]+$/, "an https origin without a path"));

export const RpAppConfig = v.strictObject({
  /** The issuer of the tenant whose users sign in, e.g. `https://127.0.0.1:18000/t/demo`. */
  issuer: v.pipe(v.string(), v.url(), v.startsWith("https://"), v.regex(/\/t\/[A-Za-z0-9._-]{1,64}$/, "must end in /t/{tenant}")),
  /** identity-rp's confidential client at the issuer (client_secret_basic). */
  client_id: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
  client_secret_file: v.pipe(v.string(), v.minLength(1)),
  scope: v.optional(v.pipe(v.string(), v.regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/)), "openid profile notes:read notes:write"),
  /** The audience asked for (RFC 8707 `resource`): the API behind `/api/`. */
  resource: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(300)), "identity-rs"),
  /** Base URL `/api/*` is proxied to, e.g. `https://127.0.0.1:18200/service/api/v1`; unset: `/api/*` answers 503. */
  api_url: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
  /** PEM bundle trusted for the issuer and the API. Default: this service's trust bundle (the suite CA). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Registered redirect URI. Default: `{this server's origin}/callback`. */
  redirect_uri: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
  /** Where the issuer sends the browser after logout (registered at the client). Default: `{origin}/`. */
  post_logout_redirect_uri: v.optional(v.pipe(v.string(), v.url(), v.startsWith("https://"))),
  /**
   * Pages of other origins that sign in through this BFF (a single-page app): they may be
   * `return_to` targets after sign-in and call `/session`, `/logout` and `/api/*` with the
   * session cookie (CORS with credentials).
   */
  frontend_origins: v.optional(v.array(Origin), []),
  /** The access token is refreshed when it has less than this left, in seconds. */
  refresh_before_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(5), v.maxValue(3600)), 60),
  /** Session lifetimes: idle and absolute, in seconds. */
  session_idle_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(60), v.maxValue(86_400)), 3600),
  session_absolute_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(300), v.maxValue(30 * 86_400)), 12 * 3600),
  /** How long a started sign-in may take, in seconds. */
  login_ttl_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(30), v.maxValue(3600)), 600),
});
export type RpConfig = v.InferOutput<typeof RpAppConfig>;

/**
 * The checked section, or undefined when there is none: identity-rp then starts, warns, and
 * answers 503 until configured (`npm start` configures it in development mode).
 */
export function parseRpConfig(app: unknown): RpConfig | undefined {
  if (app === undefined || app === null || (typeof app === "object" && Object.keys(app).length === 0)) return undefined;
  return parseAppSection(RpAppConfig, app);
}
