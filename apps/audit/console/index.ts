/**
 * The audit service's console (read-only: the log has no change to make): the tenant's events
 * with filters; one entry with its fields, its sensitive fields as the HMACs the log keeps, and
 * its inclusion in the latest signed checkpoint, checked here the way an outside verifier would
 * (the checkpoint's Ed25519 signature under the log's verifier key, then the RFC 9162 inclusion
 * path up to the checkpoint's root); and the log itself: origin, size, verifier key, latest
 * checkpoint note. Every page needs `audit:read`, as the API's reads do; a suite administrator
 * (tenant root with audit:admin) may filter by another tenant.
 */
import type { ServiceContext } from "../../../src/service/context.ts";
import { AppError } from "../../../src/service/errors.ts";
import { checked, consolePages, type ConsolePage } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, section } from "../../../src/ui/layout.ts";
import { filterForm } from "../../../src/ui/form.ts";
import { table } from "../../../src/ui/table.ts";
import { openCheckpoint, parseVerifierKey } from "../../../src/audit/note.ts";
import { verifyInclusion } from "../../../src/audit/proofs.ts";
import { leafHash } from "../../../src/audit/merkle.ts";
import { EventsQuery, SeqParams, type AuditEntry } from "../../../schemas/audit.ts";
import type { Principal } from "../../../src/auth/bearer.ts";
import { SUITE_TENANT, type AuditLog, type Reader } from "../domain.ts";

const READ = "audit:read";
const readerOf = (p: Principal): Reader => ({ tenant: p.tenant, all: p.tenant === SUITE_TENANT && p.scopes.has("audit:admin") });
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const when = (iso: string) => iso.replace("T", " ").slice(0, 19);
/** The most events one page shows (the API pages further). */
const SHOWN = 500;

function eventsPage(log: AuditLog): ConsolePage {
  return {
    path: "/",
    title: "Events",
    scopes: [READ],
    async render({ viewer, query, path }) {
      const reader = readerOf(viewer.principal);
      const raw: Record<string, string> = {};
      for (const k of ["service", "actor", "action", "result", ...(reader.all ? ["tenant"] : [])]) {
        const val = query.get(k)?.trim();
        if (val) raw[k] = val;
      }
      for (const [k, end] of [["from", "T00:00:00Z"], ["to", "T23:59:59Z"]] as const) {
        const val = query.get(k)?.trim();
        if (val) raw[k] = /^\d{4}-\d{2}-\d{2}$/.test(val) ? val + end : val;
      }
      const q = checked(EventsQuery, raw);
      const page = await log.query({ ...q, limit: SHOWN }, reader);
      const rows = page.items;
      return {
        body: html`
${filterForm({ path, label: "Filter the events", query, fields: [
  ...(reader.all ? [{ name: "tenant", label: "Tenant", maxlength: 64 }] : []),
  { name: "service", label: "Service", maxlength: 64, placeholder: "sm-kms, pki-ca, ..." },
  { name: "action", label: "Action", maxlength: 64, placeholder: "key.encrypt, user.sign_in, ..." },
  { name: "actor", label: "Actor", maxlength: 256 },
  { name: "result", label: "Result", type: "select", options: [{ value: "", label: "any" }, { value: "ok", label: "ok" }, { value: "error", label: "error" }, { value: "denied", label: "denied" }] },
  { name: "from", label: "From", type: "date" },
  { name: "to", label: "To", type: "date" },
] })}
<div id="events">${table<(typeof rows)[number]>({
  caption: page.next_page_token ? `The newest ${SHOWN} matching events` : "Matching events",
  path,
  query,
  rows,
  pageSize: 50,
  sort: { key: "seq", dir: "desc" },
  empty: "No events match.",
  columns: [
    { key: "seq", label: "#", cell: (r) => html`<a href="/browser/events/${r.seq}">${r.seq}</a>`, sort: (r) => r.seq },
    { key: "time", label: "When", cell: (r) => when(r.time), sort: (r) => r.time },
    { key: "service", label: "Service", cell: (r) => r.service, sort: (r) => r.service },
    ...(reader.all ? [{ key: "tenant", label: "Tenant", cell: (r: AuditEntry) => r.tenant, sort: (r: AuditEntry) => r.tenant }] : []),
    { key: "actor", label: "Actor", cell: (r) => r.actor, sort: (r) => r.actor },
    { key: "action", label: "Action", cell: (r) => r.action, sort: (r) => r.action },
    { key: "resource", label: "Resource", cell: (r) => r.resource },
    { key: "result", label: "Result", cell: (r) => html`<span class="${r.result === "ok" ? "status-good" : "status-rejected"}">${r.result}</span>`, sort: (r) => r.result },
  ],
})}</div>`,
      };
    },
  };
}

