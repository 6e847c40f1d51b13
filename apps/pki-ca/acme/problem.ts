/**
 * ACME errors (RFC 8555 §6.7): the domain throws `AcmeProblem` with an error type from the
 * `urn:ietf:params:acme:error:` namespace and a status; routes.ts turns it into an
 * `application/problem+json` document in one place. Messages never carry keys or secrets.
 */

/** The ACME error types this server answers with, and the status each maps to. */
export const PROBLEM_STATUS = {
  accountDoesNotExist: 400,
  alreadyReplaced: 409,
  alreadyRevoked: 400,
  badCSR: 400,
  badNonce: 400,
  badPublicKey: 400,
  badRevocationReason: 400,
  badSignatureAlgorithm: 400,
  caa: 403,
  connection: 400,
  dns: 400,
  externalAccountRequired: 400,
  incorrectResponse: 400,
  invalidContact: 400,
  malformed: 400,
  orderNotReady: 403,
  rateLimited: 429,
  rejectedIdentifier: 400,
  serverInternal: 500,
  tls: 400,
  unauthorized: 403,
  unsupportedContact: 400,
  unsupportedIdentifier: 400,
} as const;

export type ProblemType = keyof typeof PROBLEM_STATUS;

export const PROBLEM_NS = "urn:ietf:params:acme:error:";

/** An ACME problem: `type` without the namespace, a human-readable detail, an HTTP status. */
export class AcmeProblem extends Error {
  readonly status: number;
  readonly subproblems?: Array<{ type: ProblemType; detail: string; identifier?: { type: string; value: string } }>;
  /** Response headers the problem needs (Retry-After of rateLimited, Location of a key conflict). */
  readonly headers: Record<string, string>;
  constructor(
    readonly type: ProblemType,
    readonly detail: string,
    opts: { status?: number; subproblems?: Array<{ type: ProblemType; detail: string; identifier?: { type: string; value: string } }>; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.name = "AcmeProblem";
    this.status = opts.status ?? PROBLEM_STATUS[type];
    this.subproblems = opts.subproblems;
    this.headers = opts.headers ?? {};
  }

  /** The problem document (RFC 7807) as stored on orders and challenges and sent to clients. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { type: PROBLEM_NS + this.type, detail: this.detail, status: this.status };
    if (this.subproblems?.length) out.subproblems = this.subproblems.map((s) => ({ ...s, type: PROBLEM_NS + s.type }));
    return out;
  }
}

export const malformed = (detail: string, status?: number) => new AcmeProblem("malformed", detail, { status });
export const unauthorized = (detail: string) => new AcmeProblem("unauthorized", detail);
