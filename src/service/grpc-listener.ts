/**
 * The gRPC listener (`server.grpc_port`): an app's unary gRPC API over mutual TLS, with the
 * standard health service (grpc.health.v1) and server reflection beside it.
 *
 * `@grpc/grpc-js` serves HTTP/2 on the runtime's node:http2, as the mTLS listener does; this
 * file is the one that knows it. It is imported only when the port is configured, so a
 * service without one never loads gRPC.
 *
 * Guarantees:
 * - TLS 1.3 only; a client certificate chaining to `tls.ca` is required by the handshake (no
 *   certificate, or one from another CA, never reaches a handler).
 * - The certificate becomes a principal through the same `mtls.principals` mapping as the mTLS
 *   port (`CertificatePrincipals`): a verified but unmapped certificate is PERMISSION_DENIED
 *   `forbidden`; a method's scopes are checked before its handler runs (`insufficient_scope`).
 * - While the barrier is sealed every API call is UNAVAILABLE `sealed`, and health says NOT_SERVING.
 * - Errors are status codes with the stable code of the error model in the trailing metadata
 *   `cryptoutil-error-code` and as a google.rpc.ErrorInfo in `grpc-status-details-bin`; a
 *   message that does not parse is INVALID_ARGUMENT `malformed_message`, one above
 *   `maxMessageBytes` RESOURCE_EXHAUSTED; a fault of the service is INTERNAL `internal`, logged.
 *
 * Unary calls of the app's service take a direct path (`unaryFastPath`): grpc-js's per-call
 * machinery (interceptor chain, Metadata objects, a readable/writable call object, deadline
 * timers, the decompression pipeline) costs more CPU on this runtime than the rest of the call,
 * and a unary call needs none of it: one length-prefixed message in, one out, the status in
 * trailers. The same handler runs on both paths, with the same checks and answers. Anything
 * else (health, reflection, a compressed message, an unexpected content type) goes to grpc-js.
 * On the direct path a call's `grpc-timeout` is the client's to enforce (the handlers are short
 * and not cancellable); a stream the client resets gets no answer. Successful answers that are
 * ready in the same turn of the event loop leave together, per connection (`AnswerBatch`).
 */
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream, ServerStreamResponseOptions } from "node:http2";
import { dirname, join } from "node:path";
import { setImmediate } from "node:timers";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import protobuf from "protobufjs";
import { AppError } from "./errors.ts";
import { toAppError, logServerError } from "./http.ts";
import type { Logger } from "./log.ts";
import type { MtlsTls } from "./mtls-listener.ts";
import type { Principal } from "../auth/bearer.ts";
import { parseClientCertificate, type CertificatePrincipals, type ClientCertificate } from "../auth/client-cert.ts";

/** The folder of the suite's .proto files (`schemas/proto`). */
export const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "schemas", "proto");

/** One unary method of an app's gRPC API. */
export interface GrpcMethod {
  /** The caller needs every one of `scopes`, or (with `anyOf`) at least one; none: any mapped certificate. */
  scopes?: string[];
  anyOf?: boolean;
  /** The request as proto-loader decodes it (field names as in the .proto, bytes as Buffer). */
  handle(request: any, principal: Principal): Promise<unknown> | unknown;
}

/** An app's gRPC API: its .proto file (under `schemas/proto`) and one handler per method. */
export interface GrpcApi {
  /** Path under `schemas/proto`, e.g. `supacrypt/v1/keys.proto`. */
  proto: string;
  /** Fully qualified service name, e.g. `supacrypt.v1.KeyService`. */
  service: string;
  methods: Record<string, GrpcMethod>;
}

export interface GrpcListenerOptions {
  hostname: string;
  /** 0 = any free port. */
  port: number;
  tls: MtlsTls;
  principals: CertificatePrincipals;
  /** Largest message accepted, in bytes. */
  maxMessageBytes: number;
  sealed(): boolean;
  logger: Logger;
  api: GrpcApi;
}

export interface GrpcListener {
  readonly port: number;
  /** Whether unary calls of the app's service take the direct path (see `unaryFastPath`). */
  readonly direct: boolean;
  /** Swaps the server certificate and trusted CAs for new connections. */
  setTls(tls: MtlsTls): void;
  /** Stops: at once (`force`), or once the calls in flight have finished. */
  stop(force: boolean): Promise<void>;
}

/** The metadata key that carries the stable error code. */
export const ERROR_CODE_METADATA = "cryptoutil-error-code";

