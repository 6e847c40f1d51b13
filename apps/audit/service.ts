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
import { AuditLog, SUITE_TENANT } from "./domain.ts";
import { auditRoutes } from "./routes.ts";
import { auditPages } from "./console/index.ts";

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
  /**
   * How often the log verifies its latest checkpoint against its stored rows (0: never); a
   * failure is logged and sent as an `audit.chain_failure` notification (the template's
   * `notifications` channels), once per distinct failure.
   */
  self_check_interval_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(7 * 86_400_000)), 3_600_000),
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
      const selfCheck = c.self_check_interval_ms > 0 ? startSelfCheck(ctx, log, c.self_check_interval_ms) : undefined;
      ctx.onStop(async () => {
        await started;
        await selfCheck?.();
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
    pages: (ctx) => auditPages(ctx, logOf(ctx)),
  };
}

export const auditService = createAuditService();

/**
 * The periodic self-check (`AuditLog.selfCheck`): a failure is logged as an error and notified
 * as `audit.chain_failure` to the suite tenant, once until the log verifies again or fails
 * differently. Returns the stop function (waits for a check in flight).
 */
function startSelfCheck(ctx: ServiceContext, log: AuditLog, everyMs: number): () => Promise<void> {
  let running: Promise<void> | undefined;
  let reported: string | undefined;
  const run = async () => {
    const r = await log.selfCheck();
    if (!r || r.ok) {
      reported = undefined;
      return;
    }
    const facts = { origin: log.settings.origin, tree_size: r.treeSize, first_bad: r.firstBad ?? null, bad_range: r.badRange ?? null, reason: r.reason ?? "the log does not match its checkpoint" };
    if (reported === facts.reason) return;
    reported = facts.reason;
    ctx.logger.error("audit: the log does not verify against its latest checkpoint", facts);
    ctx.notifier.emit("audit.chain_failure", SUITE_TENANT, facts);
  };
  const timer = setInterval(() => {
    running ??= run()
      .catch((e) => {
        if ((e as { code?: string })?.code !== "sealed") ctx.logger.warn("audit: the self-check could not run", { error: e });
      })
      .finally(() => (running = undefined));
  }, everyMs);
  (timer as { unref?: () => void }).unref?.();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
