/** Request and response schemas of the audit service, shared by its routes, its OpenAPI document, the senders in src/audit and the CLI. */
import * as v from "valibot";

/** Most events in one ingest request. */
export const MAX_EVENTS_PER_BATCH = 500;
/** Most entries one query page holds. */
export const MAX_PAGE = 1000;

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
const WORD = /^[A-Za-z0-9._:\/-]{1,128}$/;
const text = (max: number) => v.pipe(v.string(), v.maxLength(max), v.check((s) => !/[\u0000-\u001f\u007f]/.test(s), "no control characters"));
const queryInt = (min: number, max: number) => v.pipe(v.string(), v.regex(/^\d{1,16}$/, "a whole number"), v.transform(Number), v.minValue(min), v.maxValue(max));
const isoTime = v.pipe(v.string(), v.maxLength(40), v.isoTimestamp("an ISO 8601 timestamp with a time zone"));

export const Tenant = v.pipe(v.string(), v.regex(TENANT, "a tenant is 1 to 64 letters, digits, '.', '_' or '-'"));

/** Non-secret details of an event: a flat object of short values. */
export const EventDetails = v.pipe(
  v.record(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "a detail name is a word")), v.union([text(512), v.number(), v.boolean()])),
  v.check((o) => Object.keys(o).length <= 32, "at most 32 details"),
);

/**
 * Values the log keeps only as keyed HMACs (a user name, a client address, a token id): the
 * audit service replaces each with `hmac-sha256:<base64url>` before anything is stored.
 */
export const SensitiveFields = v.pipe(
  v.record(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "a field name is a word")), v.pipe(v.string(), v.maxLength(4096))),
  v.check((o) => Object.keys(o).length <= 16, "at most 16 sensitive fields"),
);

/** One security event as a service sends it. */
export const AuditEventInput = v.strictObject({
  /** The sender's id of the event: a resent event with the same id is stored once. */
  id: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._:-]{8,64}$/, "an event id is 8 to 64 letters, digits, '.', '_', ':' or '-'")),
  /** When it happened, by the sender's clock. */
  time: isoTime,
  tenant: Tenant,
  /** Who: a client id, a user, a service. */
  actor: v.pipe(text(256), v.minLength(1)),
  /** What: a word such as `key.create`, `certificate.issue`, `token.issue`. */
  action: v.pipe(v.string(), v.regex(/^[a-z0-9_.:-]{1,64}$/, "an action is 1 to 64 lowercase letters, digits, '.', '_', ':' or '-'")),
  /** On what: a key id, a certificate serial, a client id ("" when none). */
  resource: text(512),
  /** `ok`, or the error code the operation ended with. */
  result: v.pipe(v.string(), v.regex(/^[a-z0-9_.-]{1,64}$/, "a result is `ok` or an error code")),
  request_id: v.optional(text(128)),
  details: v.optional(EventDetails),
  sensitive: v.optional(SensitiveFields),
});
export type AuditEventInput = v.InferOutput<typeof AuditEventInput>;

export const IngestBody = v.strictObject({ events: v.pipe(v.array(AuditEventInput), v.minLength(1), v.maxLength(MAX_EVENTS_PER_BATCH)) });
export const IngestAnswer = v.object({
  /** The log position of each event sent, in order (a resent one keeps its first position). */
  seqs: v.array(v.number()),
  /** How many of them were already in the log. */
  duplicates: v.number(),
});

/** One entry of the log as stored and hashed: its leaf is SHA-256(0x00 || the entry's JSON text). */
export const AuditEntry = v.object({
  seq: v.number(),
  id: v.string(),
  time: v.string(),
  received: v.string(),
  service: v.string(),
  tenant: v.string(),
  actor: v.string(),
  action: v.string(),
  resource: v.string(),
  result: v.string(),
  request_id: v.nullable(v.string()),
  details: v.record(v.string(), v.union([v.string(), v.number(), v.boolean()])),
  hmac: v.record(v.string(), v.string()),
  retain_until: v.string(),
});
export type AuditEntry = v.InferOutput<typeof AuditEntry>;

/** An entry with its leaf hash (base64). */
export const AuditEntryView = v.object({ ...AuditEntry.entries, leaf_hash: v.string() });

export const EventsQuery = v.strictObject({
  /** Another tenant than the caller's: only for the suite administrator (tenant root, audit:admin). */
  tenant: v.optional(Tenant),
  service: v.optional(v.pipe(v.string(), v.regex(WORD))),
  actor: v.optional(v.pipe(v.string(), v.maxLength(256))),
  action: v.optional(v.pipe(v.string(), v.regex(WORD))),
  result: v.optional(v.pipe(v.string(), v.regex(WORD))),
  /** Events that happened at or after this time (ISO 8601). */
  from: v.optional(isoTime),
  /** Events that happened before this time. */
  to: v.optional(isoTime),
  /** Only entries after this position (for `tail`), oldest first. */
  after: v.optional(queryInt(0, Number.MAX_SAFE_INTEGER)),
  order: v.optional(v.picklist(["asc", "desc"])),
  limit: v.optional(queryInt(1, MAX_PAGE)),
  page_token: v.optional(v.pipe(v.string(), v.maxLength(200))),
});
export type EventsQuery = v.InferOutput<typeof EventsQuery>;

export const EventPage = v.object({ items: v.array(AuditEntryView), next_page_token: v.nullable(v.string()) });

export const SeqParams = v.object({ seq: v.pipe(v.string(), v.regex(/^\d{1,16}$/, "a log position"), v.transform(Number), v.maxValue(Number.MAX_SAFE_INTEGER)) });
export const TreeSizeQuery = v.strictObject({ tree_size: v.optional(queryInt(1, Number.MAX_SAFE_INTEGER)) });
export const ConsistencyQuery = v.strictObject({ first: queryInt(1, Number.MAX_SAFE_INTEGER), second: v.optional(queryInt(1, Number.MAX_SAFE_INTEGER)) });

/** A checkpoint: the signed note (C2SP tlog-checkpoint) and what it says. */
export const CheckpointView = v.object({ origin: v.string(), tree_size: v.number(), root_hash: v.string(), created: v.string(), note: v.string() });

export const InclusionProof = v.object({
  seq: v.number(),
  tree_size: v.number(),
  leaf_hash: v.string(),
  /** The RFC 9162 inclusion path, base64, leaf upwards. */
  hashes: v.array(v.string()),
  /** The signed checkpoint of `tree_size`. */
  checkpoint: v.string(),
});

export const ConsistencyProof = v.object({
  first: v.number(),
  second: v.number(),
  /** The RFC 9162 consistency proof, base64. */
  hashes: v.array(v.string()),
  /** The signed checkpoint of `first`, when the log made one of that size. */
  first_checkpoint: v.nullable(v.string()),
  second_checkpoint: v.string(),
});

export const LogInfo = v.object({ origin: v.string(), verifier_key: v.string(), tree_size: v.number(), checkpoint_size: v.number(), retention_days: v.number() });

export const HashBody = v.strictObject({ value: v.pipe(v.string(), v.maxLength(4096)) });
export const HashAnswer = v.object({ hmac: v.string() });

export const ExportQuery = v.strictObject({ tree_size: v.optional(queryInt(0, Number.MAX_SAFE_INTEGER)) });
