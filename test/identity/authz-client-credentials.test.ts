/** identity-authz, client_credentials (authz-client-credentials-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzClientCredentialsSuite } from "./authz-client-credentials-suite.ts";

authzClientCredentialsSuite(EMBEDDED);
