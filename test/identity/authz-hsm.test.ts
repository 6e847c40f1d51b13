/** identity-authz with an HSM (authz-hsm-suite.ts; Debian package softhsm2), on the embedded database. */
import { setupSoftHsm } from "../support/softhsm.ts";
import { EMBEDDED } from "../support/engine.ts";
import { authzHsmSuite } from "./authz-hsm-suite.ts";

const softhsm = await setupSoftHsm();
if (softhsm) authzHsmSuite(EMBEDDED, softhsm);
