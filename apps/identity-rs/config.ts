/** The `app` config section of identity-rs, validated once at start. */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";

export const RsAppConfig = v.strictObject({
  /** RFC 7662 introspection for opaque access tokens; unset: opaque tokens are refused. */
  introspection: v.optional(
    v.strictObject({
      /** The issuer's introspection endpoint, e.g. `https://127.0.0.1:18000/t/demo/introspect`. */
      endpoint: v.pipe(v.string(), v.url(), v.startsWith("https://")),
      /** The issuer whose tokens it answers for; default the endpoint without `/introspect`. */
      issuer: v.optional(v.pipe(v.string(), v.url())),
      /** identity-rs's own client at the issuer (client_secret_basic). */
      client_id: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
      client_secret_file: v.pipe(v.string(), v.minLength(1)),
      /** How long an active answer is reused, in seconds (never past the token's exp). */
      cache_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(600)), 30),
    }),
  ),
});
export type RsConfig = v.InferOutput<typeof RsAppConfig>;

export const parseRsConfig = (app: unknown): RsConfig => parseAppSection(RsAppConfig, app);
