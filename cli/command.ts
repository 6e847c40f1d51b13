/**
 * What every command is built from: the global options (`--context`, `--json`), a
 * session that knows the context's services and hands out authenticated clients,
 * schema checks of what a command sends, and output as JSON or for people.
 */
import type { Command } from "commander";
import * as v from "valibot";
import { TokenSource, readCaFile } from "./auth.ts";
import { currentContext, type Context } from "./config.ts";
import { UsageError } from "./errors.ts";
import { ServiceClient } from "./http.ts";

export interface GlobalOpts {
  context?: string;
  json?: boolean;
}

export const globals = (cmd: Command): GlobalOpts => cmd.optsWithGlobals<GlobalOpts>();

/** A subcommand with a description and examples shown under `--help`. */
export function sub(parent: Command, nameAndArgs: string, description: string, examples: string[]): Command {
  return parent
    .command(nameAndArgs)
    .description(description)
    .addHelpText("after", `\nExamples:\n${examples.map((e) => `  $ ${e.includes("cryptoutil ") ? e : `cryptoutil ${e}`}`).join("\n")}\n`);
}

/** A command group (`kms`, `kms key`, ...): with no subcommand it shows its help and exits 2. */
export function group(parent: Command, name: string, description: string, examples: string[]): Command {
  return sub(parent, name, description, examples);
}

export class Session {
  readonly tokens: TokenSource;
  private ca?: string;

  constructor(
    readonly name: string,
    readonly context: Context,
  ) {
    this.tokens = new TokenSource(name, context);
  }

  static open(cmd: Command): Session {
    const { name, context } = currentContext(globals(cmd).context);
    return new Session(name, context);
  }

  service(name: string): { url: string; admin?: string; audience: string; admin_token_file?: string } {
    const s = this.context.services[name];
    if (!s) throw new UsageError(`context '${this.name}' has no service '${name}' (log in with --service ${name}=https://...)`);
    return { url: s.public.replace(/\/+$/, ""), admin: s.admin?.replace(/\/+$/, ""), audience: s.audience, admin_token_file: s.admin_token_file };
  }

  caPem(): string {
    return (this.ca ??= readCaFile(this.context.ca_file));
  }

  /** The API of a service with tokens for its audience. */
  api(name: string): ServiceClient {
    const s = this.service(name);
    return new ServiceClient(name, s.url, this.caPem(), ({ fresh }) => this.tokens.token(s.audience, { fresh }));
  }

  /** The public side of a service without a token (e.g. the CA's /pki routes). */
  anonymous(name: string): ServiceClient {
    return new ServiceClient(name, this.service(name).url, this.caPem());
  }
}

/** Checks what a command is about to send with the service's own schema; a misfit is a usage error. */
export function checked<S extends v.GenericSchema>(schema: S, value: unknown, what = "input"): v.InferOutput<S> {
  const r = v.safeParse(schema, value);
  if (r.success) return r.output;
  const i = r.issues[0];
  const at = i.path?.map((p) => String(p.key)).join(".");
  throw new UsageError(`invalid ${what}${at ? ` (${at})` : ""}: ${i.message}`);
}

/** Prints `data` as JSON with `--json`, else what `human` makes of it. */
export function emit<T>(cmd: Command, data: T, human: (d: T) => string | undefined): void {
  if (globals(cmd).json) {
    process.stdout.write(JSON.stringify(data, null, 2) + "\n");
    return;
  }
  const text = human(data);
  if (text !== undefined && text !== "") process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

/** A plain text table: a header and rows, columns padded to their widest cell. */
export function table(header: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(cells[0]!), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

/** `key: value` lines. */
export function fields(o: Record<string, unknown>): string {
  const w = Math.max(...Object.keys(o).map((k) => k.length));
  return Object.entries(o)
    .filter(([, x]) => x !== undefined)
    .map(([k, x]) => `${(k + ":").padEnd(w + 1)} ${x === null ? "-" : Array.isArray(x) ? x.join(", ") || "-" : typeof x === "object" ? JSON.stringify(x) : String(x)}`)
    .join("\n");
}

/** A repeatable option's collector. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A positive whole number option. */
export function intOption(name: string, max = 1_000_000) {
  return (value: string) => {
    if (!/^\d{1,9}$/.test(value) || Number(value) < 1 || Number(value) > max) throw new UsageError(`${name} must be a whole number from 1 to ${max}`);
    return Number(value);
  };
}
