/**
 * The `pkcs11` provider: the `CryptoProvider` interface over a PKCS#11 token (an HSM, or
 * SoftHSM2 in tests), through pkcs11js.
 *
 * Guarantees:
 * - Keys this provider generates, imports, derives or unwraps are CKA_SENSITIVE and
 *   non-extractable: their values never leave the token; every operation on them (AES-GCM,
 *   ECDSA, ECDH, AES key wrap, HMAC) runs inside the token. Constant time is the token's.
 * - Start-up (`openPkcs11Provider`) loads the module, finds the token, opens sessions and
 *   logs in, so a missing module, unknown token or wrong PIN is an `AppError("unavailable")`
 *   with `details.reason`, at start and not at first use. The PIN is read from a file and not kept.
 * - A token key handle is accepted only by the provider of its own token.
 * ECDSA signs a digest computed outside the token (CKM_ECDSA): SoftHSM2 lacks CKM_ECDSA_SHA*,
 * and the message is not secret. Signatures are P1363 (r ‖ s), as CKM_ECDSA returns them.
 */
import type { ECDH1, Handle, Mechanism, PKCS11, Template } from "pkcs11js";
import { AppError } from "../../service/errors.ts";
import {
  type AesBits,
  type CryptoOp,
  type CryptoProvider,
  type EcCurve,
  type EcKeyPair,
  type HashAlg,
  type KeyGenOptions,
  type KeyHandle,
  type KeyType,
  type OpParams,
  type RawKey,
  type TokenKey,
  CURVE_BYTES,
  HASH_BYTES,
  checkAesBits,
  checkBytes,
  checkCurve,
  checkEcdhAs,
  checkGcmArgs,
  checkHash,
  checkSecp,
  checkWrappable,
  decryptionFailed,
  expectType,
  malformed,
  rawKey,
  validatePoint,
} from "../provider.ts";
import { type Pkcs11Config, DEFAULT_PKCS11_MODULE, readPin, startFailure } from "./config.ts";
import { ckrName, toAppError } from "./errors.ts";
import { type LoadedModule, type Pkcs11Lib, acquireModule, findSlot, releaseModule } from "./module.ts";
import { SessionPool } from "./sessions.ts";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { equalBytes } from "../constant-time.ts";

/** SHA-256 of the PIN that logged each token in (module path + slot), for later opens in this process. */
const loggedIn = new Map<string, Uint8Array>();
import {
  type Naming,
  aesKeyTemplate,
  curveOfParams,
  decodeEcPoint,
  ecPrivateTemplate,
  ecPublicTemplate,
  secretKeyTemplate,
} from "./templates.ts";

/** Above this size AES-GCM runs on the thread pool (C_*Async) rather than blocking the event loop. */
const ASYNC_AES_BYTES = 16 * 1024;

/** Return values that mean "integrity check failed" on decrypt/unwrap (SoftHSM2 uses the general one). */
const TAG_FAILURES = new Set(["CKR_ENCRYPTED_DATA_INVALID", "CKR_ENCRYPTED_DATA_LEN_RANGE", "CKR_GENERAL_ERROR"]);

