/** sm-kms as a benchmark target: the real service in its own process (see service.ts). */
import { smKms } from "../../apps/sm-kms/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(smKms);
