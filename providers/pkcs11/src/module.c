/*
 * libcryptoutil-pkcs11: a PKCS#11 v2.40 module whose keys live in sm-kms.
 *
 * Each configured slot is one credential (a client certificate mapped to a tenant on sm-kms's
 * mTLS port, or a bearer token file) and optionally a tag naming a set of that tenant's keys.
 * Its token's objects are the tenant's enabled keys: a private key and a public key for each
 * EC (ES256/384/512) and RSA (RS256, PS256, RSA-OAEP-256) key, a secret key for each A256GCM
 * key; CKA_ID is the key's UUID (16 bytes), CKA_LABEL its name. Every private or secret
 * operation is a call to sm-kms (the `/keys/{id}/raw/...` routes): no private key ever leaves the service.
 *
 * Threads: the module locks with pthread mutexes (it accepts CKF_OS_LOCKING_OK and no locking
 * at all, and refuses application-supplied mutex callbacks without CKF_OS_LOCKING_OK). One
 * global lock guards the tables; calls to the service run outside it, on the session's own
 * HTTP handle, so sessions on different threads sign in parallel.
 *
 * Failures: when the service cannot be reached or goes away mid-call the function returns
 * CKR_DEVICE_ERROR and the session stays usable; the next call connects again.
 */
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "backend.h"
#include "json.h"

#define MAX_SLOTS 16
#define MAX_SESSIONS 4096
#define MAX_DATA (64 * 1024)
#define API "/service/api/v1"

/* ---- objects ------------------------------------------------------------------------ */

typedef struct {
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE ktype;
  char key_id[40];          /* sm-kms key UUID */
  unsigned char id[16];     /* CKA_ID: the UUID's bytes */
  char label[72];
  char alg[32];             /* sm-kms algorithm */
  long version;
  unsigned char ec_params[16];
  size_t ec_params_len;
  unsigned char ec_point[140]; /* DER OCTET STRING of the uncompressed point */
  size_t ec_point_len;
  unsigned char modulus[1024];
  size_t modulus_len;
  unsigned char exponent[8];
  size_t exponent_len;
  size_t sig_len;           /* signature length for sign keys */
  int sign, encrypt;        /* purpose: sign/verify keys, or encrypt/decrypt keys */
  int present;              /* still an enabled key of the tenant at the last listing */
  unsigned long seen;       /* the newest listing that saw it (see refresh) */
} object;

typedef struct {
  slot_config cfg;
  object *objects[1024];    /* handle = slot * 100000 + index + 1; never freed before C_Finalize */
  size_t n_objects;
  unsigned long listings;   /* listings started (each gets the next number) */
  unsigned long settled;    /* the newest listing that completed: older ones change nothing */
  char *pin;                /* the passphrase of an encrypted client key, after C_Login */
  int logged_in;
  unsigned generation;      /* bumped at login/logout: sessions drop their connections */
} slot;

/* ---- sessions ----------------------------------------------------------------------- */

typedef enum { OP_NONE, OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT } op_kind;

typedef struct {
  op_kind kind;
  CK_MECHANISM_TYPE mech;
  CK_OBJECT_HANDLE key;
  unsigned char *data;      /* data gathered by *Update */
  size_t len;
  unsigned char iv[64];
  size_t iv_len;
  unsigned char *aad;
  size_t aad_len;
  char pss_hash[8];
  long salt_len;
  unsigned char *result;    /* an answer kept for a retry after CKR_BUFFER_TOO_SMALL */
  size_t result_len;
} operation;

typedef struct {
  pthread_mutex_t lock;     /* held while the session works; applications use a session from one thread at a time */
  int refs;
  int closed;
  CK_SLOT_ID slot;
  CK_FLAGS flags;
  CURL *http;
  unsigned generation;
  operation op;
  CK_OBJECT_HANDLE *found;  /* C_FindObjects results */
  size_t n_found, found_pos;
  int finding;
} session;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_initialized;
static slot g_slots[MAX_SLOTS];
static size_t g_n_slots;
static session *g_sessions[MAX_SESSIONS];

#define CHECK_INIT() do { if (!g_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED; } while (0)

static void pad_copy(unsigned char *dst, size_t n, const char *src) {
  memset(dst, ' ', n);
  size_t l = strlen(src);
  memcpy(dst, src, l < n ? l : n);
}

static void wipe_free(char *s) {
  if (!s) return;
  volatile char *p = s;
  while (*p) *p++ = 0;
  free(s);
}

/* ---- config ------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int file_contains(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char buf[256];
  int found = 0;
  while (!found && fgets(buf, sizeof buf, f)) found = strstr(buf, needle) != NULL;
  fclose(f);
  return found;
}

static void free_slot_config(slot_config *c) {
  free(c->label); free(c->url); free(c->ca); free(c->cert); free(c->key); free(c->token_file); free(c->tag);
  memset(c, 0, sizeof *c);
}

static int g_config_reported;

/* One line on stderr about what is wrong with slot `i` of the config (the module prints nothing else). */
static void config_error(size_t i, const char *what) {
  fprintf(stderr, "libcryptoutil-pkcs11: CRYPTOUTIL_PKCS11_CONFIG: slot %zu: %s\n", i, what);
  g_config_reported = 1;
}

/* Reads the JSON config named by CRYPTOUTIL_PKCS11_CONFIG. */
static CK_RV load_config(void) {
  const char *path = getenv("CRYPTOUTIL_PKCS11_CONFIG");
  if (!path || !*path) return CKR_GENERAL_ERROR;
  FILE *f = fopen(path, "rb");
  if (!f) return CKR_GENERAL_ERROR;
  char *text = malloc(1 << 20);
  size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
  fclose(f);
  if (!text) return CKR_HOST_MEMORY;
  jvalue *doc = json_parse(text, n);
  free(text);
  if (!doc || doc->type != J_OBJ) { json_free(doc); return CKR_GENERAL_ERROR; }
  const jvalue *slots = json_get(doc, "slots");
  CK_RV rv = CKR_OK;
  if (!slots || slots->type != J_ARR || slots->n == 0 || slots->n > MAX_SLOTS) rv = CKR_GENERAL_ERROR;
  for (size_t i = 0; rv == CKR_OK && i < slots->n; i++) {
    const jvalue *s = slots->items[i];
    slot_config *c = &g_slots[i].cfg;
    const char *url = json_str(s, "url") ? json_str(s, "url") : json_str(doc, "url");
    const char *ca = json_str(s, "ca") ? json_str(s, "ca") : json_str(doc, "ca");
    c->label = dup_or_null(json_str(s, "label"));
    c->url = dup_or_null(url);
    c->ca = dup_or_null(ca);
    c->cert = dup_or_null(json_str(s, "cert"));
    c->key = dup_or_null(json_str(s, "key"));
    c->token_file = dup_or_null(json_str(s, "token_file"));
    c->tag = dup_or_null(json_str(s, "tag"));
    c->timeout_s = (long)json_num(s, "timeout_s", json_num(doc, "timeout_s", 30));
    if (!c->label || !c->url || strncmp(c->url, "https://", 8) != 0 || (!c->token_file && (!c->cert || !c->key))) {
      config_error(i, "needs a label, an https url, and cert and key or a token_file");
      rv = CKR_GENERAL_ERROR;
    } else if (c->tag && (!*c->tag || strlen(c->tag) > 32 || strspn(c->tag, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->tag))) {
      /* A tag goes into URLs and JSON as it is: sm-kms's tag syntax only. */
      config_error(i, "tag must be lowercase letters, digits and -");
      rv = CKR_GENERAL_ERROR;
    } else {
      c->key_encrypted = c->key && file_contains(c->key, "ENCRYPTED");
      /* Like ssh with its keys: a credential that opens without a PIN must be the owner's alone. */
      const char *plain = c->token_file ? c->token_file : c->key_encrypted ? NULL : c->key;
      struct stat st;
      if (plain && (stat(plain, &st) != 0 || (st.st_mode & 077))) {
        config_error(i, "a plain key or token file must exist and be readable by its owner only (mode 0600)");
        rv = CKR_GENERAL_ERROR;
      }
    }
    g_n_slots = i + 1;
  }
  json_free(doc);
  return rv;
}

/* ---- sessions and calls --------------------------------------------------------------- */

static session *session_get(CK_SESSION_HANDLE h) {
  session *s = NULL;
  pthread_mutex_lock(&g_lock);
  if (g_initialized && h >= 1 && h <= MAX_SESSIONS && g_sessions[h - 1] && !g_sessions[h - 1]->closed) {
    s = g_sessions[h - 1];
    s->refs++;
  }
  pthread_mutex_unlock(&g_lock);
  if (s) pthread_mutex_lock(&s->lock);
  return s;
}

static void op_clear(operation *op) {
  free(op->data);
  free(op->aad);
  free(op->result);
  memset(op, 0, sizeof *op);
}

