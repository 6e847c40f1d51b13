/** Runs the audit service alone: `bun run apps/audit/main.ts [--server.port=8800 ...]`. */
import { runMain } from "../../src/service/main.ts";
import { auditService } from "./service.ts";

await runMain(auditService);
