/**
 * How a service sends its security events to the audit service (`federation.audit.url`).
 *
 * `record()` stores the event in the service's own database first (table `audit_spool`, each
 * event barrier-encrypted: an event may carry sensitive fields that audit turns into HMACs,
 * and the spool must not hold them in the clear) and resolves once it is on disk. A delivery
 * loop sends the spool in batches over the federation client (the audit service's mTLS port,
 * this service's client certificate) and removes what audit acknowledged. While audit is
 * unreachable the loop backs off exponentially with jitter and keeps everything; nothing is
 * dropped but an event audit refuses as malformed (logged), which the sender's own check
 * against the same schema makes a programming error.
 *
 * Every event has an id made here, so a batch sent again after a lost answer is stored once.
 * Several instances on one database may send the same rows; audit keeps one of each.
 * Without `federation.audit.url`, `record()` does nothing.
 */
import * as v from "valibot";
import type { Kysely } from "kysely";
import { AuditEventInput, IngestAnswer, MAX_EVENTS_PER_BATCH } from "../../schemas/audit.ts";
import type { FederatedClient } from "../federation/client.ts";
import { backoffDelayMs, type RetryPolicy } from "../federation/backoff.ts";
import { GroupCommit } from "../storage/group-commit.ts";
import type { DataProtector } from "../service/context.ts";
import type { Logger } from "../service/log.ts";

/** An event as a service records it; the id and time are added here. */
export type SecurityEvent = Omit<AuditEventInput, "id" | "time">;

interface SpoolRow {
  id?: number;
  event_id: string;
  sealed: Uint8Array;
}

interface SpoolDb {
  audit_spool: SpoolRow;
}

/** The template migration that makes the spool table (every service has one). */
export async function createAuditSpool(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("audit_spool")
    .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
    .addColumn("event_id", "text", (c) => c.notNull())
    .addColumn("sealed", "blob", (c) => c.notNull())
    .execute();
}

const spoolContext = (eventId: string) => `template/audit_spool/${eventId}`;
const enc = new TextEncoder();
const dec = new TextDecoder();
const clip = (s: string, max: number) => (s.length > max ? s.slice(0, max) : s);

export interface AuditSenderOptions {
  db: Kysely<any>;
  protector: DataProtector;
  /** The audit service's client; unset: not configured, events are not recorded. */
  client?: FederatedClient;
  logger?: Logger;
  /** The retry schedule of failed deliveries (its backoff_* part). */
  policy: RetryPolicy;
  batchSize: number;
  pollMs: number;
  random?: () => number;
}

export class AuditSender {
  private readonly db: Kysely<SpoolDb>;
  private readonly spool: GroupCommit<SpoolDb, SpoolRow>;
  private running = false;
  private wake?: () => void;
  private loop?: Promise<void>;
  /** Consecutive failed deliveries (0: the last one went through). */
  private failures = 0;
  /** Events delivered and acknowledged since start. */
  delivered = 0;

  constructor(private readonly opts: AuditSenderOptions) {
    this.db = opts.db as Kysely<SpoolDb>;
    this.spool = new GroupCommit(this.db, async (trx, rows) => void (await trx.insertInto("audit_spool").values(rows).execute()), { maxBatch: 200, gatherMs: 0 });
  }

  /** Whether events go anywhere (`federation.audit.url` is set). */
  get enabled(): boolean {
    return this.opts.client !== undefined;
  }

  /**
   * Spools an event; resolves once it is stored in this service's database. Never throws for
   * the event's content: over-long values are cut to the schema's bounds.
   */
  async record(e: SecurityEvent): Promise<void> {
    if (!this.opts.client) return;
    const event: AuditEventInput = {
      ...e,
      id: crypto.randomUUID(),
      time: new Date().toISOString(),
      actor: clip(e.actor || "anonymous", 256),
      resource: clip(e.resource, 512),
      ...(e.request_id !== undefined ? { request_id: clip(e.request_id, 128) } : {}),
    };
    const checked = v.safeParse(AuditEventInput, event);
    if (!checked.success) {
      // A programming error of the caller: say so loudly, and never break the operation for it.
      this.opts.logger?.error("audit: an event does not match the audit schema and is not sent", { action: e.action, issue: checked.issues[0]?.message });
      return;
    }
    const sealed = await this.opts.protector.encrypt(enc.encode(JSON.stringify(event)), spoolContext(event.id));
    await this.spool.add({ event_id: event.id, sealed });
    this.wake?.();
  }