static void session_free(session *s) {
  op_clear(&s->op);
  free(s->found);
  if (s->http) curl_easy_cleanup(s->http);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static void session_put(session *s) {
  pthread_mutex_unlock(&s->lock);
  pthread_mutex_lock(&g_lock);
  int last = --s->refs == 0 && s->closed;
  pthread_mutex_unlock(&g_lock);
  if (last) session_free(s);
}

static int logged_in_or_open(const slot *sl) { return sl->logged_in || !sl->cfg.key_encrypted; }

/*
 * One call to the service on the session's handle. Returns CKR_DEVICE_ERROR when no answer
 * came, CKR_USER_NOT_LOGGED_IN when the slot's key still needs its PIN; else CKR_OK with
 * `out` holding the answer (any status).
 */
static CK_RV call(session *s, const char *method, const char *path, const char *json, http_answer *out) {
  memset(out, 0, sizeof *out);
  slot *sl = &g_slots[s->slot];
  pthread_mutex_lock(&g_lock);
  if (!logged_in_or_open(sl)) { pthread_mutex_unlock(&g_lock); return CKR_USER_NOT_LOGGED_IN; }
  char *pin = sl->pin ? strdup(sl->pin) : NULL;
  unsigned gen = sl->generation;
  pthread_mutex_unlock(&g_lock);
  if (s->http && s->generation != gen) {
    curl_easy_cleanup(s->http);
    s->http = NULL;
  }
  if (!s->http) {
    s->http = backend_handle(&sl->cfg);
    s->generation = gen;
  }
  CK_RV rv = CKR_OK;
  if (!s->http) rv = CKR_HOST_MEMORY;
  else if (backend_call(s->http, &sl->cfg, pin, method, path, json, out) != 0) rv = CKR_DEVICE_ERROR;
  wipe_free(pin);
  return rv;
}

/* The stable error code of an error answer ({"error":{"code":...}}), or "". */
static void error_code(const http_answer *a, char *code, size_t cap) {
  code[0] = 0;
  jvalue *doc = a->body ? json_parse(a->body, a->len) : NULL;
  const char *c = json_str(json_get(doc, "error"), "code");
  if (c) snprintf(code, cap, "%s", c);
  json_free(doc);
}

/* Maps a non-2xx answer to a return value. */
static CK_RV rv_of_answer(const http_answer *a) {
  char code[64];
  error_code(a, code, sizeof code);
  if (a->status == 401) return CKR_USER_NOT_LOGGED_IN;
  if (a->status == 403) return CKR_FUNCTION_REJECTED;
  if (strcmp(code, "signature_invalid") == 0) return CKR_SIGNATURE_INVALID;
  if (strcmp(code, "decryption_failed") == 0) return CKR_ENCRYPTED_DATA_INVALID;
  if (strcmp(code, "mechanism_not_allowed") == 0) return CKR_KEY_TYPE_INCONSISTENT;
  if (strcmp(code, "key_version_not_current") == 0 || strcmp(code, "not_found") == 0) return CKR_KEY_HANDLE_INVALID;
  if (strcmp(code, "key_disabled") == 0 || strcmp(code, "key_pending_deletion") == 0) return CKR_KEY_FUNCTION_NOT_PERMITTED;
  if (strcmp(code, "conflict") == 0) return CKR_TEMPLATE_INCONSISTENT;
  if (a->status == 413) return CKR_DATA_LEN_RANGE;
  if (a->status >= 400 && a->status < 500) return CKR_ARGUMENTS_BAD;
  return CKR_DEVICE_ERROR;
}

/* ---- mapping sm-kms keys to objects ------------------------------------------------------ */

static const unsigned char OID_P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char OID_P384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char OID_P521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};

static int uuid_bytes(const char *uuid, unsigned char out[16]) {
  size_t j = 0;
  for (const char *p = uuid; *p && j < 32; p++) {
    if (*p == '-') continue;
    int v = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10 : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10 : -1;
    if (v < 0) return -1;
    if (j % 2 == 0) out[j / 2] = (unsigned char)(v << 4);
    else out[j / 2] |= (unsigned char)v;
    j++;
  }
  return j == 32 ? 0 : -1;
}

/* The object kind of an sm-kms algorithm: 1 EC, 2 RSA sign, 3 RSA encrypt, 4 AES; 0 none. */
static int kind_of(const char *alg) {
  if (!strcmp(alg, "ES256") || !strcmp(alg, "ES384") || !strcmp(alg, "ES512")) return 1;
  if (!strcmp(alg, "RS256") || !strcmp(alg, "PS256")) return 2;
  if (!strcmp(alg, "RSA-OAEP-256")) return 3;
  if (!strcmp(alg, "A256GCM")) return 4;
  return 0;
}

/* Fills the public members of `o` from a public JWK. */
static int fill_public(object *o, const jvalue *jwk) {
  size_t n;
  if (o->ktype == CKK_EC) {
    const char *crv = json_str(jwk, "crv");
    const char *x = json_str(jwk, "x"), *y = json_str(jwk, "y");
    if (!crv || !x || !y) return -1;
    const unsigned char *oid;
    size_t oid_len, coord;
    if (!strcmp(crv, "P-256")) { oid = OID_P256; oid_len = sizeof OID_P256; coord = 32; }
    else if (!strcmp(crv, "P-384")) { oid = OID_P384; oid_len = sizeof OID_P384; coord = 48; }
    else if (!strcmp(crv, "P-521")) { oid = OID_P521; oid_len = sizeof OID_P521; coord = 66; }
    else return -1;
    memcpy(o->ec_params, oid, oid_len);
    o->ec_params_len = oid_len;
    size_t xl, yl;
    unsigned char *xb = b64u_decode(x, &xl), *yb = b64u_decode(y, &yl);
    int ok = xb && yb && xl == coord && yl == coord;
    if (ok) {
      size_t point = 1 + 2 * coord, at = 0;
      o->ec_point[at++] = 0x04;
      if (point > 127) o->ec_point[at++] = 0x81;
      o->ec_point[at++] = (unsigned char)point;
      o->ec_point[at++] = 0x04;
      memcpy(o->ec_point + at, xb, coord);
      memcpy(o->ec_point + at + coord, yb, coord);
      o->ec_point_len = at + 2 * coord;
      o->sig_len = 2 * coord;
    }
    free(xb);
    free(yb);
    return ok ? 0 : -1;
  }
  if (o->ktype == CKK_RSA) {
    unsigned char *nb = json_str(jwk, "n") ? b64u_decode(json_str(jwk, "n"), &n) : NULL;
    if (!nb || n > sizeof o->modulus) { free(nb); return -1; }
    memcpy(o->modulus, nb, n);
    o->modulus_len = n;
    o->sig_len = n;
    free(nb);
    unsigned char *eb = json_str(jwk, "e") ? b64u_decode(json_str(jwk, "e"), &n) : NULL;
    if (!eb || n > sizeof o->exponent) { free(eb); return -1; }
    memcpy(o->exponent, eb, n);
    o->exponent_len = n;
    free(eb);
  }
  return 0;
}

/* The handle of object `index` of slot `sid`. */
static CK_OBJECT_HANDLE handle_of(CK_SLOT_ID sid, size_t index) { return (CK_OBJECT_HANDLE)(sid * 100000 + index + 1); }

static object *object_of(CK_SLOT_ID sid, CK_OBJECT_HANDLE h) {
  if (h < sid * 100000 + 1) return NULL;
  size_t i = h - sid * 100000 - 1;
  return i < g_slots[sid].n_objects ? g_slots[sid].objects[i] : NULL;
}

/*
 * Adds or updates the objects of one key (called with g_lock held); returns the index of the
 * first. An object's `seen` only grows: a slower, older listing never takes it back.
 */
static long upsert(slot *sl, CK_OBJECT_CLASS cls, const object *proto) {
  for (size_t i = 0; i < sl->n_objects; i++) {
    object *o = sl->objects[i];
    if (o->cls == cls && !strcmp(o->key_id, proto->key_id)) {
      unsigned long seen = o->seen > proto->seen ? o->seen : proto->seen;
      *o = *proto;
      o->cls = cls;
      o->seen = seen;
      return (long)i;
    }
  }
  if (sl->n_objects >= sizeof sl->objects / sizeof sl->objects[0]) return -1;
  object *o = malloc(sizeof *o);
  if (!o) return -1;
  *o = *proto;
  o->cls = cls;
  sl->objects[sl->n_objects] = o;
  return (long)sl->n_objects++;
}

/*
 * Builds the objects of one listed key (an ElasticKey), fetching its public key when it has one.
 * `listing` is the number of the listing that saw it, 0 for a key just created.
 */
