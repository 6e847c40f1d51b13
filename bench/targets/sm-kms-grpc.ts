/**
 * sm-kms with its gRPC API as a benchmark target (see service.ts): `server.grpc_port` on a free
 * port, one client certificate name (SUPACRYPT_BENCH_CLIENT, a URI SAN) mapped to tenant
 * `bench` with every kms scope, and keys in the HSM when SUPACRYPT_BENCH_HSM_* name a token.
 */
import { smKms } from "../../apps/sm-kms/service.ts";
import { serveBenchTarget } from "./service.ts";

const env = process.env;
await serveBenchTarget(smKms, {
  config: (c) => {
    c.server.grpc_port = 0;
    c.mtls.principals = [{ uri: env.SUPACRYPT_BENCH_CLIENT!, tenant: "bench", scopes: ["kms:admin", "kms:sign", "kms:verify", "kms:encrypt", "kms:decrypt"] }];
    if (env.SUPACRYPT_BENCH_HSM_PIN_FILE) {
      c.hsm.module = env.SUPACRYPT_BENCH_HSM_MODULE;
      c.hsm.token_label = env.SUPACRYPT_BENCH_HSM_TOKEN;
      c.hsm.pin_file = env.SUPACRYPT_BENCH_HSM_PIN_FILE;
    }
  },
});
