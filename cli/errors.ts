/**
 * The CLI's errors and the one place that turns any failure into one line on stderr
 * and an exit code: 2 for usage (bad flags, missing or unreadable files, bad input),
 * 1 when a service refused or could not be reached. Never a stack trace (set
 * CRYPTOUTIL_DEBUG=1 to see one).
 */
import { CommanderError } from "commander";
import { AppError } from "../src/service/errors.ts";

/** The caller's mistake: a flag, an argument, a file. Exit 2. */
export class UsageError extends Error {}

/**
 * A service (or the token issuer) answered with an error: `code` is the stable code of the
 * suite's error model (`{"error":{"code","message"}}`) or OAuth's `error`. Exit 1.
 */
export class RefusedError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** A service that could not be reached (down, refused, TLS failure, timeout). Exit 1. */
export class UnreachableError extends Error {}

/** Any other failure of the operation itself (e.g. an OCSP answer that does not verify). Exit 1. */
export class FailedError extends Error {}

/** What a file-system error says, in one phrase. */
export function fileProblem(e: unknown, path: string, verb = "read"): UsageError {
  const code = (e as { code?: string }).code;
  const why =
    code === "ENOENT" ? "no such file" : code === "EACCES" || code === "EPERM" ? "permission denied" : code === "EISDIR" ? "is a directory" : code === "EEXIST" ? "already exists (use --force to replace it)" : (e as Error).message;
  return new UsageError(`cannot ${verb} ${path}: ${why}`);
}

/** Prints one line for `e` and returns the exit code. */
export function report(e: unknown, write: (line: string) => void = (l) => process.stderr.write(l + "\n")): number {
  if (process.env.CRYPTOUTIL_DEBUG === "1" && e instanceof Error) write(String(e.stack));
  if (e instanceof CommanderError) {
    // Commander has printed its own message (through configureOutput) already.
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
    return 2;
  }
  if (e instanceof UsageError) {
    write(`error: ${e.message}`);
    return 2;
  }
  if (e instanceof AppError) {
    // Raised by code that runs here (the root ceremony, CSR and key parsing): the input's fault.
    write(`error: ${e.message} (${e.code})`);
    return 2;
  }
  if (e instanceof RefusedError) {
    write(`error: ${e.code}: ${e.message}${e.hint ? ` (${e.hint})` : ""}`);
    return 1;
  }
  if (e instanceof UnreachableError || e instanceof FailedError) {
    write(`error: ${e.message}`);
    return 1;
  }
  write(`error: unexpected failure: ${e instanceof Error ? e.message : String(e)}`.split("\n")[0]!);
  return 1;
}
