/** Runs identity-spa alone: `bun run apps/identity-spa/main.ts [--server.port=18400 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { identitySpa } from "./service.ts";

await runMain(identitySpa);