const randomId = (): Buffer => Buffer.from(crypto.getRandomValues(new Uint8Array(16)));
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export class Pkcs11Provider implements CryptoProvider {
  readonly name = "pkcs11" as const;
  private readonly P: Pkcs11Lib;
  private readonly mechanisms: Set<number>;
  private closed = false;

  private constructor(
    private readonly module: LoadedModule,
    /** The label of the token this provider works on. */
    readonly token: string,
    private readonly pool: SessionPool,
    mechanisms: number[],
  ) {
    this.P = module.lib;
    this.mechanisms = new Set(mechanisms);
  }

  /**
   * Loads the module, finds the token, opens sessions and logs in.
   *
   * @example
   *   const hsm = await Pkcs11Provider.open({ tokenLabel: "cryptoutil", pinFile: "/run/secrets/hsm_pin" });
   */
  static async open(config: Pkcs11Config): Promise<Pkcs11Provider> {
    if (!config || typeof config.pinFile !== "string" || config.pinFile.length === 0) {
      throw startFailure("bad_config", "pkcs11.pin_file is required");
    }
    if (config.tokenLabel === undefined && config.slot === undefined) {
      throw startFailure("bad_config", "pkcs11.token_label or pkcs11.slot is required");
    }
    const sessions = config.sessions ?? 2;
    if (!Number.isInteger(sessions) || sessions < 1 || sessions > 64) {
      throw startFailure("bad_config", "pkcs11.sessions must be an integer in 1..64");
    }
    const pin = readPin(config.pinFile);
    const m = await acquireModule(config.modulePath ?? DEFAULT_PKCS11_MODULE);
    const P = m.lib;
    const opened: Handle[] = [];
    try {
      const { slot, label } = findSlot(m, config);
      for (let i = 0; i < sessions; i++) opened.push(m.p11.C_OpenSession(slot, P.CKF_RW_SESSION | P.CKF_SERIAL_SESSION));
      const loginKey = `${config.modulePath ?? DEFAULT_PKCS11_MODULE}\0${Buffer.from(slot).toString("hex")}`;
      const pinHash = createHash("sha256").update(pin, "utf8").digest();
      try {
        m.p11.C_Login(opened[0] as Handle, P.CKU_USER, pin);
        loggedIn.set(loginKey, pinHash);
      } catch (e) {
        const ckr = ckrName(e);
        // Login state is per token and process: a second provider on the same token finds it
        // done, and the token cannot check its PIN again, so we compare with the PIN that logged in.
        if (ckr === "CKR_USER_ALREADY_LOGGED_IN") {
          const first = loggedIn.get(loginKey);
          if (!first || !equalBytes(first, new Uint8Array(pinHash))) {
            throw startFailure("pin_incorrect", `PKCS#11 login to token '${label}' failed: wrong PIN`);
          }
        } else {
          if (ckr === "CKR_PIN_INCORRECT" || ckr === "CKR_PIN_LEN_RANGE") {
            throw startFailure("pin_incorrect", `PKCS#11 login to token '${label}' failed: wrong PIN`);
          }
          if (ckr === "CKR_PIN_LOCKED") throw startFailure("pin_locked", `PKCS#11 token '${label}' has its user PIN locked`);
          throw startFailure("login_failed", `PKCS#11 login to token '${label}' failed (${ckr ?? "native error"})`, e);
        }
      }
      return new Pkcs11Provider(m, label, new SessionPool(opened), m.p11.C_GetMechanismList(slot));
    } catch (e) {
      for (const s of opened) {
        try {
          m.p11.C_CloseSession(s);
        } catch {
          // Closing on a failed start: the original error is the one to report.
        }
      }
      releaseModule(m);
      throw e instanceof AppError ? e : toAppError(e, "PKCS#11 start");
    }
  }

  private get p11() {
    return this.module.p11;
  }

  /**
   * Runs `fn` with exclusive use of one logged-in session, for the keyring's token objects
   * (`keyring-objects.ts`), which need mechanisms beyond the `CryptoProvider` interface.
   */
  withSession<T>(fn: (session: Handle, p11: PKCS11, P: Pkcs11Lib) => T | Promise<T>): Promise<T> {
    return this.pool.use((s) => fn(s, this.p11, this.P));
  }

  /** The pkcs11js module: its CKA_/CKM_/CKO_ constants. */
  get lib(): Pkcs11Lib {
    return this.P;
  }

  /** Whether the token lists mechanism `mechanism` (a CKM_* value). */
  hasMechanism(mechanism: number): boolean {
    return this.mechanisms.has(mechanism);
  }

  constantTime(_op: CryptoOp): boolean {
    return true;
  }

  supports(op: CryptoOp, params: OpParams = {}): boolean {
    const P = this.P;
    if (params.curve !== undefined && params.curve !== "P-256" && params.curve !== "P-384") return false;
    if (params.keyBits !== undefined && (op.startsWith("aesGcm") || op === "generateAesKey" || op.endsWith("rapKey"))) {
      if (params.keyBits !== 128 && params.keyBits !== 192 && params.keyBits !== 256) return false;
    }
    const needs: Record<CryptoOp, number[]> = {
      aesGcmEncrypt: [P.CKM_AES_GCM],
      aesGcmDecrypt: [P.CKM_AES_GCM],
      sign: [P.CKM_ECDSA],
      verify: [P.CKM_ECDSA],
      ecdh: [P.CKM_ECDH1_DERIVE],
      generateAesKey: [P.CKM_AES_KEY_GEN],
      generateEcKeyPair: [P.CKM_EC_KEY_PAIR_GEN],
      wrapKey: [P.CKM_AES_KEY_WRAP],
      unwrapKey: [P.CKM_AES_KEY_WRAP],
      digest: [P.CKM_SHA256, P.CKM_SHA384, P.CKM_SHA512],
      hmac: [P.CKM_SHA256_HMAC, P.CKM_SHA384_HMAC, P.CKM_SHA512_HMAC],
    };
    return needs[op].every((m) => this.mechanisms.has(m));
  }

  // ---- keys ----

  /** A token key of this provider's token, of one of `types`. */
  private own(key: KeyHandle, ...types: KeyType[]): TokenKey {
    if (!key || typeof key !== "object" || key.location !== "token" || key.provider !== "pkcs11") {
      throw new AppError("bad_request", "the pkcs11 provider takes keys that live in its token");
    }
    if (key.token !== this.token) throw new AppError("bad_request", `key belongs to token '${key.token}', not '${this.token}'`);
    expectType(key, ...types);
    return key;
  }

  private naming(opts: KeyGenOptions): Naming {
    const label = opts.label ?? `cryptoutil-${hex(crypto.getRandomValues(new Uint8Array(8)))}`;
    if (typeof label !== "string" || label.length === 0 || label.length > 128) throw malformed("key label must be 1..128 characters");
    return { label, id: randomId(), persistent: opts.persistent ?? opts.label !== undefined };
  }

  private findObjects(session: Handle, template: Template): Handle[] {
    const p11 = this.p11;
    p11.C_FindObjectsInit(session, template);
    try {
      const found: Handle[] = [];
      for (;;) {
        const batch = p11.C_FindObjects(session, 32);
        found.push(...batch);
        if (batch.length < 32) return found;
      }
    } finally {
      p11.C_FindObjectsFinal(session);
    }
  }

  private async refuseDuplicate(n: Naming): Promise<void> {
    if (!n.persistent) return;
    const P = this.P;
    const existing = await this.pool.use((s) => this.findObjects(s, [{ type: P.CKA_LABEL, value: n.label }, { type: P.CKA_TOKEN, value: true }]));
    if (existing.length > 0) throw new AppError("conflict", `a key labelled '${n.label}' already exists in the token`);
  }

  private tokenKey(n: Naming, type: KeyType, handle: Handle, extra: { curve?: EcCurve; bits?: number; publicKey?: Uint8Array }): TokenKey {
    return Object.freeze({
      location: "token" as const,
      provider: "pkcs11" as const,
      token: this.token,
      type,
      label: n.label,
      id: hex(n.id),
      persistent: n.persistent,
      handle,
      ...extra,
    });
  }

  /**
   * Finds a key again by its label (after a restart, handles change; labels do not).
   * Throws `not_found` when none, `conflict` when several keys share the label.
   */
  async findKey(label: string): Promise<TokenKey> {
    if (typeof label !== "string" || label.length === 0) throw malformed("key label must be a non-empty string");
    const P = this.P;
    try {
      return await this.pool.use((s) => {
        const byLabel = (cls: number) => this.findObjects(s, [{ type: P.CKA_LABEL, value: label }, { type: P.CKA_CLASS, value: cls }]);
        const found = [...byLabel(P.CKO_SECRET_KEY), ...byLabel(P.CKO_PRIVATE_KEY)];
        if (found.length === 0) throw new AppError("not_found", `no key labelled '${label}' in the token`);
        if (found.length > 1) throw new AppError("conflict", `${found.length} keys are labelled '${label}' in the token`);
        const h = found[0] as Handle;
        const [cls, ktype, id, persistent] = this.p11.C_GetAttributeValue(s, h, [
          { type: P.CKA_CLASS },
          { type: P.CKA_KEY_TYPE },
          { type: P.CKA_ID },
          { type: P.CKA_TOKEN },
        ]).map((a) => a.value);
        const n: Naming = { label, id: id as Buffer, persistent: (persistent as Buffer)[0] === 1 };
        const keyType = (ktype as Buffer).readUInt32LE(0);
        if ((cls as Buffer).readUInt32LE(0) === P.CKO_SECRET_KEY) {
          const [len] = this.p11.C_GetAttributeValue(s, h, [{ type: P.CKA_VALUE_LEN }]);
          const bits = (len?.value as Buffer).readUInt32LE(0) * 8;
          return this.tokenKey(n, keyType === P.CKK_AES ? "aes" : "secret", h, { bits });
        }
        if (keyType !== P.CKK_EC) throw malformed(`key '${label}' is not an EC key`);
        const [params] = this.p11.C_GetAttributeValue(s, h, [{ type: P.CKA_EC_PARAMS }]);
        const curve = curveOfParams(params?.value as Buffer);
        const pubs = this.findObjects(s, [
          { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
          { type: P.CKA_LABEL, value: label },
          { type: P.CKA_ID, value: n.id },
        ]);
        let publicKey: Uint8Array | undefined;
        if (pubs[0]) {
          const [pt] = this.p11.C_GetAttributeValue(s, pubs[0], [{ type: P.CKA_EC_POINT }]);
          publicKey = decodeEcPoint(curve, pt?.value as Buffer);
        }
        return this.tokenKey(n, "ec-private", h, { curve, publicKey });
      });
    } catch (e) {
      throw toAppError(e, "find key");
    }
  }

  /**
   * Imports in-memory key material into the token as a sensitive, non-extractable object
   * (for migrating keys in, and for known-answer tests). `ec-public` keys are not imported:
   * public keys are passed raw to `verify`.
   */
  async importKey(key: RawKey, opts: KeyGenOptions = {}): Promise<TokenKey> {
    if (!key || key.location !== "raw") throw malformed("importKey takes an in-memory key");
    const P = this.P;
    const n = this.naming(opts);
    await this.refuseDuplicate(n);
    try {
      return await this.pool.use((s) => {
        switch (key.type) {
          case "aes": {
            const h = this.p11.C_CreateObject(s, aesKeyTemplate(P, n, undefined, key.material));
            return this.tokenKey(n, "aes", h, { bits: key.material.length * 8 });
          }
          case "secret": {
            const h = this.p11.C_CreateObject(s, secretKeyTemplate(P, n, undefined, key.material));
            return this.tokenKey(n, "secret", h, { bits: key.material.length * 8 });
          }
          case "ec-private": {
            const curve = key.curve as EcCurve;
            const h = this.p11.C_CreateObject(s, ecPrivateTemplate(P, n, curve, key.material));
            this.p11.C_CreateObject(s, ecPublicTemplate(P, n, curve, key.publicKey));
            return this.tokenKey(n, "ec-private", h, { curve, publicKey: key.publicKey });
          }
          default:
            throw malformed("only aes, secret and ec-private keys are imported into the token");
        }
      });
    } catch (e) {
      throw toAppError(e, "import key");
    }
  }

  /** Destroys a key (and, for EC keys, its public object) in the token. */
  async destroyKey(key: KeyHandle): Promise<void> {
    const k = this.own(key, "aes", "secret", "ec-private");
    const P = this.P;
    try {
      await this.pool.use((s) => {
        if (k.type === "ec-private") {
          for (const h of this.findObjects(s, [
            { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
            { type: P.CKA_LABEL, value: k.label },
            { type: P.CKA_ID, value: Buffer.from(k.id, "hex") },
          ])) this.p11.C_DestroyObject(s, h);
        }
        this.p11.C_DestroyObject(s, k.handle as Handle);
      });
    } catch (e) {
      throw toAppError(e, "destroy key");
    }
  }

  /**
   * Asks the token for a key's value. The token refuses (`forbidden`) for every key this
   * provider creates: this exists so that callers, audits and tests get a clear answer.
   */
  async readKeyValue(key: KeyHandle): Promise<Uint8Array> {
    const k = this.own(key, "aes", "secret", "ec-private");
    try {
      return await this.pool.use((s) => {
        const [v] = this.p11.C_GetAttributeValue(s, k.handle as Handle, [{ type: this.P.CKA_VALUE }]);
        return new Uint8Array(v?.value as Buffer);
      });
    } catch (e) {
      throw toAppError(e, "read key value");
    }
  }

  /** The protection attributes of a key, as the token reports them. */
  async keyProtection(key: KeyHandle): Promise<{ sensitive: boolean; extractable: boolean; neverExtractable: boolean; persistent: boolean }> {
    const k = this.own(key, "aes", "secret", "ec-private");
    const P = this.P;
    try {
      return await this.pool.use((s) => {
        const [sens, ext, never, tok] = this.p11
          .C_GetAttributeValue(s, k.handle as Handle, [
            { type: P.CKA_SENSITIVE },
            { type: P.CKA_EXTRACTABLE },
            { type: P.CKA_NEVER_EXTRACTABLE },
            { type: P.CKA_TOKEN },
          ])
          .map((a) => (a.value as Buffer)[0] === 1);
        return { sensitive: !!sens, extractable: !!ext, neverExtractable: !!never, persistent: !!tok };
      });
    } catch (e) {
      throw toAppError(e, "read key attributes");
    }
  }

  // ---- operations ----

  async aesGcmEncrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = this.own(key, "aes");
    checkGcmArgs(iv, data, aad, false);
    try {
      return await this.pool.use(async (s) => {
        this.p11.C_EncryptInit(s, this.gcm(iv, aad), k.handle as Handle);
        const out = Buffer.alloc(data.length + 16);
        const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        const ct = data.length >= ASYNC_AES_BYTES ? await this.p11.C_EncryptAsync(s, input, out) : this.p11.C_Encrypt(s, input, out);
        return new Uint8Array(ct);
      });
    } catch (e) {
      throw toAppError(e, "AES-GCM encrypt");
    }
  }

  async aesGcmDecrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = this.own(key, "aes");
    checkGcmArgs(iv, data, aad, true);
    try {
      return await this.pool.use(async (s) => {
        this.p11.C_DecryptInit(s, this.gcm(iv, aad), k.handle as Handle);
        const out = Buffer.alloc(data.length);
        const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        const pt = data.length >= ASYNC_AES_BYTES ? await this.p11.C_DecryptAsync(s, input, out) : this.p11.C_Decrypt(s, input, out);
        return new Uint8Array(pt);
      });
    } catch (e) {
      // Inputs were validated above, so a token error here is a failed tag; SoftHSM2 reports it
      // as CKR_GENERAL_ERROR rather than CKR_ENCRYPTED_DATA_INVALID.
      if (TAG_FAILURES.has(ckrName(e) ?? "")) throw decryptionFailed();
      throw toAppError(e, "AES-GCM decrypt");
    }
  }

  private gcm(iv: Uint8Array, aad?: Uint8Array): Mechanism {
    const P = this.P;
    const parameter = { type: P.CK_PARAMS_AES_GCM, iv: Buffer.from(iv), ivBits: 96, tagBits: 128, aad: aad && Buffer.from(aad) };
    return { mechanism: P.CKM_AES_GCM, parameter };
  }

  async sign(key: KeyHandle, hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    const k = this.own(key, "ec-private");
    checkHash(hash);
    checkBytes("data", data);
    const digest = Buffer.from(await crypto.subtle.digest(hash, new Uint8Array(data)));
    try {
      return await this.pool.use(async (s) => {
        this.p11.C_SignInit(s, { mechanism: this.P.CKM_ECDSA }, k.handle as Handle);
        return new Uint8Array(await this.p11.C_SignAsync(s, digest, Buffer.alloc(2 * CURVE_BYTES[k.curve as EcCurve])));
      });
    } catch (e) {
      throw toAppError(e, "ECDSA sign");
    }
  }

  /** Verifies inside the token, with the public point loaded as a short-lived session object. */
  async verify(key: KeyHandle, hash: HashAlg, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (!key || typeof key !== "object") throw malformed("verify needs a key");
    let curve: EcCurve;
    let point: Uint8Array;
    if (key.location === "token") {
      const k = this.own(key, "ec-private");
      if (!k.publicKey) throw new AppError("bad_request", `key '${k.label}' has no public key object in the token`);
      curve = k.curve as EcCurve;
      point = k.publicKey;
    } else {
      expectType(key, "ec-public", "ec-private");
      curve = key.curve as EcCurve;
      point = key.type === "ec-public" ? key.material : (key.publicKey as Uint8Array);
    }
    checkHash(hash);
    checkBytes("data", data);
    checkBytes("signature", signature);
    await validatePoint(curve, point);
    if (signature.length !== 2 * CURVE_BYTES[curve]) return false;
    const digest = Buffer.from(await crypto.subtle.digest(hash, new Uint8Array(data)));
    const P = this.P;
    try {
      return await this.pool.use(async (s) => {
        const n: Naming = { label: "cryptoutil-verify", id: randomId(), persistent: false };
        let pub: Handle;
        try {
          pub = this.p11.C_CreateObject(s, ecPublicTemplate(P, n, curve, point));
        } catch (e) {
          throw malformed(`public key is not a valid ${curve} point (${ckrName(e) ?? "refused"})`);
        }
        try {
          this.p11.C_VerifyInit(s, { mechanism: P.CKM_ECDSA }, pub);
          return await this.p11.C_VerifyAsync(s, digest, Buffer.from(signature));
        } catch (e) {
          const ckr = ckrName(e);
          if (ckr === "CKR_SIGNATURE_INVALID" || ckr === "CKR_SIGNATURE_LEN_RANGE") return false;
          throw e;
        } finally {
          this.p11.C_DestroyObject(s, pub);
        }
      });
    } catch (e) {
      throw toAppError(e, "ECDSA verify");
    }
  }

  /**
   * ECDH1 derive (CKD_NULL) inside the token. The result is a session object: it lives until
   * the provider closes, so callers that derive often release it with `destroyKey`.
   */
  async ecdh(privateKey: KeyHandle, peerPublicKey: Uint8Array, as?: { type: "aes"; bits: AesBits }): Promise<KeyHandle> {
    const k = this.own(privateKey, "ec-private");
    const curve = k.curve as EcCurve;
    checkEcdhAs(curve, as);
    // Checked here: SoftHSM2 reports an off-curve point only as CKR_GENERAL_ERROR.
    await validatePoint(curve, peerPublicKey, "peer public key");
    const P = this.P;
    const n: Naming = { label: "cryptoutil-ecdh", id: randomId(), persistent: false };
    const bytes = as ? as.bits / 8 : CURVE_BYTES[curve];
    const template = as ? aesKeyTemplate(P, n, bytes) : secretKeyTemplate(P, n, bytes);
    const mechanism: Mechanism = {
      mechanism: P.CKM_ECDH1_DERIVE,
      parameter: { type: P.CK_PARAMS_EC_DH, kdf: P.CKD_NULL, publicData: Buffer.from(peerPublicKey) } as ECDH1,
    };
    try {
      const h = await this.pool.use((s) => this.p11.C_DeriveKeyAsync(s, mechanism, k.handle as Handle, template));
      return this.tokenKey(n, as ? "aes" : "secret", h, { bits: bytes * 8 });
    } catch (e) {
      throw toAppError(e, "ECDH");
    }
  }

  async generateAesKey(bits: AesBits, opts: KeyGenOptions = {}): Promise<KeyHandle> {
    checkAesBits(bits);
    if (opts.location === "raw") throw new AppError("bad_request", "the pkcs11 provider creates keys in its token only");
    const n = this.naming(opts);
    await this.refuseDuplicate(n);
    try {
      const h = await this.pool.use((s) =>
        this.p11.C_GenerateKeyAsync(s, { mechanism: this.P.CKM_AES_KEY_GEN }, aesKeyTemplate(this.P, n, bits / 8)),
      );
      return this.tokenKey(n, "aes", h, { bits });
    } catch (e) {
      throw toAppError(e, "generate AES key");
    }
  }

  async generateEcKeyPair(curve: EcCurve, opts: KeyGenOptions = {}): Promise<EcKeyPair> {
    checkCurve(curve);
    if (opts.location === "raw") throw new AppError("bad_request", "the pkcs11 provider creates keys in its token only");
    const P = this.P;
    const n = this.naming(opts);
    await this.refuseDuplicate(n);
    try {
      return await this.pool.use(async (s) => {
        const pair = await this.p11.C_GenerateKeyPairAsync(
          s,
          { mechanism: P.CKM_EC_KEY_PAIR_GEN },
          ecPublicTemplate(P, n, curve),
          ecPrivateTemplate(P, n, curve),
        );
        const [pt] = this.p11.C_GetAttributeValue(s, pair.publicKey, [{ type: P.CKA_EC_POINT }]);
        const publicKey = decodeEcPoint(curve, pt?.value as Buffer);
        return {
          privateKey: this.tokenKey(n, "ec-private", pair.privateKey, { curve, publicKey }),
          publicKey: rawKey("ec-public", publicKey, { curve }),
        };
      });
    } catch (e) {
      throw toAppError(e, "generate EC key pair");
    }
  }

  /**
   * RFC 3394 wrap (CKM_AES_KEY_WRAP) under a token key. An in-memory key is loaded as a
   * short-lived extractable session object to be wrapped; a token key can be wrapped only if
   * the token allows it (never for keys this provider creates).
   */
  async wrapKey(wrappingKey: KeyHandle, key: KeyHandle): Promise<Uint8Array> {
    const kek = this.own(wrappingKey, "aes");
    const P = this.P;
    let len: number;
    if (key?.location === "raw") {
      expectType(key, "aes", "secret");
      len = key.material.length;
    } else {
      const k = this.own(key, "aes", "secret");
      len = (k.bits ?? 0) / 8;
    }
    checkWrappable(len);
    try {
      return await this.pool.use(async (s) => {
        let target: Handle;
        let temporary = false;
        if (key.location === "raw") {
          const n: Naming = { label: "cryptoutil-wrap", id: randomId(), persistent: false };
          const t = (key.type === "aes" ? aesKeyTemplate(P, n, undefined, key.material) : secretKeyTemplate(P, n, undefined, key.material))
            .map((a) => (a.type === P.CKA_EXTRACTABLE ? { type: a.type, value: true } : a));
          target = this.p11.C_CreateObject(s, t);
          temporary = true;
        } else {
          target = key.handle as Handle;
        }
        try {
          const out = Buffer.alloc(len + 8);
          return new Uint8Array(
            await this.p11.C_WrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP }, kek.handle as Handle, target, out),
          );
        } finally {
          if (temporary) this.p11.C_DestroyObject(s, target);
        }
      });
    } catch (e) {
      throw toAppError(e, "AES key wrap");
    }
  }

  /** RFC 3394 unwrap into the token: the result is a sensitive, non-extractable token key. */
  async unwrapKey(
    unwrappingKey: KeyHandle,
    wrapped: Uint8Array,
    as: { type: "aes" | "secret" },
    opts: KeyGenOptions = {},
  ): Promise<KeyHandle> {
    const kek = this.own(unwrappingKey, "aes");
    checkBytes("wrapped key", wrapped);
    checkWrappable(wrapped.length - 8);
    if (as?.type !== "aes" && as?.type !== "secret") throw malformed("unwrap as 'aes' or 'secret'");
    if (as.type === "aes") checkAesBits((wrapped.length - 8) * 8);
    if (opts.location === "raw") throw new AppError("bad_request", "the pkcs11 provider unwraps into its token only");
    const P = this.P;
    const n = this.naming(opts);
    await this.refuseDuplicate(n);
    const template = as.type === "aes" ? aesKeyTemplate(P, n, undefined) : secretKeyTemplate(P, n, undefined);
    try {
      const h = await this.pool.use((s) =>
        this.p11.C_UnwrapKeyAsync(s, { mechanism: P.CKM_AES_KEY_WRAP }, kek.handle as Handle, Buffer.from(wrapped), template),
      );
      return this.tokenKey(n, as.type, h, { bits: (wrapped.length - 8) * 8 });
    } catch (e) {
      if (TAG_FAILURES.has(ckrName(e) ?? "") || ckrName(e) === "CKR_WRAPPED_KEY_INVALID") throw decryptionFailed();
      throw toAppError(e, "AES key unwrap");
    }
  }

  async digest(hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    checkHash(hash);
    checkBytes("data", data);
    const P = this.P;
    const mech = { "SHA-256": P.CKM_SHA256, "SHA-384": P.CKM_SHA384, "SHA-512": P.CKM_SHA512 }[hash];
    try {
      return await this.pool.use(async (s) => {
        this.p11.C_DigestInit(s, { mechanism: mech });
        return new Uint8Array(await this.p11.C_DigestAsync(s, Buffer.from(data), Buffer.alloc(HASH_BYTES[hash])));
      });
    } catch (e) {
      throw toAppError(e, "digest");
    }
  }

  async hmac(hash: HashAlg, key: KeyHandle, data: Uint8Array): Promise<Uint8Array> {
    const k = this.own(key, "secret");
    checkHash(hash);
    checkBytes("data", data);
    const P = this.P;
    const mech = { "SHA-256": P.CKM_SHA256_HMAC, "SHA-384": P.CKM_SHA384_HMAC, "SHA-512": P.CKM_SHA512_HMAC }[hash];
    try {
      return await this.pool.use(async (s) => {
        this.p11.C_SignInit(s, { mechanism: mech }, k.handle as Handle);
        return new Uint8Array(await this.p11.C_SignAsync(s, Buffer.from(data), Buffer.alloc(HASH_BYTES[hash])));
      });
    } catch (e) {
      if (ckrName(e) === "CKR_KEY_SIZE_RANGE") throw malformed(`the token needs HMAC-${hash} keys of at least ${HASH_BYTES[hash]} bytes`);
      throw toAppError(e, "HMAC");
    }
  }

  /** Waits for running operations, closes the sessions and releases the module. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.drain();
    for (const s of this.pool.all) {
      try {
        this.p11.C_CloseSession(s);
      } catch {
        // A session the token already dropped: nothing left to close.
      }
    }
    releaseModule(this.module);
  }
}

/** Opens the HSM provider; see `Pkcs11Provider.open`. */
export const openPkcs11Provider = (config: Pkcs11Config): Promise<Pkcs11Provider> => Pkcs11Provider.open(config);
