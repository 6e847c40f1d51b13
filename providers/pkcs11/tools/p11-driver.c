/*
 * p11-driver: drives any PKCS#11 module from N threads, one session each, for the module's
 * tests and the benchmark (bench/supacrypt-pkcs11.ts). It loads the module with dlopen, so the
 * same binary runs against libcryptoutil-pkcs11.so and SoftHSM2.
 *
 *   p11-driver MODULE TOKEN PIN KEY MODE THREADS AMOUNT [MECHANISM]
 *
 * TOKEN is the token label, PIN "-" for none, KEY the private/secret key's label. MECHANISM is
 * "ecdsa-sha256" (default: CKM_ECDSA_SHA256 over the message) or "ecdsa" (CKM_ECDSA over the
 * message's SHA-256 digest, made here with OpenSSL: for tokens without CKM_ECDSA_SHA256).
 * MODE:
 *   sign     each thread signs AMOUNT messages "t<thread>-<n>" with CKM_ECDSA_SHA256 and prints
 *            "<thread> <n> <signature hex>" per signature (the caller verifies them);
 *   bench    each thread signs for AMOUNT seconds; prints "ops <n> seconds <s> errors <e> first_error 0x<rv>";
 *   recover  each thread signs until a call fails, then retries every 100 ms until one works;
 *            prints "ready" once every thread has signed once, then per thread
 *            "<thread> failed 0x<rv> recovered <0|1>"; AMOUNT bounds the run in seconds;
 *   gcm      AES-GCM: encrypts, decrypts, and checks a tampered tag fails; prints "gcm ok".
 */
#include <p11-kit/pkcs11.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/sha.h>

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;
static const char *pin, *key_label, *mode;
static long amount;
static int n_threads;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int ready_count;
static int prehash;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, CK_RV rv) {
  fprintf(stderr, "%s failed: 0x%lx\n", what, (unsigned long)rv);
  exit(2);
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls) {
  CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)key_label, strlen(key_label)}};
  CK_OBJECT_HANDLE h = 0;
  CK_ULONG n = 0;
  CK_RV rv = p11->C_FindObjectsInit(s, t, 2);
  if (rv != CKR_OK) die("C_FindObjectsInit", rv);
  p11->C_FindObjects(s, &h, 1, &n);
  p11->C_FindObjectsFinal(s);
  if (n != 1) die("finding the key", CKR_KEY_HANDLE_INVALID);
  return h;
}

static CK_RV sign_once(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const char *msg, unsigned char *sig, CK_ULONG *sig_len) {
  CK_MECHANISM m = {prehash ? CKM_ECDSA : CKM_ECDSA_SHA256, NULL, 0};
  CK_RV rv = p11->C_SignInit(s, &m, key);
  if (rv != CKR_OK) return rv;
  *sig_len = 512;
  if (!prehash) return p11->C_Sign(s, (CK_BYTE_PTR)msg, strlen(msg), sig, sig_len);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)msg, strlen(msg), digest);
  return p11->C_Sign(s, digest, sizeof digest, sig, sig_len);
}

typedef struct { int index; long ops, errors; CK_RV failed; int recovered; } work;

static void *thread_main(void *arg) {
  work *w = arg;
  CK_SESSION_HANDLE s;
  CK_RV rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) die("C_OpenSession", rv);
  CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY);
  unsigned char sig[512];
  CK_ULONG sig_len;
  char msg[64];
  if (!strcmp(mode, "sign")) {
    for (long n = 0; n < amount; n++) {
      snprintf(msg, sizeof msg, "t%d-%ld", w->index, n);
      rv = sign_once(s, key, msg, sig, &sig_len);
      if (rv != CKR_OK) die("C_Sign", rv);
      pthread_mutex_lock(&out_lock);
      printf("%d %ld ", w->index, n);
      for (CK_ULONG i = 0; i < sig_len; i++) printf("%02x", sig[i]);
      printf("\n");
      pthread_mutex_unlock(&out_lock);
      w->ops++;
    }
  } else if (!strcmp(mode, "bench")) {
    double end = now() + (double)amount;
    for (long n = 0; now() < end; n++) {
      snprintf(msg, sizeof msg, "t%d-%ld", w->index, n);
      rv = sign_once(s, key, msg, sig, &sig_len);
      if (rv == CKR_OK) w->ops++;
      else if (w->errors++ == 0) w->failed = rv;
    }
  } else { /* recover */
    double end = now() + (double)amount;
    int signed_once = 0;
    for (long n = 0; now() < end; n++) {
      snprintf(msg, sizeof msg, "t%d-%ld", w->index, n);
      rv = sign_once(s, key, msg, sig, &sig_len);
      if (rv == CKR_OK && !signed_once) {
        signed_once = 1;
        pthread_mutex_lock(&out_lock);
        if (++ready_count == n_threads) { printf("ready\n"); fflush(stdout); }
        pthread_mutex_unlock(&out_lock);
      }
      if (rv != CKR_OK && !w->failed) w->failed = rv;
      if (rv != CKR_OK) {
        /* The session must stay usable: end the failed operation's state, then retry. */
        usleep(100000);
        continue;
      }
      if (w->failed) { w->recovered = 1; break; }
    }
  }
  p11->C_CloseSession(s);
  return NULL;
}

