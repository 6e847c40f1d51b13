#!/usr/bin/env bun
/**
 * The `cryptoutil` command line. Runs on Bun; `npx cryptoutil` reaches it through
 * cli/bin/cryptoutil.mjs, and `bun build --compile cli/main.ts --outfile dist/cryptoutil`
 * makes it one binary. Every failure ends as one line on stderr and an exit code
 * (errors.ts): 0 done, 1 refused or unreachable, 2 usage.
 */
import { buildProgram } from "./program.ts";
import { report } from "./errors.ts";

let code = 0;
try {
  await buildProgram().parseAsync(process.argv);
} catch (e) {
  code = report(e);
}
process.exitCode = code;
