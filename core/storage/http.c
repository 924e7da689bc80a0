/* HTTP for the object-storage backends (see http.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "storage/http.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000

int http_buf_append(http_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *grown;
    while (cap < b->len + n + 1) cap *= 2;
    grown = realloc(b->data, cap);
    if (grown == NULL) return 0;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 1;
}

void http_buf_free(http_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  return http_buf_append(ud, p, size * n) ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  return http_buf_append(ud, p, size * n) ? size * n : 0;
}

int http_client_init(http_client *c, storage_error *err) {
  memset(c, 0, sizeof *c);
  c->curl = curl_easy_init();
  if (c->curl == NULL) {
    storage_fail(err, "IO_ERROR", "libcurl: cannot create a handle");
    return 0;
  }
  c->seed = (unsigned int)time(NULL) ^ (unsigned int)(uintptr_t)c;
  c->stats = storage_stats_current();
  return 1;
}

void http_client_free(http_client *c) {
  if (c->curl) curl_easy_cleanup(c->curl);
  c->curl = NULL;
  storage_stats_release(c->stats);
  c->stats = NULL;
}

void http_response_free(http_response *resp) {
  http_buf_free(&resp->body);
  http_buf_free(&resp->headers);
}

static int retriable_status(long status) {
  return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static int retriable_curl(CURLcode rc) {
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
}

/* Full jitter: a random wait in [0, min(max, base * 2^attempt)). */
static void backoff(http_client *c, int attempt) {
  long cap = BACKOFF_BASE_MS << (attempt < 6 ? attempt : 6), ms;
  struct timespec ts;
  if (cap > BACKOFF_MAX_MS) cap = BACKOFF_MAX_MS;
  ms = (long)(rand_r(&c->seed) % (unsigned long)cap);
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static int has_header(const struct curl_slist *h, const char *name) {
  size_t n = strlen(name);
  for (; h; h = h->next)
    if (strncasecmp(h->data, name, n) == 0 && h->data[n] == ':') return 1;
  return 0;
}

/* One attempt's headers: the request's, the signature's, and the two
 * libcurl would otherwise add on its own (a form Content-Type that a
 * signature did not cover, Expect: 100-continue). */
static struct curl_slist *attempt_headers(const http_request *req, struct curl_slist *signed_headers) {
  struct curl_slist *all = NULL, *h;
  for (h = req->headers; h; h = h->next) all = curl_slist_append(all, h->data);
  for (h = signed_headers; h; h = h->next) all = curl_slist_append(all, h->data);
  if (!has_header(all, "Content-Type")) all = curl_slist_append(all, "Content-Type:");
  all = curl_slist_append(all, "Expect:");
  return all;
}

static void setup(http_client *c, const http_request *req, http_response *resp, struct curl_slist *headers) {
  CURL *h = c->curl;
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, req->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 60000L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp->headers);
  if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
  if (c->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (strcmp(req->method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (strcmp(req->method, "GET") == 0) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
  }
}

static void count_attempt(http_client *c, const char *method, long status, double seconds) {
  char code[24] = "error";
  if (c->stats == NULL) return;
  if (status > 0) snprintf(code, sizeof code, "%ld", status);
  storage_stats_record(c->stats, method, code, seconds);
}

int http_do(http_client *c, const http_request *req, http_response *resp, storage_error *err) {
  int attempts = req->max_attempts > 0 ? req->max_attempts : 5, i;
  CURLcode rc = CURLE_OK;
  double started;
  memset(resp, 0, sizeof *resp);
  for (i = 0; i < attempts; i++) {
    struct curl_slist *signed_headers = NULL, *headers;
    if (i > 0) backoff(c, i);
    http_response_free(resp);
    resp->status = 0;
    resp->attempts = i + 1;
    if (req->sign && !req->sign(req->sign_ctx, req, &signed_headers, err)) {
      curl_slist_free_all(signed_headers);
      return 0;
    }
    headers = attempt_headers(req, signed_headers);
    curl_slist_free_all(signed_headers);
    setup(c, req, resp, headers);
    started = storage_stats_now();
    rc = curl_easy_perform(c->curl);
    curl_slist_free_all(headers);
    if (rc == CURLE_OK) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    count_attempt(c, req->method, rc == CURLE_OK ? resp->status : 0, storage_stats_now() - started);
    if (rc == CURLE_OK) {
      if (!retriable_status(resp->status) || i + 1 == attempts) return 1;
    } else if (!retriable_curl(rc)) {
      break;
    }
  }
  if (rc == CURLE_OK) return 1;
  /* The URL without its query: a SAS token or a presigned signature lives there. */
  storage_fail(err, "IO_ERROR", "%s %.*s: %s (after %d attempt%s)", req->method, (int)strcspn(req->url, "?"), req->url,
               curl_easy_strerror(rc), resp->attempts, resp->attempts == 1 ? "" : "s");
  return 0;
}

int http_header(const http_response *resp, const char *name, char *out, size_t out_size) {
  const char *p = resp->headers.data;
  size_t n = strlen(name);
  while (p && *p) {
    const char *eol = strchr(p, '\n');
    size_t line = eol ? (size_t)(eol - p) : strlen(p);
    if (line > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1, *end = p + line;
      size_t len;
      while (v < end && (*v == ' ' || *v == '\t')) v++;
      while (end > v && (end[-1] == '\r' || end[-1] == ' ')) end--;
      len = (size_t)(end - v);
      if (len >= out_size) len = out_size - 1;
      memcpy(out, v, len);
      out[len] = '\0';
      return 1;
    }
    p = eol ? eol + 1 : NULL;
  }
  return 0;
}

int http_uri_encode(const char *s, int keep_slash, char *out, size_t out_size) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) {
      if (o + 1 >= out_size) return -1;
      out[o++] = (char)ch;
    } else {
      if (o + 3 >= out_size) return -1;
      out[o++] = '%';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    }
  }
  out[o] = '\0';
  return (int)o;
}

