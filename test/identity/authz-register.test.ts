/** identity-authz, dynamic client registration (authz-register-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzRegisterSuite } from "./authz-register-suite.ts";

authzRegisterSuite(EMBEDDED);
