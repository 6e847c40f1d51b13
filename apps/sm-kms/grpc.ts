/**
 * sm-kms's gRPC layer (`supacrypt.v1.KeyService`, schemas/proto/supacrypt/v1/keys.proto): the
 * gRPC twin of routes.ts. Each method turns its message into the REST body, validates it with
 * the same schema (the same limits), checks the same scopes and calls the same domain method;
 * the template's gRPC listener authenticates the client certificate and maps errors.
 */
import { createPublicKey } from "node:crypto";
import * as v from "valibot";
import { AppError } from "../../src/service/errors.ts";
import type { GrpcApi } from "../../src/service/grpc-listener.ts";
import type { ElasticKey } from "../../src/keyring/index.ts";
import * as S from "../../schemas/sm-kms.ts";
import { b64u, fromB64u, type KmsService } from "./domain.ts";
import { ADMIN, DECRYPT, ENCRYPT, PUBLIC_KEY_SCOPES, SIGN, VERIFY } from "./scopes.ts";

/** Key material Wrap takes: a key, not a document. */
const MAX_WRAP_BYTES = 1024;

/** The value `schema` makes of `input`, or `validation_failed` naming the first bad field. */
function valid<T extends v.GenericSchema>(schema: T, input: unknown): v.InferOutput<T> {
  const r = v.safeParse(schema, input);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const path = issue.path?.map((p) => String(p.key)).join(".");
  throw new AppError("validation_failed", `${path ? path + ": " : ""}${issue.message}`);
}

const keyId = (id: string) => valid(S.KeyId, { id }).id;
/** An encryption context from its entries (none: absent); a key given twice is refused. */
function contextOf(entries: ContextEntries): Record<string, string> | undefined {
  if (entries.length === 0) return undefined;
  const context: Record<string, string> = Object.create(null);
  for (const { key, value } of entries) {
    if (key in context) throw new AppError("validation_failed", `context: key ${JSON.stringify(key.slice(0, 64))} given twice`);
    context[key] = value;
  }
  return { ...context };
}
const optional = (s: string) => (s === "" ? undefined : s);

function keyMessage(k: ElasticKey) {
  return {
    id: k.id,
    name: k.name,
    algorithm: k.algorithm,
    purpose: k.purpose,
    status: k.status,
    current_version: k.current_version,
    min_decryption_version: k.min_decryption_version,
    tags: k.tags,
    description: k.description ?? "",
    import_allowed: k.import_allowed,
    created_at: k.created_at,
    updated_at: k.updated_at,
  };
}

/** DER SubjectPublicKeyInfo of a public JWK; empty where the platform has no such form (AKP keys). */
function spkiOf(jwk: Record<string, unknown>): Buffer {
  try {
    return createPublicKey({ key: jwk as never, format: "jwk" }).export({ type: "spki", format: "der" });
  } catch {
    return Buffer.alloc(0);
  }
}

function parseJwk(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    throw new AppError("validation_failed", "jwk_json: not JSON");
  }
}

type ContextEntries = Array<{ key: string; value: string }>;

