/** Runs jose-ja alone: `bun run apps/jose-ja/main.ts [--server.port=9443 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { joseJa } from "./service.ts";

await runMain(joseJa);