static CK_RV add_key(session *s, const jvalue *key, long *first_index, unsigned long listing) {
  const char *id = json_str(key, "id"), *name = json_str(key, "name"), *alg = json_str(key, "algorithm");
  const char *status = json_str(key, "status");
  int kind = alg ? kind_of(alg) : 0;
  if (!id || !name || !kind || (status && strcmp(status, "enabled"))) return CKR_OK;
  object proto;
  memset(&proto, 0, sizeof proto);
  snprintf(proto.key_id, sizeof proto.key_id, "%s", id);
  snprintf(proto.label, sizeof proto.label, "%s", name);
  snprintf(proto.alg, sizeof proto.alg, "%s", alg);
  if (uuid_bytes(id, proto.id)) return CKR_OK;
  proto.version = (long)json_num(key, "current_version", 1);
  proto.present = 1;
  proto.ktype = kind == 1 ? CKK_EC : kind == 4 ? CKK_AES : CKK_RSA;
  proto.sign = kind == 1 || kind == 2;
  proto.encrypt = kind == 3 || kind == 4;
  slot *sl = &g_slots[s->slot];
  if (kind != 4) {
    /* The public key is fetched only for a key or version not seen before. */
    int known = 0;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < sl->n_objects; i++) {
      object *o = sl->objects[i];
      if (o->cls == CKO_PUBLIC_KEY && !strcmp(o->key_id, id) && o->version == proto.version) {
        proto = *o;
        proto.present = 1;
        known = 1;
      }
    }
    pthread_mutex_unlock(&g_lock);
    if (!known) {
      char path[160];
      snprintf(path, sizeof path, API "/keys/%s/public-key?version=%ld", id, proto.version);
      http_answer a;
      CK_RV rv = call(s, "GET", path, NULL, &a);
      if (rv != CKR_OK) return rv;
      if (a.status != 200) { rv = rv_of_answer(&a); http_answer_free(&a); return rv; }
      jvalue *jwk = json_parse(a.body, a.len);
      int bad = !jwk || fill_public(&proto, jwk);
      json_free(jwk);
      http_answer_free(&a);
      if (bad) return CKR_DEVICE_ERROR;
    }
  }
  pthread_mutex_lock(&g_lock);
  if (listing && listing < sl->settled) {
    /* A newer listing has completed since this one started: its view of the key stands. */
    pthread_mutex_unlock(&g_lock);
    return CKR_OK;
  }
  proto.seen = listing ? listing : sl->listings;
  long first;
  if (kind == 4) first = upsert(sl, CKO_SECRET_KEY, &proto);
  else {
    first = upsert(sl, CKO_PRIVATE_KEY, &proto);
    if (first >= 0 && upsert(sl, CKO_PUBLIC_KEY, &proto) < 0) first = -1;
  }
  pthread_mutex_unlock(&g_lock);
  if (first < 0) return CKR_HOST_MEMORY;
  if (first_index) *first_index = first;
  return CKR_OK;
}

/*
 * Lists the slot's keys (every page) and brings its objects up to date. Objects stay present
 * while the listing runs, so operations on other threads never see a key vanish and come back;
 * keys the listing did not see are retired only once it has completed, and only by the newest
 * listing to complete. A listing cut short (the backend went away) changes nothing: other
 * sessions' operations then fail with the backend's CKR_DEVICE_ERROR, not CKR_KEY_HANDLE_INVALID.
 * Listings may overlap (one per session): each has a number, an object records the newest that
 * saw it, and a completed listing retires exactly the objects no listing from it on has seen.
 */
static CK_RV refresh(session *s) {
  slot *sl = &g_slots[s->slot];
  char token[256] = "";
  pthread_mutex_lock(&g_lock);
  unsigned long listing = ++sl->listings;
  pthread_mutex_unlock(&g_lock);
  for (int page = 0; page < 1000; page++) {
    char path[600];
    int n = snprintf(path, sizeof path, API "/keys?status=enabled&limit=100");
    if (sl->cfg.tag) n += snprintf(path + n, sizeof path - (size_t)n, "&tag=%s", sl->cfg.tag);
    if (token[0]) snprintf(path + n, sizeof path - (size_t)n, "&page_token=%s", token);
    http_answer a;
    CK_RV rv = call(s, "GET", path, NULL, &a);
    if (rv != CKR_OK) return rv;
    if (a.status != 200) { rv = rv_of_answer(&a); http_answer_free(&a); return rv; }
    jvalue *doc = json_parse(a.body, a.len);
    http_answer_free(&a);
    const jvalue *items = json_get(doc, "items");
    if (!items || items->type != J_ARR) { json_free(doc); return CKR_DEVICE_ERROR; }
    for (size_t i = 0; rv == CKR_OK && i < items->n; i++) rv = add_key(s, items->items[i], NULL, listing);
    const char *next = json_str(doc, "next_page_token");
    int more = next && *next && strlen(next) < sizeof token && strspn(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == strlen(next);
    if (more) snprintf(token, sizeof token, "%s", next);
    json_free(doc);
    if (rv != CKR_OK) return rv;
    if (!more) break;
  }
  pthread_mutex_lock(&g_lock);
  if (listing > sl->settled) {
    sl->settled = listing;
    for (size_t i = 0; i < sl->n_objects; i++)
      if (sl->objects[i]->seen < listing) sl->objects[i]->present = 0;
  }
  pthread_mutex_unlock(&g_lock);
  return CKR_OK;
}

/* ---- attributes ---------------------------------------------------------------------- */

static const CK_BBOOL T = CK_TRUE, F = CK_FALSE;

/*
 * The value of attribute `type` of `o`: 1 with (*val, *len) set, 0 when the object has no such
 * attribute, -1 when it is sensitive. `scratch` holds small values.
 */
static int attribute(const object *o, CK_ATTRIBUTE_TYPE type, const void **val, size_t *len, unsigned char scratch[64]) {
  int priv = o->cls != CKO_PUBLIC_KEY;
#define BOOL(b) do { *val = (b) ? &T : &F; *len = sizeof(CK_BBOOL); return 1; } while (0)
#define ULONG(x) do { CK_ULONG v_ = (x); memcpy(scratch, &v_, sizeof v_); *val = scratch; *len = sizeof v_; return 1; } while (0)
  switch (type) {
    case CKA_CLASS: ULONG(o->cls);
    case CKA_KEY_TYPE: ULONG(o->ktype);
    case CKA_ID: *val = o->id; *len = sizeof o->id; return 1;
    case CKA_LABEL: *val = o->label; *len = strlen(o->label); return 1;
    case CKA_TOKEN: BOOL(1);
    case CKA_PRIVATE: BOOL(priv);
    case CKA_MODIFIABLE: BOOL(0);
    case CKA_LOCAL: BOOL(1);
    case CKA_DERIVE: BOOL(0);
    case CKA_START_DATE: case CKA_END_DATE: *val = scratch; *len = 0; return 1;
    case CKA_KEY_GEN_MECHANISM: ULONG(o->ktype == CKK_EC ? CKM_EC_KEY_PAIR_GEN : o->ktype == CKK_RSA ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_AES_KEY_GEN);
    case CKA_SIGN: BOOL(o->cls != CKO_PUBLIC_KEY && o->sign);
    case CKA_VERIFY: BOOL((o->cls != CKO_PRIVATE_KEY) && o->sign);
    case CKA_SIGN_RECOVER: case CKA_VERIFY_RECOVER: case CKA_WRAP: case CKA_UNWRAP: BOOL(0);
    case CKA_ENCRYPT: BOOL(o->cls != CKO_PRIVATE_KEY && o->encrypt);
    case CKA_DECRYPT: BOOL(o->cls != CKO_PUBLIC_KEY && o->encrypt);
    case CKA_SENSITIVE: case CKA_ALWAYS_SENSITIVE: case CKA_NEVER_EXTRACTABLE: if (!priv) return 0; BOOL(1);
    case CKA_EXTRACTABLE: if (!priv) return 0; BOOL(0);
    case CKA_ALWAYS_AUTHENTICATE: if (!priv) return 0; BOOL(0);
    case CKA_TRUSTED: if (priv) return 0; BOOL(0);
    case CKA_VALUE: case CKA_PRIVATE_EXPONENT: case CKA_PRIME_1: case CKA_PRIME_2: case CKA_EXPONENT_1: case CKA_EXPONENT_2: case CKA_COEFFICIENT:
      if (type == CKA_VALUE && o->ktype == CKK_EC && !priv) return 0;
      if (type != CKA_VALUE && o->ktype != CKK_RSA) return 0;
      if (!priv) return 0;
      return -1;
    case CKA_VALUE_LEN: if (o->ktype != CKK_AES) return 0; ULONG(32);
    case CKA_EC_PARAMS: if (o->ktype != CKK_EC) return 0; *val = o->ec_params; *len = o->ec_params_len; return 1;
    case CKA_EC_POINT: if (o->ktype != CKK_EC || o->cls != CKO_PUBLIC_KEY) return 0; *val = o->ec_point; *len = o->ec_point_len; return 1;
    case CKA_MODULUS: if (o->ktype != CKK_RSA) return 0; *val = o->modulus; *len = o->modulus_len; return 1;
    case CKA_PUBLIC_EXPONENT: if (o->ktype != CKK_RSA) return 0; *val = o->exponent; *len = o->exponent_len; return 1;
    case CKA_MODULUS_BITS: if (o->ktype != CKK_RSA) return 0; ULONG(o->modulus_len * 8);
    default: return 0;
  }
#undef BOOL
#undef ULONG
}

/* ---- general ------------------------------------------------------------------------- */

CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
  if (pInitArgs) {
    CK_C_INITIALIZE_ARGS *a = pInitArgs;
    if (a->pReserved) return CKR_ARGUMENTS_BAD;
    int some = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
    int all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
    if (some && !all) return CKR_ARGUMENTS_BAD;
    if (all && !(a->flags & CKF_OS_LOCKING_OK)) return CKR_CANT_LOCK;
  }
  pthread_mutex_lock(&g_lock);
  if (g_initialized) { pthread_mutex_unlock(&g_lock); return CKR_CRYPTOKI_ALREADY_INITIALIZED; }
  CK_RV rv = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? load_config() : CKR_GENERAL_ERROR;
  if (rv == CKR_OK) g_initialized = 1;
  else {
    /* Without a message a missing config is a bare CKR_GENERAL_ERROR. */
    if (!g_config_reported) fprintf(stderr, "libcryptoutil-pkcs11: no usable config in CRYPTOUTIL_PKCS11_CONFIG (a JSON file with url, ca and slots)\n");
    g_config_reported = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++) free_slot_config(&g_slots[i].cfg);
    g_n_slots = 0;
  }
  pthread_mutex_unlock(&g_lock);
  return rv;
}