/**
 * Whether entry `seq` (its stored text `entryText`) is in the latest checkpoint, checked as a
 * verifier outside the service would: the leaf hashed again from the text shown, the inclusion
 * path from that leaf, the root against the checkpoint, the checkpoint's signature.
 */
async function inclusionOf(log: AuditLog, seq: number, entryText: string, reader: Reader) {
  try {
    const proof = await log.inclusion(seq, undefined, reader);
    const cp = openCheckpoint(proof.checkpoint, parseVerifierKey(await log.verifierKey()));
    const leaf = leafHash(new TextEncoder().encode(entryText));
    const ok = cp.size === proof.tree_size && verifyInclusion(seq, proof.tree_size, leaf, proof.hashes.map(unb64), cp.root);
    return { state: ok ? ("verified" as const) : ("failed" as const), proof, note: proof.checkpoint };
  } catch (e) {
    if (e instanceof AppError && e.code === "conflict") return { state: "pending" as const };
    if (e instanceof AppError) throw e;
    // A checkpoint whose signature or shape does not check: show it as failed, never as fine.
    return { state: "failed" as const, error: e instanceof Error ? e.message : String(e) };
  }
}

function entryPage(log: AuditLog): ConsolePage {
  return {
    path: "/events/:seq",
    title: "Event",
    scopes: [READ],
    async render({ viewer, params }) {
      const { seq } = checked(SeqParams, params);
      const reader = readerOf(viewer.principal);
      const text = (await log.entry(seq, reader)).entry;
      const e = JSON.parse(text) as AuditEntry;
      const inc = await inclusionOf(log, seq, text, reader);
      const status =
        inc.state === "verified"
          ? html`<span class="status-good">included</span> in the signed checkpoint of ${inc.proof.tree_size} entries: the entry above hashes to a leaf whose inclusion path (${inc.proof.hashes.length} hashes) leads to the checkpoint's root, and the checkpoint's signature verifies under the log's key`
          : inc.state === "pending"
            ? html`<span class="status-pending">not yet in a checkpoint</span> (the next one covers it)`
            : html`<span class="status-rejected">does not verify</span>${"error" in inc && inc.error ? html`: ${inc.error}` : ""}`;
      return {
        title: `Event ${seq}`,
        body: html`
${section("entry-title", "Entry", details([
  ["Position", String(e.seq)],
  ["Event id", html`<code>${e.id}</code>`],
  ["Happened", when(e.time)],
  ["Received", when(e.received)],
  ["Service", e.service],
  ["Tenant", e.tenant],
  ["Actor", e.actor],
  ["Action", e.action],
  ["Resource", e.resource],
  ["Result", e.result],
  ["Request id", e.request_id ?? "—"],
  ["Details", Object.keys(e.details).length ? html`<code>${JSON.stringify(e.details)}</code>` : "—"],
  ["Sensitive fields (keyed HMACs)", Object.keys(e.hmac).length ? html`<code>${JSON.stringify(e.hmac)}</code>` : "—"],
  ["Kept until", when(e.retain_until)],
]))}
${section("proof-title", "In the log", html`<p id="inclusion">${status}</p>${"note" in inc && inc.note ? html`<pre class="checkpoint">${inc.note}</pre>` : ""}`)}
<p><a href="/browser/">All events</a></p>`,
      };
    },
  };
}

function logPage(log: AuditLog): ConsolePage {
  return {
    path: "/log",
    title: "The log",
    scopes: [READ],
    async render() {
      const latest = await log.latestCheckpoint().catch(() => undefined);
      return {
        body: html`
${section("log-title", "Log", details([
  ["Origin", log.settings.origin],
  ["Entries", String(await log.size())],
  ["In the latest checkpoint", latest ? String(Number(latest.tree_size)) : "none yet"],
  ["Latest checkpoint signed", latest ? when(latest.created) : "—"],
  ["Retention", `${log.settings.retentionDays} days; no entry can be changed or deleted`],
  ["Verifier key (C2SP vkey)", html`<code>${await log.verifierKey()}</code>`],
]))}
${latest ? section("checkpoint-title", "Latest checkpoint", html`<pre class="checkpoint">${latest.note}</pre><p>Check an export offline with <code>npx cryptoutil audit verify</code> against this checkpoint and the verifier key.</p>`) : ""}`,
      };
    },
  };
}

export function auditPages(ctx: ServiceContext, log: AuditLog) {
  return consolePages(ctx, {
    title: "Audit",
    sections: [
      { label: "Events", href: "/browser/" },
      { label: "The log", href: "/browser/log" },
    ],
    pages: [eventsPage(log), entryPage(log), logPage(log)],
  });
}
