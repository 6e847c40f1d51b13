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
 *   churn    keys listed while others sign: each even thread finds the key again (a new listing)
 *            before each of its AMOUNT signatures, each odd thread only signs; prints
 *            "churn ops <n> errors <e> first_error 0x<rv>" (a key that exists never vanishes);
 *   gcm      AES-GCM: encrypts, decrypts, and checks a tampered tag fails; prints "gcm ok".
 *   errors   the return values of misuse (bad handles, short buffers, operations out of order,
 *            sensitive attributes, logout, a wrong PIN, finalize); prints "errors ok" (KEY: an
 *            EC key; the token must need a login).
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
  } else if (!strcmp(mode, "churn")) {
    for (long n = 0; n < amount; n++) {
      if (w->index % 2 == 0) key = find_key(s, CKO_PRIVATE_KEY);
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

#define EXPECT(call, want) do { \
    CK_RV got_ = (call); \
    if (got_ != (CK_RV)(want)) { fprintf(stderr, "%s: 0x%lx, expected 0x%lx\n", #call, (unsigned long)got_, (unsigned long)(want)); exit(3); } \
  } while (0)

/* Misuse of the API gets PKCS#11's own return values, and nothing breaks. */
static int errors(CK_SESSION_HANDLE login) {
  CK_SESSION_HANDLE s;
  CK_C_INITIALIZE_ARGS init = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
  EXPECT(p11->C_Initialize(&init), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  CK_SLOT_ID few[1];
  CK_ULONG n = 0;
  EXPECT(p11->C_GetSlotList(CK_TRUE, few, &n), CKR_BUFFER_TOO_SMALL);
  if (n < 1) die("slot count", n);
  EXPECT(p11->C_OpenSession(slot, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  EXPECT(p11->C_OpenSession(9999, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SLOT_ID_INVALID);
  EXPECT(p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
  CK_OBJECT_HANDLE key = find_key(s, CKO_PRIVATE_KEY), pub = find_key(s, CKO_PUBLIC_KEY);
  CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0}, rsa = {CKM_RSA_PKCS, NULL, 0}, md5 = {CKM_MD5, NULL, 0};
  unsigned char msg[] = "misuse", sig[512];
  CK_ULONG len;
  EXPECT(p11->C_SignInit(424242, &ecdsa, key), CKR_SESSION_HANDLE_INVALID);
  EXPECT(p11->C_Sign(s, msg, 6, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
  EXPECT(p11->C_SignInit(s, &ecdsa, 4242424), CKR_KEY_HANDLE_INVALID);
  EXPECT(p11->C_SignInit(s, &rsa, key), CKR_KEY_TYPE_INCONSISTENT);
  EXPECT(p11->C_SignInit(s, &md5, key), CKR_MECHANISM_INVALID);
  EXPECT(p11->C_SignInit(s, &ecdsa, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
  /* Length query, a short buffer, then the signature; the operation stays active in between. */
  EXPECT(p11->C_SignInit(s, &ecdsa, key), CKR_OK);
  EXPECT(p11->C_SignInit(s, &ecdsa, key), CKR_OPERATION_ACTIVE);
  EXPECT(p11->C_Sign(s, msg, 6, NULL, &len), CKR_OK);
  if (len != 64) die("signature length query", len);
  len = 10;
  EXPECT(p11->C_Sign(s, msg, 6, sig, &len), CKR_BUFFER_TOO_SMALL);
  if (len != 64) die("signature length after CKR_BUFFER_TOO_SMALL", len);
  len = sizeof sig;
  EXPECT(p11->C_Sign(s, msg, 6, sig, &len), CKR_OK);
  EXPECT(p11->C_Sign(s, msg, 6, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
  /* Multi-part signing gives a signature the one-part verify accepts; a changed byte does not verify. */
  EXPECT(p11->C_SignInit(s, &ecdsa, key), CKR_OK);
  EXPECT(p11->C_SignUpdate(s, msg, 3), CKR_OK);
  EXPECT(p11->C_SignUpdate(s, msg + 3, 3), CKR_OK);
  len = sizeof sig;
  EXPECT(p11->C_SignFinal(s, sig, &len), CKR_OK);
  EXPECT(p11->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
  EXPECT(p11->C_Verify(s, msg, 6, sig, len), CKR_OK);
  sig[10] ^= 1;
  EXPECT(p11->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
  EXPECT(p11->C_Verify(s, msg, 6, sig, len), CKR_SIGNATURE_INVALID);
  /* Attributes: the private value is sensitive; a short buffer is reported per attribute. */
  unsigned char small[4];
  CK_ATTRIBUTE value = {CKA_VALUE, small, sizeof small};
  EXPECT(p11->C_GetAttributeValue(s, key, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
  if (value.ulValueLen != CK_UNAVAILABLE_INFORMATION) die("sensitive length", value.ulValueLen);
  CK_ATTRIBUTE point = {CKA_EC_POINT, NULL, 0};
  EXPECT(p11->C_GetAttributeValue(s, pub, &point, 1), CKR_OK);
  if (point.ulValueLen != 67) die("EC point length", point.ulValueLen);
  point.pValue = small;
  point.ulValueLen = sizeof small;
  EXPECT(p11->C_GetAttributeValue(s, pub, &point, 1), CKR_BUFFER_TOO_SMALL);
  CK_ATTRIBUTE bogus = {0x7fff0001UL, NULL, 0};
  EXPECT(p11->C_GetAttributeValue(s, pub, &bogus, 1), CKR_ATTRIBUTE_TYPE_INVALID);
  EXPECT(p11->C_GenerateRandom(s, sig, 0), CKR_OK);
  /* After logout the key does not open: no signature, and a wrong PIN does not log in again. */
  EXPECT(p11->C_Logout(login), CKR_OK);
  EXPECT(p11->C_SignInit(s, &ecdsa, key), CKR_USER_NOT_LOGGED_IN);
  EXPECT(p11->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR) "not-the-pin", 11), CKR_PIN_INCORRECT);
  EXPECT(p11->C_Login(login, CKU_SO, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_TYPE_INVALID);
  EXPECT(p11->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
  EXPECT(p11->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_USER_ALREADY_LOGGED_IN);
  EXPECT(p11->C_SignInit(s, &ecdsa, key), CKR_OK);
  len = sizeof sig;
  EXPECT(p11->C_Sign(s, msg, 6, sig, &len), CKR_OK);
  EXPECT(p11->C_CloseSession(s), CKR_OK);
  EXPECT(p11->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
  EXPECT(p11->C_Finalize((CK_VOID_PTR)1), CKR_ARGUMENTS_BAD);
  EXPECT(p11->C_Finalize(NULL), CKR_OK);
  CK_INFO info;
  EXPECT(p11->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  /* Application mutex callbacks without CKF_OS_LOCKING_OK: the module locks only with its own. */
  CK_C_INITIALIZE_ARGS callbacks = {(CK_CREATEMUTEX)1, (CK_DESTROYMUTEX)1, (CK_LOCKMUTEX)1, (CK_UNLOCKMUTEX)1, 0, NULL};
  EXPECT(p11->C_Initialize(&callbacks), CKR_CANT_LOCK);
  EXPECT(p11->C_Initialize(NULL), CKR_OK);
  EXPECT(p11->C_Finalize(NULL), CKR_OK);
  printf("errors ok\n");
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
  if (!strcmp(mode, "errors")) return errors(login);
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
  if (!strcmp(mode, "churn")) printf("churn ops %ld errors %ld first_error 0x%lx\n", ops, errors, (unsigned long)first_error);
  if (!strcmp(mode, "bench")) printf("ops %ld seconds %.3f errors %ld first_error 0x%lx\n", ops, elapsed, errors, (unsigned long)first_error);
  if (!strcmp(mode, "recover"))
    for (int i = 0; i < n_threads; i++) printf("%d failed 0x%lx recovered %d\n", i, (unsigned long)w[i].failed, w[i].recovered);
  free(w);
  free(t);
  p11->C_Logout(login);
  p11->C_CloseSession(login);
  rv = p11->C_Finalize(NULL);
  if (rv != CKR_OK) die("C_Finalize", rv);
  return 0;
}
