/** Vault's durations: Go's `1h30m0s` form (h, m, s) or whole seconds, as a number or a string. */

const GO_DURATION = /^(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,12})s)?$/;

/** Seconds of a Vault duration, or undefined when it is not one. */
export function parseDuration(x: unknown): number | undefined {
  if (typeof x === "number") return Number.isSafeInteger(x) && x >= 0 ? x : undefined;
  if (typeof x !== "string" || x === "") return undefined;
  if (/^\d{1,12}$/.test(x)) return Number(x);
  const m = GO_DURATION.exec(x);
  if (!m) return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** Seconds as Go prints a duration: `0s`, `45s`, `1m30s`, `1h0m0s`. */
export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}
