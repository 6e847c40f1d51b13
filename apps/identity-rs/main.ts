/** Runs identity-rs alone: `bun run apps/identity-rs/main.ts [--server.port=18200 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { identityRs } from "./service.ts";

await runMain(identityRs);
