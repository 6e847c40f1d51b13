/**
 * The shape shared by the data commands (`kms encrypt a b c --out-dir D`, `jose jwe
 * decrypt x.jwe`, ...): one input (a file, `-` or stdin) to `--out` or stdout, or many
 * files into `--out-dir`, a few requests in flight, with a progress bar on a terminal.
 */
import { basename, join } from "node:path";
import { mkdirSync } from "node:fs";
import type { Command } from "commander";
import { globals } from "./command.ts";
import { fileProblem, UsageError } from "./errors.ts";
import { Progress, readInput, writeOutput } from "./io.ts";

export interface FileOpts {
  out?: string;
  outDir?: string;
}

export interface Transformed {
  /** What is written to the output. */
  output: string | Uint8Array;
  /** The service's answer, printed with --json when there is no output file. */
  result: Record<string, unknown>;
  kid?: string;
}

const IN_FLIGHT = 4;

/** Adds `--out` and `--out-dir` to a command. */
export function withOutputs(cmd: Command): Command {
  return cmd.option("-o, --out <file>", "write the result here (default stdout)").option("--out-dir <dir>", "with several input files: write each result here");
}

export async function transformFiles(cmd: Command, files: string[], o: FileOpts, label: string, rename: (base: string) => string, op: (input: Uint8Array) => Promise<Transformed>): Promise<void> {
  const json = globals(cmd).json;
  if (files.length > 1 && !o.outDir) throw new UsageError("several input files need --out-dir");
  if (o.out && o.outDir) throw new UsageError("--out and --out-dir exclude each other");
  if (files.filter((f) => f === "-").length > 1 || (files.length > 1 && files.includes("-"))) throw new UsageError("stdin (-) can only be the one input");

  if (!o.outDir) {
    const r = await op(await readInput(files[0]));
    if (json && !o.out) {
      process.stdout.write(JSON.stringify(r.result, null, 2) + "\n");
      return;
    }
    writeOutput(o.out, r.output);
    if (json) process.stdout.write(JSON.stringify({ input: files[0] ?? "-", output: o.out, kid: r.kid }, null, 2) + "\n");
    return;
  }

  try {
    mkdirSync(o.outDir, { recursive: true });
  } catch (e) {
    throw fileProblem(e, o.outDir, "create");
  }
  const inputs = files.length ? files : ["-"];
  const progress = new Progress(inputs.length, label);
  const done: Array<{ input: string; output: string; kid?: string }> = [];
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) {
      const input = inputs[next++]!;
      const out = join(o.outDir!, rename(input === "-" ? "stdin" : basename(input)));
      const r = await op(await readInput(input));
      writeOutput(out, r.output);
      done.push({ input, output: out, kid: r.kid });
      progress.tick();
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, inputs.length) }, worker));
  } finally {
    progress.end();
  }
  if (json) process.stdout.write(JSON.stringify({ results: done }, null, 2) + "\n");
  else for (const d of done) process.stdout.write(`${d.input} -> ${d.output}\n`);
}

/** `k=v` pairs of a repeatable option, as a map. */
export function pairs(list: string[] | undefined, flag: string): Record<string, string> | undefined {
  if (!list?.length) return undefined;
  const out: Record<string, string> = {};
  for (const item of list) {
    const i = item.indexOf("=");
    if (i < 1) throw new UsageError(`${flag} takes KEY=VALUE, not '${item}'`);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}