/* Copies the text between <tag> and </tag> in body into out. */
static int xml_field(const char *body, const char *tag, char *out, size_t out_size) {
  char open[64], close[64];
  const char *a, *b;
  size_t len;
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  if (body == NULL || (a = strstr(body, open)) == NULL) return 0;
  a += strlen(open);
  if ((b = strstr(a, close)) == NULL) return 0;
  len = (size_t)(b - a);
  if (len >= out_size) len = out_size - 1;
  memcpy(out, a, len);
  out[len] = '\0';
  return 1;
}

/* The "message" string of a JSON error body (GCS), roughly: enough for one line. */
static int json_message(const char *body, char *out, size_t out_size) {
  const char *a = body ? strstr(body, "\"message\"") : NULL, *b;
  size_t len;
  if (a == NULL || (a = strchr(a + 9, '"')) == NULL) return 0;
  a++;
  for (b = a; *b && *b != '"'; b++)
    if (*b == '\\' && b[1]) b++;
  len = (size_t)(b - a);
  if (len >= out_size) len = out_size - 1;
  memcpy(out, a, len);
  out[len] = '\0';
  return 1;
}

void http_status_error(storage_error *err, const http_response *resp, const char *what) {
  char code[96] = "", message[256] = "";
  const char *name = resp->status == 404 ? "NOT_FOUND" : (resp->status == 401 || resp->status == 403)
                                                           ? "PERMISSION_DENIED"
                                                           : "IO_ERROR";
  xml_field(resp->body.data, "Code", code, sizeof code);
  if (!xml_field(resp->body.data, "Message", message, sizeof message)) json_message(resp->body.data, message, sizeof message);
  storage_fail(err, name, "%s: HTTP %ld%s%s%s%s", what, resp->status, code[0] ? " " : "", code,
               message[0] ? ": " : "", message);
}
