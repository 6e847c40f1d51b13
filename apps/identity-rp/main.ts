/** Runs identity-rp alone: `bun run apps/identity-rp/main.ts [--server.port=18300 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { identityRp } from "./service.ts";

await runMain(identityRp);