CK_RV C_Finalize(CK_VOID_PTR pReserved) {
  if (pReserved) return CKR_ARGUMENTS_BAD;
  pthread_mutex_lock(&g_lock);
  if (!g_initialized) { pthread_mutex_unlock(&g_lock); return CKR_CRYPTOKI_NOT_INITIALIZED; }
  g_initialized = 0;
  for (size_t i = 0; i < MAX_SESSIONS; i++) {
    session *s = g_sessions[i];
    g_sessions[i] = NULL;
    if (s) {
      s->closed = 1;
      if (s->refs == 0) session_free(s);
    }
  }
  for (size_t i = 0; i < g_n_slots; i++) {
    slot *sl = &g_slots[i];
    for (size_t j = 0; j < sl->n_objects; j++) free(sl->objects[j]);
    wipe_free(sl->pin);
    free_slot_config(&sl->cfg);
    memset(sl, 0, sizeof *sl);
  }
  g_n_slots = 0;
  curl_global_cleanup();
  pthread_mutex_unlock(&g_lock);
  return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo) {
  CHECK_INIT();
  if (!pInfo) return CKR_ARGUMENTS_BAD;
  memset(pInfo, 0, sizeof *pInfo);
  pInfo->cryptokiVersion.major = 2;
  pInfo->cryptokiVersion.minor = 40;
  pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "cryptoutil");
  pad_copy(pInfo->libraryDescription, sizeof pInfo->libraryDescription, "cryptoutil sm-kms PKCS#11");
  pInfo->libraryVersion.major = 1;
  return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
  (void)tokenPresent;
  CHECK_INIT();
  if (!pulCount) return CKR_ARGUMENTS_BAD;
  if (pSlotList) {
    if (*pulCount < g_n_slots) { *pulCount = g_n_slots; return CKR_BUFFER_TOO_SMALL; }
    for (size_t i = 0; i < g_n_slots; i++) pSlotList[i] = i;
  }
  *pulCount = g_n_slots;
  return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  if (!pInfo) return CKR_ARGUMENTS_BAD;
  memset(pInfo, 0, sizeof *pInfo);
  char desc[80];
  snprintf(desc, sizeof desc, "sm-kms %s", g_slots[slotID].cfg.label);
  pad_copy(pInfo->slotDescription, sizeof pInfo->slotDescription, desc);
  pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "cryptoutil");
  pInfo->flags = CKF_TOKEN_PRESENT | CKF_HW_SLOT;
  pInfo->hardwareVersion.major = 1;
  pInfo->firmwareVersion.major = 1;
  return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  if (!pInfo) return CKR_ARGUMENTS_BAD;
  memset(pInfo, 0, sizeof *pInfo);
  slot *sl = &g_slots[slotID];
  char serial[24];
  snprintf(serial, sizeof serial, "%lu", (unsigned long)slotID);
  pad_copy(pInfo->label, sizeof pInfo->label, sl->cfg.label);
  pad_copy(pInfo->manufacturerID, sizeof pInfo->manufacturerID, "cryptoutil");
  pad_copy(pInfo->model, sizeof pInfo->model, "sm-kms");
  pad_copy(pInfo->serialNumber, sizeof pInfo->serialNumber, serial);
  pInfo->flags = CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | (sl->cfg.key_encrypted ? CKF_LOGIN_REQUIRED : 0);
  pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
  pInfo->ulSessionCount = CK_UNAVAILABLE_INFORMATION;
  pInfo->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
  pInfo->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
  pInfo->ulMaxPinLen = 256;
  pInfo->ulMinPinLen = 1;
  pInfo->ulTotalPublicMemory = pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
  pInfo->ulTotalPrivateMemory = pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  pInfo->hardwareVersion.major = 1;
  pInfo->firmwareVersion.major = 1;
  return CKR_OK;
}

static const struct { CK_MECHANISM_TYPE type; CK_ULONG min, max; CK_FLAGS flags; } MECHANISMS[] = {
  {CKM_EC_KEY_PAIR_GEN, 256, 521, CKF_HW | CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
  {CKM_ECDSA, 256, 521, CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
  {CKM_ECDSA_SHA256, 256, 521, CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
  {CKM_ECDSA_SHA384, 256, 521, CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
  {CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, CKF_HW | CKF_GENERATE_KEY_PAIR},
  {CKM_RSA_PKCS, 2048, 4096, CKF_HW | CKF_SIGN | CKF_VERIFY},
  {CKM_SHA256_RSA_PKCS, 2048, 4096, CKF_HW | CKF_SIGN | CKF_VERIFY},
  {CKM_RSA_PKCS_PSS, 2048, 4096, CKF_HW | CKF_SIGN | CKF_VERIFY},
  {CKM_SHA256_RSA_PKCS_PSS, 2048, 4096, CKF_HW | CKF_SIGN | CKF_VERIFY},
  {CKM_RSA_PKCS_OAEP, 2048, 4096, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT},
  {CKM_AES_KEY_GEN, 32, 32, CKF_HW | CKF_GENERATE},
  {CKM_AES_GCM, 32, 32, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT},
};
#define N_MECHANISMS (sizeof MECHANISMS / sizeof MECHANISMS[0])

CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  if (!pulCount) return CKR_ARGUMENTS_BAD;
  if (pMechanismList) {
    if (*pulCount < N_MECHANISMS) { *pulCount = N_MECHANISMS; return CKR_BUFFER_TOO_SMALL; }
    for (size_t i = 0; i < N_MECHANISMS; i++) pMechanismList[i] = MECHANISMS[i].type;
  }
  *pulCount = N_MECHANISMS;
  return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  if (!pInfo) return CKR_ARGUMENTS_BAD;
  for (size_t i = 0; i < N_MECHANISMS; i++)
    if (MECHANISMS[i].type == type) {
      pInfo->ulMinKeySize = MECHANISMS[i].min;
      pInfo->ulMaxKeySize = MECHANISMS[i].max;
      pInfo->flags = MECHANISMS[i].flags;
      return CKR_OK;
    }
  return CKR_MECHANISM_INVALID;
}

/* ---- sessions ---------------------------------------------------------------------------- */

CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession) {
  (void)pApplication; (void)Notify;
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
  if (!phSession) return CKR_ARGUMENTS_BAD;
  session *s = calloc(1, sizeof *s);
  if (!s) return CKR_HOST_MEMORY;
  pthread_mutex_init(&s->lock, NULL);
  s->slot = slotID;
  s->flags = flags;
  pthread_mutex_lock(&g_lock);
  size_t i = 0;
  while (i < MAX_SESSIONS && g_sessions[i]) i++;
  if (i == MAX_SESSIONS) {
    pthread_mutex_unlock(&g_lock);
    session_free(s);
    return CKR_SESSION_COUNT;
  }
  g_sessions[i] = s;
  pthread_mutex_unlock(&g_lock);
  *phSession = i + 1;
  return CKR_OK;
}

static CK_RV close_session_locked(size_t i) {
  session *s = g_sessions[i];
  g_sessions[i] = NULL;
  s->closed = 1;
  if (s->refs == 0) session_free(s);
  return CKR_OK;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) {
  CHECK_INIT();
  pthread_mutex_lock(&g_lock);
  CK_RV rv = CKR_SESSION_HANDLE_INVALID;
  if (hSession >= 1 && hSession <= MAX_SESSIONS && g_sessions[hSession - 1]) rv = close_session_locked(hSession - 1);
  pthread_mutex_unlock(&g_lock);
  return rv;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) {
  CHECK_INIT();
  if (slotID >= g_n_slots) return CKR_SLOT_ID_INVALID;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < MAX_SESSIONS; i++)
    if (g_sessions[i] && g_sessions[i]->slot == slotID) close_session_locked(i);
  pthread_mutex_unlock(&g_lock);
  return CKR_OK;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
  CHECK_INIT();
  if (!pInfo) return CKR_ARGUMENTS_BAD;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  pthread_mutex_lock(&g_lock);
  int in = g_slots[s->slot].logged_in;
  pthread_mutex_unlock(&g_lock);
  int rw = (s->flags & CKF_RW_SESSION) != 0;
  pInfo->slotID = s->slot;
  pInfo->flags = s->flags;
  pInfo->state = in ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS) : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION);
  pInfo->ulDeviceError = 0;
  session_put(s);
  return CKR_OK;
}

CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
  CHECK_INIT();
  if (userType == CKU_SO) return CKR_USER_TYPE_INVALID;
  if (userType != CKU_USER && userType != CKU_CONTEXT_SPECIFIC) return CKR_USER_TYPE_INVALID;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  slot *sl = &g_slots[s->slot];
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&g_lock);
  int already = sl->logged_in;
  pthread_mutex_unlock(&g_lock);
  if (already && userType == CKU_USER) { session_put(s); return CKR_USER_ALREADY_LOGGED_IN; }
  if (!sl->cfg.key_encrypted) {
    /* Nothing to unlock: the slot's credential needs no PIN. */
    pthread_mutex_lock(&g_lock);
    sl->logged_in = 1;
    pthread_mutex_unlock(&g_lock);
    session_put(s);
    return CKR_OK;
  }
  if (!pPin || ulPinLen == 0 || ulPinLen > 256) { session_put(s); return CKR_PIN_INCORRECT; }
  char *pin = malloc(ulPinLen + 1);
  if (!pin) { session_put(s); return CKR_HOST_MEMORY; }
  memcpy(pin, pPin, ulPinLen);
  pin[ulPinLen] = 0;
  /* A fresh handle, so the key is really opened with this PIN (no reused connection). */
  CURL *h = backend_handle(&sl->cfg);
  http_answer a;
  if (!h) rv = CKR_HOST_MEMORY;
  else if (backend_call(h, &sl->cfg, pin, "GET", API "/keys?limit=1", NULL, &a) != 0) {
    /* The client key did not open with this PIN (the handshake never started), or the device is away. */
    rv = a.error == CURLE_SSL_CERTPROBLEM ? CKR_PIN_INCORRECT : CKR_DEVICE_ERROR;
  } else {
    if (a.status == 200) rv = CKR_OK;
    else rv = a.status == 401 || a.status == 403 ? CKR_PIN_INCORRECT : CKR_DEVICE_ERROR;
    http_answer_free(&a);
  }
  if (h) curl_easy_cleanup(h);
  if (rv == CKR_OK) {
    pthread_mutex_lock(&g_lock);
    wipe_free(sl->pin);
    sl->pin = pin;
    sl->logged_in = 1;
    sl->generation++;
    pthread_mutex_unlock(&g_lock);
  } else {
    wipe_free(pin);
  }
  session_put(s);
  return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE hSession) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  slot *sl = &g_slots[s->slot];
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&g_lock);
  if (!sl->logged_in) rv = CKR_USER_NOT_LOGGED_IN;
  sl->logged_in = 0;
  wipe_free(sl->pin);
  sl->pin = NULL;
  sl->generation++;
  pthread_mutex_unlock(&g_lock);
  session_put(s);
  return rv;
}

/* ---- objects ----------------------------------------------------------------------------- */

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
  CHECK_INIT();
  if (ulCount && !pTemplate) return CKR_ARGUMENTS_BAD;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  if (s->finding) { session_put(s); return CKR_OPERATION_ACTIVE; }
  slot *sl = &g_slots[s->slot];
  pthread_mutex_lock(&g_lock);
  int visible = logged_in_or_open(sl);
  pthread_mutex_unlock(&g_lock);
  CK_RV rv = visible ? refresh(s) : CKR_OK;
  if (rv != CKR_OK) { session_put(s); return rv; }
  free(s->found);
  s->found = NULL;
  s->n_found = s->found_pos = 0;
  pthread_mutex_lock(&g_lock);
  if (visible && sl->n_objects) s->found = malloc(sl->n_objects * sizeof *s->found);
  for (size_t i = 0; s->found && i < sl->n_objects; i++) {
    object *o = sl->objects[i];
    int match = o->present;
    for (CK_ULONG t = 0; match && t < ulCount; t++) {
      const void *val;
      size_t len;
      unsigned char scratch[64];
      int r = attribute(o, pTemplate[t].type, &val, &len, scratch);
      match = r == 1 && len == pTemplate[t].ulValueLen && (len == 0 || (pTemplate[t].pValue && memcmp(val, pTemplate[t].pValue, len) == 0));
    }
    if (match) s->found[s->n_found++] = handle_of(s->slot, i);
  }
  pthread_mutex_unlock(&g_lock);
  s->finding = 1;
  session_put(s);
  return CKR_OK;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount) {
  CHECK_INIT();
  if (!phObject || !pulObjectCount) return CKR_ARGUMENTS_BAD;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  if (!s->finding) { session_put(s); return CKR_OPERATION_NOT_INITIALIZED; }
  CK_ULONG n = 0;
  while (n < ulMaxObjectCount && s->found_pos < s->n_found) phObject[n++] = s->found[s->found_pos++];
  *pulObjectCount = n;
  session_put(s);
  return CKR_OK;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = s->finding ? CKR_OK : CKR_OPERATION_NOT_INITIALIZED;
  s->finding = 0;
  free(s->found);
  s->found = NULL;
  s->n_found = s->found_pos = 0;
  session_put(s);
  return rv;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
  CHECK_INIT();
  if (ulCount && !pTemplate) return CKR_ARGUMENTS_BAD;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&g_lock);
  object *o = object_of(s->slot, hObject);
  if (!o) rv = CKR_OBJECT_HANDLE_INVALID;
  for (CK_ULONG i = 0; o && i < ulCount; i++) {
    const void *val;
    size_t len;
    unsigned char scratch[64];
    int r = attribute(o, pTemplate[i].type, &val, &len, scratch);
    if (r == 0) { pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION; rv = rv == CKR_OK ? CKR_ATTRIBUTE_TYPE_INVALID : rv; }
    else if (r < 0) { pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION; rv = rv == CKR_OK ? CKR_ATTRIBUTE_SENSITIVE : rv; }
    else if (!pTemplate[i].pValue) pTemplate[i].ulValueLen = len;
    else if (pTemplate[i].ulValueLen < len) { pTemplate[i].ulValueLen = CK_UNAVAILABLE_INFORMATION; rv = rv == CKR_OK ? CKR_BUFFER_TOO_SMALL : rv; }
    else { memcpy(pTemplate[i].pValue, val, len); pTemplate[i].ulValueLen = len; }
  }
  pthread_mutex_unlock(&g_lock);
  session_put(s);
  return rv;
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize) {
  (void)hSession; (void)hObject;
  CHECK_INIT();
  if (!pulSize) return CKR_ARGUMENTS_BAD;
  *pulSize = CK_UNAVAILABLE_INFORMATION;
  return CKR_OK;
}

/* ---- key generation ----------------------------------------------------------------------- */

static const CK_ATTRIBUTE *find_attr(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type) {
  for (CK_ULONG i = 0; t && i < n; i++)
    if (t[i].type == type) return &t[i];
  return NULL;
}

static int attr_true(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type) {
  const CK_ATTRIBUTE *a = find_attr(t, n, type);
  return a && a->pValue && a->ulValueLen == sizeof(CK_BBOOL) && *(CK_BBOOL *)a->pValue;
}

/* Key names are sm-kms's: 1..64 of A-Z a-z 0-9 . _ - starting with a letter or digit. */
static int label_of(const CK_ATTRIBUTE *t, CK_ULONG n, char out[65]) {
  const CK_ATTRIBUTE *a = find_attr(t, n, CKA_LABEL);
  if (!a) {
    unsigned char r[6];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(r, 1, sizeof r, f) != sizeof r) { if (f) fclose(f); return -1; }
    fclose(f);
    snprintf(out, 65, "p11-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
    return 0;
  }
  if (!a->pValue || a->ulValueLen == 0 || a->ulValueLen > 64) return -1;
  const char *p = a->pValue;
  for (CK_ULONG i = 0; i < a->ulValueLen; i++) {
    char c = p[i];
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) return -1;
  }
  memcpy(out, p, a->ulValueLen);
  out[a->ulValueLen] = 0;
  return 0;
}

