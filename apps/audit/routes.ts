/**
 * The audit service's HTTP layer under /service/api/v1 and /browser/api/v1: paths, schemas,
 * scopes, status codes. Rules live in domain.ts.
 *
 * Scopes: `audit:ingest` (the suite's services, by client certificate on the mTLS port: events
 * of any tenant), `audit:write` (a client appending events of its own tenant), `audit:read`
 * (entries, proofs, checkpoints and export of the caller's tenant), `audit:admin` (checkpoint
 * on demand, the HMAC of a value; in tenant root, every tenant's entries).
 */
import { Elysia } from "elysia";
import { appBase, principalOf, requestInfo } from "../../src/service/http.ts";
import { AppError } from "../../src/service/errors.ts";
import type { Principal } from "../../src/auth/bearer.ts";
import * as S from "../../schemas/audit.ts";
import { SUITE_TENANT, viewOf, type AuditLog, type Reader } from "./domain.ts";
import type { CheckpointRow } from "./store.ts";

const readerOf = (p: Principal): Reader => ({ tenant: p.tenant, all: p.tenant === SUITE_TENANT && p.scopes.has("audit:admin") });
const b64 = (b: Uint8Array | ArrayBuffer) => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString("base64");

function checkpointView(log: AuditLog, c: CheckpointRow) {
  return { origin: log.settings.origin, tree_size: Number(c.tree_size), root_hash: b64(c.root_hash), created: c.created, note: c.note };
}

/** The sender's name in the log: a suite service by its name; another client under its tenant. */
function senderOf(p: Principal, events: S.AuditEventInput[]): string {
  if (p.scopes.has("audit:ingest")) return p.subject;
  if (!p.scopes.has("audit:write")) {
    throw new AppError("insufficient_scope", "missing scope: audit:write", { headers: { "WWW-Authenticate": 'Bearer error="insufficient_scope", scope="audit:write"' } });
  }
  if (events.some((e) => e.tenant !== p.tenant)) throw new AppError("forbidden", "audit:write appends events of the caller's own tenant only");
  return `${p.tenant}/${p.clientId ?? p.subject}`;
}

export function auditRoutes(log: AuditLog) {
  return new Elysia({ tags: ["audit"] } as never)
    .use(appBase)
    .post(
      "/events",
      async ({ request, body }) => {
        const p = principalOf(request);
        const service = senderOf(p, body.events);
        return log.append(service, body.events);
      },
      {
        body: S.IngestBody,
        response: S.IngestAnswer,
        detail: { summary: "Append events (up to 500). A resent event (same sender, same id) keeps its first position. Scope audit:ingest (any tenant) or audit:write (own tenant)" },
      },
    )
    .get("/events", ({ request, query }) => log.query(query, readerOf(principalOf(request))), {
      query: S.EventsQuery,
      response: S.EventPage,
      scopes: ["audit:read"],
      detail: { summary: "Entries by tenant, service, actor, action, result and time; newest first, or oldest first after ?after=. Scope audit:read" },
    })
    .get("/events/:seq", async ({ request, params }) => viewOf(await log.entry(params.seq, readerOf(principalOf(request)))), {
      params: S.SeqParams,
      response: S.AuditEntryView,
      scopes: ["audit:read"],
      detail: { summary: "One entry by its position. Scope audit:read" },
    })
    .get("/events/:seq/proof", ({ request, params, query }) => log.inclusion(params.seq, query.tree_size, readerOf(principalOf(request))), {
      params: S.SeqParams,
      query: S.TreeSizeQuery,
      response: S.InclusionProof,
      scopes: ["audit:read"],
      detail: { summary: "The RFC 9162 inclusion proof of an entry in a checkpoint (default the latest); 409 until a checkpoint covers it. Scope audit:read" },
    })
    .get(
      "/log",
      async () => {
        const latest = await log.latestCheckpoint().catch(() => undefined);
        return { origin: log.settings.origin, verifier_key: await log.verifierKey(), tree_size: await log.size(), checkpoint_size: Number(latest?.tree_size ?? 0), retention_days: log.settings.retentionDays };
      },
      { response: S.LogInfo, scopes: ["audit:read"], detail: { summary: "The log's origin, its checkpoints' verifier key (C2SP vkey), its size and retention. Scope audit:read" } },
    )
    .get("/checkpoints/latest", async () => checkpointView(log, await log.latestCheckpoint()), {
      response: S.CheckpointView,
      scopes: ["audit:read"],
      detail: { summary: "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note). Scope audit:read" },
    })
    .post(
      "/checkpoints",
      async ({ set }) => {
        const c = await log.checkpoint();
        if (!c) throw new AppError("conflict", "the log is empty: nothing to checkpoint");
        set.status = 201;
        return checkpointView(log, c);
      },
      { response: { 201: S.CheckpointView }, scopes: ["audit:admin"], detail: { summary: "Checkpoint now (the latest one when nothing was appended since). Scope audit:admin" } },
    )
    .get("/proofs/consistency", ({ query }) => log.consistency(query.first, query.second), {
      query: S.ConsistencyQuery,
      response: S.ConsistencyProof,
      scopes: ["audit:read"],
      detail: { summary: "The RFC 9162 consistency proof between two checkpoints' sizes (second: default the latest). Scope audit:read" },
    })
    .get(
      "/export",
      async ({ request, query }) => {
        const reader = readerOf(principalOf(request));
        const lines = log.export(query.tree_size, reader);
        // The first page runs before the answer starts, so a bad size is a 400, not a cut stream.
        const first = await lines.next();
        const stream = new ReadableStream<Uint8Array>({
          start(c) {
            if (!first.done) c.enqueue(new TextEncoder().encode(first.value));
          },
          async pull(c) {
            const next = await lines.next();
            if (next.done) c.close();
            else c.enqueue(new TextEncoder().encode(next.value));
          },
        });
        return new Response(stream, { headers: { "content-type": "application/x-ndjson", "x-request-id": requestInfo(request).id } });
      },
      {
        query: S.ExportQuery,
        scopes: ["audit:read"],
        detail: {
          summary:
            "The log up to a checkpoint's size (default the latest) as JSON lines, for `cryptoutil audit verify`: each entry's hashed text and leaf hash (another tenant's: its leaf hash only), then the checkpoints. Scope audit:read",
        },
      },
    )
    .post("/hash", async ({ body }) => ({ hmac: await log.hash(body.value) }), {
      body: S.HashBody,
      response: S.HashAnswer,
      scopes: ["audit:admin"],
      detail: { summary: "The keyed HMAC of a value, as the log stores sensitive fields, to find entries about it. Scope audit:admin" },
    });
}
