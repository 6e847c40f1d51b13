/** The `app` config section of identity-spa: where the page's two modes go. Served to the page as config.json. */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";

const HttpsUrl = v.pipe(v.string(), v.url(), v.startsWith("https://"));

export const SpaAppConfig = v.strictObject({
  /** identity-rp's URL (BFF mode); unset: the mode is off. */
  rp_url: v.optional(HttpsUrl),
  /** The issuer of the public-client mode, `https://…/t/{tenant}`; unset: the mode is off. */
  issuer: v.optional(HttpsUrl),
  /** The public client (token_endpoint_auth_method none) of the public-client mode. */
  client_id: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200)), "identity-spa"),
  scope: v.optional(v.pipe(v.string(), v.regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/)), "openid profile notes:read notes:write"),
  /** The audience asked for (RFC 8707 `resource`). */
  resource: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(300)), "identity-rs"),
  /** identity-rs's API base, called with `Authorization: DPoP` in the public-client mode. */
  api_url: v.optional(HttpsUrl),
});
export type SpaConfig = v.InferOutput<typeof SpaAppConfig>;

export const parseSpaConfig = (app: unknown): SpaConfig => parseAppSection(SpaAppConfig, app);
