/**
 * HTTPS to the suite's services, and the one function that reads an error answer.
 *
 * Every request trusts the context's CA bundle (Bun's fetch takes it per request, as
 * src/auth/bearer.ts does). A refused request becomes a RefusedError from either error
 * shape the suite speaks: its own `{"error":{"code","message","request_id"}}` or OAuth's
 * `{"error","error_description"}`; a service that cannot be reached becomes an
 * UnreachableError naming it. No command reads an error body itself.
 */
import { RefusedError, UnreachableError } from "./errors.ts";

const TIMEOUT_MS = Number(process.env.CRYPTOUTIL_TIMEOUT_MS) || 120_000;

/** fetch with the CA bundle and a timeout; network failures become one UnreachableError. */
export async function send(url: string, init: RequestInit, ca: string | undefined, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS), ...(ca ? { tls: { ca } } : {}) } as RequestInit);
  } catch (e) {
    throw new UnreachableError(`cannot reach ${what} at ${new URL(url).origin}: ${networkProblem(e)}`);
  }
}

function networkProblem(e: unknown): string {
  const code = String((e as { code?: unknown }).code ?? (e as { name?: unknown }).name ?? "");
  if (code === "ConnectionRefused" || code === "ECONNREFUSED") return "connection refused (is it running?)";
  if (code === "TimeoutError" || code === "ETIMEDOUT") return "timed out";
  if (/CERT|SELF_SIGNED|SIGNATURE|TLS|SSL/i.test(code)) return `TLS verification failed (${code}): is the CA bundle the suite's trust bundle?`;
  if (code === "ENOTFOUND" || code === "FailedToOpenSocket") return "host not found";
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
}

/** The error a non-2xx answer carries, in the suite's model or OAuth's. */
export async function refusal(res: Response, hint?: string): Promise<RefusedError> {
  const text = await res.text().catch(() => "");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const err = (body as { error?: unknown } | undefined)?.error;
  if (err && typeof err === "object") {
    const o = err as { code?: unknown; message?: unknown; details?: { reasons?: Array<{ code?: string; message?: string }> } };
    // pki-ca's policy refusals list every reason; they are the useful part.
    const reasons = Array.isArray(o.details?.reasons) ? o.details!.reasons.map((r) => r.message ?? r.code).join("; ") : "";
    return new RefusedError(String(o.code ?? `http_${res.status}`), oneLine(String(o.message ?? res.statusText) + (reasons ? `: ${reasons}` : "")), res.status, hint);
  }
  if (typeof err === "string") {
    const d = (body as { error_description?: unknown }).error_description;
    return new RefusedError(err, oneLine(typeof d === "string" ? d : res.statusText || "refused"), res.status, hint);
  }
  return new RefusedError(`http_${res.status}`, oneLine(text.slice(0, 200) || res.statusText || "no details"), res.status, hint);
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();

/** The parsed JSON of a 2xx answer (undefined for 204), or the refusal thrown. */
export async function expectJson<T>(res: Response, hint?: string): Promise<T> {
  if (!res.ok) throw await refusal(res, hint);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  try {
    return (text ? JSON.parse(text) : undefined) as T;
  } catch {
    throw new RefusedError("malformed_answer", `the service answered ${res.status} with a body that is not JSON`, res.status);
  }
}

export type TokenSource = (opts: { fresh: boolean }) => Promise<string>;

/** One service of a context: its base URL, the CA bundle, and (for the API) a token source. */
export class ServiceClient {
  constructor(
    readonly name: string,
    readonly baseUrl: string,
    readonly ca: string,
    private readonly token?: TokenSource,
  ) {}

  /** A request to `/service/api/v1{path}` with a bearer token; answers JSON or throws. */
  async api<T>(method: string, path: string, body?: unknown, query?: Record<string, string | number | undefined>): Promise<T> {
    const qs = query ? new URLSearchParams(Object.entries(query).filter((e): e is [string, string | number] => e[1] !== undefined).map(([k, x]) => [k, String(x)])).toString() : "";
    const url = `${this.baseUrl}/service/api/v1${path}${qs ? `?${qs}` : ""}`;
    const call = async (fresh: boolean) => {
      const headers: Record<string, string> = { accept: "application/json" };
      if (this.token) headers.authorization = `Bearer ${await this.token({ fresh })}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      return send(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }, this.ca, this.name);
    };
    let res = await call(false);
    if (res.status === 401 && this.token) {
      // A cached token the service no longer takes (its issuer rotated keys, or it was revoked): once more with a new one.
      await res.body?.cancel();
      res = await call(true);
    }
    return expectJson<T>(res);
  }

  /** A request to any path of the service, without a token (e.g. the CA's /pki routes). */
  raw(method: string, path: string, init: RequestInit = {}): Promise<Response> {
    return send(`${this.baseUrl}${path}`, { ...init, method }, this.ca, this.name);
  }
}
