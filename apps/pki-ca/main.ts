/** Runs pki-ca alone: `bun run apps/pki-ca/main.ts [--server.port=8443 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { pkiCa } from "./service.ts";

await runMain(pkiCa);
