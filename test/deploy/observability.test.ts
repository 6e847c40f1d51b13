/**
 * deploy/observability: the Prometheus alert rules and Grafana dashboards name only metrics the
 * services really export (read from the /admin/v1/metrics of a running sm-kms, sealed and
 * unsealed), and promtool (Debian package `prometheus`) accepts the rules, passes their unit
 * tests and parses every dashboard query.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { smKms } from "../../apps/sm-kms/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { quiet, startTestService, tempDir, type TestService } from "../support/service.ts";

const OBS = new URL("../../deploy/observability/", import.meta.url).pathname;
const PRODUCTS: Record<string, RegExp> = {
  "sm-kms": /service="sm-kms"/,
  "jose-ja": /service="jose-ja"/,
  "pki-ca": /service="pki-ca"/,
  identity: /service=~"identity-\.\+"/,
  secrets: /service=~"sm-secrets\|sm-im\|audit"/,
};
/** What the rules of every product watch: 5xx rate, p99 latency, the sealed barrier, the federation breaker, readiness. */
const WATCHED = ["http_requests_total", "http_request_duration_seconds_bucket", "barrier_sealed", "federation_circuit_breaker_state", "service_ready"];

type Obj = Record<string, any>;

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/** The metric names a PromQL expression selects (strings, label matchers, ranges, grouping labels and functions left out). */
export function metricNames(expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\w+/g, " ");
  const names = new Set<string>();
  for (const m of e.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (e.slice(m.index! + m[0].length).trimStart().startsWith("(")) continue;
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names].sort();
}

/** promtool, or undefined after a printed skip (a failure under CI=true). */
function promtool(): string | undefined {
  const p = Bun.which("promtool");
  if (p) return p;
  if (process.env.CI === "true") throw new Error("promtool (Debian package prometheus) is required in CI");
  console.warn("SKIPPED: promtool not installed (Debian package prometheus)");
  return undefined;
}

async function run(cmd: string[], cwd: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

const rulesDir = join(OBS, "prometheus");
const ruleFiles = (await readdir(rulesDir)).filter((f) => f.endsWith(".rules.yml")).sort();
const ruleTests = (await readdir(rulesDir)).filter((f) => f.endsWith(".rules.test.yml")).sort();
const dashDir = join(OBS, "grafana");
const dashFiles = (await readdir(dashDir)).filter((f) => f.endsWith(".json")).sort();

let issuer: TestIssuer;
let svc: TestService;
let root: string;
/** The metric names of a real service's /admin/v1/metrics: while serving, then while sealed. */
const exported = new Set<string>();
const samples: Record<string, string[]> = {};

async function scrape(): Promise<string> {
  const text = await (await svc.admin("/admin/v1/metrics")).text();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (m) exported.add(m[1]!);
    // A declared family counts before its first sample (a failure counter that has not counted yet).
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line);
    if (t) for (const suffix of t[2] === "histogram" ? ["_bucket", "_sum", "_count"] : [""]) exported.add(t[1]! + suffix);
  }
  return text;
}

