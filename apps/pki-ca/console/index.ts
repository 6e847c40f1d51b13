/**
 * pki-ca's console: the certificate dashboard (search by serial, subject, SAN, status,
 * profile and expiry; issued per day and expiring in the next 90 days as SVG charts), the
 * CSR approval queue with the policy's findings, certificate detail with PEM/DER/chain
 * downloads and revocation, the CA hierarchy with CRL and OCSP status, and the profiles in
 * force. Reads go to PkiCa after the API's scopes; approve, reject and revoke go through
 * /browser/api/v1.
 */
import * as v from "valibot";
import type { ServiceContext } from "../../../src/service/context.ts";
import { checked, consolePages, type ConsolePage } from "../../../src/ui/console.ts";
import { html } from "../../../src/ui/html.ts";
import { details, readOnlyNote, section } from "../../../src/ui/layout.ts";
import { apiForm, filterForm } from "../../../src/ui/form.ts";
import { table } from "../../../src/ui/table.ts";
import { decodePemBlocks } from "../../../src/pki/codec.ts";
import { AppError } from "../../../src/service/errors.ts";
import { REVOCATION_REASON_NAMES, SearchCertificatesQuery, SerialParam } from "../../../schemas/pki-ca.ts";
import type { CertificateView, PkiCa, RequestView } from "../domain.ts";
import { issuingCaViews, profileViews } from "../catalog.ts";
import { barChart, perDay } from "./chart.ts";

const READ = "pki:read";
const APPROVE = "pki:approve";
const REVOKE = "pki:revoke";
const API = "/browser/api/v1";
const day = (iso: string | null) => (iso ? iso.slice(0, 10) : "—");
const status = (s: string) => html`<span class="status-${s}">${s}</span>`;
const when = (t: number) => new Date(t).toISOString().slice(0, 10);
/** The front ends a request may come through, as the dashboard names them. */
const ORIGINS = ["api", "acme", "est", "scep", "cmp", "cmc"] as const;
const ORIGIN_NAMES: Record<string, string> = { api: "REST API", acme: "ACME", est: "EST", scep: "SCEP", cmp: "CMP", cmc: "CMC" };
const originName = (o: string) => ORIGIN_NAMES[o] ?? o;

