/** `jose jwk|jwks|jwt|jws|jwe ...`: jose-ja's key rings and JOSE operations. */
import type { Command } from "commander";
import { base64url } from "jose";
import * as S from "../../schemas/jose-ja.ts";
import { checked, collect, emit, intOption, Session, sub } from "../command.ts";
import { UsageError } from "../errors.ts";
import { pairs, transformFiles, withOutputs, type FileOpts } from "../files.ts";
import { readText, writeOutput } from "../io.ts";
import { keyFields, keyIdOf, keyTable, listAll } from "./kms.ts";

const JOSE = "jose-ja";
const dec = new TextDecoder();

/** `90s`, `15m`, `1h`, `7d` or plain seconds. */
export function seconds(value: string, flag: string): number {
  const m = /^(\d{1,8})([smhd]?)$/.exec(value);
  if (!m) throw new UsageError(`${flag} takes a duration such as 90s, 15m, 1h or 7d`);
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
}

/** A JSON object of claims from a file (or stdin), plus `--claim k=v` pairs. */
async function claimsOf(file: string | undefined, extra: string[] | undefined): Promise<Record<string, unknown>> {
  let claims: Record<string, unknown> = {};
  if (file !== undefined) {
    const text = await readText(file);
    try {
      claims = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new UsageError(`${file} is not a JSON object of claims`);
    }
    if (!claims || typeof claims !== "object" || Array.isArray(claims)) throw new UsageError(`${file} is not a JSON object of claims`);
  }
  return { ...claims, ...pairs(extra, "--claim") };
}

const audienceOf = (aud: string[] | undefined) => (aud === undefined ? undefined : aud.length === 1 ? aud[0] : aud);

function registerJwk(jose: Command): void {
  const jwk = sub(jose, "jwk", "Manage key rings (JWKs): create, list, get, rotate, delete", ["jose jwk create tokens --alg ES256", "jose jwk list"]);
  sub(jwk, "create <name>", "Generate a key ring of one algorithm", ["jose jwk create tokens --alg ES256", "jose jwk create wrap --alg RSA-OAEP-256 --rotation-days 90"])
    .requiredOption("--alg <algorithm>", "ES256, ES384, PS256, RS256, EdDSA, HS256, A256GCM, A256KW, RSA-OAEP-256, ECDH-ES, ...")
    .option("--description <text>", "a description")
    .option("--tag <tag>", "a tag (repeatable)", collect)
    .option("--rotation-days <n>", "rotate every N days", intOption("--rotation-days", 3650))
    .action(async (name: string, o: { alg: string; description?: string; tag?: string[]; rotationDays?: number }, cmd: Command) => {
      const body = checked(S.GenerateKey, { name, algorithm: o.alg, description: o.description, tags: o.tag, rotation_period_days: o.rotationDays });
      emit(cmd, await Session.open(cmd).api(JOSE).api<Parameters<typeof keyFields>[0]>("POST", "/keys", body), keyFields);
    });
  sub(jwk, "list", "List key rings", ["jose jwk list", "jose jwk list --status enabled --json"])
    .option("--purpose <purpose>", "encrypt, sign, mac or wrap")
    .option("--status <status>", "enabled, disabled or pending_deletion")
    .option("--tag <tag>", "only keys with this tag")
    .option("--limit <n>", "at most this many (default: all)", intOption("--limit"))
    .action(async (o: { purpose?: string; status?: string; tag?: string; limit?: number }, cmd: Command) => {
      const items = await listAll<Parameters<typeof keyFields>[0]>(Session.open(cmd).api(JOSE), "/keys", S.ListKeysQuery, { purpose: o.purpose, status: o.status, tag: o.tag }, o.limit);
      emit(cmd, { items }, (r) => keyTable(r.items));
    });
  sub(jwk, "get <key>", "Show a key ring, its versions and its current public JWK (by id or name)", ["jose jwk get tokens", "jose jwk get tokens --json"]).action(async (k: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(JOSE);
    const r = await api.api<Parameters<typeof keyFields>[0] & { public_jwk?: unknown }>("GET", `/keys/${await keyIdOf(api, k)}`);
    emit(cmd, r, (x) => `${keyFields(x)}${x.public_jwk ? `\npublic JWK: ${JSON.stringify(x.public_jwk)}` : ""}`);
  });
  sub(jwk, "rotate <key>", "Rotate: a new version becomes current; older ones stay published and verify", ["jose jwk rotate tokens"]).action(async (k: string, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(JOSE);
    const r = await api.api<Parameters<typeof keyFields>[0]>("POST", `/keys/${await keyIdOf(api, k)}/rotate`);
    emit(cmd, r, (x) => `key ${x.name} (${x.id}) rotated: version ${x.current_version}`);
  });
  sub(jwk, "delete <key>", "Schedule the key ring's deletion after a waiting period", ["jose jwk delete tokens", "jose jwk delete tokens --waiting-days 7"])
    .option("--waiting-days <n>", "7..30 days (default 30)", intOption("--waiting-days", 30))
    .action(async (k: string, o: { waitingDays?: number }, cmd: Command) => {
      const q = checked(S.DeleteQuery, o.waitingDays === undefined ? {} : { waiting_period_days: String(o.waitingDays) });
      const api = Session.open(cmd).api(JOSE);
      const r = await api.api<Parameters<typeof keyFields>[0]>("DELETE", `/keys/${await keyIdOf(api, k)}`, undefined, { waiting_period_days: q.waiting_period_days });
      emit(cmd, r, (x) => `key ${x.name} (${x.id}) is pending deletion on ${x.deletion_date}`);
    });

  sub(jose, "jwks [key]", "The tenant's public JWKS, or one key ring's", ["jose jwks", "jose jwks tokens > tokens.jwks.json"]).action(async (k: string | undefined, _: unknown, cmd: Command) => {
    const api = Session.open(cmd).api(JOSE);
    const r = await api.api<{ keys: unknown[] }>("GET", k === undefined ? "/jwks" : `/jwks/${await keyIdOf(api, k)}`);
    process.stdout.write(JSON.stringify(r, null, 2) + "\n");
  });
}