beforeAll(async () => {
  root = tempDir();
  issuer = await startTestIssuer({ audience: "sm-kms" });
  // With an issuer the service federates with identity: the federation series appear too.
  svc = await startTestService(smKms, { issuer, root, overrides: quiet });
  const token = await issuer.mint({ tenant: "obs", scope: "kms:admin" });
  expect((await svc.call("/service/api/v1/keys", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  expect((await svc.call("/service/api/v1/keys")).status).toBe(401);
  samples.serving = (await scrape()).split("\n");
  const admin = { method: "POST", headers: { authorization: `Bearer ${svc.adminToken}` } };
  expect((await svc.admin("/admin/v1/barrier/seal", admin)).status).toBe(200);
  expect((await svc.call("/service/api/v1/keys", { headers: { authorization: `Bearer ${token}` } })).status).toBe(503);
  samples.sealed = (await scrape()).split("\n");
  expect((await svc.admin("/admin/v1/barrier/unseal", admin)).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await svc?.stop();
  await issuer?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe("the metrics a service exports", () => {
  test("the names the rules and dashboards rely on, with the gauges' values", () => {
    for (const name of [...WATCHED, "http_request_duration_seconds_count", "federation_request_duration_seconds_bucket", "federation_request_failures_total"]) {
      expect(exported).toContain(name);
    }
    expect(samples.serving).toContain('barrier_sealed{service="sm-kms"} 0');
    expect(samples.serving).toContain('service_ready{service="sm-kms"} 1');
    expect(samples.serving).toContain('federation_circuit_breaker_state{service="sm-kms",federated_service="identity"} 0');
    expect(samples.sealed).toContain('barrier_sealed{service="sm-kms"} 1');
    expect(samples.sealed).toContain('service_ready{service="sm-kms"} 0');
    expect(samples.sealed!.some((l) => /^http_requests_total\{service="sm-kms",.*status="503"\} [1-9]/.test(l))).toBe(true);
  });

  test("the expression reader finds the metric names", () => {
    expect(metricNames('sum by (service, le) (rate(http_requests_total{status=~"5..", x="a{b}"}[5m])) / on(service) barrier_sealed > 0.5')).toEqual([
      "barrier_sealed",
      "http_requests_total",
    ]);
    expect(metricNames("histogram_quantile(0.99, sum(rate(x_bucket[$__rate_interval])))")).toEqual(["x_bucket"]);
  });
});

describe("Prometheus alert rules", () => {
  const load = async (f: string) => parse(await readFile(join(rulesDir, f), "utf8")) as Obj;

  test("a rules file and a unit-test file per product", () => {
    expect(ruleFiles).toEqual(Object.keys(PRODUCTS).map((p) => `${p}.rules.yml`).sort());
    expect(ruleTests).toEqual(Object.keys(PRODUCTS).map((p) => `${p}.rules.test.yml`).sort());
  });

  test("every rule: for, severity, summary, the product's services, exported metrics; each product watches all five signals", async () => {
    for (const f of ruleFiles) {
      const product = f.replace(".rules.yml", "");
      const rules = ((await load(f)).groups as Obj[]).flatMap((g) => g.rules as Obj[]);
      const watched = new Set<string>();
      for (const r of rules) {
        const where = `${f} ${r.alert}`;
        expect({ where, alert: typeof r.alert }).toEqual({ where, alert: "string" });
        expect({ where, for: r.for }).toEqual({ where, for: expect.stringMatching(/^\d+[smh]$/) });
        expect({ where, severity: ["critical", "warning"].includes(r.labels?.severity) }).toEqual({ where, severity: true });
        expect({ where, summary: typeof r.annotations?.summary }).toEqual({ where, summary: "string" });
        expect({ where, selects: PRODUCTS[product]!.test(r.expr) }).toEqual({ where, selects: true });
        for (const m of metricNames(r.expr)) {
          expect({ where, metric: m, exported: exported.has(m) }).toEqual({ where, metric: m, exported: true });
          watched.add(m);
        }
      }
      expect([...watched].sort()).toEqual([...WATCHED].sort());
    }
  });

  test("promtool (Debian package prometheus) checks the rules and passes their unit tests", async () => {
    const tool = promtool();
    if (!tool) return;
    const [check, unit] = await Promise.all([run([tool, "check", "rules", ...ruleFiles], rulesDir), run([tool, "test", "rules", ...ruleTests], rulesDir)]);
    expect(check.out).not.toContain("FAILED");
    expect(check.code).toBe(0);
    expect(unit.out).not.toContain("FAILED");
    expect(unit.code).toBe(0);
    expect(unit.out.match(/SUCCESS/g)?.length).toBe(ruleTests.length);
    // Each unit-test file sees the sealed barrier fire.
    for (const f of ruleTests) expect(await readFile(join(rulesDir, f), "utf8")).toMatch(/alertname: \w+BarrierSealed\n\s+exp_alerts:\n\s+- exp_labels/);
  }, 60_000);
});

describe("Grafana dashboards", () => {
  const panelsOf = async (f: string) => {
    const d = JSON.parse(await readFile(join(dashDir, f), "utf8")) as Obj;
    return { d, panels: d.panels as Obj[] };
  };

  test("a dashboard per product: valid JSON, unique uid, panels that query exported metrics of the product", async () => {
    expect(dashFiles).toEqual(Object.keys(PRODUCTS).map((p) => `${p}.json`).sort());
    const uids = new Set<string>();
    for (const f of dashFiles) {
      const product = f.replace(".json", "");
      const { d, panels } = await panelsOf(f);
      uids.add(d.uid);
      expect(typeof d.title).toBe("string");
      expect(panels.length).toBeGreaterThanOrEqual(5);
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      const used = new Set<string>();
      for (const p of panels) {
        expect(p.targets.length).toBeGreaterThan(0);
        for (const t of p.targets as Obj[]) {
          const where = `${f} "${p.title}" ${t.refId}`;
          const names = metricNames(t.expr);
          expect({ where, names: names.length > 0 }).toEqual({ where, names: true });
          for (const m of names) {
            expect({ where, metric: m, exported: exported.has(m) }).toEqual({ where, metric: m, exported: true });
            used.add(m);
          }
          expect({ where, selects: PRODUCTS[product]!.test(t.expr) }).toEqual({ where, selects: true });
        }
      }
      for (const m of WATCHED) expect(used).toContain(m);
    }
    expect(uids.size).toBe(dashFiles.length);
  });

  test("promtool (Debian package prometheus) parses every dashboard query", async () => {
    const tool = promtool();
    if (!tool) return;
    const t = tempDir();
    try {
      // The queries as recording rules, Grafana's variables replaced by values.
      const rules: Obj[] = [];
      for (const f of dashFiles) {
        for (const p of (await panelsOf(f)).panels) {
          for (const q of p.targets as Obj[]) {
            rules.push({ record: `dashboard:q${rules.length}`, expr: q.expr.replaceAll("$__rate_interval", "5m").replaceAll("$instance", ".*") });
          }
        }
      }
      await writeFile(join(t, "dashboards.rules.yml"), stringify({ groups: [{ name: "dashboards", rules }] }));
      const r = await run([tool, "check", "rules", "dashboards.rules.yml"], t);
      expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(r.code).toBe(0);
    } finally {
      await rm(t, { recursive: true, force: true });
    }
  }, 30_000);
});
