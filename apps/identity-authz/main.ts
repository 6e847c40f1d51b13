/** Runs identity-authz alone: `bun run apps/identity-authz/main.ts [--server.port=18000 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { identityAuthz } from "./service.ts";

await runMain(identityAuthz);
