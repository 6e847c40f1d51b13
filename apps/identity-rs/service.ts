/**
 * identity-rs: the reference resource server. The template verifies every access token
 * (src/auth/bearer.ts: JWKS cache with rotation, issuer, audience, scopes, DPoP proofs,
 * certificate binding on the mTLS listener); this app adds introspection for opaque tokens
 * (`introspection.ts`) and a small API: the caller's profile and its own notes.
 */
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { parseRsConfig } from "./config.ts";
import { introspector } from "./introspection.ts";
import { NoteStore } from "./store.ts";
import { NoteBook } from "./domain.ts";
import { rsRoutes } from "./routes.ts";

// One domain per service context: the template calls `api` once per prefix.
const books = new WeakMap<ServiceContext, NoteBook>();
const bookOf = (ctx: ServiceContext) => {
  let b = books.get(ctx);
  if (!b) books.set(ctx, (b = new NoteBook(new NoteStore(ctx.db), ctx.protector)));
  return b;
};

export const identityRs: ServiceDefinition = {
  name: "identity-rs",
  title: "identity-rs: reference resource server",
  description:
    "The resource server to copy: accepts identity-authz's access tokens (Bearer, DPoP-bound, certificate-bound on the mTLS port; opaque ones through introspection) and serves the caller's profile and notes.",
  version: "1.0.0",
  defaultPort: 18200,
  migrations,
  checkConfig: (c) => void parseRsConfig(c.app),
  introspection: (deps) => {
    const cfg = parseRsConfig(deps.config.app).introspection;
    return cfg && introspector(cfg, deps);
  },
  api: (ctx) => rsRoutes(bookOf(ctx)),
};
