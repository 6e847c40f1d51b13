/** The `cryptoutil` command tree: `cryptoutil <product> <noun> <verb> [files] [--flags]`. */
import { Command } from "commander";
import { registerLogin } from "./commands/login.ts";
import { registerKms } from "./commands/kms.ts";
import { registerCa } from "./commands/ca.ts";
import { registerJose } from "./commands/jose.ts";
import { registerIdentity } from "./commands/identity.ts";
import { registerAdmin } from "./commands/admin.ts";
import { registerSecrets } from "./commands/secrets.ts";
import { registerAudit } from "./commands/audit.ts";
import { registerCompletion } from "./completion.ts";

export const VERSION = "0.1.0";

export function buildProgram(): Command {
  const program = new Command("cryptoutil")
    .description("Command line of the cryptoutil suite: talks to its services over HTTPS")
    .version(VERSION)
    .option("--context <name>", "the context to use (default: the current one, see cryptoutil context list)")
    .option("--json", "machine-readable output")
    .showHelpAfterError(false)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s.split("\n")[0] + "\n") })
    .addHelpText(
      "after",
      `
Start with:
  $ npm start                       # the suite writes data/suite.json
  $ cryptoutil login                # imports its contexts; 'demo' becomes current
  $ cryptoutil kms key create notes --alg A256GCM
  $ cryptoutil kms encrypt notes notes.txt -o notes.jwe

Exit codes: 0 done, 1 a service refused or could not be reached, 2 a usage error.
Environment: CRYPTOUTIL_HOME (default ~/.cryptoutil), CRYPTOUTIL_SUITE (default ./data/suite.json).
`,
    );
  registerLogin(program);
  registerKms(program);
  registerSecrets(program);
  registerAudit(program);
  registerJose(program);
  registerCa(program);
  registerIdentity(program);
  registerAdmin(program);
  registerCompletion(program);
  return program;
}
