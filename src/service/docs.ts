/**
 * OpenAPI 3.1 document generated from each route's valibot schemas, and the
 * Scalar API explorer served from the service itself (`/docs`), never from a CDN,
 * so it works offline and under a strict CSP.
 */
import { Elysia } from "elysia";
import { openapi } from "@elysiajs/openapi";
import { toJsonSchema } from "@valibot/to-json-schema";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { escapeHtml } from "./html.ts";

let scalarBundle: Uint8Array<ArrayBuffer> | undefined;

/** The Scalar standalone bundle from the installed `@scalar/api-reference` package. */
function scalarScript(): Uint8Array {
  if (!scalarBundle) {
    const entry = fileURLToPath(import.meta.resolve("@scalar/api-reference"));
    scalarBundle = new Uint8Array(readFileSync(join(dirname(entry), "browser", "standalone.js")));
  }
  return scalarBundle;
}

export const DOCS_PATH = "/docs";

/** The explorer page: scripts only from this origin, so it runs under the strict docs CSP. */
function explorerPage(title: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)} API</title></head>
<body><div id="app"></div><script src="/docs/scalar.js"></script><script src="/docs/init.js"></script></body>
</html>`;
}

/** The explorer's OAuth 2 client-credentials flow: a token for `audience` from `tokenUrl`. */
export interface ExplorerOAuth {
  tokenUrl: string;
  audience: string;
  clientId?: string;
}

/** The OpenAPI security scheme name of the explorer's OAuth flow. */
export const OAUTH_SCHEME = "oauth2";

// Scalar's options: the spec from this service; no hosted fonts, AI agent, MCP or client download.
// With a token endpoint, the OAuth scheme is preselected and its client id filled in.
const explorerInit = (oauth?: ExplorerOAuth) =>
  `Scalar.createApiReference("#app", ${JSON.stringify({
    url: "/docs/openapi.json",
    withDefaultFonts: false,
    hideClientButton: true,
    telemetry: false,
    showDeveloperTools: "never",
    agent: { disabled: true },
    mcp: { disabled: true },
    ...(oauth && {
      authentication: {
        preferredSecurityScheme: OAUTH_SCHEME,
        securitySchemes: { [OAUTH_SCHEME]: { flows: { clientCredentials: { "x-scalar-client-id": oauth.clientId ?? "" } } } },
      },
    }),
  })});
`;
export const SPEC_PATH = "/docs/openapi.json";

export function docsPlugin(opts: { title: string; version: string; description: string; oauth?: ExplorerOAuth }) {
  const init = explorerInit(opts.oauth);
  return new Elysia({ name: "cryptoutil.docs" })
    .use(
      openapi({
        path: DOCS_PATH,
        specPath: SPEC_PATH,
        provider: null, // the explorer page below is ours: no inline script, no CDN
        // Actions with no JSON Schema form (trim, transform) are left out of the document, not errors.
        mapJsonSchema: { valibot: (schema: never) => toJsonSchema(schema, { errorMode: "ignore" }) },
        exclude: { paths: [DOCS_PATH, SPEC_PATH, `${DOCS_PATH}/scalar.js`] },
        documentation: {
          info: { title: opts.title, version: opts.version, description: opts.description },
          components: {
            securitySchemes: {
              bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "OAuth 2 access token (RFC 9068) for /service/api/v1" },
              session: { type: "apiKey", in: "cookie", name: "__Host-cryptoutil_session", description: "Browser session for /browser/api/v1, with X-CSRF-Token on unsafe methods" },
              ...(opts.oauth && {
                [OAUTH_SCHEME]: {
                  type: "oauth2",
                  description: `An access token from identity-authz by client credentials, for audience ${opts.oauth.audience}`,
                  // Scalar sends x-scalar-security-body's members in the token request (RFC 8707 resource).
                  flows: { clientCredentials: { tokenUrl: opts.oauth.tokenUrl, scopes: {}, ...{ "x-scalar-security-body": { resource: opts.oauth.audience } } } },
                },
              }),
            },
          },
        },
      }),
    )
    .get(DOCS_PATH, () => new Response(explorerPage(opts.title), { headers: { "content-type": "text/html; charset=utf-8" } }), {
      detail: { hide: true },
    })
    .get(`${DOCS_PATH}/init.js`, () => new Response(init, { headers: { "content-type": "text/javascript; charset=utf-8" } }), {
      detail: { hide: true },
    })
    .get(`${DOCS_PATH}/scalar.js`, () =>
      new Response(scalarScript() as BodyInit, {
        headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=86400" },
      }),
    { detail: { hide: true } });
}
