/**
 * The audit log's rules. No HTTP here.
 *
 * - Append: events from a service get the next positions (seq) in one transaction, so several
 *   instances on one PostgreSQL database never hand out a position twice (transactions there
 *   run one at a time, see src/storage/postgres.ts). A resent event (same service, same id)
 *   keeps its first position. Sensitive fields become keyed HMACs before anything is stored.
 * - Each entry is a JSON text; its leaf is SHA-256(0x00 || text) (RFC 9162). The tree of all
 *   leaves is kept in memory, loaded from the stored leaf hashes at start and caught up from
 *   the database before each use, so proofs cost O(log n) on every instance.
 * - Checkpoints: a signed note (C2SP tlog-checkpoint) of the tree's size and root, made every
 *   `checkpoint_interval_ms` when there are new entries, and on demand. The Ed25519 key is
 *   generated once and kept barrier-encrypted.
 * - Reads are tenant-scoped; the suite administrator (tenant root with audit:admin) reads all.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { createHmac } from "node:crypto";
import { AppError, notFound } from "../../src/service/errors.ts";
import type { DataProtector } from "../../src/service/context.ts";
import { leafHash, MerkleTree } from "../../src/audit/merkle.ts";
import { checkpointText, NoteError, NoteSigner } from "../../src/audit/note.ts";
import { verifyExport, type VerifyResult } from "../../src/audit/verify.ts";
import { decodePageToken, encodePageToken } from "../../src/storage/index.ts";
import type { AuditEntry, AuditEventInput, EventsQuery } from "../../schemas/audit.ts";
import type { AuditQueries, AuditStore, CheckpointRow, EventRow } from "./store.ts";

const enc = new TextEncoder();
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const bytes = (x: Uint8Array | ArrayBuffer) => (x instanceof Uint8Array ? x : new Uint8Array(x));
const DAY_MS = 86_400_000;

/** A sensitive value as the log keeps it: HMAC-SHA256 under the log's key, base64url. */
const hmacOf = (key: Uint8Array, value: string) => `hmac-sha256:${createHmac("sha256", key).update(value, "utf8").digest("base64url")}`;

/** The tenant whose `audit:admin` callers read every tenant's entries. */
export const SUITE_TENANT = "root";

export interface AuditSettings {
  origin: string;
  retentionDays: number;
  checkpointIntervalMs: number;
}

/** Who reads: their tenant, and whether they may read all tenants. */
export interface Reader {
  tenant: string;
  all: boolean;
}

/** An entry's JSON text, members in one fixed order (details sorted), so it hashes the same everywhere. */
export function entryText(e: AuditEntry): string {
  const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
  return JSON.stringify({
    seq: e.seq,
    id: e.id,
    time: e.time,
    received: e.received,
    service: e.service,
    tenant: e.tenant,
    actor: e.actor,
    action: e.action,
    resource: e.resource,
    result: e.result,
    request_id: e.request_id,
    details: sorted(e.details),
    hmac: sorted(e.hmac),
    retain_until: e.retain_until,
  });
}

interface Pending {
  service: string;
  events: AuditEventInput[];
  done: (r: { seqs: number[]; duplicates: number } | Error) => void;
}

/** Events per append transaction at most. */
const MAX_APPEND = 2000;

export class AuditLog {
  private readonly tree = new MerkleTree();
  private signer?: NoteSigner;
  private hmacKey?: Uint8Array;
  private pending: Pending[] = [];
  private appending = false;
  private timer?: ReturnType<typeof setInterval>;
  private checkpointing?: Promise<CheckpointRow | undefined>;

  constructor(
    private readonly store: AuditStore,
    private readonly protector: DataProtector,
    readonly settings: AuditSettings,
    private readonly now: () => Date = () => new Date(),
  ) {
    protector.onSeal(() => {
      this.hmacKey?.fill(0);
      this.hmacKey = undefined;
      this.signer = undefined;
    });
  }

