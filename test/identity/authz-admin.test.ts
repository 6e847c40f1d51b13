/** identity-authz, the admin API and key management (authz-admin-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzAdminSuite } from "./authz-admin-suite.ts";

authzAdminSuite(EMBEDDED);
