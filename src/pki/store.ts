/**
 * Where TLS material is kept: a tiny async key-value interface, and a
 * directory-backed implementation used for the suite CA that several service
 * processes share on one machine.
 *
 * Guarantees (DirectoryStore): names are checked (no `..`, no absolute paths), so
 * a name never escapes the directory; every write goes to a temporary file that
 * is renamed (put) or hard-linked (putIfAbsent) into place, so readers never see
 * a partial file, and putIfAbsent is atomic across processes (link fails with
 * EEXIST when another process won). Files are created 0600, directories 0700.
 */
import { AppError } from "../service/errors.ts";

/** The storage a service gives `loadOrCreateTlsMaterial` (e.g. a table row or a file per name). */
export interface KeyValueStore {
  get(name: string): Promise<Uint8Array | undefined>;
  put(name: string, bytes: Uint8Array): Promise<void>;
}

/** A store that can also create a value only when none exists, atomically. */
export interface CreateOnceStore extends KeyValueStore {
  /** Stores `bytes` unless `name` exists; returns what is stored afterwards and whether it was ours. */
  putIfAbsent(name: string, bytes: Uint8Array): Promise<{ created: boolean; bytes: Uint8Array }>;
}

const NAME = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

function checkName(name: string): string {
  if (!NAME.test(name) || name.split("/").some((p) => p === "." || p === "..") || name.length > 200) {
    throw new AppError("bad_request", `invalid store entry name "${name}"`);
  }
  return name;
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;
}

/**
 * A CreateOnceStore over one directory (the directory is created on first write).
 *
 * @example
 *   const store = new DirectoryStore(join(dataDir, "suite-ca"));
 */
export class DirectoryStore implements CreateOnceStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async #fs() {
    const fs = await import("node:fs/promises");
    const path = await import("node:path");
    return { fs, path };
  }

  async #pathOf(name: string): Promise<string> {
    const { path } = await this.#fs();
    return path.join(this.dir, ...checkName(name).split("/"));
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    const { fs } = await this.#fs();
    try {
      return new Uint8Array(await fs.readFile(await this.#pathOf(name)));
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      throw new AppError("unavailable", `cannot read ${name} from ${this.dir}`, { cause: e });
    }
  }

  /** Writes a complete temporary file beside the target and returns its path. */
  async #writeTemp(target: string, bytes: Uint8Array): Promise<string> {
    const { fs, path } = await this.#fs();
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    const rnd = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
    const tmp = `${target}.${rnd}.tmp`;
    const fh = await fs.open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return tmp;
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    const { fs } = await this.#fs();
    const target = await this.#pathOf(name);
    try {
      const tmp = await this.#writeTemp(target, bytes);
      await fs.rename(tmp, target);
    } catch (e) {
      throw new AppError("unavailable", `cannot write ${name} to ${this.dir}`, { cause: e });
    }
  }

  async putIfAbsent(name: string, bytes: Uint8Array): Promise<{ created: boolean; bytes: Uint8Array }> {
    const { fs } = await this.#fs();
    const target = await this.#pathOf(name);
    let tmp: string;
    try {
      tmp = await this.#writeTemp(target, bytes);
    } catch (e) {
      throw new AppError("unavailable", `cannot write ${name} to ${this.dir}`, { cause: e });
    }
    try {
      // link(2) creates the name only if it does not exist: the first process wins, the others read its file.
      await fs.link(tmp, target);
      return { created: true, bytes };
    } catch (e) {
      if (!isErrno(e, "EEXIST")) throw new AppError("unavailable", `cannot create ${name} in ${this.dir}`, { cause: e });
      const existing = await this.get(name);
      if (existing === undefined) throw new AppError("unavailable", `${name} vanished from ${this.dir}`);
      return { created: false, bytes: existing };
    } finally {
      await fs.unlink(tmp).catch(() => undefined);
    }
  }
}
