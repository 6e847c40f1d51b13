/** Runs learn-ps alone: `bun run apps/learn-ps/main.ts [--server.port=8888 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { learnPs } from "./service.ts";

await runMain(learnPs);