function dashboard(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/",
    title: "Certificates",
    scopes: [READ],
    async render({ viewer, query, path }) {
      const c = await ca();
      const profiles = Object.keys(c.config.profiles).sort();
      const raw: Record<string, string> = {};
      for (const k of ["serial", "subject", "san", "status"]) {
        const val = query.get(k)?.trim();
        if (val) raw[k] = val;
      }
      const expires = query.get("expires_before")?.trim();
      if (expires) raw.expires_before = /^\d{4}-\d{2}-\d{2}$/.test(expires) ? `${expires}T23:59:59Z` : expires;
      const filter = v.safeParse(SearchCertificatesQuery, raw);
      const profile = profiles.find((p) => p === query.get("profile"));
      const origin = ORIGINS.find((o) => o === query.get("origin"));
      const found = filter.success ? await c.search(viewer.tenant, { ...filter.output, limit: 500 }) : [];
      const rows = found.filter((x) => (!profile || x.profile === profile) && (!origin || x.origin === origin));
      // The charts cover the tenant's certificates, not the filter's.
      const all = Object.keys(raw).length || profile || origin ? await c.search(viewer.tenant, { limit: 500 }) : found;
      const now = Date.now();
      const issued = perDay(all.map((x) => Date.parse(x.not_before)), now, 30, "past");
      const expiring = perDay(all.filter((x) => x.status === "valid").map((x) => Date.parse(x.not_after)), now, 90, "future");
      const pending = viewer.can(APPROVE) ? (await c.listRequests(viewer.tenant, "pending", 500)).length : undefined;
      return {
        body: html`
${pending !== undefined ? html`<p class="note"><a href="/browser/requests">${pending} request${pending === 1 ? "" : "s"} awaiting approval</a></p>` : ""}
<div class="grid">
${barChart({ id: "issued-chart", title: "Issued per day, last 30 days", counts: issued, kind: "issued", first: when(now - 29 * 86_400_000), last: "today" })}
${barChart({ id: "expiring-chart", title: "Expiring per day, next 90 days", counts: expiring, kind: "expiring", first: "today", last: when(now + 89 * 86_400_000) })}
</div>
${filterForm({ path, label: "Search certificates", query, fields: [
  { name: "serial", label: "Serial (hex)", maxlength: 40 },
  { name: "subject", label: "Subject contains", maxlength: 200 },
  { name: "san", label: "SAN contains", maxlength: 200 },
  { name: "status", label: "Status", type: "select", options: [{ value: "", label: "any" }, "valid", "revoked"] },
  { name: "profile", label: "Profile", type: "select", options: [{ value: "", label: "any" }, ...profiles] },
  { name: "origin", label: "Came through", type: "select", options: [{ value: "", label: "any" }, ...ORIGINS] },
  { name: "expires_before", label: "Expires before", type: "date" },
] })}
${filter.success ? "" : html`<p class="flash error" role="alert">The search is not valid: ${filter.issues.map((i) => `${i.path?.map((p) => String(p.key)).join(".") ?? ""}: ${i.message.replace(/ but received[\s\S]*$/, "")}`).join("; ")}</p>`}
<div id="certificates">${table<CertificateView>({
          caption: "Certificates",
          path,
          query,
          rows,
          sort: { key: "expires", dir: "asc" },
          empty: "No certificates match.",
          columns: [
            { key: "serial", label: "Serial", cell: (x) => html`<a href="/browser/certificates/${x.serial}"><code>${x.serial}</code></a>`, sort: (x) => x.serial },
            { key: "subject", label: "Subject", cell: (x) => x.subject, sort: (x) => x.subject },
            { key: "sans", label: "SANs", cell: (x) => x.sans.join(", ") },
            { key: "profile", label: "Profile", cell: (x) => x.profile, sort: (x) => x.profile },
            { key: "origin", label: "Came through", cell: (x) => originName(x.origin), sort: (x) => x.origin },
            { key: "status", label: "Status", cell: (x) => status(x.status), sort: (x) => x.status },
            { key: "expires", label: "Expires", cell: (x) => day(x.not_after), sort: (x) => x.not_after },
          ],
        })}</div>`,
      };
    },
  };
}

const DOWNLOADS: Record<string, { type: string; body: (x: CertificateView) => Uint8Array | string }> = {
  "certificate.pem": { type: "application/x-pem-file", body: (x) => x.certificate_pem },
  "certificate.der": { type: "application/pkix-cert", body: (x) => decodePemBlocks(x.certificate_pem)[0]!.der },
  "chain.pem": { type: "application/pem-certificate-chain", body: (x) => x.certificate_pem + x.chain_pem },
};

function certificatePage(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/certificates/:serial",
    title: "Certificate",
    scopes: [READ],
    async render({ viewer, params }) {
      const serial = checked(SerialParam, { serial: params.serial }).serial;
      const x = await (await ca()).getCertificate(viewer.tenant, serial);
      const revoke =
        x.status === "revoked"
          ? ""
          : viewer.can(REVOKE)
            ? section("revoke-title", "Revoke", apiForm({
                id: "revoke",
                action: `${API}/certificates/${x.serial}/revoke`,
                method: "POST",
                submit: "Revoke certificate",
                confirm: `Revoke certificate ${x.serial}? Relying parties will refuse it once the CRL and OCSP say so.`,
                flash: "Revoked ({revocation_reason}).",
                fields: [{ name: "reason", label: "Reason", type: "select", options: REVOCATION_REASON_NAMES, value: "unspecified" }],
              }))
            : readOnlyNote(REVOKE);
      return {
        title: `Certificate ${x.serial}`,
        body: html`
${details([
  ["Status", status(x.status)],
  ["Subject", x.subject],
  ["SANs", x.sans.join(", ") || "none"],
  ["Profile", x.profile],
  ["Came through", originName(x.origin)],
  ["Issuing CA", x.issuing_ca],
  ["Key type", x.key_type],
  ["Valid", `${x.not_before} to ${x.not_after}`],
  ["Revoked", x.revoked_at ? `${x.revoked_at} (${x.revocation_reason})` : null],
])}
${section("download-title", "Download", html`<ul class="toolbar">${Object.keys(DOWNLOADS).map((f) => html`<li><a href="/browser/certificates/${x.serial}/${f}" download>${f}</a></li>`)}</ul>`)}
${revoke}
${section("pem-title", "PEM", html`<pre>${x.certificate_pem}</pre>`)}`,
      };
    },
  };
}

