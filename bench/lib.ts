/**
 * Shared benchmark helpers: timing, statistics and the table every crypto
 * benchmark prints.
 */

/**
 * One result row. `anchor` labels a comparison and `ratio` is its value (for
 * anchor rows: the ops/s of the implementation under test divided by this
 * row's). Constant-time rows carry the Welch `t` statistic of a dudect run.
 */
export interface Row {
  group: string;
  name: string;
  opsPerSec: number;
  anchor?: string;
  ratio?: number;
  t?: number;
}

const now = (): number => performance.now();

/** Median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** The p-th percentile (0..100) of `xs`, by linear interpolation. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = ((s.length - 1) * Math.min(100, Math.max(0, p))) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/**
 * Ops/s of `fn` (sync or async): calibrates a batch size, then runs `rounds`
 * rounds of at least `minMs` each and returns the median rate.
 */
export async function measure(
  fn: () => unknown,
  opts: { minMs?: number; rounds?: number } = {},
): Promise<number> {
  const minMs = opts.minMs ?? 100;
  const rounds = opts.rounds ?? 5;
  const first = fn();
  const isAsync = first instanceof Promise;
  if (isAsync) await first;
  // Calibrate: grow the batch until one batch takes about minMs / 4.
  let batch = 1;
  for (;;) {
    const t0 = now();
    if (isAsync) for (let i = 0; i < batch; i++) await fn();
    else for (let i = 0; i < batch; i++) fn();
    const dt = now() - t0;
    if (dt >= minMs / 4 || batch >= 1 << 24) break;
    batch *= dt < minMs / 64 ? 8 : 2;
  }
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let ops = 0;
    const t0 = now();
    let dt = 0;
    do {
      if (isAsync) for (let i = 0; i < batch; i++) await fn();
      else for (let i = 0; i < batch; i++) fn();
      ops += batch;
      dt = now() - t0;
    } while (dt < minMs);
    rates.push((ops * 1000) / dt);
  }
  return median(rates);
}

/**
 * Ops/s of several functions measured in interleaved rounds (A, B, C, A, B, C,
 * ...), so that changes in machine load hit all of them alike; returns the
 * median rate of each, in order.
 */
export async function measureMany(
  fns: readonly (() => unknown)[],
  opts: { minMs?: number; rounds?: number } = {},
): Promise<number[]> {
  const minMs = opts.minMs ?? 100;
  const rounds = opts.rounds ?? 5;
  const batches: number[] = [];
  const asyncs: boolean[] = [];
  for (const fn of fns) {
    const first = fn();
    const isAsync = first instanceof Promise;
    if (isAsync) await first;
    asyncs.push(isAsync);
    let batch = 1;
    for (;;) {
      const t0 = now();
      if (isAsync) for (let i = 0; i < batch; i++) await fn();
      else for (let i = 0; i < batch; i++) fn();
      const dt = now() - t0;
      if (dt >= minMs / 8 || batch >= 1 << 24) break;
      batch *= dt < minMs / 128 ? 8 : 2;
    }
    batches.push(batch);
  }
  const rates: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < fns.length; k++) {
      const fn = fns[k]!;
      const batch = batches[k]!;
      let ops = 0;
      const t0 = now();
      let dt = 0;
      do {
        if (asyncs[k]) for (let i = 0; i < batch; i++) await fn();
        else for (let i = 0; i < batch; i++) fn();
        ops += batch;
        dt = now() - t0;
      } while (dt < minMs);
      rates[k]!.push((ops * 1000) / dt);
    }
  }
  return rates.map(median);
}

function fmtOps(x: number): string {
  if (!Number.isFinite(x)) return "-";
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`;
  return x.toFixed(1);
}

/** Prints rows as an aligned text table under `title`. */
export function printTable(title: string, rows: readonly Row[]): void {
  const head = ["group", "name", "ops/s", "ratio"];
  const body = rows.map((r) => [
    r.group,
    r.name,
    fmtOps(r.opsPerSec),
    (r.t !== undefined ? `|t| = ${Math.abs(r.t).toFixed(2)} ` : "") +
      (r.anchor ? `${r.ratio === undefined || !Number.isFinite(r.ratio) ? "-" : r.ratio.toFixed(2) + "x"} ${r.anchor}` : ""),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  console.log(`\n${title}`);
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
}

/**
 * Rows for one operation: the implementation under test first (`subject`, ops/s), then each
 * anchor with the ratio subject/anchor and the issue's target in the label. Anchors that
 * could not be measured (e.g. no openssl) are left out.
 */
export function compareRows(
  group: string,
  subject: { name: string; ops: number },
  anchors: readonly { name: string; ops: number | undefined; target?: string }[],
): Row[] {
  const rows: Row[] = [{ group, name: subject.name, opsPerSec: subject.ops }];
  for (const a of anchors) {
    if (a.ops === undefined) continue;
    rows.push({
      group,
      name: a.name,
      opsPerSec: a.ops,
      anchor: `wasm/${a.name}${a.target ? ` (target ${a.target})` : ""}`,
      ratio: subject.ops / a.ops,
    });
  }
  return rows;
}

/** The cumulative bucket counts (`le` -> count) of one Prometheus histogram in an exposition text. */
export function histogramBuckets(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"\\} (\\S+)$`, "gm"))) out.set(m[1]!, Number(m[2]));
  return out;
}

/**
 * The upper bound (in the histogram's unit) of the bucket holding quantile `q` of the
 * observations made between two scrapes; undefined when there were none. "+Inf" means above
 * the largest bound.
 */
export function histogramQuantile(before: Map<string, number>, after: Map<string, number>, q: number): { bound: string; count: number } | undefined {
  const total = (after.get("+Inf") ?? 0) - (before.get("+Inf") ?? 0);
  if (total <= 0) return undefined;
  for (const [le, cum] of after) {
    if (cum - (before.get(le) ?? 0) >= q * total) return { bound: le, count: total };
  }
  return { bound: "+Inf", count: total };
}
