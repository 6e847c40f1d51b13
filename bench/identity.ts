/**
 * identity-authz client_credentials grants over HTTPS: POST /t/{T}/token with
 * client_secret_basic, ES256 RFC 9068 access tokens, keep-alive, 64 connections, next
 * to oidc-provider (npm) configured for the same grant on its own TLS server. Each
 * runs in its own process; the same load generator (wrk, with a Lua script for the
 * POST) measures both in the same run, alternating, several rounds; medians reported.
 *
 * Then token introspections (RFC 7662) per second, the same way: an active opaque access token
 * introspected by the client it was issued to (client_secret_basic), identity-authz next to
 * oidc-provider in the same run, alternating.
 *
 * Then passkey sign-ins per second at identity-idp (bench/passkeys.ts): the whole WebAuthn
 * ceremony over HTTPS with a software authenticator, no anchor.
 *
 * Usage: npm run bench -- identity [--seconds=10] [--rounds=3] [--connections=64] [--anchor-runtime=both|bun|node]
 */
import { mkdtempSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { throwawayTls } from "../test/support/tls.ts";
import { haveWrk, median, parseWrk, spawnTarget, type WrkResult } from "./wrk.ts";
import { benchPasskeySignIns } from "./passkeys.ts";

const argOf = (k: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split("=")[1];
const arg = (k: string, d: number) => Number(argOf(k) ?? d);
const SECONDS = arg("seconds", 10);
const ROUNDS = arg("rounds", 3);
const CONNS = arg("connections", 64);
const ANCHOR_RUNTIME = argOf("anchor-runtime") ?? "both";

if (!haveWrk()) {
  console.error("wrk is required (Debian package 'wrk')");
  process.exit(2);
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

const dir = mkdtempSync(join(tmpdir(), "cryptoutil-bench-identity-"));

// The anchor's TLS certificate, from the suite CA code (P-256, like identity-authz's own).
const anchorTls = await throwawayTls("oidc-provider");
writeFileSync(join(dir, "anchor-key.pem"), anchorTls.keyPem);
writeFileSync(join(dir, "anchor-cert.pem"), anchorTls.certPem);
const anchorCa = anchorTls.caPem;
const anchorSecret = crypto.randomUUID() + crypto.randomUUID();

const authz = await spawnTarget([process.execPath, "run", join(import.meta.dir, "targets", "identity-authz.ts"), join(dir, "identity-authz"), String(await freePort())]);
const runtimes = ANCHOR_RUNTIME === "both" ? ["bun", "node"] : [ANCHOR_RUNTIME];
const anchors: Record<string, Awaited<ReturnType<typeof spawnTarget>>> = {};
for (const rt of runtimes) {
  let script = join(import.meta.dir, "targets", "oidc-provider.ts");
  if (rt === "node") {
    if (!Bun.which("node")) {
      console.error("node not found: skipping the Node-hosted anchor");
      continue;
    }
    // Node 20 does not load .ts files: run a type-stripped copy next to the original (same module resolution).
    const copy = join(import.meta.dir, "targets", `.oidc-provider-${process.pid}.mjs`);
    writeFileSync(copy, new Bun.Transpiler({ loader: "ts" }).transformSync(readFileSync(script, "utf8")));
    script = copy;
  }
  const cmd = rt === "node" ? ["node", script] : [process.execPath, "run", script];
  anchors[rt] = await spawnTarget([...cmd, String(await freePort()), join(dir, "anchor-cert.pem"), join(dir, "anchor-key.pem"), anchorSecret]);
  if (rt === "node") unlinkSync(script);
}

const authzCa = readFileSync(authz.info.trust, "utf8");
type Target = { url: string; basic: string; ca: string; body?: string };
const targets: Record<string, Target> = {
  "identity-authz": { url: authz.info.token_endpoint, basic: btoa(`${authz.info.client_id}:${authz.info.client_secret}`), ca: authzCa },
};
for (const [rt, a] of Object.entries(anchors)) targets[`oidc-provider (${rt})`] = { url: a.info.token_endpoint, basic: btoa(`bench:${anchorSecret}`), ca: anchorCa };
// The introspection targets: each side's opaque-token client introspecting one of its own active tokens.
const introspection: Record<string, Target> = {
  "identity-authz": { url: authz.info.introspection_endpoint, basic: btoa(`${authz.info.opaque_client_id}:${authz.info.opaque_client_secret}`), ca: authzCa },
};
for (const [rt, a] of Object.entries(anchors)) introspection[`oidc-provider (${rt})`] = { url: a.info.introspection_endpoint, basic: btoa(`bench-opaque:${anchorSecret}`), ca: anchorCa };
const BODY = "grant_type=client_credentials&scope=pets%3Aread";

// Same grant on both sides: a 200 with an ES256 at+jwt for audience learn-ps.
for (const [name, t] of Object.entries(targets)) {
  const r = await fetch(t.url, {
    method: "POST",
    headers: { authorization: `Basic ${t.basic}`, "content-type": "application/x-www-form-urlencoded" },
    body: BODY,
    tls: { ca: t.ca },
  } as RequestInit);
  const j = (await r.json()) as { access_token?: string };
  if (r.status !== 200 || !j.access_token) throw new Error(`${name}: ${r.status} ${JSON.stringify(j)}`);
  const h = decodeProtectedHeader(j.access_token);
  const c = decodeJwt(j.access_token);
  if (h.alg !== "ES256" || c.aud !== "learn-ps") throw new Error(`${name}: unexpected token ${JSON.stringify({ h, c })}`);
  console.error(`${name}: ${h.alg} ${h.typ} aud=${c.aud} scope=${c.scope}`);
}

for (const [name, t] of Object.entries(introspection)) {
  const tokenUrl = name === "identity-authz" ? authz.info.token_endpoint : targets[name]!.url;
  const r = await fetch(tokenUrl, { method: "POST", headers: { authorization: `Basic ${t.basic}`, "content-type": "application/x-www-form-urlencoded" }, body: BODY, tls: { ca: t.ca } } as RequestInit);
  const tok = ((await r.json()) as { access_token?: string }).access_token;
  if (r.status !== 200 || !tok || tok.split(".").length !== 1) throw new Error(`${name}: no opaque access token (${r.status})`);
  t.body = `token=${encodeURIComponent(tok)}&token_type_hint=access_token`;
  const i = await fetch(t.url, { method: "POST", headers: { authorization: `Basic ${t.basic}`, "content-type": "application/x-www-form-urlencoded" }, body: t.body, tls: { ca: t.ca } } as RequestInit);
  const answer = (await i.json()) as { active?: boolean; aud?: unknown; scope?: string };
  if (i.status !== 200 || answer.active !== true) throw new Error(`${name}: introspection did not answer active: ${i.status} ${JSON.stringify(answer)}`);
  console.error(`${name}: introspection active, aud=${JSON.stringify(answer.aud)} scope=${answer.scope}`);
}

async function load(t: Target, seconds: number): Promise<WrkResult> {
  const script = join(dir, `post-${crypto.randomUUID()}.lua`);
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = "${t.body ?? BODY}"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["Authorization"] = "Basic ${t.basic}"\n`,
  );
  const p = Bun.spawn(["wrk", "-t1", `-c${CONNS}`, `-d${seconds}s`, "--latency", "-s", script, t.url], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  const err = await new Response(p.stderr).text();
  if ((await p.exited) !== 0) throw new Error(`wrk failed: ${err || out}`);
  return parseWrk(out);
}

/** Alternating rounds of every target, medians, the table and the per-round ratios to each anchor. */
async function compare(set: Record<string, Target>, what: string, title: string) {
  const results: Record<string, WrkResult[]> = Object.fromEntries(Object.keys(set).map((k) => [k, []]));
  for (const t of Object.values(set)) await load(t, 2); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(set)) {
      const res = await load(t, SECONDS);
      if (res.errors) throw new Error(`${name}: ${res.errors} errors during the run`);
      results[name]!.push(res);
      console.error(`round ${r + 1} ${name}: ${res.rps.toFixed(0)} ${what}/s, p99 ${res.p99ms.toFixed(2)} ms`);
    }
  }
  const rows = Object.keys(set).map((name) => {
    const rs = results[name]!;
    return { name, rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50ms)), p99: median(rs.map((x) => x.p99ms)) };
  });
  const anchorRows = rows.slice(1);
  console.log(`\n${title}, HTTPS keep-alive, ${CONNS} connections, wrk, median of ${ROUNDS} x ${SECONDS}s\n`);
  console.log(`| target | ${what}/s | p50 ms | p99 ms | ${anchorRows.map((a) => `ratio to ${a.name}`).join(" | ")} |`);
  console.log(`|---|---:|---:|---:|${anchorRows.map(() => "---:").join("|")}|`);
  for (const x of rows) console.log(`| ${x.name} | ${x.rps.toFixed(0)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${anchorRows.map((a) => (x.rps / a.rps).toFixed(2)).join(" | ")} |`);
  // Load from other processes drifts between rounds: the ratios of each round's adjacent runs show it.
  for (const a of anchorRows) {
    const per = results[rows[0]!.name]!.map((x, i) => x.rps / results[a.name]![i]!.rps);
    console.log(`per-round ratios to ${a.name}: ${per.map((r) => r.toFixed(2)).join(", ")} (median ${median(per).toFixed(2)})`);
  }
  return { ours: rows[0]!, best: anchorRows.reduce((a, b) => (b.rps > a.rps ? b : a)) };
}

try {
  const { ours, best } = await compare(targets, "grants", "client_credentials grants, client_secret_basic, ES256 JWT access tokens");
  const pass = ours.rps >= 2 * best.rps && ours.rps >= 2000;
  console.log(`\ntarget: >= 2x oidc-provider (fastest run: ${best.name}) and >= 2,000 grants/s -> ${pass ? "met" : "NOT met"}`);
  await compare(introspection, "introspections", "token introspection (RFC 7662) of an active opaque access token by its client, client_secret_basic");
} finally {
  authz.proc.kill("SIGTERM");
  for (const a of Object.values(anchors)) a.proc.kill("SIGTERM");
}

const passkeys = await benchPasskeySignIns({ dir, seconds: SECONDS, concurrency: 16 });
console.log(
  `\npasskey sign-ins (username-less: login page, options, ES256 assertion verified, session), 16 at once, ${SECONDS}s: ` +
    `${passkeys.perSecond.toFixed(0)}/s (${passkeys.signIns} sign-ins, ${passkeys.failures} failed)`,
);
if (passkeys.failures) process.exitCode = 1;
