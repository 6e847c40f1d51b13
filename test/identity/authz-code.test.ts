/** identity-authz, authorization code + PKCE (authz-code-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzCodeSuite } from "./authz-code-suite.ts";

authzCodeSuite(EMBEDDED);