function downloadPage(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/certificates/:serial/:file",
    title: "Download",
    scopes: [READ],
    async render({ viewer, params }) {
      const d = DOWNLOADS[params.file ?? ""];
      if (!d) throw new AppError("not_found", "no such download");
      const x = await (await ca()).getCertificate(viewer.tenant, checked(SerialParam, { serial: params.serial }).serial);
      const body = d.body(x);
      return new Response(typeof body === "string" ? body : (body.slice().buffer as ArrayBuffer), {
        headers: { "content-type": d.type, "content-disposition": `attachment; filename="${x.serial}-${params.file}"`, "cache-control": "no-store" },
      });
    },
  };
}

function requestsPage(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/requests",
    title: "Approval queue",
    scopes: [APPROVE],
    async render({ viewer, query, path }) {
      const st = (["pending", "issued", "rejected"] as const).find((s) => s === query.get("status")) ?? "pending";
      const rows = await (await ca()).listRequests(viewer.tenant, st, 500);
      const decide = (r: RequestView) =>
        r.status !== "pending"
          ? r.serial
            ? html`<a href="/browser/certificates/${r.serial}">certificate</a>`
            : ""
          : html`${apiForm({ id: `approve-${r.id}`, action: `${API}/requests/${r.id}/approve`, method: "POST", submit: "Approve", inline: true, flash: "Approved: certificate {serial} issued.", then: "/browser/certificates/{serial}" })}
${apiForm({ id: `reject-${r.id}`, action: `${API}/requests/${r.id}/reject`, method: "POST", submit: "Reject", confirm: "Reject this request?", flash: "Rejected.", fields: [{ name: "reason", label: "Reason for rejecting", required: true, maxlength: 500 }] })}`;
      return {
        body: html`
${filterForm({ path, label: "Requests by status", query, fields: [{ name: "status", label: "Status", type: "select", options: ["pending", "issued", "rejected"], value: "pending" }] })}
<div id="requests">${table<RequestView>({
          caption: `Requests: ${st}`,
          path,
          query,
          rows,
          sort: { key: "created", dir: "asc" },
          empty: st === "pending" ? "Nothing awaits approval." : "None.",
          columns: [
            { key: "created", label: "Submitted", cell: (r) => r.created_at.replace("T", " ").slice(0, 19), sort: (r) => r.created_at },
            { key: "subject", label: "Subject", cell: (r) => r.subject, sort: (r) => r.subject },
            { key: "sans", label: "SANs", cell: (r) => r.sans.join(", ") },
            { key: "profile", label: "Profile", cell: (r) => r.profile, sort: (r) => r.profile },
            { key: "origin", label: "Came through", cell: (r) => originName(r.origin), sort: (r) => r.origin },
            { key: "days", label: "Days", cell: (r) => r.validity_days },
            { key: "findings", label: "Policy findings", cell: (r) => (r.reasons.length ? html`<ul>${r.reasons.map((x) => html`<li><code>${x.code}</code> ${x.message}</li>`)}</ul>` : "none") },
            { key: "decision", label: "Decision", cell: decide },
          ],
        })}</div>`,
      };
    },
  };
}

