/**
 * Prometheus metrics: request counts and latency histograms per route and status.
 * Exposition in the Prometheus text format 0.0.4, served on the admin server.
 */
import { escapeLabel as esc } from "./histogram.ts";

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Series {
  method: string;
  route: string;
  status: number;
  count: number;
  sum: number;
  buckets: Float64Array; // cumulative counts are computed on export
}


export class HttpMetrics {
  /** Series in the order they first appeared (the export order). */
  private readonly series: Series[] = [];
  /**
   * The same series by route, then method, then status: route and method are the
   * handlers' constant strings and status a number, so a hot request finds its series
   * without building a key.
   */
  private readonly index = new Map<string, Map<string, Map<number, Series>>>();
  private readonly gauges = new Map<string, () => number>();
  private readonly collectors: Array<(service: string) => string[]> = [];

  /** Records one finished request. `route` is the route pattern, never the raw path. */
  observe(method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.index.get(route);
    if (!byMethod) this.index.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let s = byStatus.get(status);
    if (!s) {
      s = { method, route, status, count: 0, sum: 0, buckets: new Float64Array(BUCKETS.length) };
      byStatus.set(status, s);
      this.series.push(s);
    }
    s.count++;
    s.sum += seconds;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (seconds <= BUCKETS[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
  }

  /** Registers a gauge read at export time (e.g. sealed state, open sessions). */
  gauge(name: string, read: () => number): void {
    this.gauges.set(name, read);
  }

  /** Registers more series rendered at export time (e.g. the federation clients'), as exposition lines. */
  collector(render: (service: string) => string[]): void {
    this.collectors.push(render);
  }

  render(service: string): string {
    const out: string[] = [];
    out.push("# HELP http_requests_total Requests handled, by route and status.");
    out.push("# TYPE http_requests_total counter");
    for (const s of this.series) {
      out.push(`http_requests_total{service="${esc(service)}",method="${s.method}",route="${esc(s.route)}",status="${s.status}"} ${s.count}`);
    }
    out.push("# HELP http_request_duration_seconds Request latency, by route and status.");
    out.push("# TYPE http_request_duration_seconds histogram");
    for (const s of this.series) {
      const labels = `service="${esc(service)}",method="${s.method}",route="${esc(s.route)}",status="${s.status}"`;
      let cum = 0;
      for (let i = 0; i < BUCKETS.length; i++) {
        cum += s.buckets[i]!;
        out.push(`http_request_duration_seconds_bucket{${labels},le="${BUCKETS[i]}"} ${cum}`);
      }
      out.push(`http_request_duration_seconds_bucket{${labels},le="+Inf"} ${s.count}`);
      out.push(`http_request_duration_seconds_sum{${labels}} ${s.sum}`);
      out.push(`http_request_duration_seconds_count{${labels}} ${s.count}`);
    }
    for (const [name, read] of this.gauges) {
      out.push(`# TYPE ${name} gauge`);
      out.push(`${name}{service="${esc(service)}"} ${read()}`);
    }
    for (const render of this.collectors) out.push(...render(service));
    return out.join("\n") + "\n";
  }
}