/* Creates an sm-kms key and returns the index of its first object. */
static CK_RV create_key(session *s, const char *name, const char *alg, long *first) {
  char body[256];
  snprintf(body, sizeof body, "{\"name\":\"%s\",\"algorithm\":\"%s\"%s%s%s}", name, alg,
           g_slots[s->slot].cfg.tag ? ",\"tags\":[\"" : "", g_slots[s->slot].cfg.tag ? g_slots[s->slot].cfg.tag : "", g_slots[s->slot].cfg.tag ? "\"]" : "");
  http_answer a;
  CK_RV rv = call(s, "POST", API "/keys", body, &a);
  if (rv != CKR_OK) return rv;
  if (a.status != 201) { rv = rv_of_answer(&a); http_answer_free(&a); return rv; }
  jvalue *key = json_parse(a.body, a.len);
  http_answer_free(&a);
  *first = -1;
  rv = key ? add_key(s, key, first, 0) : CKR_DEVICE_ERROR;
  json_free(key);
  return rv == CKR_OK && *first < 0 ? CKR_DEVICE_ERROR : rv;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPub, CK_ULONG nPub, CK_ATTRIBUTE_PTR pPriv, CK_ULONG nPriv,
                        CK_OBJECT_HANDLE_PTR phPub, CK_OBJECT_HANDLE_PTR phPriv) {
  CHECK_INIT();
  if (!pMechanism || !phPub || !phPriv) return CKR_ARGUMENTS_BAD;
  const char *alg = NULL;
  if (pMechanism->mechanism == CKM_EC_KEY_PAIR_GEN) {
    const CK_ATTRIBUTE *p = find_attr(pPub, nPub, CKA_EC_PARAMS);
    if (!p || !p->pValue) return CKR_TEMPLATE_INCOMPLETE;
    if (p->ulValueLen == sizeof OID_P256 && !memcmp(p->pValue, OID_P256, sizeof OID_P256)) alg = "ES256";
    else if (p->ulValueLen == sizeof OID_P384 && !memcmp(p->pValue, OID_P384, sizeof OID_P384)) alg = "ES384";
    else if (p->ulValueLen == sizeof OID_P521 && !memcmp(p->pValue, OID_P521, sizeof OID_P521)) alg = "ES512";
    else return CKR_CURVE_NOT_SUPPORTED;
  } else if (pMechanism->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
    const CK_ATTRIBUTE *bits = find_attr(pPub, nPub, CKA_MODULUS_BITS);
    if (bits && (!bits->pValue || bits->ulValueLen != sizeof(CK_ULONG) || *(CK_ULONG *)bits->pValue != 2048)) return CKR_ATTRIBUTE_VALUE_INVALID;
    /* A decrypting key is RSA-OAEP-256; a signing key RS256 (PKCS#1 v1.5), or PS256 when the label asks for -pss. */
    alg = attr_true(pPriv, nPriv, CKA_DECRYPT) && !attr_true(pPriv, nPriv, CKA_SIGN) ? "RSA-OAEP-256" : "RS256";
  } else {
    return CKR_MECHANISM_INVALID;
  }
  char name[65];
  if (label_of(pPriv, nPriv, name) && label_of(pPub, nPub, name)) return CKR_ATTRIBUTE_VALUE_INVALID;
  if (!strcmp(alg, "RS256")) {
    size_t l = strlen(name);
    if (l > 4 && !strcmp(name + l - 4, "-pss")) alg = "PS256";
  }
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  long first;
  CK_RV rv = create_key(s, name, alg, &first);
  if (rv == CKR_OK) {
    *phPriv = handle_of(s->slot, (size_t)first);
    pthread_mutex_lock(&g_lock);
    slot *sl = &g_slots[s->slot];
    for (size_t i = 0; i < sl->n_objects; i++)
      if (sl->objects[i]->cls == CKO_PUBLIC_KEY && !strcmp(sl->objects[i]->key_id, sl->objects[first]->key_id)) *phPub = handle_of(s->slot, i);
    pthread_mutex_unlock(&g_lock);
  }
  session_put(s);
  return rv;
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey) {
  CHECK_INIT();
  if (!pMechanism || !phKey) return CKR_ARGUMENTS_BAD;
  if (pMechanism->mechanism != CKM_AES_KEY_GEN) return CKR_MECHANISM_INVALID;
  const CK_ATTRIBUTE *len = find_attr(pTemplate, ulCount, CKA_VALUE_LEN);
  if (len && (!len->pValue || len->ulValueLen != sizeof(CK_ULONG) || *(CK_ULONG *)len->pValue != 32)) return CKR_ATTRIBUTE_VALUE_INVALID;
  char name[65];
  if (label_of(pTemplate, ulCount, name)) return CKR_ATTRIBUTE_VALUE_INVALID;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  long first;
  CK_RV rv = create_key(s, name, "A256GCM", &first);
  if (rv == CKR_OK) *phKey = handle_of(s->slot, (size_t)first);
  session_put(s);
  return rv;
}

/* ---- operations ---------------------------------------------------------------------------- */

static const char *hash_name(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_SHA256: case CKG_MGF1_SHA256: return "SHA-256";
    case CKM_SHA384: case CKG_MGF1_SHA384: return "SHA-384";
    case CKM_SHA512: case CKG_MGF1_SHA512: return "SHA-512";
    default: return NULL;
  }
}

/* Starts an operation: checks the key and mechanism, keeps the parameters. */
static CK_RV op_init(CK_SESSION_HANDLE hSession, op_kind kind, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE hKey) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  if (!m) {
    /* A NULL mechanism ends the active operation of this kind (PKCS#11 v2.40 §5.2). */
    if (s->op.kind == kind) op_clear(&s->op);
    session_put(s);
    return CKR_OK;
  }
  CK_RV rv = CKR_OK;
  if (s->op.kind != OP_NONE) rv = CKR_OPERATION_ACTIVE;
  pthread_mutex_lock(&g_lock);
  object *o = rv == CKR_OK ? object_of(s->slot, hKey) : NULL;
  if (rv == CKR_OK && (!o || !o->present)) rv = CKR_KEY_HANDLE_INVALID;
  CK_KEY_TYPE kt = o ? o->ktype : 0;
  CK_OBJECT_CLASS cls = o ? o->cls : 0;
  int is_sign = o ? o->sign : 0, is_enc = o ? o->encrypt : 0;
  if (rv == CKR_OK && !logged_in_or_open(&g_slots[s->slot])) rv = CKR_USER_NOT_LOGGED_IN;
  pthread_mutex_unlock(&g_lock);
  if (rv == CKR_OK) {
    int ok;
    switch (m->mechanism) {
      case CKM_ECDSA: case CKM_ECDSA_SHA256: case CKM_ECDSA_SHA384: ok = kt == CKK_EC && (kind == OP_SIGN || kind == OP_VERIFY); break;
      case CKM_RSA_PKCS: case CKM_SHA256_RSA_PKCS: case CKM_RSA_PKCS_PSS: case CKM_SHA256_RSA_PKCS_PSS: ok = kt == CKK_RSA && is_sign && (kind == OP_SIGN || kind == OP_VERIFY); break;
      case CKM_RSA_PKCS_OAEP: ok = kt == CKK_RSA && is_enc && (kind == OP_ENCRYPT || kind == OP_DECRYPT); break;
      case CKM_AES_GCM: ok = kt == CKK_AES && (kind == OP_ENCRYPT || kind == OP_DECRYPT); break;
      default: rv = CKR_MECHANISM_INVALID; ok = 1;
    }
    if (rv == CKR_OK && !ok) rv = CKR_KEY_TYPE_INCONSISTENT;
    if (rv == CKR_OK && ((kind == OP_SIGN || kind == OP_DECRYPT) && cls == CKO_PUBLIC_KEY)) rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    if (rv == CKR_OK && ((kind == OP_VERIFY || kind == OP_ENCRYPT) && cls == CKO_PRIVATE_KEY && kt == CKK_RSA && is_enc)) rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
  }
  operation op;
  memset(&op, 0, sizeof op);
  op.kind = kind;
  op.mech = m->mechanism;
  op.key = hKey;
  op.salt_len = -1;
  if (rv == CKR_OK && (m->mechanism == CKM_RSA_PKCS_PSS || m->mechanism == CKM_SHA256_RSA_PKCS_PSS)) {
    CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
    if (!p || m->ulParameterLen != sizeof *p || !hash_name(p->hashAlg) || !hash_name(p->mgf) || strcmp(hash_name(p->hashAlg), hash_name(p->mgf)) || p->sLen > 64) rv = CKR_MECHANISM_PARAM_INVALID;
    else if (m->mechanism == CKM_SHA256_RSA_PKCS_PSS && p->hashAlg != CKM_SHA256) rv = CKR_MECHANISM_PARAM_INVALID;
    else { snprintf(op.pss_hash, sizeof op.pss_hash, "%s", hash_name(p->hashAlg)); op.salt_len = (long)p->sLen; }
  }
  if (rv == CKR_OK && m->mechanism == CKM_RSA_PKCS_OAEP) {
    CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;
    /* The keys are RSA-OAEP-256: SHA-256 for OAEP and MGF1, no label. */
    if (!p || m->ulParameterLen != sizeof *p || p->hashAlg != CKM_SHA256 || p->mgf != CKG_MGF1_SHA256 || (p->source && p->ulSourceDataLen)) rv = CKR_MECHANISM_PARAM_INVALID;
  }
  if (rv == CKR_OK && m->mechanism == CKM_AES_GCM) {
    CK_GCM_PARAMS *p = m->pParameter;
    if (!p || m->ulParameterLen != sizeof *p || !p->pIv || p->ulIvLen == 0 || p->ulIvLen > sizeof op.iv || p->ulTagBits != 128 || (p->ulAADLen && !p->pAAD) || p->ulAADLen > MAX_DATA) rv = CKR_MECHANISM_PARAM_INVALID;
    else {
      memcpy(op.iv, p->pIv, p->ulIvLen);
      op.iv_len = p->ulIvLen;
      if (p->ulAADLen) {
        op.aad = malloc(p->ulAADLen);
        if (!op.aad) rv = CKR_HOST_MEMORY;
        else { memcpy(op.aad, p->pAAD, p->ulAADLen); op.aad_len = p->ulAADLen; }
      }
    }
  }
  if (rv == CKR_OK) s->op = op;
  else free(op.aad);
  session_put(s);
  return rv;
}

