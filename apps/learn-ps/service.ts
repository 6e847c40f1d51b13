/**
 * learn-ps: the Pet Store, the example service. Copy this folder to start a new
 * service: `migrations.ts` (schema), `store.ts` (queries), `domain.ts` (rules),
 * `routes.ts` (HTTP), `pages/` (UI) and this definition tying them together.
 */
import type { ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { PetStore } from "./store.ts";
import { PetService } from "./domain.ts";
import { petFastRoutes, petRoutes } from "./routes.ts";
import { petPages } from "./pages/index.ts";

export const learnPs: ServiceDefinition = {
  name: "learn-ps",
  title: "learn-ps: Pet Store",
  description: "A multi-tenant Pet Store that shows how a cryptoutil service is built. Owner notes are stored barrier-encrypted.",
  version: "1.0.0",
  defaultPort: 8888,
  migrations,
  api: (ctx) => petRoutes(new PetService(new PetStore(ctx.db), ctx.protector)),
  // The hot read, served by the pipeline on /service (same schemas and scopes as in routes.ts).
  fastRoutes: (ctx) => petFastRoutes(new PetService(new PetStore(ctx.db), ctx.protector)),
  pages: (ctx) => petPages(ctx, new PetService(new PetStore(ctx.db), ctx.protector)),
};
