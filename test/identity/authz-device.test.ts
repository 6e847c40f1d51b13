/** identity-authz, device authorization grant (authz-device-suite.ts), on the embedded database. */
import { EMBEDDED } from "../support/engine.ts";
import { authzDeviceSuite } from "./authz-device-suite.ts";

authzDeviceSuite(EMBEDDED);
