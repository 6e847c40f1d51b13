/** Runs identity-idp alone: `bun run apps/identity-idp/main.ts [--server.port=18100 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { identityIdp } from "./service.ts";

await runMain(identityIdp);
