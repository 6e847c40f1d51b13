/**
 * Issue 14 (5): one small JSON body must not freeze a service. For one JSON endpoint of every
 * service (pki-ca's anonymous /pki/revoke included), deeply nested bodies and arrays of many
 * invalid items get a 4xx with the bound's own code (refused before any parsing), while the
 * admin livez of the same process keeps answering and a normal API call keeps working (the time
 * limits, 10 s and 5 s, catch a stalled process, not a slow machine); in the default mode and with
 * NODE_ENV=production (a child process: the framework reads it at import).
 */
import { expect, test } from "bun:test";
import { probeAll, type ProbeResult } from "./fixtures/json-bombs.ts";

function check(results: ProbeResult[]) {
  expect(results.map((r) => r.service).sort()).toEqual(["identity-authz", "identity-idp", "jose-ja", "learn-ps", "pki-ca", "sm-kms"]);
  for (const r of results) {
    for (const b of r.bad) {
      const where = `${r.service}: ${b.body} -> ${b.status} ${b.code} in ${b.ms} ms`;
      expect(b.status >= 400 && b.status < 500, where).toBe(true);
      expect(b.ms, where).toBeLessThan(10_000);
    }
    // The bounds refuse nesting and item counts before any parsing or validation.
    expect(r.bad.find((b) => b.body === "20,000 nested arrays")?.code).toBe("body_too_deep");
    expect(r.bad.find((b) => b.body === "50,000 nested objects in a field")?.code).toBe("body_too_deep");
    expect(r.bad.find((b) => b.body === "20,000 empty objects in an array")?.code).toBe("body_too_complex");
    expect(r.livezCount, r.service).toBeGreaterThan(0);
    expect(r.livezMaxMs, `${r.service}: livez took ${r.livezMaxMs} ms`).toBeLessThan(5_000);
    expect(r.normal.length, r.service).toBeGreaterThan(0);
    for (const n of r.normal) expect(n.status, `${r.service}: normal call`).toBeLessThan(300);
  }
}

test("JSON bombs get a 4xx fast and never stall livez or a normal call, on every service", async () => {
  check(await probeAll());
}, 60_000);

test("... and the same with NODE_ENV=production", async () => {
  const p = Bun.spawn([process.execPath, "run", new URL("./fixtures/json-bombs.ts", import.meta.url).pathname], {
    env: { ...process.env, NODE_ENV: "production" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const line = out.split("\n").find((l) => l.startsWith("PROBE "));
  if (code !== 0 || !line) throw new Error(`probe failed (exit ${code}): ${err.slice(-2000)}`);
  check(JSON.parse(line.slice("PROBE ".length)) as ProbeResult[]);
}, 90_000);
