/**
 * audit: the suite's tamper-evident record of security events. Services send their events
 * (src/audit/sender.ts) over the mutual-TLS port; the log is an RFC 9162 Merkle tree with
 * signed checkpoints, append-only down to the database. `domain.ts` holds the rules,
 * `store.ts` the queries, `routes.ts` the API.
 */
import * as v from "valibot";
import { parseAppSection } from "../../src/service/config.ts";
import type { ServiceContext, ServiceDefinition } from "../../src/service/context.ts";
import { migrations } from "./migrations.ts";
import { AuditStore } from "./store.ts";
import { AuditLog } from "./domain.ts";
import { auditRoutes } from "./routes.ts";

/** Seven years, the retention CA/Browser Forum audit records need. */
export const DEFAULT_RETENTION_DAYS = 2557;

/** The `app` section of the audit service's config. */
export const AuditConfig = v.strictObject({
  /** The log's name in its checkpoints (first line) and the checkpoint key's name. */
  origin: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9._\/:-]{1,128}$/, "an origin is a word without spaces or +, such as example.com/audit")), "cryptoutil.local/audit"),
  /** How long entries are kept; the log has no way to delete one earlier (nor later). */
  retention_days: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(36_600)), DEFAULT_RETENTION_DAYS),
  /** How often a checkpoint is signed when there are new entries (0: only on demand). */
  checkpoint_interval_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400_000)), 1000),
});
export type AuditConfig = v.InferOutput<typeof AuditConfig>;

export const parseAuditConfig = (app: unknown): AuditConfig => parseAppSection(AuditConfig, app);

export interface AuditOptions {
  now?: () => Date;
}

/** The audit service's definition; `createAuditService({ now })` gives one with another clock. */
export function createAuditService(opts: AuditOptions = {}): ServiceDefinition {
  const instances = new WeakMap<ServiceContext, AuditLog>();
  const logOf = (ctx: ServiceContext) => {
    let log = instances.get(ctx);
    if (!log) {
      const c = parseAuditConfig(ctx.config.app);
      log = new AuditLog(new AuditStore(ctx.db), ctx.protector, { origin: c.origin, retentionDays: c.retention_days, checkpointIntervalMs: c.checkpoint_interval_ms }, opts.now);
      instances.set(ctx, log);
      const started = log.start().catch((e) => ctx.logger.error("audit: the log could not start", { error: e }));
      ctx.onStop(async () => {
        await started;
        await log!.stop();
      });
    }
    return log;
  };
  return {
    name: "audit",
    title: "audit: tamper-evident audit log",
    description:
      "Append-only security events of the suite's services in an RFC 9162 Merkle tree with signed checkpoints (C2SP tlog-checkpoint, Ed25519): query by tenant, service, actor, action and time; inclusion and consistency proofs; export for offline verification (`cryptoutil audit verify`). Sensitive fields are stored as keyed HMACs; nothing can be updated or deleted.",
    version: "1.0.0",
    defaultPort: 8800,
    migrations,
    checkConfig: (c) => void parseAuditConfig(c.app),
    api: (ctx) => auditRoutes(logOf(ctx)),
  };
}

export const auditService = createAuditService();
