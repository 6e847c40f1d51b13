/**
 * Knot DNS (Debian `knot`) as a test's authoritative server on 127.0.0.1: one zone, `localhost.`
 * (so the `*.localhost` names the ACME tests order live in it), a free port, its database and
 * control socket in a temporary directory. Records change through `knotc` zone transactions, as
 * an ACME client's dns-01 hook would do it; `hookScript()` writes such a hook for lego's `exec`
 * provider. Stopped by killing the one process it started.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./server-process.ts";

export interface Knot {
  /** `127.0.0.1:port`, for dns_resolvers and lego's --dns.resolvers. */
  address: string;
  socket: string;
  dir: string;
  knotc(args: string[]): Promise<void>;
  setTxt(name: string, value: string): Promise<void>;
  /** A shell script `<script> present|cleanup <fqdn> <value>` (lego's exec provider) editing this zone. */
  hookScript(): string;
  stop(): Promise<void>;
}

export function haveKnot(): boolean {
  return Bun.which("knotd") !== null && Bun.which("knotc") !== null;
}

export async function startKnot(): Promise<Knot> {
  const dir = mkdtempSync(join(tmpdir(), "cryptoutil-knot-"));
  const port = await freePort(); // free for TCP a moment ago; knotd takes the same number for UDP
  const socket = join(dir, "knot.sock");
  writeFileSync(
    join(dir, "knot.conf"),
    [
      "server:",
      `    rundir: "${dir}"`,
      `    listen: 127.0.0.1@${port}`,
      "database:",
      `    storage: "${dir}"`,
      "control:",
      `    listen: "${socket}"`,
      "log:",
      "  - target: stderr",
      "    any: warning",
      "zone:",
      "  - domain: localhost",
      `    storage: "${dir}"`,
      '    file: "localhost.zone"',
      "    zonefile-sync: -1",
      "    journal-content: none",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(dir, "localhost.zone"),
    ["$ORIGIN localhost.", "$TTL 0", "@ SOA ns.localhost. hostmaster.localhost. 1 3600 600 86400 0", "@ NS ns.localhost.", "ns A 127.0.0.1", ""].join("\n"),
  );
  const proc = Bun.spawn(["knotd", "-c", join(dir, "knot.conf")], { stdout: "ignore", stderr: "pipe" });
  const knotc = async (args: string[]) => {
    const p = Bun.spawn(["knotc", "-s", socket, ...args], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    if ((await p.exited) !== 0) throw new Error(`knotc ${args.join(" ")}: ${out}${err}`);
  };
  // Ready once the control socket answers for the zone.
  for (let i = 0; ; i++) {
    try {
      await knotc(["zone-status", "localhost"]);
      break;
    } catch (e) {
      if (proc.exitCode !== null) throw new Error(`knotd exited: ${await new Response(proc.stderr as ReadableStream).text()}`);
      if (i > 200) throw e;
      await Bun.sleep(50);
    }
  }
  const edit = (op: "zone-set" | "zone-unset", name: string, value: string) =>
    knotc(["zone-begin", "localhost"])
      .then(() => knotc([op, "localhost", name.endsWith(".") ? name : `${name}.`, ...(op === "zone-set" ? ["0"] : []), "TXT", `"${value}"`]))
      .then(() => knotc(["zone-commit", "localhost"]));
  return {
    address: `127.0.0.1:${port}`,
    socket,
    dir,
    knotc,
    setTxt: (name, value) => edit("zone-set", name, value),
    hookScript() {
      const path = join(dir, "dns-hook.sh");
      writeFileSync(
        path,
        [
          "#!/bin/sh",
          "# lego exec provider: $1 = present|cleanup, $2 = fqdn, $3 = value",
          "set -e",
          `S="${socket}"`,
          'case "$1" in present) OP=zone-set; TTL=0 ;; cleanup) OP=zone-unset; TTL= ;; *) exit 0 ;; esac',
          'knotc -s "$S" zone-begin localhost',
          'knotc -s "$S" $OP localhost "$2" $TTL TXT "\\"$3\\"" || { knotc -s "$S" zone-abort localhost; exit 1; }',
          'knotc -s "$S" zone-commit localhost',
          "",
        ].join("\n"),
        { mode: 0o755 },
      );
      return path;
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
