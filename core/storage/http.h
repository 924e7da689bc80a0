/* HTTP for the object-storage backends, over libcurl: one request at a
 * time on a reused handle, bodies from memory or a callback, responses into
 * memory, and retries with exponential backoff and full jitter on
 * connection failures, 429 and 5xx. Each attempt is signed afresh (a
 * signature covers the date), through the request's sign callback.
 *
 * Plain C, no Lua: backends may run it on a writer's worker thread. */
#ifndef KALUA_STORAGE_HTTP_H
#define KALUA_STORAGE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "storage/stats.h"
#include "storage/storage.h"

typedef struct {
  char *data;
  size_t len, cap;
} http_buf;

int http_buf_append(http_buf *b, const void *p, size_t n);
void http_buf_free(http_buf *b);

typedef struct http_request http_request;

struct http_request {
  const char *method; /* GET, PUT, POST, DELETE, HEAD */
  const char *url;
  /* Headers for every attempt; sign() may add its own to *signed_headers. */
  struct curl_slist *headers;
  const void *body;   /* NULL: no body */
  size_t body_len;
  long timeout_ms;    /* whole request; 0: 60 s */
  int max_attempts;   /* 0: 5 */
  /* Called before each attempt with a fresh list to fill (may be left
   * NULL); returns 0 and sets err to give up. */
  int (*sign)(void *ctx, const http_request *req, struct curl_slist **signed_headers, storage_error *err);
  void *sign_ctx;
};

typedef struct {
  long status;
  http_buf body;
  http_buf headers; /* raw "Name: value\r\n" lines of the last attempt */
  int attempts;
} http_response;

/* A client: a curl handle reused across requests (keep-alive). */
typedef struct {
  CURL *curl;
  const char *ca_file;  /* NULL: the system's CAs */
  int insecure;         /* tests against self-signed emulators only */
  unsigned int seed;    /* for jitter */
  storage_stats *stats; /* where its attempts count: the thread's mark at init (stats.h) */
} http_client;

int http_client_init(http_client *c, storage_error *err);
void http_client_free(http_client *c);

/* Performs req. Returns 1 with resp filled (any status: the caller judges
 * it) or 0 with err set when no response came after every attempt.
 * Retries 429, 500, 502, 503, 504 and connection failures. Every attempt
 * counts in c->stats: method, status ("error" when none came), seconds. */
int http_do(http_client *c, const http_request *req, http_response *resp, storage_error *err);
void http_response_free(http_response *resp);

/* The value of response header name (case-insensitive) copied into out;
 * returns 0 when absent. */
int http_header(const http_response *resp, const char *name, char *out, size_t out_size);

/* Percent-encodes s into out (RFC 3986 unreserved kept; '/' kept when
 * keep_slash). Returns the length, or -1 when out is too small. */
int http_uri_encode(const char *s, int keep_slash, char *out, size_t out_size);

/* A one-line error from an HTTP status and the service's body (its
 * <Code>/<Message> or JSON "message"), naming what was asked. */
void http_status_error(storage_error *err, const http_response *resp, const char *what);

#endif