const HEALTH_PROTO = "grpc/health/v1/health.proto";
/** Served by reflection too, so that clients can decode the error details. */
const ERROR_DETAILS_PROTO = "google/rpc/error_details.proto";
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

/** HTTP statuses of the error model as gRPC codes. */
function grpcCodeOf(e: AppError): grpc.status {
  if (e.code === "conflict") return grpc.status.ALREADY_EXISTS;
  switch (e.status) {
    case 400:
    case 422:
      return grpc.status.INVALID_ARGUMENT;
    case 401:
      return grpc.status.UNAUTHENTICATED;
    case 403:
      return grpc.status.PERMISSION_DENIED;
    case 404:
      return grpc.status.NOT_FOUND;
    case 409:
      return grpc.status.FAILED_PRECONDITION;
    case 413:
    case 429:
      return grpc.status.RESOURCE_EXHAUSTED;
    case 503:
      return grpc.status.UNAVAILABLE;
    default:
      return e.status >= 500 ? grpc.status.INTERNAL : grpc.status.INVALID_ARGUMENT;
  }
}

/** Encodes google.rpc.Status with one google.rpc.ErrorInfo, for `grpc-status-details-bin`. */
function statusDetailsEncoder(): (code: number, message: string, reason: string) => Buffer {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith("google/protobuf/") ? target : join(PROTO_ROOT, target));
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
  const Status = root.lookupType("google.rpc.Status");
  const ErrorInfo = root.lookupType("google.rpc.ErrorInfo");
  return (code, message, reason) => {
    const info = ErrorInfo.encode({ reason, domain: "cryptoutil" }).finish();
    return Buffer.from(Status.encode({ code, message, details: [{ type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: info }] }).finish());
  };
}