export function kmsGrpc(kms: KmsService): GrpcApi {
  /** Encrypt and Wrap: the REST API's encrypt, compact JWE. */
  const encrypt = async (tenant: string, id: string, plaintext: Buffer, context: ContextEntries) => {
    const body = valid(S.EncryptRequest, { plaintext: b64u(plaintext), context: contextOf(context) });
    const { kid, jwe } = await kms.encrypt(tenant, keyId(id), fromB64u(body.plaintext), body.context);
    return { kid, jwe };
  };
  /** Decrypt and Unwrap: the REST API's decrypt. */
  const decrypt = async (tenant: string, id: string, jwe: string, context: ContextEntries) => {
    const body = valid(S.DecryptRequest, { jwe, context: contextOf(context) });
    const { kid, plaintext } = await kms.decrypt(tenant, keyId(id), body.jwe, body.context);
    return { kid, plaintext: Buffer.from(plaintext) };
  };
  return {
    proto: "supacrypt/v1/keys.proto",
    service: "supacrypt.v1.KeyService",
    methods: {
      ListKeys: {
        scopes: ADMIN,
        async handle(r, p) {
          const q = valid(S.ListKeysQuery, {
            limit: r.limit ? String(r.limit) : undefined,
            page_token: optional(r.page_token),
            purpose: optional(r.purpose),
            status: optional(r.status),
            tag: optional(r.tag),
          });
          const page = await kms.list(p.tenant, q);
          return { keys: page.items.map(keyMessage), next_page_token: page.next_page_token ?? "" };
        },
      },
      GetPublicKey: {
        scopes: PUBLIC_KEY_SCOPES,
        anyOf: true,
        async handle(r, p) {
          const jwk = await kms.publicKey(p.tenant, keyId(r.key_id), r.version || undefined);
          const { kid, alg, use: _use, ...key } = jwk;
          return { kid, algorithm: alg, jwk_json: JSON.stringify(jwk), spki: spkiOf(key) };
        },
      },
      GenerateKey: {
        scopes: ADMIN,
        async handle(r, p) {
          const body = valid(S.CreateKey, {
            name: r.name,
            algorithm: r.algorithm,
            description: optional(r.description),
            tags: r.tags,
            import_allowed: r.import_allowed || undefined,
          });
          return keyMessage(await kms.create(p.tenant, body));
        },
      },
      ImportKey: {
        scopes: ADMIN,
        async handle(r, p) {
          const body = valid(S.ImportKey, { name: r.name, algorithm: r.algorithm, jwk: parseJwk(r.jwk_json), description: optional(r.description), tags: r.tags });
          return keyMessage(await kms.importKey(p.tenant, body));
        },
      },
      Sign: {
        scopes: SIGN,
        async handle(r, p) {
          const body = valid(S.SignRequest, { payload: b64u(r.payload), detached: r.detached });
          const { kid, jws } = await kms.sign(p.tenant, keyId(r.key_id), fromB64u(body.payload), body.detached);
          const compact = jws as string;
          return { kid, jws: compact, signature: Buffer.from(fromB64u(compact.slice(compact.lastIndexOf(".") + 1))) };
        },
      },
      Verify: {
        scopes: VERIFY,
        async handle(r, p) {
          const body = valid(S.VerifyRequest, { jws: r.jws, payload: r.payload.length > 0 ? b64u(r.payload) : undefined });
          return kms.verify(p.tenant, keyId(r.key_id), body.jws, body.payload === undefined ? undefined : fromB64u(body.payload));
        },
      },
      Encrypt: {
        scopes: ENCRYPT,
        handle: async (r, p) => encrypt(p.tenant, r.key_id, r.plaintext, r.context),
      },
      Decrypt: {
        scopes: DECRYPT,
        async handle(r, p) {
          const { kid, plaintext } = await decrypt(p.tenant, r.key_id, r.jwe, r.context);
          return { kid, plaintext };
        },
      },
      Wrap: {
        scopes: ENCRYPT,
        async handle(r, p) {
          if (r.key_material.length < 1 || r.key_material.length > MAX_WRAP_BYTES) throw new AppError("validation_failed", `key_material: 1..${MAX_WRAP_BYTES} bytes`);
          const { kid, jwe } = await encrypt(p.tenant, r.key_id, r.key_material, r.context);
          return { kid, wrapped_key: jwe };
        },
      },
      Unwrap: {
        scopes: DECRYPT,
        async handle(r, p) {
          const { kid, plaintext } = await decrypt(p.tenant, r.key_id, r.wrapped_key, r.context);
          return { kid, key_material: plaintext };
        },
      },
      Random: {
        handle: (r) => ({ random: Buffer.from(fromB64u(kms.random(r.bytes).random)) }),
      },
    },
  };
}