static int gcm(void) {
  CK_SESSION_HANDLE s;
  CK_RV rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) die("C_OpenSession", rv);
  CK_OBJECT_HANDLE key = find_key(s, CKO_SECRET_KEY);
  unsigned char iv[12], aad[] = "header", pt[] = "attack at dawn", ct[64], back[64];
  rv = p11->C_GenerateRandom(s, iv, sizeof iv);
  if (rv != CKR_OK) die("C_GenerateRandom", rv);
  CK_GCM_PARAMS params = {iv, sizeof iv, 96, aad, sizeof aad - 1, 128};
  CK_MECHANISM m = {CKM_AES_GCM, &params, sizeof params};
  CK_ULONG ct_len = sizeof ct, back_len = sizeof back;
  if ((rv = p11->C_EncryptInit(s, &m, key)) != CKR_OK) die("C_EncryptInit", rv);
  if ((rv = p11->C_Encrypt(s, pt, sizeof pt - 1, ct, &ct_len)) != CKR_OK) die("C_Encrypt", rv);
  if (ct_len != sizeof pt - 1 + 16) die("ciphertext length", ct_len);
  if ((rv = p11->C_DecryptInit(s, &m, key)) != CKR_OK) die("C_DecryptInit", rv);
  if ((rv = p11->C_Decrypt(s, ct, ct_len, back, &back_len)) != CKR_OK) die("C_Decrypt", rv);
  if (back_len != sizeof pt - 1 || memcmp(back, pt, back_len)) die("round trip", 0);
  ct[ct_len - 1] ^= 1;
  back_len = sizeof back;
  if ((rv = p11->C_DecryptInit(s, &m, key)) != CKR_OK) die("C_DecryptInit", rv);
  rv = p11->C_Decrypt(s, ct, ct_len, back, &back_len);
  if (rv == CKR_OK) die("a tampered tag decrypted", 0);
  printf("gcm ok tampered 0x%lx\n", (unsigned long)rv);
  p11->C_CloseSession(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 8 && argc != 9) {
    fprintf(stderr, "usage: p11-driver MODULE TOKEN PIN KEY MODE THREADS AMOUNT [ecdsa|ecdsa-sha256]\n");
    return 2;
  }
  prehash = argc == 9 && !strcmp(argv[8], "ecdsa");
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
  if (!get || get(&p11) != CKR_OK) { fprintf(stderr, "no C_GetFunctionList\n"); return 2; }
  CK_C_INITIALIZE_ARGS init = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
  CK_RV rv = p11->C_Initialize(&init);
  if (rv != CKR_OK) die("C_Initialize", rv);
  pin = argv[3];
  key_label = argv[4];
  mode = argv[5];
  n_threads = atoi(argv[6]);
  amount = atol(argv[7]);
  if (n_threads < 1 || n_threads > 256) return 2;

  CK_SLOT_ID slots[64];
  CK_ULONG n_slots = 64;
  if ((rv = p11->C_GetSlotList(CK_TRUE, slots, &n_slots)) != CKR_OK) die("C_GetSlotList", rv);
  int found = 0;
  for (CK_ULONG i = 0; i < n_slots && !found; i++) {
    CK_TOKEN_INFO info;
    if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    size_t l = strlen(argv[2]);
    if (l <= sizeof info.label && !memcmp(info.label, argv[2], l) && (l == sizeof info.label || info.label[l] == ' ')) { slot = slots[i]; found = 1; }
  }
  if (!found) { fprintf(stderr, "no token %s\n", argv[2]); return 2; }
  CK_SESSION_HANDLE login;
  if ((rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &login)) != CKR_OK) die("C_OpenSession", rv);
  if (strcmp(pin, "-") && (rv = p11->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin))) != CKR_OK) die("C_Login", rv);

  if (!strcmp(mode, "gcm")) return gcm();
  work *w = calloc((size_t)n_threads, sizeof *w);
  pthread_t *t = calloc((size_t)n_threads, sizeof *t);
  double started = now();
  for (int i = 0; i < n_threads; i++) {
    w[i].index = i;
    pthread_create(&t[i], NULL, thread_main, &w[i]);
  }
  long ops = 0, errors = 0;
  for (int i = 0; i < n_threads; i++) {
    pthread_join(t[i], NULL);
    ops += w[i].ops;
    errors += w[i].errors;
  }
  double elapsed = now() - started;
  CK_RV first_error = 0;
  for (int i = 0; i < n_threads && !first_error; i++) first_error = w[i].failed;
  if (!strcmp(mode, "bench")) printf("ops %ld seconds %.3f errors %ld first_error 0x%lx\n", ops, elapsed, errors, (unsigned long)first_error);
  if (!strcmp(mode, "recover"))
    for (int i = 0; i < n_threads; i++) printf("%d failed 0x%lx recovered %d\n", i, (unsigned long)w[i].failed, w[i].recovered);
  p11->C_Logout(login);
  p11->C_CloseSession(login);
  rv = p11->C_Finalize(NULL);
  if (rv != CKR_OK) die("C_Finalize", rv);
  return 0;
}