  /** Loads the keys (made on first start) and the tree; starts periodic checkpoints. */
  async start(): Promise<void> {
    await this.keys();
    await this.catchUp();
    if (this.settings.checkpointIntervalMs > 0) {
      this.timer = setInterval(() => void this.checkpoint().catch(() => undefined), this.settings.checkpointIntervalMs);
      this.timer.unref?.();
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.checkpointing?.catch(() => undefined);
  }

  /** The verifier key (C2SP vkey) of the checkpoints. */
  async verifierKey(): Promise<string> {
    return (await this.keys()).signer.verifierKey;
  }

  /** The HMAC of a value under the log's key, as sensitive fields are stored. */
  async hash(value: string): Promise<string> {
    const { hmacKey } = await this.keys();
    return hmacOf(hmacKey, value);
  }

  private async keys(): Promise<{ signer: NoteSigner; hmacKey: Uint8Array }> {
    if (this.signer && this.hmacKey) return { signer: this.signer, hmacKey: this.hmacKey };
    const seed = await this.secret("checkpoint-ed25519", (s) => ed25519.getPublicKey(s));
    this.signer = new NoteSigner(this.settings.origin, seed);
    this.hmacKey = await this.secret("sensitive-hmac", () => null);
    return { signer: this.signer, hmacKey: this.hmacKey };
  }

  /** A 32-byte secret kept barrier-encrypted; made once (the first instance to store it wins). */
  private async secret(name: string, publicOf: (secret: Uint8Array) => Uint8Array | null): Promise<Uint8Array> {
    const context = `audit/keys/${name}`;
    const row = await this.store.key(name);
    if (row) return this.protector.decrypt(bytes(row.sealed), context);
    const secret = crypto.getRandomValues(new Uint8Array(32));
    await this.store.insertKey({ name, sealed: await this.protector.encrypt(secret, context), public_key: publicOf(secret), created: this.now().toISOString() });
    secret.fill(0);
    return this.secret(name, publicOf);
  }

  /** Appends the leaves other instances (or earlier runs) stored beyond the in-memory tree. */
  private async catchUp(q: AuditQueries = this.store): Promise<void> {
    for (;;) {
      const rows = await q.leafHashes(this.tree.size, 10_000);
      for (const r of rows) {
        if (r.seq !== this.tree.size) throw new AppError("stored_material_corrupt", `the log has no entry ${this.tree.size}`);
        this.tree.push(r.leaf_hash);
      }
      if (rows.length < 10_000) return;
    }
  }

  /**
   * Appends a service's events; resolves with each one's position once stored. Concurrent
   * calls share one transaction (up to MAX_APPEND events).
   */
  append(service: string, events: AuditEventInput[]): Promise<{ seqs: number[]; duplicates: number }> {
    return new Promise((resolve, reject) => {
      this.pending.push({ service, events, done: (r) => (r instanceof Error ? reject(r) : resolve(r)) });
      if (!this.appending) {
        this.appending = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch: Pending[] = [];
      let n = 0;
      while (this.pending.length > 0 && (batch.length === 0 || n + this.pending[0]!.events.length <= MAX_APPEND)) {
        const p = this.pending.shift()!;
        batch.push(p);
        n += p.events.length;
      }
      try {
        const results = await this.write(batch);
        batch.forEach((p, i) => p.done(results[i]!));
      } catch (e) {
        for (const p of batch) p.done(e instanceof Error ? e : new Error(String(e)));
      }
    }
    this.appending = false;
  }

  private async write(batch: Pending[]): Promise<Array<{ seqs: number[]; duplicates: number }>> {
    const { hmacKey } = await this.keys();
    const received = this.now();
    const retainUntil = new Date(received.getTime() + this.settings.retentionDays * DAY_MS).toISOString();
    const { rows, results } = await this.store.transaction(async (q) => {
      let next = await q.size();
      const rows: EventRow[] = [];
      const results: Array<{ seqs: number[]; duplicates: number }> = [];
      // Per service: ids already stored, and ids earlier in this batch.
      const seen = new Map<string, Map<string, number>>();
      for (const p of batch) {
        let known = seen.get(p.service);
        if (!known) seen.set(p.service, (known = new Map()));
        const missing = [...new Set(p.events.map((e) => e.id).filter((id) => !known!.has(id)))];
        for (const [id, seq] of await q.existing(p.service, missing)) known.set(id, seq);
        const seqs: number[] = [];
        let duplicates = 0;
        for (const e of p.events) {
          const had = known.get(e.id);
          if (had !== undefined) {
            seqs.push(had);
            duplicates++;
            continue;
          }
          const seq = next++;
          const entry: AuditEntry = {
            seq,
            id: e.id,
            time: new Date(e.time).toISOString(),
            received: received.toISOString(),
            service: p.service,
            tenant: e.tenant,
            actor: e.actor,
            action: e.action,
            resource: e.resource,
            result: e.result,
            request_id: e.request_id ?? null,
            details: e.details ?? {},
            hmac: Object.fromEntries(Object.entries(e.sensitive ?? {}).map(([k, v]) => [k, hmacOf(hmacKey, v)])),
            retain_until: retainUntil,
          };
          const text = entryText(entry);
          rows.push({
            seq,
            service: p.service,
            event_id: e.id,
            tenant: e.tenant,
            actor: e.actor,
            action: e.action,
            result: e.result,
            time: entry.time,
            entry: text,
            leaf_hash: leafHash(enc.encode(text)),
          });
          known.set(e.id, seq);
          seqs.push(seq);
        }
        results.push({ seqs, duplicates });
      }
      await q.insertEvents(rows);
      return { rows, results };
    });
    // Another instance may have appended before us: the database is the order of record.
    if (rows.length && rows[0]!.seq === this.tree.size) for (const r of rows) this.tree.push(r.leaf_hash);
    else await this.catchUp();
    return results;
  }

  /** The current number of entries (caught up from the database). */
  async size(): Promise<number> {
    await this.catchUp();
    return this.tree.size;
  }

  /**
   * Signs and stores a checkpoint of the whole log when it has grown since the latest one;
   * returns the latest checkpoint either way (undefined while the log is empty).
   */
  checkpoint(): Promise<CheckpointRow | undefined> {
    // One at a time per instance: the periodic timer and on-demand calls share the work.
    this.checkpointing ??= (async () => {
      try {
        const { signer } = await this.keys();
        await this.catchUp();
        const latest = await this.store.latestCheckpoint();
        const size = this.tree.size;
        if (size === 0 || (latest && Number(latest.tree_size) >= size)) return latest;
        const root = this.tree.root(size);
        const note = signer.sign(checkpointText({ origin: this.settings.origin, size, root }));
        await this.store.insertCheckpoint({ tree_size: size, root_hash: root, note, created: this.now().toISOString() });
        return (await this.store.checkpoint(size))!;
      } finally {
        this.checkpointing = undefined;
      }
    })();
    return this.checkpointing;
  }

  /**
   * The log checks itself: the latest signed checkpoint against the rows stored now, with the
   * same verifier as `cryptoutil audit verify` (src/audit/verify.ts) over the log's own full
   * export. A row changed, deleted or reordered behind the log's back (the triggers dropped)
   * fails, naming the first bad entry. Undefined while there is no checkpoint yet.
   */
  async selfCheck(): Promise<VerifyResult | undefined> {
    const latest = await this.store.latestCheckpoint();
    if (!latest) return undefined;
    const size = Number(latest.tree_size);
    let text = "";
    try {
      for await (const chunk of this.export(size, { tenant: SUITE_TENANT, all: true })) text += chunk;
      return verifyExport(text, latest.note, await this.verifierKey());
    } catch (e) {
      if (e instanceof NoteError) return { ok: false, treeSize: size, entriesChecked: 0, reason: `the latest checkpoint does not verify with the log's key: ${e.message}` };
      if (e instanceof AppError && (e.code === "validation_failed" || e.code === "stored_material_corrupt")) return { ok: false, treeSize: size, entriesChecked: 0, reason: e.message };
      throw e;
    }
  }

  async latestCheckpoint(): Promise<CheckpointRow> {
    const c = await this.store.latestCheckpoint();
    if (!c) throw notFound("checkpoint");
    return c;
  }

  /** The stored checkpoint of `size`. */
  async checkpointOf(size: number): Promise<CheckpointRow> {
    const c = await this.store.checkpoint(size);
    if (!c) throw new AppError("not_found", `no checkpoint of size ${size}`, { details: { tree_size: size } });
    return c;
  }

  private visible(row: EventRow | undefined, reader: Reader): EventRow {
    if (!row || (!reader.all && row.tenant !== reader.tenant)) throw notFound("audit entry");
    return row;
  }

  async entry(seq: number, reader: Reader): Promise<EventRow> {
    return this.visible(await this.store.event(seq), reader);
  }

  /** The inclusion proof of entry `seq` in the checkpoint of `treeSize` (default: the latest). */
  async inclusion(seq: number, treeSize: number | undefined, reader: Reader) {
    const row = await this.entry(seq, reader);
    const cp = treeSize === undefined ? await this.latestCheckpoint() : await this.checkpointOf(treeSize);
    const size = Number(cp.tree_size);
    if (seq >= size) throw new AppError("conflict", `entry ${seq} is not in the checkpoint of size ${size} yet; ask again after the next checkpoint`, { details: { tree_size: size } });
    await this.catchUp();
    return { seq, tree_size: size, leaf_hash: b64(bytes(row.leaf_hash)), hashes: this.tree.inclusionProof(seq, size).map(b64), checkpoint: cp.note };
  }

  /**
   * The consistency proof from the tree of `first` leaves to a checkpoint (default the latest),
   * with the signed checkpoint of `first` when there is one (a verifier holding an older
   * checkpoint of its own needs only the proof).
   */
  async consistency(first: number, second: number | undefined) {
    const a = await this.store.checkpoint(first);
    const b = second === undefined ? await this.latestCheckpoint() : await this.checkpointOf(second);
    const bs = Number(b.tree_size);
    if (first > bs) throw new AppError("validation_failed", "first must not be larger than second", { details: { first, second: bs } });
    await this.catchUp();
    return { first, second: bs, hashes: this.tree.consistencyProof(first, bs).map(b64), first_checkpoint: a?.note ?? null, second_checkpoint: b.note };
  }

  /** The reader's tenant filter: their own tenant, or any (or one named) for the suite administrator. */
  private tenantFilter(reader: Reader, asked?: string): string | undefined {
    if (reader.all) return asked;
    if (asked !== undefined && asked !== reader.tenant) throw new AppError("forbidden", "only the suite administrator reads other tenants");
    return reader.tenant;
  }

  async query(q: EventsQuery, reader: Reader) {
    const limit = q.limit ?? 100;
    const order = q.order ?? (q.after !== undefined ? "asc" : "desc");
    const cursor = q.page_token === undefined ? undefined : decodePageToken(q.page_token);
    const filter = {
      tenant: this.tenantFilter(reader, q.tenant),
      service: q.service,
      actor: q.actor,
      action: q.action,
      result: q.result,
      from: q.from && new Date(q.from).toISOString(),
      to: q.to && new Date(q.to).toISOString(),
      after: order === "asc" ? Math.max(q.after ?? -1, cursor ?? -1) : q.after,
      before: order === "desc" ? cursor : undefined,
    };
    const rows = await this.store.events(filter, order, limit + 1);
    const items = rows.slice(0, limit);
    return { items: items.map(viewOf), next_page_token: rows.length > limit ? encodePageToken(Number(items[items.length - 1]!.seq)) : null };
  }

  /**
   * The export of the log up to `treeSize` (default: the latest checkpoint) as JSON lines:
   * one line per entry, `{"seq", "entry" (the hashed JSON text), "leaf_hash"}`, or for another
   * tenant's entry only `{"seq", "leaf_hash"}`; then one `{"checkpoint"}` line per stored
   * checkpoint up to that size. Pages through the database, so memory stays bounded.
   */
  async *export(treeSize: number | undefined, reader: Reader): AsyncGenerator<string> {
    const size = treeSize ?? Number((await this.store.latestCheckpoint())?.tree_size ?? 0);
    if (size > (await this.size())) throw new AppError("validation_failed", `the log has fewer than ${size} entries`);
    const PAGE = 2000;
    for (let from = 0; from < size; from += PAGE) {
      const rows = await this.store.range(from, Math.min(size, from + PAGE));
      let lines = "";
      for (const r of rows) {
        const leaf = b64(bytes(r.leaf_hash));
        const mine = reader.all || r.tenant === reader.tenant;
        lines += JSON.stringify(mine ? { seq: Number(r.seq), entry: r.entry, leaf_hash: leaf } : { seq: Number(r.seq), leaf_hash: leaf }) + "\n";
      }
      yield lines;
    }
    for (const c of await this.store.checkpointsUpTo(size)) yield JSON.stringify({ checkpoint: c.note }) + "\n";
  }
}

/** An entry as the API shows it: the stored JSON and its leaf hash. */
export function viewOf(r: EventRow): AuditEntry & { leaf_hash: string } {
  return { ...(JSON.parse(r.entry) as AuditEntry), leaf_hash: b64(bytes(r.leaf_hash)) };
}
