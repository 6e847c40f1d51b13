/**
 * Tables with sorting and paging, rendered on the server: the column headers are links that
 * sort (`?sort=<key>&dir=asc|desc`, `aria-sort` on the sorted header), the pager links move
 * by `?page=N`; every other query parameter (the page's filters) is kept. Works without
 * script and with the keyboard (plain links).
 */
import { html, type Fragment, type Html } from "./html.ts";

export interface Column<T> {
  key: string;
  label: string;
  cell(row: T): Fragment;
  /** The value to sort by; a column without it is not sortable. */
  sort?(row: T): string | number;
}

export interface TableInput<T> {
  caption: string;
  columns: readonly Column<T>[];
  rows: readonly T[];
  /** The page's path and query (filters are kept in the sort and pager links). */
  path: string;
  query: URLSearchParams;
  pageSize?: number;
  empty?: string;
  /** Default sort column and direction. */
  sort?: { key: string; dir: "asc" | "desc" };
}

const linkTo = (path: string, q: URLSearchParams, set: Record<string, string | undefined>) => {
  const u = new URLSearchParams(q);
  for (const [k, val] of Object.entries(set)) {
    if (val === undefined) u.delete(k);
    else u.set(k, val);
  }
  const s = u.toString();
  return s ? `${path}?${s}` : path;
};

export function table<T>(t: TableInput<T>): Html {
  const size = t.pageSize ?? 20;
  const col = t.columns.find((c) => c.key === t.query.get("sort") && c.sort) ?? t.columns.find((c) => c.key === t.sort?.key);
  const dir = t.query.get("dir") === "desc" || t.query.get("dir") === "asc" ? (t.query.get("dir") as "asc" | "desc") : (t.sort?.dir ?? "asc");
  const rows = [...t.rows];
  if (col?.sort) {
    const f = col.sort;
    rows.sort((a, b) => {
      const x = f(a);
      const y = f(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return dir === "asc" ? c : -c;
    });
  }
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const page = Math.min(pages, Math.max(1, Number.parseInt(t.query.get("page") ?? "1", 10) || 1));
  const shown = rows.slice((page - 1) * size, page * size);
  if (rows.length === 0) return html`<p class="empty">${t.empty ?? "Nothing here yet."}</p>`;
  const header = (c: Column<T>) => {
    if (!c.sort) return html`<th scope="col">${c.label}</th>`;
    const sorted = col?.key === c.key;
    const next = sorted && dir === "asc" ? "desc" : "asc";
    return html`<th scope="col"${sorted ? html` aria-sort="${dir === "asc" ? "ascending" : "descending"}"` : ""}><a href="${linkTo(t.path, t.query, { sort: c.key, dir: next, page: undefined })}">${c.label}${sorted ? (dir === "asc" ? " ▲" : " ▼") : ""}</a></th>`;
  };
  return html`<div class="table-wrap"><table>
<caption>${t.caption} <span class="count">(${rows.length})</span></caption>
<thead><tr>${t.columns.map(header)}</tr></thead>
<tbody>${shown.map((r) => html`<tr>${t.columns.map((c) => html`<td data-label="${c.label}">${c.cell(r)}</td>`)}</tr>`)}</tbody>
</table></div>
${
  pages > 1
    ? html`<nav class="pager" aria-label="${t.caption}: pages">
${page > 1 ? html`<a href="${linkTo(t.path, t.query, { page: String(page - 1) })}" rel="prev">Previous</a>` : ""}
<span>Page ${page} of ${pages}</span>
${page < pages ? html`<a href="${linkTo(t.path, t.query, { page: String(page + 1) })}" rel="next">Next</a>` : ""}
</nav>`
    : ""
}`;
}

/** Reads every page of a cursor-paginated list (up to `max` items) for sorting and paging here. */
export async function allPages<T>(load: (pageToken: string | undefined) => Promise<{ items: T[]; next_page_token: string | null }>, max = 1000): Promise<T[]> {
  const out: T[] = [];
  let token: string | undefined;
  do {
    const p = await load(token);
    out.push(...p.items);
    token = p.next_page_token ?? undefined;
  } while (token && out.length < max);
  return out.slice(0, max);
}
