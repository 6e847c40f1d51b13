#include "backend.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define MAX_ANSWER (4u << 20)

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
  http_answer *a = userdata;
  size_t n = size * nmemb;
  if (a->len + n > MAX_ANSWER) return 0; /* aborts the transfer */
  char *b = realloc(a->body, a->len + n + 1);
  if (!b) return 0;
  memcpy(b + a->len, ptr, n);
  a->body = b;
  a->len += n;
  b[a->len] = 0;
  return n;
}

CURL *backend_handle(const slot_config *slot) {
  CURL *h = curl_easy_init();
  if (!h) return NULL;
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (slot->ca) curl_easy_setopt(h, CURLOPT_CAINFO, slot->ca);
  if (slot->cert) curl_easy_setopt(h, CURLOPT_SSLCERT, slot->cert);
  if (slot->key) curl_easy_setopt(h, CURLOPT_SSLKEY, slot->key);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, slot->timeout_s > 0 ? slot->timeout_s : 30L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  /* One request at a time per session: HTTP/1.1 keep-alive; h2 measured no faster here. */
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  return h;
}

/* The bearer token of a token-file slot, trimmed; NULL when unreadable. */
static char *read_token(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) return NULL;
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = 0;
  return n ? strdup(buf) : NULL;
}

int backend_call(CURL *h, const slot_config *slot, const char *pin, const char *method, const char *path, const char *json, http_answer *out) {
  memset(out, 0, sizeof *out);
  size_t ulen = strlen(slot->url) + strlen(path) + 1;
  char *url = malloc(ulen);
  if (!url) return -1;
  snprintf(url, ulen, "%s%s", slot->url, path);
  struct curl_slist *hdr = curl_slist_append(NULL, "accept: application/json");
  char *auth = NULL;
  if (slot->token_file) {
    char *token = read_token(slot->token_file);
    if (token) {
      size_t n = strlen(token) + 32;
      auth = malloc(n);
      if (auth) snprintf(auth, n, "authorization: Bearer %s", token);
      memset(token, 0, strlen(token));
      free(token);
      if (auth) hdr = curl_slist_append(hdr, auth);
    }
  }
  if (json) hdr = curl_slist_append(hdr, "content-type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h, CURLOPT_KEYPASSWD, pin);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
  if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, json ? json : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(json ? strlen(json) : 0));
  }
  CURLcode rc = curl_easy_perform(h);
  curl_easy_setopt(h, CURLOPT_KEYPASSWD, NULL);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all(hdr);
  if (auth) {
    memset(auth, 0, strlen(auth));
    free(auth);
  }
  free(url);
  if (rc != CURLE_OK) {
    free(out->body);
    memset(out, 0, sizeof *out);
    out->error = rc;
    return -1;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
  return 0;
}

void http_answer_free(http_answer *a) {
  free(a->body);
  memset(a, 0, sizeof *a);
}

static const char B64U[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *b64u_encode(const unsigned char *d, size_t len) {
  char *out = malloc(len / 3 * 4 + 5), *o = out;
  if (!out) return NULL;
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
    *o++ = B64U[v >> 18]; *o++ = B64U[(v >> 12) & 63]; *o++ = B64U[(v >> 6) & 63]; *o++ = B64U[v & 63];
  }
  if (len - i == 1) {
    unsigned v = (unsigned)d[i] << 16;
    *o++ = B64U[v >> 18]; *o++ = B64U[(v >> 12) & 63];
  } else if (len - i == 2) {
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8;
    *o++ = B64U[v >> 18]; *o++ = B64U[(v >> 12) & 63]; *o++ = B64U[(v >> 6) & 63];
  }
  *o = 0;
  return out;
}

static int b64u_val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

unsigned char *b64u_decode(const char *s, size_t *len) {
  size_t n = strlen(s);
  if (n % 4 == 1) return NULL;
  unsigned char *out = malloc(n * 3 / 4 + 3), *o = out;
  if (!out) return NULL;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64u_val(s[i]);
    if (v < 0) { free(out); return NULL; }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *o++ = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  *len = (size_t)(o - out);
  return out;
}
