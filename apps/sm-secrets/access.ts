/**
 * Who may do what where: a client's scopes, each for the whole tenant or for some paths.
 *
 *   secrets:read                 every path of the tenant
 *   secrets:read:team-a/*        paths that start with `team-a/`
 *   secrets:read:team-a/db       exactly the path `team-a/db`
 *
 * The same forms hold for `secrets:write`, `secrets:delete` and `secrets:admin` (the tenant's
 * config needs the unrestricted `secrets:admin`). A path outside every grant is refused with
 * 403 `insufficient_scope`, before the store is read, so the answer tells nothing about it.
 */
import { AppError } from "../../src/service/errors.ts";
import type { Principal } from "../../src/auth/bearer.ts";

export type Capability = "read" | "write" | "delete" | "admin";

interface Grant {
  /** The path, or the prefix when `prefix` is set ("" with `prefix`: every path). */
  path: string;
  prefix: boolean;
}

const denied = (cap: Capability) =>
  new AppError("insufficient_scope", `missing scope: secrets:${cap} for this path`, { headers: { "WWW-Authenticate": `Bearer error="insufficient_scope", scope="secrets:${cap}"` } });

export class SecretAccess {
  private constructor(private readonly grants: Record<Capability, Grant[]>) {}

  static of(principal: Principal): SecretAccess {
    const grants: Record<Capability, Grant[]> = { read: [], write: [], delete: [], admin: [] };
    for (const scope of principal.scopes) {
      const m = /^secrets:(read|write|delete|admin)(?::(.+))?$/.exec(scope);
      if (!m) continue;
      const cap = m[1] as Capability;
      const target = m[2];
      if (target === undefined) grants[cap].push({ path: "", prefix: true });
      else if (target.endsWith("*")) grants[cap].push({ path: target.slice(0, -1), prefix: true });
      else grants[cap].push({ path: target, prefix: false });
    }
    return new SecretAccess(grants);
  }

  covers(cap: Capability, path: string): boolean {
    return this.grants[cap].some((g) => (g.prefix ? path.startsWith(g.path) : path === g.path));
  }

  require(cap: Capability, path: string): void {
    if (!this.covers(cap, path)) throw denied(cap);
  }

  /** The tenant-wide form of `cap` (the tenant's config). */
  requireAll(cap: Capability): void {
    if (!this.grants[cap].some((g) => g.prefix && g.path === "")) throw denied(cap);
  }

  /** Listing `prefix` is allowed when some read grant lies under it or covers it. */
  requireList(prefix: string): void {
    if (!this.grants.read.some((g) => g.path.startsWith(prefix) || (g.prefix && prefix.startsWith(g.path)))) throw denied("read");
  }

  /**
   * Whether a list entry is shown: a key when readable; a folder (ending in `/`) when some
   * read grant covers it or lies inside it.
   */
  visible(fullPath: string): boolean {
    if (!fullPath.endsWith("/")) return this.covers("read", fullPath);
    return this.grants.read.some((g) => g.path.startsWith(fullPath) || (g.prefix && fullPath.startsWith(g.path)));
  }
}
