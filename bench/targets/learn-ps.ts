/** learn-ps as a benchmark target: the real service in its own process (see service.ts). */
import { learnPs } from "../../apps/learn-ps/service.ts";
import { serveBenchTarget } from "./service.ts";

await serveBenchTarget(learnPs);
