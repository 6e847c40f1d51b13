/**
 * How long the disk makes an embedded database wait, as Prometheus histograms (the figures an
 * operator reads first when writes get slow; etcd exports the same pair for its WAL):
 *   storage_wal_fsync_duration_seconds          each fsync of the -wal file (off the event loop;
 *                                               every group-committed write waits for one)
 *   storage_write_transaction_duration_seconds  each group-committed write transaction, BEGIN to
 *                                               COMMIT, on the event loop (a COMMIT that runs a
 *                                               WAL checkpoint shows here)
 * Rendered into the service's /admin/v1/metrics for embedded WAL-mode file databases.
 */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS.length);
  private count = 0;
  private sum = 0;

  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    const i = BUCKETS.findIndex((b) => seconds <= b);
    if (i >= 0) this.counts[i]!++;
  }

  /** The exposition lines of this histogram under `name`, with `labels` (already escaped). */
  render(name: string, labels: string): string[] {
    const out: string[] = [];
    let cum = 0;
    BUCKETS.forEach((b, i) => {
      cum += this.counts[i]!;
      out.push(`${name}_bucket{${labels},le="${b}"} ${cum}`);
    });
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`, `${name}_sum{${labels}} ${this.sum}`, `${name}_count{${labels}} ${this.count}`);
    return out;
  }
}

/** The histograms of one embedded database. */
export class StorageLatency {
  readonly walFsync = new LatencyHistogram();
  readonly writeTransaction = new LatencyHistogram();

  render(service: string): string[] {
    const labels = `service="${service.replace(/["\\\n]/g, "_")}"`;
    return [
      "# HELP storage_wal_fsync_duration_seconds Each fsync of the embedded database's write-ahead log.",
      "# TYPE storage_wal_fsync_duration_seconds histogram",
      ...this.walFsync.render("storage_wal_fsync_duration_seconds", labels),
      "# HELP storage_write_transaction_duration_seconds Each group-committed write transaction, BEGIN to COMMIT, on the event loop.",
      "# TYPE storage_write_transaction_duration_seconds histogram",
      ...this.writeTransaction.render("storage_write_transaction_duration_seconds", labels),
    ];
  }
}
