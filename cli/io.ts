/**
 * Files in and out: a file argument or `-` (or none) for stdin; `--out FILE` or stdout;
 * private keys and secrets written 0600 and never over an existing file unless asked;
 * a progress bar on stderr for many files when stderr is a terminal.
 */
import { chmodSync, existsSync, openSync, readFileSync, writeFileSync, closeSync, writeSync } from "node:fs";
import { fileProblem, UsageError } from "./errors.ts";

/** The bytes of `path`, or of stdin for `-` or no path. */
export async function readInput(path: string | undefined): Promise<Uint8Array> {
  if (path === undefined || path === "-") {
    if (process.stdin.isTTY) throw new UsageError("no input file given and stdin is a terminal (pass a file, or pipe data in)");
    return new Uint8Array(await Bun.stdin.arrayBuffer());
  }
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw fileProblem(e, path);
  }
}

export async function readText(path: string | undefined): Promise<string> {
  return new TextDecoder().decode(await readInput(path)).trim();
}

/** Writes to `path`, or to stdout when it is undefined or `-`. */
export function writeOutput(path: string | undefined, data: string | Uint8Array): void {
  if (path === undefined || path === "-") {
    process.stdout.write(data);
    return;
  }
  try {
    writeFileSync(path, data);
  } catch (e) {
    throw fileProblem(e, path, "write");
  }
}

/** Creates `path` with mode 0600; refuses an existing file unless `force`. */
export function writeSecretFile(path: string, data: string | Uint8Array, force = false): void {
  let fd: number;
  try {
    fd = openSync(path, force ? "w" : "wx", 0o600);
  } catch (e) {
    throw fileProblem(e, path, "create");
  }
  try {
    writeSync(fd, typeof data === "string" ? new TextEncoder().encode(data) : data);
  } finally {
    closeSync(fd);
  }
  chmodSync(path, 0o600);
}

/** Refuses to go on when `path` exists and `force` is not given (checked before any server call). */
export function mustBeNew(path: string, force?: boolean): void {
  if (!force && existsSync(path)) throw new UsageError(`${path} already exists (use --force to replace it)`);
}

/** A one-line progress bar on stderr, drawn only when stderr is a terminal. */
export class Progress {
  private done = 0;
  private readonly on: boolean;

  constructor(
    private readonly total: number,
    private readonly label: string,
  ) {
    this.on = total > 1 && process.stderr.isTTY === true;
    this.draw();
  }

  tick(): void {
    this.done++;
    this.draw();
  }

  private draw(): void {
    if (!this.on) return;
    const width = 30;
    const filled = Math.round((this.done / this.total) * width);
    process.stderr.write(`\r${this.label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${this.done}/${this.total}`);
  }

  end(): void {
    if (this.on) process.stderr.write("\n");
  }
}
