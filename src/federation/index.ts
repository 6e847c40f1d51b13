/** Config-driven clients to other services of the suite: timeouts, retries, circuit breakers, fallbacks. */
export { attemptTimeoutMs, backoffCeilingMs, backoffDelayMs, type RetryPolicy } from "./backoff.ts";
export { BREAKER_GAUGE, CircuitBreaker, type BreakerState } from "./breaker.ts";
export { FederatedClient, tlsFetch, type ClientTls, type FederatedClientOptions, type FederatedRequestInit, type PeerStatus } from "./client.ts";
export { systemClock, type Clock } from "./clock.ts";
export { checkFederationConfig, defaultFederationConfig, FederationConfig, retryPolicy } from "./config.ts";
export { FederationError, type FailureReason } from "./errors.ts";
export { Federation, identityEndpoints, type Peer, type PeerReadiness } from "./federation.ts";
export { HealthPoller } from "./health.ts";
export { IdentityKeys, type IdentityFallback } from "./identity-keys.ts";
export { FederationMetrics } from "./metrics.ts";