static CK_RV op_append(operation *op, const unsigned char *d, size_t n) {
  if (n == 0) return CKR_OK;
  if (!d) return CKR_ARGUMENTS_BAD;
  if (op->len + n > MAX_DATA) return CKR_DATA_LEN_RANGE;
  unsigned char *b = realloc(op->data, op->len + n);
  if (!b) return CKR_HOST_MEMORY;
  memcpy(b + op->len, d, n);
  op->data = b;
  op->len += n;
  return CKR_OK;
}

static const char *sign_mechanism(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_ECDSA: return "ECDSA";
    case CKM_ECDSA_SHA256: return "ECDSA-SHA256";
    case CKM_ECDSA_SHA384: return "ECDSA-SHA384";
    case CKM_RSA_PKCS: return "RSA-PKCS";
    case CKM_SHA256_RSA_PKCS: return "SHA256-RSA-PKCS";
    case CKM_RSA_PKCS_PSS: return "RSA-PSS";
    default: return "SHA256-RSA-PSS";
  }
}

/* The object's key id and version and the output size of the operation (copied under the lock). */
static CK_RV op_key(session *s, char key_id[40], long *version, size_t *out_len) {
  pthread_mutex_lock(&g_lock);
  object *o = object_of(s->slot, s->op.key);
  if (o) {
    memcpy(key_id, o->key_id, 40);
    *version = o->version;
    if (s->op.mech == CKM_AES_GCM) *out_len = s->op.kind == OP_ENCRYPT ? s->op.len + 16 : (s->op.len >= 16 ? s->op.len - 16 : 0);
    else if (s->op.mech == CKM_RSA_PKCS_OAEP) *out_len = o->modulus_len;
    else *out_len = o->sig_len;
  }
  pthread_mutex_unlock(&g_lock);
  return o ? CKR_OK : CKR_KEY_HANDLE_INVALID;
}

/* Sends the gathered data of the session's operation; on success `result` holds the output (sign, encrypt, decrypt). */
static CK_RV op_run(session *s, const unsigned char *sig, size_t sig_len) {
  operation *op = &s->op;
  char key_id[40];
  long version;
  size_t out_len;
  CK_RV rv = op_key(s, key_id, &version, &out_len);
  if (rv != CKR_OK) return rv;
  char *data = b64u_encode(op->data ? op->data : (const unsigned char *)"", op->len);
  char *sigb = sig ? b64u_encode(sig, sig_len) : NULL;
  char *iv = op->iv_len ? b64u_encode(op->iv, op->iv_len) : NULL;
  char *aad = op->aad_len ? b64u_encode(op->aad, op->aad_len) : NULL;
  size_t cap = strlen(data) + (sigb ? strlen(sigb) : 0) + (aad ? strlen(aad) : 0) + 512;
  char *body = malloc(cap);
  const char *route, *field;
  if (!data || (sig && !sigb) || (op->iv_len && !iv) || (op->aad_len && !aad) || !body) { rv = CKR_HOST_MEMORY; goto done; }
  int n;
  if (op->kind == OP_SIGN || op->kind == OP_VERIFY) {
    route = op->kind == OP_SIGN ? "sign" : "verify";
    n = snprintf(body, cap, "{\"mechanism\":\"%s\",\"data\":\"%s\",\"version\":%ld", sign_mechanism(op->mech), data, version);
    if (sigb) n += snprintf(body + n, cap - (size_t)n, ",\"signature\":\"%s\"", sigb);
    if (op->pss_hash[0]) n += snprintf(body + n, cap - (size_t)n, ",\"pss\":{\"hash\":\"%s\",\"salt_length\":%ld}", op->pss_hash, op->salt_len);
    snprintf(body + n, cap - (size_t)n, "}");
    field = op->kind == OP_SIGN ? "signature" : NULL;
  } else {
    int enc = op->kind == OP_ENCRYPT;
    route = enc ? "encrypt" : "decrypt";
    n = snprintf(body, cap, "{\"mechanism\":\"%s\",\"%s\":\"%s\"", op->mech == CKM_AES_GCM ? "AES-GCM" : "RSA-OAEP", enc ? "plaintext" : "ciphertext", data);
    if (iv) n += snprintf(body + n, cap - (size_t)n, ",\"iv\":\"%s\"", iv);
    if (aad) n += snprintf(body + n, cap - (size_t)n, ",\"aad\":\"%s\"", aad);
    /* Encryption needs the version whose public key the caller holds; AES-GCM decryption the one that encrypted. */
    if (enc || op->mech == CKM_AES_GCM) n += snprintf(body + n, cap - (size_t)n, ",\"version\":%ld", version);
    snprintf(body + n, cap - (size_t)n, "}");
    field = enc ? "ciphertext" : "plaintext";
  }
  char path[160];
  snprintf(path, sizeof path, API "/keys/%s/raw/%s", key_id, route);
  http_answer a;
  rv = call(s, "POST", path, body, &a);
  if (rv == CKR_OK) {
    if (a.status != 200) rv = rv_of_answer(&a);
    else if (field) {
      jvalue *doc = json_parse(a.body, a.len);
      const char *v = json_str(doc, field);
      size_t len;
      unsigned char *bytes = v ? b64u_decode(v, &len) : NULL;
      if (!bytes) rv = CKR_DEVICE_ERROR;
      else { op->result = bytes; op->result_len = len; }
      json_free(doc);
    }
    http_answer_free(&a);
  }
done:
  free(data); free(sigb); free(iv); free(aad); free(body);
  return rv;
}

/*
 * Finishes a sign/encrypt/decrypt operation into (out, out_len) with PKCS#11's length
 * conventions: a NULL buffer asks for the size; a short buffer gets CKR_BUFFER_TOO_SMALL and
 * the operation stays active (the answer is kept, not asked for again).
 */
static CK_RV op_finish(session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (!out_len) { op_clear(&s->op); return CKR_ARGUMENTS_BAD; }
  CK_RV rv;
  if (!s->op.result) {
    char key_id[40];
    long version;
    size_t need;
    rv = op_key(s, key_id, &version, &need);
    if (rv != CKR_OK) { op_clear(&s->op); return rv; }
    if (!out) { *out_len = need; return CKR_OK; }
    if (*out_len < need && s->op.mech != CKM_RSA_PKCS_OAEP) { *out_len = need; return CKR_BUFFER_TOO_SMALL; }
    rv = op_run(s, NULL, 0);
    if (rv != CKR_OK) { op_clear(&s->op); return rv; }
  }
  if (!out) { *out_len = s->op.result_len; return CKR_OK; }
  if (*out_len < s->op.result_len) { *out_len = s->op.result_len; return CKR_BUFFER_TOO_SMALL; }
  memcpy(out, s->op.result, s->op.result_len);
  *out_len = s->op.result_len;
  op_clear(&s->op);
  return CKR_OK;
}

static CK_RV single(CK_SESSION_HANDLE hSession, op_kind kind, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv;
  if (s->op.kind != kind) rv = CKR_OPERATION_NOT_INITIALIZED;
  else {
    /* A retry after CKR_BUFFER_TOO_SMALL or a size query carries the same input: keep it once. */
    rv = s->op.result || (s->op.len == in_len && (in_len == 0 || (s->op.data && !memcmp(s->op.data, in, in_len)))) ? CKR_OK : (s->op.len ? CKR_OPERATION_ACTIVE : op_append(&s->op, in, in_len));
    if (rv == CKR_OK) rv = op_finish(s, out, out_len);
    else op_clear(&s->op);
  }
  session_put(s);
  return rv;
}

static CK_RV update(CK_SESSION_HANDLE hSession, op_kind kind, CK_BYTE_PTR in, CK_ULONG in_len) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = CKR_OK;
  if (s->op.kind != kind) rv = CKR_OPERATION_NOT_INITIALIZED;
  /* Mechanisms over a digest or one RSA block are single-part only. */
  else if (s->op.mech == CKM_ECDSA || s->op.mech == CKM_RSA_PKCS || s->op.mech == CKM_RSA_PKCS_PSS || s->op.mech == CKM_RSA_PKCS_OAEP) rv = CKR_FUNCTION_NOT_SUPPORTED;
  else rv = op_append(&s->op, in, in_len);
  if (rv != CKR_OK && rv != CKR_OPERATION_NOT_INITIALIZED && rv != CKR_FUNCTION_NOT_SUPPORTED) op_clear(&s->op);
  session_put(s);
  return rv;
}

static CK_RV final(CK_SESSION_HANDLE hSession, op_kind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = s->op.kind != kind ? CKR_OPERATION_NOT_INITIALIZED : op_finish(s, out, out_len);
  session_put(s);
  return rv;
}

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return op_init(h, OP_SIGN, m, k); }
CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG_PTR sl) { return single(h, OP_SIGN, d, n, sig, sl); }
CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) { return update(h, OP_SIGN, d, n); }
CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sl) { return final(h, OP_SIGN, sig, sl); }
CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return op_init(h, OP_ENCRYPT, m, k); }
CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR ol) { return single(h, OP_ENCRYPT, d, n, o, ol); }
CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return op_init(h, OP_DECRYPT, m, k); }
CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR ol) { return single(h, OP_DECRYPT, d, n, o, ol); }
CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { return op_init(h, OP_VERIFY, m, k); }