  /** Events waiting in the spool. */
  async pending(): Promise<number> {
    const r = await this.db.selectFrom("audit_spool").select((eb) => eb.fn.countAll().as("n")).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  start(): void {
    if (!this.opts.client || this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops the loop; what is still spooled stays for the next start. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let more = false;
      try {
        more = await this.deliverOnce();
        this.failures = 0;
      } catch (e) {
        this.failures++;
        if (this.failures === 1 || this.failures % 20 === 0) this.opts.logger?.warn("audit: delivery failed; events stay spooled", { failures: this.failures, error: e });
      }
      if (!this.running) break;
      const delay = this.failures > 0 ? backoffDelayMs(this.opts.policy, this.failures, this.opts.random) : more ? 0 : this.opts.pollMs;
      if (delay > 0) await this.sleep(delay, this.failures === 0);
    }
  }

  /** Waits `ms`, or less when `wakeable` and an event is recorded meanwhile. */
  private sleep(ms: number, wakeable: boolean): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        if (wakeable || !this.running) done();
      };
    });
  }

  /**
   * Sends one batch from the spool and removes what audit acknowledged; true when the spool
   * may hold more. Throws when audit could not be reached or refused for a reason of its own.
   */
  async deliverOnce(): Promise<boolean> {
    const client = this.opts.client;
    if (!client) return false;
    const limit = Math.min(this.opts.batchSize, MAX_EVENTS_PER_BATCH);
    const rows = await this.db.selectFrom("audit_spool").select(["id", "event_id", "sealed"]).orderBy("id").limit(limit).execute();
    if (rows.length === 0) return false;
    const events: AuditEventInput[] = [];
    for (const r of rows) {
      const plain = await this.opts.protector.decrypt(r.sealed instanceof Uint8Array ? r.sealed : new Uint8Array(r.sealed), spoolContext(r.event_id));
      events.push(JSON.parse(dec.decode(plain)) as AuditEventInput);
    }
    const res = await client.request("/service/api/v1/events", {
      method: "POST",
      idempotent: true,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events }),
    });
    const body = await res.json().catch(() => undefined);
    if (res.status === 400 && events.length > 1) {
      // One malformed event must not hold up the others: send them one at a time.
      for (const r of rows) await this.deliverSingle(client, r.id!, events[rows.indexOf(r)]!);
      return true;
    }
    if (res.status === 400) {
      this.opts.logger?.error("audit: the audit service refused an event as malformed; it is dropped", { event_id: events[0]!.id, action: events[0]!.action });
      await this.remove([rows[0]!.id!]);
      return true;
    }
    if (res.status !== 200 || !v.is(IngestAnswer, body)) throw new Error(`audit answered ${res.status}${typeof body === "object" && body && "error" in body ? ` (${JSON.stringify((body as { error: unknown }).error)})` : ""}`);
    await this.remove(rows.map((r) => r.id!));
    this.delivered += rows.length;
    return rows.length === limit;
  }

  private async deliverSingle(client: FederatedClient, id: number, event: AuditEventInput): Promise<void> {
    const res = await client.request("/service/api/v1/events", { method: "POST", idempotent: true, headers: { "content-type": "application/json" }, body: JSON.stringify({ events: [event] }) });
    if (res.status === 400) this.opts.logger?.error("audit: the audit service refused an event as malformed; it is dropped", { event_id: event.id, action: event.action });
    else if (res.status !== 200) throw new Error(`audit answered ${res.status}`);
    else this.delivered++;
    await this.remove([id]);
  }

  private async remove(ids: number[]): Promise<void> {
    if (ids.length) await this.db.deleteFrom("audit_spool").where("id", "in", ids).execute();
  }
}
