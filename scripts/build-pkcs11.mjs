// Builds the PKCS#11 module providers/pkcs11/build/libcryptoutil-pkcs11.so with the system C
// compiler (cc) against libcurl and the PKCS#11 header of p11-kit. Runs on `npm install`
// (postinstall). Without a compiler or the headers it prints what is missing and skips: the
// rest of the suite does not need the module (its tests fail under CI=true without it).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "providers", "pkcs11", "src");
const out = join(root, "providers", "pkcs11", "build", "libcryptoutil-pkcs11.so");
const cc = process.env.CC || "cc";

const have = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.status === 0;
};
const missing = [];
if (!have(cc, ["--version"])) missing.push(`a C compiler (${cc})`);
const headers = ["/usr/include/p11-kit-1/p11-kit/pkcs11.h"];
if (!headers.some(existsSync)) missing.push("the PKCS#11 header (Debian libp11-kit-dev)");
if (!have("sh", ["-c", `echo '#include <curl/curl.h>' | ${cc} -E -x c - >/dev/null 2>&1`])) missing.push("libcurl headers (Debian libcurl4-openssl-dev)");
if (missing.length > 0) {
  console.log(`build-pkcs11: skipped, missing ${missing.join(", ")}; the PKCS#11 module (providers/pkcs11) is not built`);
  process.exit(0);
}

mkdirSync(dirname(out), { recursive: true });
const started = Date.now();
const r = spawnSync(
  cc,
  [
    "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared",
    "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now", "-Wl,--no-undefined",
    "-I/usr/include/p11-kit-1",
    "-o", out,
    join(src, "module.c"), join(src, "json.c"), join(src, "backend.c"),
    "-lcurl", "-lpthread",
  ],
  { stdio: "inherit" },
);
if (r.status !== 0) {
  // The rest of the suite does not need the module: the install goes on, the module's tests fail.
  console.error("build-pkcs11: the compiler failed (above); the PKCS#11 module is not built");
  process.exit(0);
}
console.log(`build-pkcs11: ${out.slice(root.length + 1)} built in ${Date.now() - started} ms`);