/* Multi-part encryption and decryption: everything goes out at *Final (AES-GCM is one message). */
CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR ol) {
  (void)o;
  if (!ol) return CKR_ARGUMENTS_BAD;
  CK_RV rv = update(h, OP_ENCRYPT, d, n);
  if (rv == CKR_OK) *ol = 0;
  return rv;
}
CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR ol) { return final(h, OP_ENCRYPT, o, ol); }
CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR o, CK_ULONG_PTR ol) {
  (void)o;
  if (!ol) return CKR_ARGUMENTS_BAD;
  CK_RV rv = update(h, OP_DECRYPT, d, n);
  if (rv == CKR_OK) *ol = 0;
  return rv;
}
CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR o, CK_ULONG_PTR ol) { return final(h, OP_DECRYPT, o, ol); }

static CK_RV verify_with(CK_SESSION_HANDLE hSession, CK_BYTE_PTR data, CK_ULONG len, int single_part, CK_BYTE_PTR sig, CK_ULONG sig_len) {
  CHECK_INIT();
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = CKR_OK;
  if (s->op.kind != OP_VERIFY) rv = CKR_OPERATION_NOT_INITIALIZED;
  else if (!sig || sig_len == 0 || sig_len > 1024) rv = CKR_SIGNATURE_LEN_RANGE;
  else if (single_part) rv = op_append(&s->op, data, len);
  if (rv == CKR_OK) rv = op_run(s, sig, sig_len);
  if (rv != CKR_OPERATION_NOT_INITIALIZED) op_clear(&s->op);
  session_put(s);
  return rv;
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG sl) { return verify_with(h, d, n, 1, sig, sl); }
CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG n) { return update(h, OP_VERIFY, d, n); }
CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sl) { return verify_with(h, NULL, 0, 0, sig, sl); }

/* ---- random -------------------------------------------------------------------------------- */

CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR out, CK_ULONG len) {
  CHECK_INIT();
  if (!out && len) return CKR_ARGUMENTS_BAD;
  session *s = session_get(hSession);
  if (!s) return CKR_SESSION_HANDLE_INVALID;
  CK_RV rv = CKR_OK;
  for (CK_ULONG done = 0; rv == CKR_OK && done < len;) {
    CK_ULONG n = len - done > 1024 ? 1024 : len - done;
    char body[32];
    snprintf(body, sizeof body, "{\"bytes\":%lu}", (unsigned long)n);
    http_answer a;
    rv = call(s, "POST", API "/random", body, &a);
    if (rv != CKR_OK) break;
    if (a.status != 200) rv = rv_of_answer(&a);
    else {
      jvalue *doc = json_parse(a.body, a.len);
      size_t got;
      unsigned char *b = json_str(doc, "random") ? b64u_decode(json_str(doc, "random"), &got) : NULL;
      if (!b || got != n) rv = CKR_DEVICE_ERROR;
      else memcpy(out + done, b, n);
      if (b) { memset(b, 0, got); free(b); }
      json_free(doc);
      done += n;
    }
    http_answer_free(&a);
  }
  session_put(s);
  return rv;
}

CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len) { (void)h; (void)seed; (void)len; CHECK_INIT(); return CKR_RANDOM_SEED_NOT_SUPPORTED; }

/* ---- not supported ---------------------------------------------------------------------------- */

#pragma GCC diagnostic ignored "-Wunused-parameter"
#define UNSUPPORTED(name, params) CK_RV name params { CHECK_INIT(); return CKR_FUNCTION_NOT_SUPPORTED; }
UNSUPPORTED(C_InitToken, (CK_SLOT_ID a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d))
UNSUPPORTED(C_InitPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c))
UNSUPPORTED(C_SetPIN, (CK_SESSION_HANDLE a, CK_UTF8CHAR_PTR b, CK_ULONG c, CK_UTF8CHAR_PTR d, CK_ULONG e))
UNSUPPORTED(C_GetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_SetOperationState, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE d, CK_OBJECT_HANDLE e))
UNSUPPORTED(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d))
UNSUPPORTED(C_CopyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_OBJECT_HANDLE_PTR e))
UNSUPPORTED(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
UNSUPPORTED(C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d))
UNSUPPORTED(C_DigestInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b))
UNSUPPORTED(C_Digest, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c))
UNSUPPORTED(C_DigestKey, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b))
UNSUPPORTED(C_DigestFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c))
UNSUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
UNSUPPORTED(C_SignRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_VerifyRecoverInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c))
UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e))
UNSUPPORTED(C_WrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_OBJECT_HANDLE d, CK_BYTE_PTR e, CK_ULONG_PTR f))
UNSUPPORTED(C_UnwrapKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_BYTE_PTR d, CK_ULONG e, CK_ATTRIBUTE_PTR f, CK_ULONG g, CK_OBJECT_HANDLE_PTR h))
UNSUPPORTED(C_DeriveKey, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c, CK_ATTRIBUTE_PTR d, CK_ULONG e, CK_OBJECT_HANDLE_PTR f))
UNSUPPORTED(C_GetFunctionStatus, (CK_SESSION_HANDLE a))
UNSUPPORTED(C_CancelFunction, (CK_SESSION_HANDLE a))
UNSUPPORTED(C_WaitForSlotEvent, (CK_FLAGS a, CK_SLOT_ID_PTR b, CK_VOID_PTR c))

static CK_FUNCTION_LIST FUNCTIONS = {
  .version = {2, 40},
  .C_Initialize = C_Initialize, .C_Finalize = C_Finalize, .C_GetInfo = C_GetInfo, .C_GetFunctionList = C_GetFunctionList,
  .C_GetSlotList = C_GetSlotList, .C_GetSlotInfo = C_GetSlotInfo, .C_GetTokenInfo = C_GetTokenInfo,
  .C_GetMechanismList = C_GetMechanismList, .C_GetMechanismInfo = C_GetMechanismInfo,
  .C_InitToken = C_InitToken, .C_InitPIN = C_InitPIN, .C_SetPIN = C_SetPIN,
  .C_OpenSession = C_OpenSession, .C_CloseSession = C_CloseSession, .C_CloseAllSessions = C_CloseAllSessions, .C_GetSessionInfo = C_GetSessionInfo,
  .C_GetOperationState = C_GetOperationState, .C_SetOperationState = C_SetOperationState, .C_Login = C_Login, .C_Logout = C_Logout,
  .C_CreateObject = C_CreateObject, .C_CopyObject = C_CopyObject, .C_DestroyObject = C_DestroyObject, .C_GetObjectSize = C_GetObjectSize,
  .C_GetAttributeValue = C_GetAttributeValue, .C_SetAttributeValue = C_SetAttributeValue,
  .C_FindObjectsInit = C_FindObjectsInit, .C_FindObjects = C_FindObjects, .C_FindObjectsFinal = C_FindObjectsFinal,
  .C_EncryptInit = C_EncryptInit, .C_Encrypt = C_Encrypt, .C_EncryptUpdate = C_EncryptUpdate, .C_EncryptFinal = C_EncryptFinal,
  .C_DecryptInit = C_DecryptInit, .C_Decrypt = C_Decrypt, .C_DecryptUpdate = C_DecryptUpdate, .C_DecryptFinal = C_DecryptFinal,
  .C_DigestInit = C_DigestInit, .C_Digest = C_Digest, .C_DigestUpdate = C_DigestUpdate, .C_DigestKey = C_DigestKey, .C_DigestFinal = C_DigestFinal,
  .C_SignInit = C_SignInit, .C_Sign = C_Sign, .C_SignUpdate = C_SignUpdate, .C_SignFinal = C_SignFinal,
  .C_SignRecoverInit = C_SignRecoverInit, .C_SignRecover = C_SignRecover,
  .C_VerifyInit = C_VerifyInit, .C_Verify = C_Verify, .C_VerifyUpdate = C_VerifyUpdate, .C_VerifyFinal = C_VerifyFinal,
  .C_VerifyRecoverInit = C_VerifyRecoverInit, .C_VerifyRecover = C_VerifyRecover,
  .C_DigestEncryptUpdate = C_DigestEncryptUpdate, .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
  .C_SignEncryptUpdate = C_SignEncryptUpdate, .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
  .C_GenerateKey = C_GenerateKey, .C_GenerateKeyPair = C_GenerateKeyPair, .C_WrapKey = C_WrapKey, .C_UnwrapKey = C_UnwrapKey, .C_DeriveKey = C_DeriveKey,
  .C_SeedRandom = C_SeedRandom, .C_GenerateRandom = C_GenerateRandom,
  .C_GetFunctionStatus = C_GetFunctionStatus, .C_CancelFunction = C_CancelFunction, .C_WaitForSlotEvent = C_WaitForSlotEvent,
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
  if (!ppFunctionList) return CKR_ARGUMENTS_BAD;
  *ppFunctionList = &FUNCTIONS;
  return CKR_OK;
}
