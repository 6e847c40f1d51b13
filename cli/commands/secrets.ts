/**
 * `secrets get|put|patch|list|delete|undelete|destroy|history`: sm-secrets's versioned KV
 * store. Values come as Vault's CLI takes them: `key=value` pairs (`key=@file` reads a file,
 * `key=-` stdin), one `@data.json` object, or a JSON object on stdin (`-`, or no pairs).
 */
import type { Command } from "commander";
import * as S from "../../schemas/sm-secrets.ts";
import { checked, emit, fields, intOption, Session, sub, table } from "../command.ts";
import { UsageError } from "../errors.ts";
import { readInput } from "../io.ts";

type Written = { path: string; version: number; created_time: string; deletion_time: string | null; destroyed: boolean };
type Version = S.SecretVersionView;
type Metadata = S.KeyMetadataView;

const dec = new TextDecoder();
const api = (cmd: Command) => Session.open(cmd).api("sm-secrets");
const pathOf = (path: string) => checked(S.secretPath, path, "path");

function jsonObject(text: string, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`${where} is not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new UsageError(`${where} must hold a JSON object`);
  return value as Record<string, unknown>;
}

/** The secret's data from the command's arguments (see the file header). */
async function dataOf(args: string[]): Promise<Record<string, unknown>> {
  if (args.length === 0 || (args.length === 1 && args[0] === "-")) return jsonObject(dec.decode(await readInput("-")), "stdin");
  if (args.length === 1 && args[0]!.startsWith("@")) return jsonObject(dec.decode(await readInput(args[0]!.slice(1))), args[0]!.slice(1));
  const data: Record<string, unknown> = {};
  for (const arg of args) {
    const i = arg.indexOf("=");
    if (i < 1) throw new UsageError(`expected KEY=VALUE, KEY=@FILE or one @FILE.json, not '${arg.length > 40 ? `${arg.slice(0, 40)}...` : arg}'`);
    const key = arg.slice(0, i);
    const value = arg.slice(i + 1);
    // The value of a key=@file is the file's text, as Vault's CLI reads it.
    data[key] = value === "-" ? dec.decode(await readInput("-")) : value.startsWith("@") ? dec.decode(await readInput(value.slice(1))) : value;
  }
  return data;
}

/** `--versions 1,2,3`. */
function versionsOption(value: string): number[] {
  if (!/^\d{1,15}(,\d{1,15})*$/.test(value)) throw new UsageError("--versions takes version numbers separated by commas, e.g. 1,2");
  return value.split(",").map(Number);
}

const written = (w: Written) => `${w.path}: version ${w.version}${w.deletion_time ? ` (deleted at ${w.deletion_time})` : ""}`;

export function registerSecrets(program: Command): void {
  const secrets = sub(program, "secrets", "sm-secrets: versioned secrets at paths (Vault KV v2 semantics)", ["secrets put app/db user=alice password=@pw.txt", "secrets get app/db"]);

  sub(secrets, "get <path>", "Print a secret's current version (or --at N) as JSON, or one member with --field", [
    "secrets get app/db",
    "secrets get app/db --at 2",
    "secrets get app/db --field password",
    "secrets get app/db --json",
  ])
    // Not --version: the root command's --version (the CLI's own) takes that name everywhere.
    .option("--at <version>", "a given version", intOption("--at", Number.MAX_SAFE_INTEGER))
    .option("--field <name>", "print only this member (a string as it is)")
    .action(async (path: string, o: { at?: number; field?: string }, cmd: Command) => {
      const r = await api(cmd).api<Version>("GET", `/secrets/data/${pathOf(path)}`, undefined, { version: o.at });
      if (o.field !== undefined) {
        if (!Object.prototype.hasOwnProperty.call(r.data, o.field)) throw new UsageError(`version ${r.metadata.version} has no member '${o.field}'`);
        const x = r.data[o.field];
        process.stdout.write((typeof x === "string" ? x : JSON.stringify(x)) + "\n");
        return;
      }
      emit(cmd, r, (x) => JSON.stringify(x.data, null, 2));
    });

  for (const [verb, method, summary] of [
    ["put", "PUT", "Write a new version"],
    ["patch", "PATCH", "Write a new version merged into the current one (JSON merge patch: null removes a member)"],
  ] as const) {
    sub(secrets, `${verb} <path> [values...]`, `${summary}: KEY=VALUE pairs, KEY=@FILE, one @FILE.json, or a JSON object on stdin`, [
      `secrets ${verb} app/db user=alice password=s3cret`,
      `secrets ${verb} app/tls cert=@tls.crt key=@tls.key`,
      `secrets ${verb} app/db @db.json --cas 3`,
      `echo '{"password":"s3cret"}' | cryptoutil secrets ${verb} app/db`,
    ])
      .option("--cas <n>", "check-and-set: only if the current version is N (0: only if the secret does not exist)", (x: string) => {
        if (!/^\d{1,15}$/.test(x)) throw new UsageError("--cas takes a version number (0: create only)");
        return Number(x);
      })
      .action(async (path: string, values: string[], o: { cas?: number }, cmd: Command) => {
        const body = checked(S.WriteSecret, { data: await dataOf(values), cas: o.cas }, "secret");
        const w = await api(cmd).api<Written>(method, `/secrets/data/${pathOf(path)}`, body);
        emit(cmd, w, written);
      });
  }

  sub(secrets, "list [prefix]", "List the secrets and folders (ending in /) one level under a prefix", ["secrets list", "secrets list app/", "secrets list app/ --json"]).action(
    async (prefix: string | undefined, _: unknown, cmd: Command) => {
      const p = prefix === undefined || prefix === "" || prefix.endsWith("/") ? (prefix ?? "") : `${prefix}/`;
      const q = checked(S.ListQuery, { prefix: p }, "prefix");
      const r = await api(cmd).api<{ prefix: string; keys: string[] }>("GET", "/secrets/list", undefined, { prefix: q.prefix });
      emit(cmd, r, (x) => (x.keys.length === 0 ? `nothing under '${x.prefix}'` : x.keys.join("\n")));
    },
  );

  sub(secrets, "delete <path>", "Soft-delete the current version, or --versions (undelete brings them back)", ["secrets delete app/db", "secrets delete app/db --versions 1,2"])
    .option("--versions <list>", "versions, separated by commas", versionsOption)
    .action(async (path: string, o: { versions?: number[] }, cmd: Command) => {
      const p = pathOf(path);
      if (o.versions) await api(cmd).api("POST", `/secrets/delete/${p}`, checked(S.Versions, { versions: o.versions }));
      else await api(cmd).api("DELETE", `/secrets/data/${p}`);
      emit(cmd, { path: p, deleted: o.versions ?? "current" }, () => `${p}: ${o.versions ? `versions ${o.versions.join(", ")}` : "current version"} deleted`);
    });

  for (const [verb, summary, done] of [
    ["undelete", "Bring soft-deleted versions back (not destroyed ones)", "undeleted"],
    ["destroy", "Destroy versions: their data is removed for good", "destroyed"],
  ] as const) {
    sub(secrets, `${verb} <path>`, summary, [`secrets ${verb} app/db --versions 3`])
      .requiredOption("--versions <list>", "versions, separated by commas", versionsOption)
      .action(async (path: string, o: { versions: number[] }, cmd: Command) => {
        const p = pathOf(path);
        await api(cmd).api("POST", `/secrets/${verb}/${p}`, checked(S.Versions, { versions: o.versions }));
        emit(cmd, { path: p, [done]: o.versions }, () => `${p}: versions ${o.versions.join(", ")} ${done}`);
      });
  }

  sub(secrets, "history <path>", "A secret's settings and its versions: created, deleted, destroyed", ["secrets history app/db", "secrets history app/db --json"]).action(
    async (path: string, _: unknown, cmd: Command) => {
      const m = await api(cmd).api<Metadata>("GET", `/secrets/metadata/${pathOf(path)}`);
      emit(cmd, m, (x) =>
        [
          fields({
            path: x.path,
            "current version": x.current_version,
            "max versions": x.max_versions || "tenant default",
            "cas required": x.cas_required,
            "delete after (s)": x.delete_version_after_s || "never",
            "custom metadata": x.custom_metadata ?? undefined,
          }),
          "",
          x.versions.length === 0
            ? "no versions"
            : table(
                ["VERSION", "CREATED", "DELETED", "DESTROYED"],
                x.versions.map((v) => [v.version, v.created_time, v.deletion_time, v.destroyed ? "yes" : "no"]),
              ),
        ].join("\n"),
      );
    },
  );
}
