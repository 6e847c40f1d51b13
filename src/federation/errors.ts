/**
 * Why a federated call failed, with stable reasons: the metrics label failures with them
 * and the callers pick their fallback from them. The HTTP layer never shows a peer's
 * failure as such; callers turn it into their own `unavailable` (503).
 */
import { AppError } from "../service/errors.ts";

export type FailureReason = "timeout" | "network" | "status" | "breaker_open";

export class FederationError extends AppError {
  constructor(
    /** The federated service (`identity`, `jose`, `ca`). */
    readonly peer: string,
    readonly reason: FailureReason,
    message: string,
    cause?: unknown,
  ) {
    super("unavailable", message, { cause });
    this.name = "FederationError";
  }
}
