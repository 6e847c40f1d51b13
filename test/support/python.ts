/**
 * The first `python3` on PATH that can import `module` (Debian's python3-grpcio installs into
 * the system interpreter, which a version manager's python3 earlier on PATH may shadow), or
 * undefined. `CRYPTOUTIL_PYTHON` names one explicitly.
 */
import { spawnSync } from "node:child_process";

export function pythonWith(module: string): string | undefined {
  const explicit = process.env.CRYPTOUTIL_PYTHON;
  const all = spawnSync("sh", ["-c", "which -a python3"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  const candidates = [...(explicit ? [explicit] : []), ...new Set(all)];
  return candidates.find((p) => spawnSync(p, ["-c", `import ${module}`], { stdio: "ignore" }).status === 0);
}
