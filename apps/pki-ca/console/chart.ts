/** Bar charts as server-rendered SVG (no script, no inline style: classes only), with a text summary for screen readers. */
import { html, type Html } from "../../../src/ui/html.ts";

const DAY = 86_400_000;
const dayOf = (t: number) => Math.floor(t / DAY);

/** Counts per day: `days` days ending today (past) or starting today (future). */
export function perDay(times: readonly number[], now: number, days: number, direction: "past" | "future"): number[] {
  const today = dayOf(now);
  const counts = new Array<number>(days).fill(0);
  for (const t of times) {
    const i = direction === "past" ? days - 1 - (today - dayOf(t)) : dayOf(t) - today;
    if (i >= 0 && i < days) counts[i]!++;
  }
  return counts;
}

export function barChart(p: { id: string; title: string; counts: number[]; kind: "issued" | "expiring"; first: string; last: string }): Html {
  const w = 600;
  const h = 120;
  const pad = 18;
  const max = Math.max(1, ...p.counts);
  const bw = (w - 2) / p.counts.length;
  const total = p.counts.reduce((a, b) => a + b, 0);
  const bars = p.counts.map((c, i) => {
    const bh = Math.round(((h - pad * 2) * c) / max);
    return c > 0 ? html`<rect class="bar-${p.kind}" x="${(1 + i * bw).toFixed(1)}" y="${h - pad - bh}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${bh}"><title>${c}</title></rect>` : "";
  });
  return html`<figure class="chart-box">
<svg class="chart" id="${p.id}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-labelledby="${p.id}-title ${p.id}-desc">
<title id="${p.id}-title">${p.title}</title><desc id="${p.id}-desc">${total} in total, at most ${max} on one day</desc>
<line x1="0" y1="${h - pad}" x2="${w}" y2="${h - pad}" class="axis" stroke="currentColor"/>
${bars}
<text x="0" y="${h - 4}">${p.first}</text><text x="${w}" y="${h - 4}" text-anchor="end">${p.last}</text><text x="0" y="12">max ${max}/day</text>
</svg>
<figcaption>${p.title}: <strong>${total}</strong></figcaption>
</figure>`;
}
