/** `kms key ...` (elastic keys) and `kms encrypt|decrypt|sign|verify|mac|data-key|rewrap` on files. */
import type { Command } from "commander";
import { base64url } from "jose";
import * as S from "../../schemas/sm-kms.ts";
import { checked, collect, emit, fields, globals, intOption, Session, sub, table } from "../command.ts";
import { UsageError } from "../errors.ts";
import { pairs, transformFiles, withOutputs, type FileOpts } from "../files.ts";
import { readInput, readText, writeOutput, writeSecretFile } from "../io.ts";
import type { ServiceClient } from "../http.ts";

type ElasticKey = { id: string; name: string; algorithm: string; purpose: string; status: string; current_version: number; min_decryption_version: number; tags: string[]; deletion_date: string | null; created_at: string; description: string | null; rotation_period_days: number | null; versions?: Array<{ version: number; kid: string; created_at: string; retired_at: string | null }> };
type KeyPage = { items: ElasticKey[]; next_page_token: string | null };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A key given by id or by name (names are looked up in the tenant's list). */
export async function keyIdOf(api: ServiceClient, key: string): Promise<string> {
  if (UUID.test(key)) return key.toLowerCase();
  let page: string | undefined;
  do {
    const r = await api.api<KeyPage>("GET", "/keys", undefined, { limit: 100, page_token: page });
    const hit = r.items.find((k) => k.name === key);
    if (hit) return hit.id;
    page = r.next_page_token ?? undefined;
  } while (page);
  throw new UsageError(`no key named '${key}' in this tenant (give its id, or see: cryptoutil ${api.name === "sm-kms" ? "kms key list" : "jose jwk list"})`);
}

export const keyTable = (items: ElasticKey[]) =>
  items.length === 0 ? "no keys" : table(["ID", "NAME", "ALGORITHM", "PURPOSE", "STATUS", "VERSION", "CREATED"], items.map((k) => [k.id, k.name, k.algorithm, k.purpose, k.status, k.current_version, k.created_at]));

export const keyFields = (k: ElasticKey) =>
  fields({
    id: k.id,
    name: k.name,
    algorithm: k.algorithm,
    purpose: k.purpose,
    status: k.status,
    "current version": k.current_version,
    "min decryption version": k.min_decryption_version,
    "rotation period (days)": k.rotation_period_days,
    "deletion date": k.deletion_date ?? undefined,
    description: k.description,
    tags: k.tags,
    created: k.created_at,
    versions: k.versions?.map((x) => `v${x.version}${x.retired_at ? " (retired)" : ""}`),
  });

const MAX = S.MAX_DATA_BYTES;
function payload(bytes: Uint8Array, what: string): string {
  if (bytes.length > MAX) throw new UsageError(`${what} is ${bytes.length} bytes; the service takes at most ${MAX} (use kms data-key for larger data)`);
  return base64url.encode(bytes);
}

/** A JWE or JWS read from a file: compact text, or a flattened JSON object. */
function joseText(text: string, what: string): string | Record<string, unknown> {
  if (text.startsWith("{")) {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new UsageError(`the ${what} is neither compact nor JSON`);
    }
  }
  return text;
}
const joseOut = (x: unknown) => (typeof x === "string" ? x : JSON.stringify(x)) + "\n";
const dec = new TextDecoder();

interface DataOpts extends FileOpts {
  encryptionContext?: string[];
  format?: "compact" | "json";
}

