/** Runs sm-kms alone: `bun run apps/sm-kms/main.ts [--server.port=8080 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { smKms } from "./service.ts";

await runMain(smKms);