/** grpc-js's server credentials with the suite's TLS policy: TLS 1.3, client certificate required. */
class MutualTlsCredentials extends (grpc.ServerCredentials as unknown as new (ctor: object | null, ctx?: object) => grpc.ServerCredentials) {
  constructor(tls: MtlsTls) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, MutualTlsCredentials.context(tls));
  }
  static context(tls: MtlsTls) {
    return { cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: "TLSv1.3" as const };
  }
  update(tls: MtlsTls): void {
    (this as unknown as { updateSecureContextOptions(o: object): void }).updateSecureContextOptions(MutualTlsCredentials.context(tls));
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** A message that did not parse: the handler answers INVALID_ARGUMENT instead of grpc-js's INTERNAL. */
const MALFORMED = Symbol("malformed");

/**
 * The HTTP/2 session (the TLS connection) a call came on: grpc-js keeps it on the call's stream
 * (`call.call.stream.session` with no server interceptors), which its typings do not expose.
 * Undefined when that shape is not there, and only a TLS-authorized session is returned.
 */
function sessionOf(call: grpc.ServerUnaryCall<unknown, unknown>): object | undefined {
  const session = (call as unknown as { call?: { stream?: { session?: { socket?: { authorized?: boolean } } } } }).call?.stream?.session;
  return session && typeof session === "object" && session.socket?.authorized === true ? session : undefined;
}

/** Starts the gRPC listener; resolves once it listens. */
export async function startGrpcListener(opts: GrpcListenerOptions): Promise<GrpcListener> {
  const definition = protoLoader.loadSync([opts.api.proto, HEALTH_PROTO, ERROR_DETAILS_PROTO], LOADER_OPTIONS);
  const service = definition[opts.api.service] as protoLoader.ServiceDefinition | undefined;
  if (!service) throw new AppError("config_invalid", `${opts.api.proto} defines no service ${opts.api.service}`);
  const details = statusDetailsEncoder();
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    // Idle connections are closed after 10 minutes; a client that pings too often is dropped.
    "grpc.max_connection_idle_ms": 600_000,
    // No channelz: its per-call bookkeeping (call counters, timestamps per stream) has no reader here.
    "grpc.enable_channelz": 0,
  });

  /** An error as its status: the gRPC code, the message, the stable code and its details (logged if the service's fault). */
  const statusOf = (e: unknown) => {
    const err = toAppError(e);
    if (err.status >= 500 && err.code !== "sealed") logServerError(opts.logger, { request_id: "grpc", route: "grpc", status: err.status, failure: err });
    const code = grpcCodeOf(err);
    return { code, message: err.message, errorCode: err.code, details: details(code, err.message, err.code) };
  };
  const fail = (e: unknown, callback: grpc.sendUnaryData<unknown>) => {
    const st = statusOf(e);
    const metadata = new grpc.Metadata();
    metadata.set(ERROR_CODE_METADATA, st.errorCode);
    metadata.set("grpc-status-details-bin", st.details);
    callback({ code: st.code, details: st.message, metadata });
  };

  // A connection's certificate is read and parsed once per connection. grpc-js's getAuthContext()
  // asks the TLS socket for the peer certificate on every call, which on this runtime costs about
  // as much as the rest of the listener's work for a call; the HTTP/2 session (one TLS connection,
  // so one client certificate: TLS 1.3 has no renegotiation) keys the cache, so it dies with the
  // connection. Where the session cannot be reached, the certificate is read per call and its
  // DER keys a bounded cache.
  const bySession = new WeakMap<object, Promise<ClientCertificate>>();
  const byDer = new Map<string, Promise<ClientCertificate>>();
  const certificateOf = (call: grpc.ServerUnaryCall<unknown, unknown>): Promise<ClientCertificate> =>
    certificateFor(sessionOf(call), () => call.getAuthContext?.()?.sslPeerCertificate?.raw);
  const certificateFor = (session: object | undefined, peerDer: () => Buffer | undefined): Promise<ClientCertificate> => {
    const cached = session && bySession.get(session);
    if (cached) return cached;
    const raw = peerDer();
    if (!raw || raw.length === 0) throw new AppError("unauthenticated", "a client certificate is required");
    const key = raw.toString("base64");
    let cert = byDer.get(key);
    if (!cert) {
      if (byDer.size >= 1000) byDer.clear();
      // grpc-js verified the chain to the trusted CAs in the handshake (checkClientCertificate).
      cert = parseClientCertificate(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), true);
      byDer.set(key, cert);
    }
    if (session) bySession.set(session, cert);
    return cert;
  };

  /** One call of `impl`, on either path: the message, the caller's certificate, the barrier, the scopes, the handler. */
  const runCall = async (impl: GrpcMethod, request: unknown, certificate: () => Promise<ClientCertificate>): Promise<unknown> => {
    if (request === MALFORMED) throw new AppError("malformed_message", "the request is not a valid protobuf message of this method", { status: 400 });
    const principal = await opts.principals.authenticate(await certificate());
    if (opts.sealed()) throw new AppError("sealed", "the service is sealed; an operator unseals it through the admin API");
    if (impl.scopes && impl.scopes.length > 0) {
      const ok = impl.anyOf ? impl.scopes.some((s) => principal.scopes.has(s)) : impl.scopes.every((s) => principal.scopes.has(s));
      if (!ok) throw new AppError("insufficient_scope", `${impl.anyOf ? "one of these scopes is" : "these scopes are"} needed: ${impl.scopes.join(" ")}`);
    }
    return impl.handle(request, principal);
  };
  /** The app's unary methods by HTTP/2 path, for the direct path. */
  const unary = new Map<string, { impl: GrpcMethod; decode: (b: Buffer) => unknown; encode: (v: unknown) => Buffer }>();

  const implementation: grpc.UntypedServiceImplementation = {};
  const serviceDefinition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const impl = opts.api.methods[name];
    if (!impl) throw new AppError("config_invalid", `${opts.api.service}.${name} has no handler`);
    if (method.requestStream || method.responseStream) throw new AppError("config_invalid", `${opts.api.service}.${name}: only unary methods are served`);
    const decode = (bytes: Buffer) => {
      try {
        return method.requestDeserialize(bytes);
      } catch {
        return MALFORMED;
      }
    };
    serviceDefinition[name] = { ...method, requestDeserialize: decode } as grpc.MethodDefinition<unknown, unknown>;
    unary.set(method.path, { impl, decode, encode: method.responseSerialize as (v: unknown) => Buffer });
    implementation[name] = async (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      try {
        callback(null, await runCall(impl, call.request, () => certificateOf(call)));
      } catch (e) {
        fail(e, callback);
      }
    };
  }
  server.addService(serviceDefinition, implementation);

  // Health: the API's service and "" (the server) serve while the barrier is open.
  const healthService = definition["grpc.health.v1.Health"] as grpc.ServiceDefinition;
  const servingOf = (name: string) => {
    if (name !== "" && name !== opts.api.service) return undefined;
    return opts.sealed() ? "NOT_SERVING" : "SERVING";
  };
  const watchers = new Set<NodeJS.Timeout>();
  server.addService(healthService, {
    check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const status = servingOf(call.request?.service ?? "");
      if (!status) return callback({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      callback(null, { status });
    },
    watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
      let last = "";
      const tick = () => {
        const status = servingOf(call.request?.service ?? "") ?? "SERVICE_UNKNOWN";
        if (status !== last) call.write({ status });
        last = status;
      };
      tick();
      const timer = setInterval(tick, 1000);
      watchers.add(timer);
      call.on("cancelled", () => {
        clearInterval(timer);
        watchers.delete(timer);
      });
    },
  });
  new ReflectionService(definition).addToServer(server);

  const credentials = new MutualTlsCredentials(opts.tls);
  const host = opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const direct = unaryFastPath(server, {
    maxMessageBytes: opts.maxMessageBytes,
    lookup: (path) => unary.get(path),
    run: (m, request, session) => runCall(m.impl, request, () => certificateFor(session, () => (session as { socket?: { getPeerCertificate?(): { raw?: Buffer } } }).socket?.getPeerCertificate?.()?.raw)),
    statusOf,
  });
  return {
    port,
    direct,
    setTls: (tls) => credentials.update(tls),
    async stop(force) {
      for (const t of watchers) clearInterval(t);
      if (force) {
        server.forceShutdown();
        return;
      }
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

interface FastMethod {
  impl: GrpcMethod;
  decode(bytes: Buffer): unknown;
  encode(value: unknown): Buffer;
}

interface FastPathOptions {
  maxMessageBytes: number;
  lookup(path: string): FastMethod | undefined;
  run(method: FastMethod, request: unknown, session: Http2Session): Promise<unknown>;
  statusOf(e: unknown): { code: number; message: string; errorCode: string; details: Buffer };
}

/** grpc-message is percent-encoded (gRPC over HTTP/2: printable ASCII except `%` as is). */
const grpcMessage = (s: string) => encodeURI(s);

/**
 * Serves unary calls of the app's methods straight on grpc-js's HTTP/2 server: its `stream`
 * listener is wrapped so that a call to one of `lookup`'s paths, with a gRPC content type, no
 * compression and a TLS-authorized session, is read, run and answered here; every other stream
 * goes to grpc-js's own listener unchanged. Returns false (and changes nothing) when grpc-js's
 * server does not have the shape this relies on (its HTTP/2 servers and their one `stream`
 * listener), so an upgrade that changes it falls back to the ordinary path, and the listener's
 * test sees it.
 */
function unaryFastPath(server: grpc.Server, opts: FastPathOptions): boolean {
  const internals = server as unknown as { http2Servers?: Map<{ listeners(e: string): Function[]; removeAllListeners(e: string): void; on(e: string, f: Function): void }, unknown>; onStreamOpened?: (s: ServerHttp2Stream) => void };
  const servers = internals.http2Servers instanceof Map ? [...internals.http2Servers.keys()] : [];
  if (servers.length === 0 || servers.some((h) => h.listeners("stream").length !== 1)) return false;
  const opened = typeof internals.onStreamOpened === "function" ? internals.onStreamOpened.bind(server) : undefined;
  const batch = new AnswerBatch();
  for (const h2 of servers) {
    const grpcJs = h2.listeners("stream")[0]! as (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => void;
    h2.removeAllListeners("stream");
    h2.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => {
      const method = opts.lookup(String(headers[":path"]));
      const type = headers["content-type"];
      const encoding = headers["grpc-encoding"];
      const session = stream.session;
      const authorized = (session?.socket as { authorized?: boolean } | undefined)?.authorized === true;
      if (!method || !session || !authorized || typeof type !== "string" || !type.startsWith("application/grpc") || (encoding !== undefined && encoding !== "identity")) {
        grpcJs(stream, headers, flags);
        return;
      }
      // grpc-js counts the session's open streams for its idle timeout (grpc.max_connection_idle_ms).
      opened?.(stream);
      unaryCall(stream, session, method, opts, batch);
    });
  }
  return true;
}

/**
 * An answer's headers and trailers: no `date` (gRPC has no use for it, and it would be encoded
 * into every answer) and no `grpc-message` on success (optional in the protocol; an OK status
 * has no message). The runtime copies them per answer.
 */
const OK_HEADERS = { ":status": 200, "content-type": "application/grpc+proto" } as const;
const OK_TRAILERS = { "grpc-status": "0" } as const;
// `sendDate` is the runtimes' respond() option (Node's and Bun's), not in @types/node.
const ANSWER_OPTIONS: ServerStreamResponseOptions = { waitForTrailers: true, ...{ sendDate: false } };
const ERROR_OPTIONS: ServerStreamResponseOptions = { endStream: true, ...{ sendDate: false } };

/**
 * Answers leave together. Bun's HTTP/2 session buffers the frames of a connection and writes
 * them to the socket when a stream that waits for trailers ends, so each answer written on its
 * own costs one socket write and one TLS record (and the client one read). Here the answers that
 * become ready in one turn of the event loop are written at its end, a connection's one after
 * another, and all their trailers after them: two writes per connection and turn (headers and
 * messages, then trailers) however many answers it carries. The answers themselves are the same.
 */
class AnswerBatch {
  #answers = new Map<Http2Session, { stream: ServerHttp2Stream; frame: Buffer }[]>();
  #trailers = new Map<Http2Session, ServerHttp2Stream[]>();
  #trailersScheduled = false;

  answer(session: Http2Session, stream: ServerHttp2Stream, frame: Buffer): void {
    const list = this.#answers.get(session);
    if (list) {
      list.push({ stream, frame });
      return;
    }
    if (this.#answers.size === 0) setImmediate(this.#write);
    this.#answers.set(session, [{ stream, frame }]);
  }

  #write = () => {
    const answers = this.#answers;
    this.#answers = new Map();
    for (const [session, list] of answers) {
      for (const { stream, frame } of list) {
        // A stream the client reset, or a connection that broke, meanwhile: nothing to answer.
        if (stream.destroyed || stream.closed) continue;
        try {
          stream.respond(OK_HEADERS, ANSWER_OPTIONS);
          stream.once("wantTrailers", () => this.#trailer(session, stream));
          stream.end(frame);
        } catch {
          stream.destroy();
        }
      }
    }
  };

  #trailer(session: Http2Session, stream: ServerHttp2Stream): void {
    const list = this.#trailers.get(session);
    if (list) list.push(stream);
    else this.#trailers.set(session, [stream]);
    if (!this.#trailersScheduled) {
      this.#trailersScheduled = true;
      queueMicrotask(this.#sendTrailers);
    }
  }

  #sendTrailers = () => {
    this.#trailersScheduled = false;
    const trailers = this.#trailers;
    this.#trailers = new Map();
    for (const list of trailers.values()) {
      for (const stream of list) {
        if (stream.destroyed || stream.closed) continue;
        try {
          stream.sendTrailers(OK_TRAILERS);
        } catch {
          stream.destroy();
        }
      }
    }
  };
}

/** Reads one length-prefixed message, runs the method and answers with the message and an OK status, or an error status. */
function unaryCall(stream: ServerHttp2Stream, session: Http2Session, method: FastMethod, opts: FastPathOptions, batch: AnswerBatch): void {
  // A reset or a broken connection: nothing to answer; the close event ends the call.
  stream.on("error", () => {});
  const chunks: Buffer[] = [];
  let size = 0;
  let answered = false;
  const answer = (body: Buffer | undefined, error?: unknown) => {
    if (answered || stream.destroyed || stream.closed) return;
    answered = true;
    if (body) {
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame[0] = 0;
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      batch.answer(session, stream, frame);
      return;
    }
    // A trailers-only answer, as grpc-js gives before any message.
    const st = opts.statusOf(error);
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc+proto",
        "grpc-status": String(st.code),
        "grpc-message": grpcMessage(st.message),
        [ERROR_CODE_METADATA]: st.errorCode,
        "grpc-status-details-bin": st.details.toString("base64"),
      },
      ERROR_OPTIONS,
    );
  };
  stream.on("data", (chunk: Buffer) => {
    if (answered) return;
    size += chunk.length;
    if (size > opts.maxMessageBytes + 5) {
      chunks.length = 0;
      answer(undefined, new AppError("payload_too_large", `the message is larger than ${opts.maxMessageBytes} bytes`, { status: 413 }));
      return;
    }
    chunks.push(chunk);
  });
  stream.on("end", () => {
    if (answered) return;
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const length = data.length >= 5 ? data.readUInt32BE(1) : -1;
    if (length < 0 || data.length !== 5 + length) {
      // No message, a cut-off one, or more than one: not a unary request.
      answer(undefined, new AppError("malformed_message", "a unary call carries exactly one length-prefixed message", { status: 400 }));
      return;
    }
    if (data[0] !== 0) {
      answer(undefined, new AppError("malformed_message", "a compressed message without a grpc-encoding", { status: 400 }));
      return;
    }
    let request: unknown;
    try {
      request = method.decode(data.subarray(5));
    } catch (e) {
      answer(undefined, e);
      return;
    }
    opts.run(method, request, session).then(
      (value) => {
        let body: Buffer;
        try {
          body = method.encode(value);
        } catch (e) {
          answer(undefined, e);
          return;
        }
        answer(body);
      },
      (e) => answer(undefined, e),
    );
  });
}
