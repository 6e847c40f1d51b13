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
import { escapeLabel, Histogram } from "../service/histogram.ts";

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The histograms of one embedded database. */
export class StorageLatency {
  readonly walFsync = new Histogram(BUCKETS);
  readonly writeTransaction = new Histogram(BUCKETS);

  render(service: string): string[] {
    const labels = `service="${escapeLabel(service)}"`;
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
