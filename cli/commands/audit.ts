/**
 * `audit verify|export|checkpoint|key|query|tail|proof`: the audit service's log.
 *
 * `verify` is offline: it reads an export, a signed checkpoint and the log's verifier key from
 * files and needs no server, so an auditor can check a copy of the log anywhere.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import * as S from "../../schemas/audit.ts";
import { verifyExport, ExportFormatError } from "../../src/audit/verify.ts";
import { NoteError, openCheckpoint, parseVerifierKey } from "../../src/audit/note.ts";
import { verifyInclusion } from "../../src/audit/proofs.ts";
import { checked, emit, fields, intOption, Session, sub, table } from "../command.ts";
import { FailedError, fileProblem, UsageError } from "../errors.ts";
import { writeOutput } from "../io.ts";
import { refusal } from "../http.ts";

type Entry = S.AuditEntry & { leaf_hash: string };
type Page = { items: Entry[]; next_page_token: string | null };

const session = (cmd: Command) => Session.open(cmd);
const api = (cmd: Command) => session(cmd).api("audit");

function readFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw fileProblem(e, path);
  }
}

/** A member of a JSON answer saved to a file (`GET /log`, `GET /checkpoints/latest`), or the file's text as it is. */
function memberOr(text: string, member: string): string {
  if (!text.trimStart().startsWith("{")) return text;
  try {
    const v = (JSON.parse(text) as Record<string, unknown>)[member];
    if (typeof v === "string") return v;
  } catch {
    // not JSON after all: the text as it is
  }
  throw new UsageError(`the JSON file has no '${member}'`);
}

/** `--key` is a vkey, or a file holding one (or the JSON of `GET /log`). */
const keyText = (key: string) => (existsSync(key) ? memberOr(readFile(key), "verifier_key").trim() : key.trim());

const row = (e: Entry) => [e.seq, e.time, e.service, e.tenant, e.actor, e.action, e.resource || "-", e.result];
const HEADER = ["seq", "time", "service", "tenant", "actor", "action", "resource", "result"];

function queryOptions(c: Command): Command {
  return c
    .option("--tenant <tenant>", "another tenant (the suite administrator only)")
    .option("--service <name>", "events sent by this service")
    .option("--actor <actor>", "events of this actor")
    .option("--action <action>", "events of this action, e.g. key.create")
    .option("--result <result>", "ok, or an error code")
    .option("--from <time>", "events at or after this ISO 8601 time")
    .option("--to <time>", "events before this ISO 8601 time");
}

type QueryOpts = { tenant?: string; service?: string; actor?: string; action?: string; result?: string; from?: string; to?: string };
const filterOf = (o: QueryOpts) => ({ tenant: o.tenant, service: o.service, actor: o.actor, action: o.action, result: o.result, from: o.from, to: o.to });

