/**
 * `cryptoutil completion bash`: a bash completion script made from the command tree itself,
 * so it never falls behind the commands. Completes subcommands and flags at each level, and
 * file names for positional arguments.
 */
import type { Command } from "commander";
import { sub } from "./command.ts";

/** Every command path ("", "kms", "kms key", ...) with the words that may follow it. */
function words(cmd: Command, path: string[], out: Map<string, string[]>): void {
  const flags = cmd.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x));
  const globals = path.length === 0 ? [] : ["--context", "--json", "--help"];
  out.set(path.join(" "), [...cmd.commands.map((c) => c.name()).filter((n) => n !== "help"), ...flags, ...globals]);
  for (const c of cmd.commands) words(c, [...path, c.name()], out);
}

/** Long flags that take a value anywhere in the tree: the word after one is not a command. */
function valueFlags(cmd: Command, out: Set<string>): Set<string> {
  for (const o of cmd.options) if ((o.required || o.optional) && o.long) out.add(o.long);
  for (const c of cmd.commands) valueFlags(c, out);
  return out;
}

export function bashCompletion(program: Command): string {
  const map = new Map<string, string[]>();
  words(program, [], map);
  const skip = [...valueFlags(program, new Set())].join("|");
  const cases = [...map].map(([path, w]) => `    "${path}") echo "${[...new Set(w)].join(" ")}" ;;`).join("\n");
  return `# bash completion for cryptoutil: source <(cryptoutil completion bash)
_cryptoutil_words() {
  case "$1" in
${cases}
    *) return 1 ;;
  esac
}
_cryptoutil() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" w i next
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in ${skip}) ((i++)); continue ;; -*) continue ;; esac
    next="\${path:+$path }$w"
    _cryptoutil_words "$next" >/dev/null && path="$next"
  done
  COMPREPLY=($(compgen -W "$(_cryptoutil_words "$path")" -- "$cur"))
  [[ \${#COMPREPLY[@]} -eq 0 && "$cur" != -* ]] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}
complete -o filenames -F _cryptoutil cryptoutil
`;
}

export function registerCompletion(program: Command): void {
  const completion = sub(program, "completion", "Shell completion scripts", ["completion bash > /etc/bash_completion.d/cryptoutil", "source <(cryptoutil completion bash)"]);
  sub(completion, "bash", "Print the bash completion script", ["completion bash > ~/.local/share/bash-completion/completions/cryptoutil"]).action(() => {
    process.stdout.write(bashCompletion(program));
  });
}
