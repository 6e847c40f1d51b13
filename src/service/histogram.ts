/** A Prometheus label value, escaped for the exposition format. */
export const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** One Prometheus histogram series: counts per bucket, count and sum, rendered as exposition lines. */
export class Histogram {
  private readonly counts: Float64Array;
  private count = 0;
  private sum = 0;

  /** `bounds`: the buckets' upper bounds, ascending (the +Inf bucket is implied). */
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.count++;
    this.sum += value;
    const i = this.bounds.findIndex((b) => value <= b);
    if (i >= 0) this.counts[i]!++;
  }

  /** The `_bucket` (cumulative), `_sum` and `_count` lines of this series under `name`, with `labels` (already escaped). */
  render(name: string, labels: string): string[] {
    const out: string[] = [];
    let cum = 0;
    this.bounds.forEach((b, i) => {
      cum += this.counts[i]!;
      out.push(`${name}_bucket{${labels},le="${b}"} ${cum}`);
    });
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`, `${name}_sum{${labels}} ${this.sum}`, `${name}_count{${labels}} ${this.count}`);
    return out;
  }
}
