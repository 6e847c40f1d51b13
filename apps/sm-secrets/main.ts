/** Runs sm-secrets alone: `bun run apps/sm-secrets/main.ts [--server.port=8090 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { smSecrets } from "./service.ts";

await runMain(smSecrets);
