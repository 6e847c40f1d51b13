/** The audit service as a benchmark target: the real service in its own process, a checkpoint every second (see service.ts). */
import { auditService } from "../../apps/audit/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(auditService, { config: (c) => void (c.app = { checkpoint_interval_ms: 1000 }) });
