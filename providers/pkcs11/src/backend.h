/*
 * The module's link to sm-kms: its REST API over HTTPS (TLS 1.3), authenticated by a client
 * certificate on sm-kms's mTLS port, or by a bearer token read from a file. One libcurl easy
 * handle per PKCS#11 session keeps its connection alive across calls; handles are never
 * shared between threads.
 */
#ifndef CU_BACKEND_H
#define CU_BACKEND_H
#include <stddef.h>
#include <curl/curl.h>

/* One configured slot: a credential (so a tenant) and, optionally, a tag choosing a set of its keys. */
typedef struct {
  char *label;
  char *url;         /* base URL, e.g. https://127.0.0.1:8443 */
  char *ca;          /* PEM file of CAs the server certificate chains to */
  char *cert;        /* client certificate (chain) PEM */
  char *key;         /* client private key PEM; encrypted = the PIN is its passphrase */
  char *token_file;  /* instead of cert/key: a file holding a bearer token */
  char *tag;         /* only keys carrying this tag; NULL = all keys of the tenant */
  int key_encrypted;
  long timeout_s;
} slot_config;

typedef struct {
  long status;       /* HTTP status; 0 when the call did not complete */
  char *body;
  size_t len;
  CURLcode error;    /* why no answer came, when status is 0 */
} http_answer;

/* Whether the transport failed (no HTTP answer): the device is unreachable or went away mid-call. */
#define HTTP_FAILED(a) ((a)->status == 0)

/* A handle for `slot`; `pin` (may be NULL) unlocks an encrypted client key. */
CURL *backend_handle(const slot_config *slot);
/*
 * Calls `method path` with an optional JSON body. `pin` is the passphrase of an encrypted key.
 * Returns 0 with `out` filled (any HTTP status), or -1 when no answer came (out->status = 0).
 */
int backend_call(CURL *h, const slot_config *slot, const char *pin, const char *method, const char *path, const char *json, http_answer *out);
void http_answer_free(http_answer *a);

/* base64url without padding. `b64u_encode` returns a malloc'd string; `b64u_decode` a malloc'd buffer (NULL if invalid). */
char *b64u_encode(const unsigned char *data, size_t len);
unsigned char *b64u_decode(const char *s, size_t *len);

#endif
