/** identity-authz, client_credentials (authz-client-credentials-suite.ts), with the services started on Deno. */
import { ON_DENO } from "../support/engine.ts";
import { authzClientCredentialsSuite } from "./authz-client-credentials-suite.ts";

authzClientCredentialsSuite(ON_DENO);