function hierarchyPage(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/cas",
    title: "CA hierarchy",
    scopes: [READ],
    async render() {
      const c = await ca();
      const root = c.hierarchy.root;
      const cas = issuingCaViews(c);
      const crls = await Promise.all(cas.map(async (i) => ({ ca: i, crl: await c.store.crl(i.id) })));
      return {
        body: html`
${section("root-title", "Root", details([
  ["Subject", root.cert.subject],
  ["Key type", root.keyType],
  ["Valid until", root.cert.notAfter.toISOString()],
  ["Key", root.key ? "online (this instance)" : "offline (external root)"],
  ["Certificate", html`<a href="/pki/ca/root.pem">root.pem</a>`],
]))}
${section("issuing-title", "Issuing CAs", html`<ul class="tree">${crls.map(({ ca: i, crl }) => html`<li><h3>${i.id} <small>(${i.key_type})</small></h3>${details([
  ["Subject", i.subject],
  ["Valid until", i.not_after],
  ["Chain", html`<a href="/pki/ca/${i.id}.pem">${i.id}.pem</a>`],
  ["CRL", html`<a href="${i.crl_url}">${i.crl_url}</a>`],
  ["CRL number", crl?.number ?? "not generated yet"],
  ["CRL last generated", crl?.this_update ?? "—"],
  ["CRL next update", crl?.next_update ?? "—"],
  ["OCSP", html`<a href="${i.ocsp_url}">${i.ocsp_url}</a>`],
])}</li>`)}</ul>`)}
${section("tsa-title", "Time-stamping authority", details([["Subject", c.hierarchy.tsa.cert.subject], ["Valid until", c.hierarchy.tsa.cert.notAfter.toISOString()]]))}
${section("status-title", "Revocation service", details([
  ["CRL validity", `${c.config.crl_validity_hours} hours, regenerated every ${c.config.crl_refresh_minutes} minutes or at each revocation`],
  ["OCSP answers valid for", `${c.config.ocsp_validity_minutes} minutes`],
]))}`,
      };
    },
  };
}

function profilesPage(ca: () => Promise<PkiCa>): ConsolePage {
  return {
    path: "/profiles",
    title: "Profiles",
    scopes: [READ],
    async render({ query, path }) {
      const rows = profileViews(await ca());
      const list = (xs: string[]) => xs.join(", ") || "—";
      return {
        body: table({
          caption: "Certificate profiles in force",
          path,
          query,
          rows,
          sort: { key: "name", dir: "asc" },
          columns: [
            { key: "name", label: "Name", cell: (p) => html`<code>${p.name}</code>`, sort: (p) => p.name },
            { key: "ca", label: "Issuing CA", cell: (p) => p.issuing_ca, sort: (p) => p.issuing_ca },
            { key: "approval", label: "Approval", cell: (p) => p.approval, sort: (p) => p.approval },
            { key: "validity", label: "Validity (days)", cell: (p) => `${p.default_validity_days} (max ${p.max_validity_days})`, sort: (p) => p.max_validity_days },
            { key: "keys", label: "Key types", cell: (p) => list(p.key_types) },
            { key: "usage", label: "Usage", cell: (p) => list([...p.key_usage, ...p.extended_key_usage]) },
            { key: "names", label: "Names allowed", cell: (p) => list([...p.dns_allow, ...p.ip_ranges, ...p.email_domains.map((d) => `@${d}`), ...p.upn_domains.map((d) => `UPN @${d}`), ...p.uri_allow]) },
          ],
        }),
      };
    },
  };
}

export function caPages(ctx: ServiceContext, ca: () => Promise<PkiCa>) {
  return consolePages(ctx, {
    title: "Certificate Authority",
    sections: [
      { label: "Certificates", href: "/browser/" },
      { label: "Approval queue", href: "/browser/requests" },
      { label: "CA hierarchy", href: "/browser/cas" },
      { label: "Profiles", href: "/browser/profiles" },
    ],
    pages: [dashboard(ca), certificatePage(ca), downloadPage(ca), requestsPage(ca), hierarchyPage(ca), profilesPage(ca)],
  });
}