function registerKeys(kms: Command): void {
  const key = sub(kms, "key", "Manage elastic keys (create, list, get, rotate, disable, enable, delete, restore)", ["kms key create backups --alg A256GCM", "kms key list"]);

  sub(key, "create <name>", "Create an elastic key (AES-256-GCM unless --alg says otherwise)", ["kms key create backups", "kms key create release-signing --alg ES256 --tag release", "kms key create wrap --alg ECDH-ES+A256KW --rotation-days 90"])
    .option("--alg <algorithm>", "A256GCM, RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW, ES256, ES384, PS256, EdDSA, HS256, ML-DSA-65, ... (sm-kms README)", "A256GCM")
    .option("--purpose <purpose>", "encrypt, sign, mac or wrap (default: from the algorithm)")
    .option("--description <text>", "a description")
    .option("--tag <tag>", "a tag (repeatable)", collect)
    .option("--rotation-days <n>", "rotate every N days", intOption("--rotation-days", 3650))
    .option("--import-allowed", "allow BYOK imports into this key")
    .action(async (name: string, o: { alg: string; purpose?: string; description?: string; tag?: string[]; rotationDays?: number; importAllowed?: boolean }, cmd: Command) => {
      const body = checked(S.CreateKey, { name, algorithm: o.alg, purpose: o.purpose, description: o.description, tags: o.tag, rotation_period_days: o.rotationDays, import_allowed: o.importAllowed });
      const k = await Session.open(cmd).api("sm-kms").api<ElasticKey>("POST", "/keys", body);
      emit(cmd, k, keyFields);
    });

  sub(key, "list", "List elastic keys", ["kms key list", "kms key list --purpose sign --status enabled", "kms key list --json"])
    .option("--purpose <purpose>", "encrypt, sign, mac or wrap")
    .option("--status <status>", "enabled, disabled or pending_deletion")
    .option("--tag <tag>", "only keys with this tag")
    .option("--limit <n>", "at most this many (default: all)", intOption("--limit"))
    .action(async (o: { purpose?: string; status?: string; tag?: string; limit?: number }, cmd: Command) => {
      const api = Session.open(cmd).api("sm-kms");
      const items = await listAll<ElasticKey>(api, "/keys", S.ListKeysQuery, { purpose: o.purpose, status: o.status, tag: o.tag }, o.limit);
      emit(cmd, { items }, (r) => keyTable(r.items));
    });

  sub(key, "get <key>", "Show an elastic key and its versions (by id or name)", ["kms key get backups", "kms key get 0190c7d2-...-9f3a --json"]).action(async (k: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api("sm-kms");
    emit(cmd, await api.api<ElasticKey>("GET", `/keys/${await keyIdOf(api, k)}`), keyFields);
  });

  for (const [verb, path, what, summary] of [
    ["rotate", "rotate", "rotated", "Rotate: a new version becomes current"],
    ["disable", "disable", "disabled", "Disable the key (every operation is refused)"],
    ["enable", "enable", "enabled", "Enable a disabled key"],
    ["restore", "restore", "restored (disabled)", "Cancel a scheduled deletion; the key comes back disabled"],
  ] as const) {
    sub(key, `${verb} <key>`, summary, [`kms key ${verb} backups`]).action(async (k: string, _: unknown, cmd: Command) => {
      const api = Session.open(cmd).api("sm-kms");
      const r = await api.api<ElasticKey>("POST", `/keys/${await keyIdOf(api, k)}/${path}`);
      emit(cmd, r, (x) => `key ${x.name} (${x.id}) ${what}: status ${x.status}, version ${x.current_version}`);
    });
  }

  sub(key, "delete <key>", "Schedule the key's deletion after a waiting period (restore cancels it)", ["kms key delete backups", "kms key delete backups --waiting-days 7"])
    .option("--waiting-days <n>", "7..30 days (default 30)", intOption("--waiting-days", 30))
    .action(async (k: string, o: { waitingDays?: number }, cmd: Command) => {
      const body = checked(S.ScheduleDeletion, { waiting_period_days: o.waitingDays });
      const api = Session.open(cmd).api("sm-kms");
      const r = await api.api<ElasticKey>("POST", `/keys/${await keyIdOf(api, k)}/schedule-deletion`, body);
      emit(cmd, r, (x) => `key ${x.name} (${x.id}) is pending deletion on ${x.deletion_date}`);
    });

  sub(key, "public-key <key>", "Export a version's public key as JWK (sign and asymmetric encryption keys)", ["kms key public-key release-signing > release.jwk", "kms key public-key release-signing --at 2"])
    // --at, not --version: the root command's --version (the CLI's own) wins wherever it appears.
    .option("--at <n>", "the version (default current)", intOption("--at"))
    .action(async (k: string, o: { at?: number }, cmd: Command) => {
      const api = Session.open(cmd).api("sm-kms");
      const jwk = await api.api<Record<string, unknown>>("GET", `/keys/${await keyIdOf(api, k)}/public-key`, undefined, { version: o.at });
      process.stdout.write(JSON.stringify(jwk, null, globals(cmd).json ? 2 : undefined) + "\n");
    });
}