function registerJwt(jose: Command): void {
  const jwt = sub(jose, "jwt", "Issue and validate JWTs", ["jose jwt sign tokens --sub alice --ttl 1h", "jose jwt verify token.jwt --aud api"]);
  sub(jwt, "sign <key> [claims]", "Issue a JWT: the claims (a JSON file, - for stdin) plus iat and exp from --ttl", [
    "jose jwt sign tokens --sub alice --aud api --ttl 15m",
    "jose jwt sign tokens claims.json --iss https://issuer.example --ttl 1h --jti > token.jwt",
    "jose jwt sign tokens --claim role=admin --ttl 3600",
  ])
    .requiredOption("--ttl <duration>", "lifetime: 90s, 15m, 1h, 7d")
    .option("--claim <key=value>", "a string claim (repeatable)", collect)
    .option("--iss <issuer>", "the iss claim")
    .option("--aud <audience>", "the aud claim (repeatable)", collect)
    .option("--sub <subject>", "the sub claim")
    .option("--typ <typ>", "the typ header (default JWT)")
    .option("--jti", "add a random jti")
    .action(async (k: string, claimsFile: string | undefined, o: { ttl: string; claim?: string[]; iss?: string; aud?: string[]; sub?: string; typ?: string; jti?: boolean }, cmd: Command) => {
      const body = checked(S.JwtIssueRequest, { claims: await claimsOf(claimsFile, o.claim), ttl_s: seconds(o.ttl, "--ttl"), iss: o.iss, aud: audienceOf(o.aud), sub: o.sub, typ: o.typ, jti: o.jti });
      const api = Session.open(cmd).api(JOSE);
      const r = await api.api<{ kid: string; jwt: string; exp: number }>("POST", `/keys/${await keyIdOf(api, k)}/jwt`, body);
      emit(cmd, r, (x) => x.jwt);
    });
  sub(jwt, "verify [jwt]", "Validate a JWT (file or stdin) made by any of the tenant's keys: signature, exp, nbf, iat, iss, aud, typ, required claims", [
    "jose jwt verify token.jwt --aud api --iss https://issuer.example",
    "echo $TOKEN | cryptoutil jose jwt verify --require sub --clock-skew 30",
  ])
    .option("--key <key>", "only accept this key ring")
    .option("--iss <issuer>", "required iss")
    .option("--aud <audience>", "required aud (repeatable: any of them)", collect)
    .option("--typ <typ>", "required typ header")
    .option("--clock-skew <seconds>", "tolerated clock skew", intOption("--clock-skew", 3600))
    .option("--max-age <duration>", "refuse tokens issued longer ago")
    .option("--require <claim>", "a claim that must be present (repeatable)", collect)
    .action(async (file: string | undefined, o: { key?: string; iss?: string; aud?: string[]; typ?: string; clockSkew?: number; maxAge?: string; require?: string[] }, cmd: Command) => {
      const body = checked(S.JwtValidateRequest, {
        jwt: await readText(file),
        iss: o.iss,
        aud: audienceOf(o.aud),
        typ: o.typ,
        clock_skew_s: o.clockSkew,
        max_age_s: o.maxAge === undefined ? undefined : seconds(o.maxAge, "--max-age"),
        required_claims: o.require,
      });
      const api = Session.open(cmd).api(JOSE);
      const path = o.key === undefined ? "/jwt/validate" : `/keys/${await keyIdOf(api, o.key)}/jwt/validate`;
      const r = await api.api<{ kid: string; claims: Record<string, unknown>; header: Record<string, unknown> }>("POST", path, body);
      emit(cmd, r, (x) => `valid: signed by ${x.kid}\n${JSON.stringify(x.claims, null, 2)}`);
    });
}