export function registerAudit(program: Command): void {
  const audit = sub(program, "audit", "audit: the suite's tamper-evident log of security events", ["audit query --action key.create", "audit verify log.jsonl --checkpoint checkpoint.txt --key audit.vkey"]);

  sub(audit, "verify <export>", "Check an export against a signed checkpoint, offline: names the first entry changed, deleted or reordered", [
    "audit verify log.jsonl --checkpoint checkpoint.txt --key audit.vkey",
  ])
    .requiredOption("--checkpoint <file>", "the signed checkpoint: the note `audit checkpoint` writes, or the JSON of GET /checkpoints/latest")
    .requiredOption("--key <vkey>", "the log's verifier key, or a file holding it (`audit key`, or the JSON of GET /log)")
    .action((file: string, o: { checkpoint: string; key: string }, cmd: Command) => {
      let r;
      try {
        r = verifyExport(readFile(file), memberOr(readFile(o.checkpoint), "note"), keyText(o.key));
      } catch (e) {
        if (e instanceof NoteError) throw new FailedError(`${e.code}: ${e.message}`);
        if (e instanceof ExportFormatError) throw new UsageError(e.message);
        throw e;
      }
      if (!r.ok) {
        if (globals(cmd)) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
        throw new FailedError(`verification failed: ${r.reason}`);
      }
      emit(cmd, r, (x) => `ok: ${x.treeSize} entries match the signed checkpoint (${x.entriesChecked} checked by their text, the rest other tenants' by leaf hash)`);
    });

  sub(audit, "export", "Write the log up to the latest checkpoint (or --tree-size) as JSON lines, for `audit verify`", ["audit export -o log.jsonl"])
    .option("-o, --out <file>", "write here instead of stdout")
    .option("--tree-size <n>", "export up to this size (a checkpoint's)", intOption("--tree-size", Number.MAX_SAFE_INTEGER))
    .action(async (o: { out?: string; treeSize?: number }, cmd: Command) => {
      const s = session(cmd);
      const svc = s.service("audit");
      const token = await s.tokens.token(svc.audience, { fresh: false });
      const res = await s.anonymous("audit").raw("GET", `/service/api/v1/export${o.treeSize ? `?tree_size=${o.treeSize}` : ""}`, { headers: { authorization: `Bearer ${token}` } });
      if (!res.ok) throw await refusal(res);
      writeOutput(o.out, new Uint8Array(await res.arrayBuffer()));
    });

  sub(audit, "checkpoint", "Write the latest signed checkpoint (--now: make one first)", ["audit checkpoint -o checkpoint.txt", "audit checkpoint --now"])
    .option("-o, --out <file>", "write the note here instead of stdout")
    .option("--now", "checkpoint now (scope audit:admin)")
    .action(async (o: { out?: string; now?: boolean }, cmd: Command) => {
      const c = await api(cmd).api<{ note: string; tree_size: number }>(o.now ? "POST" : "GET", o.now ? "/checkpoints" : "/checkpoints/latest");
      if (globals(cmd) && !o.out) return emit(cmd, c, () => "");
      writeOutput(o.out, c.note);
    });

  sub(audit, "key", "Print the log's verifier key (C2SP vkey) for `audit verify`", ["audit key > audit.vkey"]).action(async (_o: unknown, cmd: Command) => {
    const info = await api(cmd).api<{ verifier_key: string; origin: string; tree_size: number; checkpoint_size: number; retention_days: number }>("GET", "/log");
    emit(cmd, info, (x) => x.verifier_key);
  });

  queryOptions(
    sub(audit, "query", "List entries, newest first, by tenant, service, actor, action, result and time", ["audit query --action certificate.issue --from 2030-01-01T00:00:00Z"]),
  )
    .option("--limit <n>", "entries at most (default 100)", intOption("--limit", 100_000))
    .action(async (o: QueryOpts & { limit?: number }, cmd: Command) => {
      const want = o.limit ?? 100;
      const items: Entry[] = [];
      let page: string | undefined;
      checked(S.EventsQuery, Object.fromEntries(Object.entries(filterOf(o)).filter(([, x]) => x !== undefined)), "filter");
      do {
        const r = await api(cmd).api<Page>("GET", "/events", undefined, { ...filterOf(o), limit: Math.min(S.MAX_PAGE, want - items.length), page_token: page });
        items.push(...r.items);
        page = r.next_page_token ?? undefined;
      } while (page && items.length < want);
      emit(cmd, items, (x) => table(HEADER, x.map(row)));
    });

  queryOptions(sub(audit, "tail", "Print new entries as they arrive (Ctrl-C stops); --count stops after that many", ["audit tail --service sm-kms"]))
    .option("--interval <ms>", "how often to ask (default 1000)", intOption("--interval", 600_000))
    .option("--count <n>", "stop after this many entries", intOption("--count", 1_000_000))
    .option("--since <seq>", "start after this position (default: from now on)", (x: string) => {
      if (!/^\d{1,15}$/.test(x)) throw new UsageError("--since takes a log position");
      return Number(x);
    })
    .action(async (o: QueryOpts & { interval?: number; count?: number; since?: number }, cmd: Command) => {
      const client = api(cmd);
      let after = o.since ?? (await client.api<{ tree_size: number }>("GET", "/log")).tree_size - 1;
      let printed = 0;
      for (;;) {
        const r = await client.api<Page>("GET", "/events", undefined, { ...filterOf(o), after, limit: S.MAX_PAGE });
        for (const e of r.items) {
          process.stdout.write(globals(cmd) ? JSON.stringify(e) + "\n" : row(e).join("  ") + "\n");
          after = e.seq;
          if (o.count !== undefined && ++printed >= o.count) return;
        }
        if (r.items.length < S.MAX_PAGE) await Bun.sleep(o.interval ?? 1000);
      }
    });

  sub(audit, "proof <seq>", "Fetch an entry's inclusion proof and check it against its signed checkpoint", ["audit proof 42"]).action(async (seqArg: string, _o: unknown, cmd: Command) => {
    if (!/^\d{1,15}$/.test(seqArg)) throw new UsageError("<seq> is a log position");
    const client = api(cmd);
    const info = await client.api<{ verifier_key: string }>("GET", "/log");
    const p = await client.api<{ seq: number; tree_size: number; leaf_hash: string; hashes: string[]; checkpoint: string }>("GET", `/events/${seqArg}/proof`);
    let ok = false;
    try {
      const cp = openCheckpoint(p.checkpoint, parseVerifierKey(info.verifier_key));
      const b = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
      ok = cp.size === p.tree_size && verifyInclusion(p.seq, cp.size, b(p.leaf_hash), p.hashes.map(b), cp.root);
    } catch (e) {
      if (!(e instanceof NoteError)) throw e;
    }
    if (!ok) throw new FailedError(`the inclusion proof of entry ${p.seq} does not verify`);
    emit(cmd, { ...p, verified: true }, (x) => fields({ seq: x.seq, tree_size: x.tree_size, leaf_hash: x.leaf_hash, proof_hashes: x.hashes.length, verified: "yes" }));
  });
}

/** Whether --json was given. */
function globals(cmd: Command): boolean {
  return !!cmd.optsWithGlobals<{ json?: boolean }>().json;
}
