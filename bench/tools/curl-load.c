/*
 * curl-load: a closed-loop load generator in C (libcurl) for one request, over gRPC (HTTP/2) or
 * HTTPS (HTTP/1.1 keep-alive), so that bench/supacrypt.ts can compare sm-kms's gRPC and HTTPS
 * APIs with the same client: same library, same number of requests in flight, its own process.
 *
 *   curl-load grpc|https URL SECONDS CONCURRENCY CONNECTIONS BODY_HEX CA CERT|- KEY|- [HEADER...]
 *
 * grpc:  each connection is one HTTP/2 connection carrying CONCURRENCY/CONNECTIONS calls at once;
 *        the body is one length-prefixed message (BODY_HEX, the encoded request); a call counts
 *        when the answer is 200 with a message and the trailer grpc-status 0.
 * https: CONCURRENCY HTTP/1.1 keep-alive connections (CONNECTIONS threads share them out), each
 *        with one request at a time; BODY_HEX is the POST body; a call counts when it is 200.
 * CERT and KEY are a client certificate ("-" for none); HEADERs ("name: value") are added.
 * After a 1 s warm-up, prints "ops <n> seconds <s> errors <e> cpu_us_per_op <c> total <t>" (c:
 * this process's user + system CPU per counted call; t: every call that worked, warm-up included).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
  CURL *h;
  int grpc_status;   /* -1 until the grpc-status header or trailer arrives */
  size_t got;        /* response bytes */
} transfer;

static int grpc;
static const char *url, *ca, *cert, *key;
static unsigned char *body;
static size_t body_len;
static struct curl_slist *headers;
static double warm_end, end;
static int per_thread_base, extra;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
  (void)p;
  ((transfer *)userdata)->got += size * n;
  return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata) {
  size_t len = size * n;
  if (len > 12 && !strncasecmp(p, "grpc-status:", 12)) ((transfer *)userdata)->grpc_status = atoi(p + 12);
  return len;
}

static void setup(transfer *t) {
  CURL *h = curl_easy_init();
  t->h = h;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
  curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  if (strcmp(cert, "-")) curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
  if (strcmp(key, "-")) curl_easy_setopt(h, CURLOPT_SSLKEY, key);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body_len);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(h, CURLOPT_PRIVATE, t);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  if (grpc) {
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L); /* wait for the connection, to multiplex on it */
  } else {
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  }
}

static void start(CURLM *m, transfer *t) {
  t->grpc_status = -1;
  t->got = 0;
  curl_multi_add_handle(m, t->h);
}

typedef struct { int index; long ops, errors, total; } worker;

static void *run(void *arg) {
  worker *w = arg;
  int n = per_thread_base + (w->index < extra ? 1 : 0);
  CURLM *m = curl_multi_init();
  if (grpc) {
    curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
  } else {
    curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_NOTHING);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)n);
  }
  transfer *ts = calloc((size_t)n, sizeof *ts);
  for (int i = 0; i < n; i++) {
    setup(&ts[i]);
    start(m, &ts[i]);
  }
  int running = n;
  while (running > 0) {
    int still;
    curl_multi_perform(m, &still);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      transfer *t;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      int ok = msg->data.result == CURLE_OK && status == 200 && (!grpc || (t->grpc_status == 0 && t->got > 5));
      curl_multi_remove_handle(m, t->h);
      double at = now();
      if (ok) w->total++;
      if (at >= warm_end && at < end) {
        if (ok) w->ops++;
        else w->errors++;
      }
      if (at < end) start(m, t);
      else running--;
    }
    if (running > 0) curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  for (int i = 0; i < n; i++) curl_easy_cleanup(ts[i].h);
  free(ts);
  curl_multi_cleanup(m);
  return NULL;
}

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 10 || (strcmp(argv[1], "grpc") && strcmp(argv[1], "https"))) {
    fprintf(stderr, "usage: curl-load grpc|https URL SECONDS CONCURRENCY CONNECTIONS BODY_HEX CA CERT|- KEY|- [HEADER...]\n");
    return 2;
  }
  grpc = !strcmp(argv[1], "grpc");
  url = argv[2];
  double seconds = atof(argv[3]);
  int concurrency = atoi(argv[4]), connections = atoi(argv[5]);
  const char *hex = argv[6];
  ca = argv[7];
  cert = argv[8];
  key = argv[9];
  if (seconds <= 0 || concurrency < 1 || connections < 1 || connections > concurrency || strlen(hex) % 2) return 2;
  size_t msg_len = strlen(hex) / 2, at = grpc ? 5 : 0;
  body_len = at + msg_len;
  body = malloc(body_len + 1);
  for (size_t i = 0; i < msg_len; i++) sscanf(hex + 2 * i, "%2hhx", &body[at + i]);
  body[body_len] = 0;
  if (grpc) {
    body[0] = 0;
    body[1] = (unsigned char)(msg_len >> 24);
    body[2] = (unsigned char)(msg_len >> 16);
    body[3] = (unsigned char)(msg_len >> 8);
    body[4] = (unsigned char)msg_len;
    headers = curl_slist_append(headers, "content-type: application/grpc");
    headers = curl_slist_append(headers, "te: trailers");
  } else {
    headers = curl_slist_append(headers, "content-type: application/json");
  }
  headers = curl_slist_append(headers, "expect:");
  for (int i = 10; i < argc; i++) headers = curl_slist_append(headers, argv[i]);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  per_thread_base = concurrency / connections;
  extra = concurrency % connections;
  double t0 = now();
  warm_end = t0 + 1.0;
  end = warm_end + seconds;
  worker *w = calloc((size_t)connections, sizeof *w);
  pthread_t *th = calloc((size_t)connections, sizeof *th);
  for (int i = 0; i < connections; i++) {
    w[i].index = i;
    pthread_create(&th[i], NULL, run, &w[i]);
  }
  /* The CPU of the measured window only: sampled at its edges. */
  struct timespec ws = {1, 0};
  nanosleep(&ws, NULL);
  double c0 = cpu_seconds();
  long ops = 0, errors = 0, total = 0;
  for (int i = 0; i < connections; i++) {
    pthread_join(th[i], NULL);
    ops += w[i].ops;
    errors += w[i].errors;
    total += w[i].total;
  }
  double c1 = cpu_seconds();
  printf("ops %ld seconds %.3f errors %ld cpu_us_per_op %.1f total %ld\n", ops, seconds, errors, ops ? (c1 - c0) * 1e6 / (double)ops : 0.0, total);
  curl_slist_free_all(headers);
  free(body);
  free(w);
  free(th);
  curl_global_cleanup();
  return errors && !ops ? 1 : 0;
}