function registerJwsJwe(jose: Command): void {
  const jws = sub(jose, "jws", "Sign and verify JWSs", ["jose jws sign tokens doc.json -o doc.jws", "jose jws verify doc.jws"]);
  withOutputs(sub(jws, "sign <key> [files...]", "Sign files or stdin to compact (or flattened JSON) JWSs", ["jose jws sign tokens doc.json -o doc.jws", "jose jws sign tokens a.json b.json --out-dir signed/"]))
    .option("--typ <typ>", "the typ header")
    .option("--cty <cty>", "the cty header")
    .option("--format <format>", "compact (default) or json")
    .action(async (k: string, files: string[], o: FileOpts & { typ?: string; cty?: string; format?: string }, cmd: Command) => {
      const api = Session.open(cmd).api(JOSE);
      const id = await keyIdOf(api, k);
      await transformFiles(cmd, files, o, "signing", (b) => `${b}.jws`, async (input) => {
        const body = checked(S.SignRequest, { payload: base64url.encode(input), typ: o.typ, cty: o.cty, format: o.format });
        const r = await api.api<{ kid: string; jws: unknown }>("POST", `/keys/${id}/sign`, body);
        return { output: (typeof r.jws === "string" ? r.jws : JSON.stringify(r.jws)) + "\n", result: r, kid: r.kid };
      });
    });
  sub(jws, "verify [jws]", "Verify a JWS (file or stdin) made by any of the tenant's keys; the payload goes to --out", ["jose jws verify doc.jws", "jose jws verify doc.jws --out doc.json"])
    .option("--key <key>", "only accept this key ring")
    .option("-o, --out <file>", "write the verified payload here")
    .action(async (file: string | undefined, o: { key?: string; out?: string }, cmd: Command) => {
      const text = await readText(file);
      let jwsValue: unknown = text;
      if (text.startsWith("{")) {
        try {
          jwsValue = JSON.parse(text);
        } catch {
          throw new UsageError("the JWS is neither compact nor JSON");
        }
      }
      const body = checked(S.VerifyRequest, { jws: jwsValue });
      const api = Session.open(cmd).api(JOSE);
      const path = o.key === undefined ? "/jws/verify" : `/keys/${await keyIdOf(api, o.key)}/verify`;
      const r = await api.api<{ kid: string; payload: string; header: Record<string, unknown> }>("POST", path, body);
      if (o.out) writeOutput(o.out, base64url.decode(r.payload));
      emit(cmd, r, (x) => `valid: signed by ${x.kid}`);
    });

  const jwe = sub(jose, "jwe", "Encrypt and decrypt compact JWEs", ["jose jwe encrypt wrap secret.txt -o secret.jwe", "jose jwe decrypt wrap secret.jwe"]);
  withOutputs(sub(jwe, "encrypt <key> [files...]", "Encrypt files or stdin to compact JWEs with the key's current version", ["jose jwe encrypt wrap secret.txt -o secret.jwe", "jose jwe encrypt wrap *.txt --out-dir jwe/"]))
    .option("--cty <cty>", "the cty header")
    .action(async (k: string, files: string[], o: FileOpts & { cty?: string }, cmd: Command) => {
      const api = Session.open(cmd).api(JOSE);
      const id = await keyIdOf(api, k);
      await transformFiles(cmd, files, o, "encrypting", (b) => `${b}.jwe`, async (input) => {
        const body = checked(S.EncryptRequest, { plaintext: base64url.encode(input), cty: o.cty });
        const r = await api.api<{ kid: string; jwe: string }>("POST", `/keys/${id}/encrypt`, body);
        return { output: r.jwe + "\n", result: r, kid: r.kid };
      });
    });
  withOutputs(sub(jwe, "decrypt <key> [files...]", "Decrypt compact JWEs made by the key", ["jose jwe decrypt wrap secret.jwe -o secret.txt", "jose jwe decrypt wrap jwe/*.jwe --out-dir plain/"])).action(
    async (k: string, files: string[], o: FileOpts, cmd: Command) => {
      const api = Session.open(cmd).api(JOSE);
      const id = await keyIdOf(api, k);
      await transformFiles(cmd, files, o, "decrypting", (b) => (b.endsWith(".jwe") ? b.slice(0, -4) : `${b}.out`), async (input) => {
        const body = checked(S.DecryptRequest, { jwe: dec.decode(input).trim() });
        const r = await api.api<{ kid: string; plaintext: string }>("POST", `/keys/${id}/decrypt`, body);
        return { output: base64url.decode(r.plaintext), result: r, kid: r.kid };
      });
    },
  );
}

export function registerJose(program: Command): void {
  const jose = sub(program, "jose", "jose-ja: JWK key rings, JWKS, JWT, JWS, JWE", ["jose jwk create tokens --alg ES256", "jose jwt sign tokens --sub alice --ttl 1h"]);
  registerJwk(jose);
  registerJwt(jose);
  registerJwsJwe(jose);
}