/** Every page of a list (or the first `limit` items), the query checked with the service's schema. */
export async function listAll<T>(api: ServiceClient, path: string, schema: Parameters<typeof checked>[0], query: Record<string, string | undefined>, limit?: number): Promise<T[]> {
  const q = Object.fromEntries(Object.entries(query).filter(([, x]) => x !== undefined)) as Record<string, string>;
  checked(schema, q, "filter");
  const items: T[] = [];
  let page: string | undefined;
  do {
    const r = await api.api<{ items: T[]; next_page_token?: string | null }>("GET", path, undefined, { ...q, limit: Math.min(100, limit ?? 100), page_token: page });
    items.push(...r.items);
    page = r.next_page_token ?? undefined;
  } while (page && (limit === undefined || items.length < limit));
  return limit === undefined ? items : items.slice(0, limit);
}

function registerData(kms: Command): void {
  const ctxOpt = (c: Command) => c.option("--encryption-context <key=value>", "authenticated context bound to the ciphertext (repeatable; decrypt needs the same)", collect);

  ctxOpt(
    withOutputs(
      sub(kms, "encrypt <key> [files...]", "Encrypt files or stdin to JWEs under the key's current version", [
        "kms encrypt backups secrets.txt --out secrets.jwe",
        "tar c docs | cryptoutil kms encrypt backups > docs.tar.jwe",
        "kms encrypt backups a.txt b.txt c.txt --out-dir encrypted/     # writes encrypted/a.txt.jwe, ...",
        "kms encrypt backups report.pdf --encryption-context dept=finance -o report.jwe",
      ]),
    ),
  )
    .option("--format <format>", "compact (default) or json (flattened JSON serialization)")
    .option("--enc <enc>", "content encryption: A256GCM (default) or A128CBC-HS256")
    .action(async (k: string, files: string[], o: DataOpts & { enc?: string }, cmd: Command) => {
      const api = Session.open(cmd).api("sm-kms");
      const id = await keyIdOf(api, k);
      const context = pairs(o.encryptionContext, "--encryption-context");
      await transformFiles(cmd, files, o, "encrypting", (b) => `${b}.jwe`, async (input) => {
        const body = checked(S.EncryptRequest, { plaintext: payload(input, "the input"), context, format: o.format, enc: o.enc });
        const r = await api.api<{ kid: string; jwe: unknown }>("POST", `/keys/${id}/encrypt`, body);
        return { output: joseOut(r.jwe), result: r, kid: r.kid };
      });
    });

  ctxOpt(
    withOutputs(
      sub(kms, "decrypt <key> [files...]", "Decrypt JWEs (compact or flattened JSON) made by the key", [
        "kms decrypt backups secrets.jwe --out secrets.txt",
        "kms decrypt backups < docs.tar.jwe | tar x",
        "kms decrypt backups encrypted/*.jwe --out-dir plain/            # strips .jwe",
      ]),
    ),
  ).action(async (k: string, files: string[], o: DataOpts, cmd: Command) => {
    const api = Session.open(cmd).api("sm-kms");
    const id = await keyIdOf(api, k);
    const context = pairs(o.encryptionContext, "--encryption-context");
    await transformFiles(cmd, files, o, "decrypting", (b) => (b.endsWith(".jwe") ? b.slice(0, -4) : `${b}.out`), async (input) => {
      const body = checked(S.DecryptRequest, { jwe: joseText(dec.decode(input).trim(), "JWE"), context });
      const r = await api.api<{ kid: string; plaintext: string }>("POST", `/keys/${id}/decrypt`, body);
      return { output: base64url.decode(r.plaintext), result: r, kid: r.kid };
    });
  });

  ctxOpt(
    withOutputs(
      sub(kms, "rewrap <key> [files...]", "Re-encrypt JWEs under the key's current version without revealing the plaintext", ["kms rewrap backups old.jwe --out new.jwe", "kms rewrap backups vault/*.jwe --out-dir vault-new/"]),
    ),
  ).action(async (k: string, files: string[], o: DataOpts, cmd: Command) => {
    const api = Session.open(cmd).api("sm-kms");
    const id = await keyIdOf(api, k);
    const context = pairs(o.encryptionContext, "--encryption-context");
    await transformFiles(cmd, files, o, "rewrapping", (b) => b, async (input) => {
      const body = checked(S.DecryptRequest, { jwe: joseText(dec.decode(input).trim(), "JWE"), context });
      const r = await api.api<{ kid: string; jwe: unknown }>("POST", `/keys/${id}/rewrap`, body);
      return { output: joseOut(r.jwe), result: r, kid: r.kid };
    });
  });

  withOutputs(
    sub(kms, "sign <key> [files...]", "Sign files or stdin to JWSs with the key's current version", [
      "kms sign release-signing app.tar.gz --out app.tar.gz.jws",
      "kms sign release-signing app.tar.gz --detached --out app.tar.gz.sig",
      "kms sign release-signing dist/* --out-dir sigs/",
    ]),
  )
    .option("--detached", "leave the payload out of the JWS")
    .option("--format <format>", "compact (default) or json")
    .action(async (k: string, files: string[], o: DataOpts & { detached?: boolean }, cmd: Command) => {
      const api = Session.open(cmd).api("sm-kms");
      const id = await keyIdOf(api, k);
      await transformFiles(cmd, files, o, "signing", (b) => `${b}.jws`, async (input) => {
        const body = checked(S.SignRequest, { payload: payload(input, "the input"), detached: o.detached, format: o.format });
        const r = await api.api<{ kid: string; jws: unknown }>("POST", `/keys/${id}/sign`, body);
        return { output: joseOut(r.jws), result: r, kid: r.kid };
      });
    });

  sub(kms, "verify <key> [jws]", "Verify a JWS (from a file or stdin); exit 1 with signature_invalid when it does not verify", [
    "kms verify release-signing app.tar.gz.jws",
    "kms verify release-signing app.tar.gz.sig --payload app.tar.gz     # a detached signature",
  ])
    .option("--payload <file>", "the payload of a detached JWS")
    .action(async (k: string, jwsFile: string | undefined, o: { payload?: string }, cmd: Command) => {
      const detached = o.payload === undefined ? undefined : payload(await readInput(o.payload), o.payload);
      const body = checked(S.VerifyRequest, { jws: joseText(await readText(jwsFile), "JWS"), payload: detached });
      const api = Session.open(cmd).api("sm-kms");
      const r = await api.api<{ valid: true; kid: string }>("POST", `/keys/${await keyIdOf(api, k)}/verify`, body);
      emit(cmd, r, (x) => `valid: signed by ${x.kid}`);
    });

  sub(kms, "mac <key> [file]", "HMAC a file or stdin; with --verify, check a MAC made earlier", [
    "kms mac api-hmac message.bin --out message.mac          # writes {\"kid\",\"mac\"}",
    "kms mac api-hmac message.bin --verify message.mac",
  ])
    .option("-o, --out <file>", "write the MAC ({kid, mac} JSON) here (default stdout)")
    .option("--verify <file>", "a MAC file written by this command: check it instead of making one")
    .action(async (k: string, file: string | undefined, o: { out?: string; verify?: string }, cmd: Command) => {
      const data = payload(await readInput(file), file ?? "the input");
      let expected: { kid?: unknown; mac?: unknown } | undefined;
      if (o.verify) {
        try {
          expected = JSON.parse(await readText(o.verify)) as { kid?: unknown; mac?: unknown };
        } catch (e) {
          if (e instanceof UsageError) throw e;
          throw new UsageError(`${o.verify} is not a MAC file written by cryptoutil kms mac`);
        }
      }
      const api = Session.open(cmd).api("sm-kms");
      const id = await keyIdOf(api, k);
      if (expected) {
        const body = checked(S.MacVerifyRequest, { data, mac: expected.mac, kid: expected.kid }, "MAC file");
        const r = await api.api<{ valid: true; kid: string }>("POST", `/keys/${id}/mac/verify`, body);
        emit(cmd, r, (x) => `valid: MAC by ${x.kid}`);
        return;
      }
      const r = await api.api<{ kid: string; mac: string }>("POST", `/keys/${id}/mac`, checked(S.MacRequest, { data }));
      writeOutput(o.out, JSON.stringify(r) + "\n");
    });

  ctxOpt(
    sub(kms, "data-key <key>", "Generate a data key for envelope encryption: wrapped under the key, and in plaintext", [
      "kms data-key backups --out dek.jwe --plaintext-out dek.bin",
      "kms data-key backups --bytes 16 --no-plaintext --out dek.jwe",
      "kms data-key backups --json",
    ]),
  )
    .option("--bytes <n>", "16, 24, 32 (default) or 64", intOption("--bytes", 64))
    .option("-o, --out <file>", "write the wrapped key (JWE) here")
    .option("--plaintext-out <file>", "write the plaintext key (raw bytes) here, mode 0600")
    .option("--no-plaintext", "do not return the plaintext key")
    .option("--format <format>", "compact (default) or json")
    .option("--force", "replace an existing --plaintext-out file")
    .action(async (k: string, o: { bytes?: number; out?: string; plaintextOut?: string; plaintext: boolean; format?: "compact" | "json"; force?: boolean; encryptionContext?: string[] }, cmd: Command) => {
      const body = checked(S.DataKeyRequest, { bytes: o.bytes, include_plaintext: o.plaintext, context: pairs(o.encryptionContext, "--encryption-context"), format: o.format });
      const api = Session.open(cmd).api("sm-kms");
      const r = await api.api<{ kid: string; wrapped_key: unknown; plaintext_key?: string }>("POST", `/keys/${await keyIdOf(api, k)}/data-key`, body);
      if (o.plaintextOut && r.plaintext_key) writeSecretFile(o.plaintextOut, base64url.decode(r.plaintext_key), o.force);
      if (o.out) writeOutput(o.out, joseOut(r.wrapped_key));
      if (!o.out && !o.plaintextOut) {
        emit(cmd, r, (x) => fields({ kid: x.kid, wrapped_key: typeof x.wrapped_key === "string" ? x.wrapped_key : JSON.stringify(x.wrapped_key), plaintext_key: x.plaintext_key }));
      } else {
        emit(cmd, { kid: r.kid, wrapped_key_file: o.out, plaintext_key_file: r.plaintext_key ? o.plaintextOut : undefined }, (x) => `data key from ${x.kid}${x.wrapped_key_file ? `: wrapped -> ${x.wrapped_key_file}` : ""}${x.plaintext_key_file ? `, plaintext -> ${x.plaintext_key_file}` : ""}`);
      }
    });
}

export function registerKms(program: Command): void {
  const kms = sub(program, "kms", "sm-kms: elastic keys, encryption, signatures, MACs, data keys", ["kms key create backups --alg A256GCM", "kms encrypt backups notes.txt -o notes.jwe"]);
  registerKeys(kms);
  registerData(kms);
}
