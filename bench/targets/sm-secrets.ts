/** sm-secrets as a benchmark target: the real service in its own process (see service.ts). */
import { smSecrets } from "../../apps/sm-secrets/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(smSecrets);
