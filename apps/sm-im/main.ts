/** Runs sm-im alone: `bun run apps/sm-im/main.ts [--server.port=8700 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { smIm } from "./service.ts";

await runMain(smIm);
