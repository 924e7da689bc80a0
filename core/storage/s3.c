/* The S3 backend: objects under s3://bucket/prefix/, over libcurl with
 * AWS Signature V4 (s3_sign.c) and the SDKs' credential chain
 * (s3_creds.c). Works with AWS and with S3-compatible stores (MinIO, Ceph,
 * R2) through `endpoint` and path-style addressing.
 *
 * A writer buffers up to one part (8 MiB): an object that fits is one PUT
 * at commit; a larger one is a multipart upload whose parts go up on a
 * helper thread while the next part fills, so memory stays at two parts.
 * Nothing is visible under the key before CompleteMultipartUpload, and an
 * abort (or any failure) aborts the upload. Readers fetch ranges of 4 MiB.
 *
 * HTTP clients (curl handles, with their keep-alive connections) live in a
 * pool: every request borrows one, so writers on worker threads and the
 * Lua thread never share a handle. */
#define _XOPEN_SOURCE 700 /* strptime */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "storage/http.h"
#include "storage/s3_internal.h"

#define DEFAULT_PART_SIZE (8u << 20)
#define MIN_PART_SIZE (64u << 10) /* S3 wants 5 MiB; smaller only for tests */
#define READ_CHUNK (4 << 20)
#define MAX_PARTS 10000
#define DEFAULT_TIMEOUT_MS 120000L
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define CREDS_REFRESH_MARGIN 300 /* seconds before expiry */

typedef struct pooled {
  http_client http;
  struct pooled *next;
} pooled;

typedef struct {
  char *bucket, *prefix; /* prefix: "" or "a/b/" */
  char *region;
  char *scheme_host;     /* "https://bucket.s3.region.amazonaws.com" or "http://127.0.0.1:9000" */
  char *host;            /* the Host header */
  char *base_path;       /* "" (virtual-hosted) or "/bucket" (path style) */
  char *sse, *kms_key_id;
  size_t part_size;
  int list_page;
  long timeout_ms;
  pthread_mutex_t lock; /* creds and pool */
  s3_creds creds;
  pooled *pool;
} s3_store;

/* One request's signing inputs (sign runs once per attempt). */
typedef struct {
  s3_store *s;
  const char *method, *canonical_uri, *canonical_query;
  char payload_hash[65];
  const s3_header *extra;
  size_t nextra;
} s3_call;

typedef struct {
  char *data;
  size_t len;
  int number;
} part_buf;

struct storage_writer {
  s3_store *s;
  char *key;
  pooled *http;     /* for this writer's own requests */
  pooled *uploader; /* for the part in flight */
  part_buf filling;
  part_buf flying;
  pthread_t thread;
  int thread_running;
  int flying_ok;
  storage_error flying_err;
  char *upload_id;
  char **etags; /* etags[n-1] for part n */
  int parts;
  int failed;
};

struct storage_reader {
  s3_store *s;
  char *key;
  int64_t pos, end; /* end: exclusive, -1 unknown */
  http_buf chunk;
  size_t chunk_off;
  int eof;
};

/* --- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static const char *opt_field(lua_State *L, int idx, const char *name) {
  const char *v;
  lua_getfield(L, idx, name);
  v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  return v && v[0] ? v : NULL;
}

static long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && v[0] ? strtol(v, NULL, 10) : dflt;
}

static pooled *borrow(s3_store *s, storage_error *err) {
  pooled *p;
  pthread_mutex_lock(&s->lock);
  p = s->pool;
  if (p) s->pool = p->next;
  pthread_mutex_unlock(&s->lock);
  if (p) return p;
  p = calloc(1, sizeof *p);
  if (p && !http_client_init(&p->http, err)) {
    free(p);
    return NULL;
  }
  return p;
}

static void give_back(s3_store *s, pooled *p) {
  if (!p) return;
  pthread_mutex_lock(&s->lock);
  p->next = s->pool;
  s->pool = p;
  pthread_mutex_unlock(&s->lock);
}

/* A copy of the current credentials, fetched again when temporary ones
 * are about to expire. */
static int current_creds(s3_store *s, s3_creds *out, storage_error *err) {
  int ok = 1;
  pthread_mutex_lock(&s->lock);
  if (s->creds.expires && (int64_t)time(NULL) > s->creds.expires - CREDS_REFRESH_MARGIN)
    ok = s3_creds_refetch(&s->creds, err);
  if (ok) ok = s3_creds_copy(out, &s->creds);
  pthread_mutex_unlock(&s->lock);
  if (!ok && err->message[0] == '\0') storage_fail(err, "IO_ERROR", "s3: out of memory");
  return ok;
}

static int sign_call(void *ctx, const http_request *req, struct curl_slist **out, storage_error *err) {
  s3_call *c = ctx;
  s3_creds creds;
  int ok;
  (void)req;
  if (!current_creds(c->s, &creds, err)) return 0;
  ok = s3_sign(&creds, c->s->region, c->method, c->s->host, c->canonical_uri, c->canonical_query, c->extra,
               c->nextra, c->payload_hash, time(NULL), out);
  s3_creds_clear(&creds);
  if (!ok) storage_fail(err, "IO_ERROR", "s3: cannot sign a request (out of memory)");
  return ok;
}

/* "/base/prefix+key", percent-encoded with '/' kept; key may be NULL (the
 * bucket itself). */
static char *object_path(const s3_store *s, const char *key) {
  size_t n = strlen(s->prefix) + (key ? strlen(key) : 0);
  char *raw = malloc(n + 1), *enc = malloc(3 * n + strlen(s->base_path) + 3);
  snprintf(raw, n + 1, "%s%s", s->prefix, key ? key : "");
  strcpy(enc, s->base_path);
  strcat(enc, "/");
  if (key) http_uri_encode(raw, 1, enc + strlen(enc), 3 * n + 1);
  free(raw);
  return enc;
}

/* Performs one signed request. query: already sorted and encoded, or "". */
static int s3_do(s3_store *s, http_client *http, const char *method, const char *path, const char *query,
                 const s3_header *extra, size_t nextra, const void *body, size_t body_len, http_response *resp,
                 storage_error *err) {
  s3_call call = {s, method, path, query, "", extra, nextra};
  http_request req = {0};
  size_t n = strlen(s->scheme_host) + strlen(path) + strlen(query) + 2;
  char *url = malloc(n);
  int ok;
  snprintf(url, n, "%s%s%s%s", s->scheme_host, path, query[0] ? "?" : "", query);
  if (body) s3_sha256_hex(body, body_len, call.payload_hash);
  else strcpy(call.payload_hash, EMPTY_SHA256);
  req.method = method;
  req.url = url;
  req.body = body;
  req.body_len = body_len;
  req.timeout_ms = s->timeout_ms;
  req.sign = sign_call;
  req.sign_ctx = &call;
  ok = http_do(http, &req, resp, err);
  free(url);
  return ok;
}

/* The text between <tag> and </tag> from *from, XML entities decoded
 * when decode; advances *from past it. Malloc'd, or NULL. */
static char *xml_element(const char **from, const char *tag, int decode) {
  char open[64], close[64];
  const char *a, *b, *p;
  char *out;
  size_t n = 0;
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  if (!*from || (a = strstr(*from, open)) == NULL) return NULL;
  a += strlen(open);
  if ((b = strstr(a, close)) == NULL) return NULL;
  out = malloc((size_t)(b - a) + 1);
  for (p = a; p < b; p++) {
    if (decode && *p == '&') {
      static const struct { const char *name; char ch; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      size_t i;
      int done = 0;
      for (i = 0; i < sizeof ents / sizeof ents[0] && !done; i++) {
        size_t len = strlen(ents[i].name);
        if ((size_t)(b - p) >= len && strncmp(p, ents[i].name, len) == 0) {
          out[n++] = ents[i].ch;
          p += len - 1;
          done = 1;
        }
      }
      if (!done && p[1] == '#') {
        char *end;
        long cp = p[2] == 'x' ? strtol(p + 3, &end, 16) : strtol(p + 2, &end, 10);
        if (*end == ';' && cp > 0 && cp < 128) {
          out[n++] = (char)cp;
          p = end;
          done = 1;
        }
      }
      if (done) continue;
    }
    out[n++] = *p;
  }
  out[n] = '\0';
  *from = b + strlen(close);
  return out;
}

static char *xml_take(const char **from, const char *tag) { return xml_element(from, tag, 1); }

static void xml_code(const http_response *resp, char *out, size_t size) {
  const char *p = resp->body.data;
  char *code = xml_take(&p, "Code");
  snprintf(out, size, "%s", code ? code : "");
  free(code);
}

/* One line for a failed answer: names the object (or bucket) and the
 * likely cause. what: "cannot write", "cannot read", ... */
static int fail_status(s3_store *s, const http_response *resp, const char *what, const char *key,
                       storage_error *err) {
  char code[96], where[300];
  xml_code(resp, code, sizeof code);
  snprintf(where, sizeof where, "s3://%s/%s%s", s->bucket, s->prefix, key ? key : "");
  if (strcmp(code, "NoSuchBucket") == 0) {
    storage_fail(err, "NOT_FOUND", "s3: bucket '%s' does not exist (%s %s: HTTP 404 NoSuchBucket): check bucket and region",
                 s->bucket, what, where);
  } else if (strcmp(code, "SignatureDoesNotMatch") == 0) {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s %s: HTTP 403 SignatureDoesNotMatch: check secret_key", what, where);
  } else if (strcmp(code, "InvalidAccessKeyId") == 0) {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s %s: HTTP 403 InvalidAccessKeyId: check access_key", what, where);
  } else if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
             strcmp(code, "TokenRefreshRequired") == 0) {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s %s: HTTP %ld %s: the session token is expired or invalid: "
                 "refresh session_token or the credentials", what, where, resp->status, code);
  } else if (strcmp(code, "RequestTimeTooSkewed") == 0) {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s %s: HTTP 403 RequestTimeTooSkewed: this machine's clock is off",
                 what, where);
  } else if (resp->status == 403) {
    storage_fail(err, "PERMISSION_DENIED", "s3: access denied: %s %s (HTTP 403%s%s): check access_key/secret_key "
                 "and the bucket policy", what, where, code[0] ? " " : "", code);
  } else if (strcmp(code, "AuthorizationHeaderMalformed") == 0 || strcmp(code, "PermanentRedirect") == 0 ||
             resp->status == 301) {
    storage_fail(err, "IO_ERROR", "s3: %s %s: HTTP %ld %s: bucket '%s' is not in region '%s': check region", what,
                 where, resp->status, code, s->bucket, s->region);
  } else if (resp->status == 404) {
    storage_fail(err, "NOT_FOUND", "s3: %s %s: no such object%s%s", what, where, code[0] ? " (HTTP 404 " : "",
                 code[0] ? code : "");
    if (code[0]) strncat(err->message, ")", sizeof err->message - strlen(err->message) - 1);
  } else {
    char line[STORAGE_ERR_MAX];
    http_status_error(err, resp, what);
    snprintf(line, sizeof line, "%s", err->message);
    snprintf(err->message, sizeof err->message, "s3: %.200s %.290s", where, line);
  }
  return 0;
}

/* Prefixes a transport error (no answer after every attempt) with the object. */
static int fail_transport(s3_store *s, const char *what, const char *key, storage_error *err) {
  char line[STORAGE_ERR_MAX];
  snprintf(line, sizeof line, "%s", err->message);
  snprintf(err->message, sizeof err->message, "s3: %s s3://%.60s/%.100s%.100s: %.200s", what, s->bucket, s->prefix,
           key ? key : "", line);
  if (!err->name) err->name = "IO_ERROR";
  return 0;
}

/* A request on an object with a pooled client; fills resp (caller frees). */
static int object_request(s3_store *s, const char *method, const char *key, const char *query,
                          const s3_header *extra, size_t nextra, const void *body, size_t len, http_response *resp,
                          const char *what, storage_error *err) {
  pooled *p = borrow(s, err);
  char *path;
  int ok;
  if (!p) return 0;
  path = object_path(s, key);
  ok = s3_do(s, &p->http, method, path, query, extra, nextra, body, len, resp, err);
  free(path);
  give_back(s, p);
  if (!ok) return fail_transport(s, what, key, err);
  return 1;
}

static int64_t parse_http_date(const char *v) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!strptime(v, "%a, %d %b %Y %H:%M:%S", &tm)) return 0;
  return (int64_t)timegm(&tm);
}

static int64_t parse_iso_date(const char *v) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!v || !strptime(v, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  return (int64_t)timegm(&tm);
}

/* --- open / destroy ----------------------------------------------------- */

static void s3_destroy(void *self) {
  s3_store *s = self;
  pooled *p, *next;
  for (p = s->pool; p; p = next) {
    next = p->next;
    http_client_free(&p->http);
    free(p);
  }
  s3_creds_clear(&s->creds);
  pthread_mutex_destroy(&s->lock);
  free(s->bucket);
  free(s->prefix);
  free(s->region);
  free(s->scheme_host);
  free(s->host);
  free(s->base_path);
  free(s->sse);
  free(s->kms_key_id);
  free(s);
}

static int set_endpoint(s3_store *s, const char *endpoint, int path_style, storage_error *err) {
  char buf[1024];
  const char *scheme = "https://", *host;
  size_t n;
  if (endpoint) {
    const char *sep = strstr(endpoint, "://");
    if (sep) {
      snprintf(buf, sizeof buf, "%.*s", (int)(sep - endpoint + 3), endpoint);
      scheme = buf;
      host = sep + 3;
    } else {
      host = endpoint;
    }
    n = strlen(host);
    while (n && host[n - 1] == '/') n--;
    if (n == 0 || memchr(host, '/', n)) {
      storage_fail(err, "IO_ERROR", "s3: endpoint '%s' must be scheme://host[:port]", endpoint);
      return 0;
    }
    s->host = malloc(n + strlen(s->bucket) + 2);
    if (path_style) sprintf(s->host, "%.*s", (int)n, host);
    else sprintf(s->host, "%s.%.*s", s->bucket, (int)n, host);
    /* curl sends no default port: nor may the signed Host. */
    n = strlen(s->host);
    if ((strcmp(scheme, "http://") == 0 && n > 3 && strcmp(s->host + n - 3, ":80") == 0) ||
        (strcmp(scheme, "https://") == 0 && n > 4 && strcmp(s->host + n - 4, ":443") == 0))
      *strrchr(s->host, ':') = '\0';
  } else {
    s->host = malloc(strlen(s->bucket) + strlen(s->region) + 32);
    if (path_style) sprintf(s->host, "s3.%s.amazonaws.com", s->region);
    else sprintf(s->host, "%s.s3.%s.amazonaws.com", s->bucket, s->region);
  }
  n = strlen(scheme) + strlen(s->host) + 1;
  s->scheme_host = malloc(n);
  snprintf(s->scheme_host, n, "%s%s", scheme, s->host);
  if (path_style) {
    s->base_path = malloc(strlen(s->bucket) * 3 + 2);
    s->base_path[0] = '/';
    http_uri_encode(s->bucket, 0, s->base_path + 1, strlen(s->bucket) * 3 + 1);
  } else {
    s->base_path = strdup("");
  }
  return 1;
}

void *storage_s3_open(lua_State *L, int idx, storage_error *err) {
  s3_store *s;
  const char *bucket, *prefix, *endpoint, *region, *sse, *kms;
  int path_style;
  idx = lua_absindex(L, idx);
  bucket = opt_field(L, idx, "bucket");
  if (!bucket) {
    storage_fail(err, "IO_ERROR", "s3 storage needs a bucket (storage.bucket, or a URL s3://bucket/prefix)");
    return NULL;
  }
  endpoint = opt_field(L, idx, "endpoint");
  if (!endpoint) endpoint = getenv("AWS_ENDPOINT_URL_S3") && getenv("AWS_ENDPOINT_URL_S3")[0] ? getenv("AWS_ENDPOINT_URL_S3")
                                                                                           : getenv("AWS_ENDPOINT_URL");
  if (endpoint && !endpoint[0]) endpoint = NULL;
  region = opt_field(L, idx, "region");
  if (!region) region = getenv("AWS_REGION") && getenv("AWS_REGION")[0] ? getenv("AWS_REGION") : getenv("AWS_DEFAULT_REGION");
  if (!region || !region[0]) region = "us-east-1";
  sse = opt_field(L, idx, "server_side_encryption");
  kms = opt_field(L, idx, "kms_key_id");
  if (sse && strcmp(sse, "AES256") != 0 && strcmp(sse, "aws:kms") != 0) {
    storage_fail(err, "IO_ERROR", "s3: server_side_encryption must be AES256 or aws:kms, not '%s'", sse);
    return NULL;
  }
  if (kms && sse && strcmp(sse, "aws:kms") != 0) {
    storage_fail(err, "IO_ERROR", "s3: kms_key_id needs server_side_encryption: aws:kms");
    return NULL;
  }
  lua_getfield(L, idx, "force_path_style");
  path_style = lua_isnil(L, -1) ? endpoint != NULL : lua_toboolean(L, -1);
  lua_pop(L, 1);

  s = calloc(1, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  s->bucket = strdup(bucket);
  s->region = strdup(region);
  s->sse = xstrdup(kms && !sse ? "aws:kms" : sse);
  s->kms_key_id = xstrdup(kms);
  prefix = opt_field(L, idx, "prefix");
  while (prefix && *prefix == '/') prefix++;
  {
    size_t n = prefix ? strlen(prefix) : 0;
    while (n && prefix[n - 1] == '/') n--;
    s->prefix = malloc(n + 2);
    snprintf(s->prefix, n + 2, "%.*s%s", (int)n, n ? prefix : "", n ? "/" : "");
  }
  s->part_size = (size_t)env_long("KALUA_S3_PART_SIZE", DEFAULT_PART_SIZE);
  if (s->part_size < MIN_PART_SIZE) s->part_size = MIN_PART_SIZE;
  s->list_page = (int)env_long("KALUA_S3_LIST_PAGE", 1000);
  if (s->list_page < 1 || s->list_page > 1000) s->list_page = 1000;
  s->timeout_ms = env_long("KALUA_S3_TIMEOUT_MS", DEFAULT_TIMEOUT_MS);
  if (!set_endpoint(s, endpoint, path_style, err) || !s3_creds_resolve(L, idx, &s->creds, err)) {
    s3_destroy(s);
    return NULL;
  }
  return s;
}

/* --- stat, list, remove -------------------------------------------------- */

static int s3_stat(void *self, const char *key, storage_entry *out, storage_error *err) {
  s3_store *s = self;
  http_response resp;
  char value[128];
  if (!storage_check_key(key, err)) return 0;
  if (!object_request(s, "HEAD", key, "", NULL, 0, NULL, 0, &resp, "cannot stat", err)) return 0;
  if (resp.status != 200) {
    fail_status(s, &resp, "cannot stat", key, err);
    http_response_free(&resp);
    return 0;
  }
  out->key = NULL;
  out->size = http_header(&resp, "Content-Length", value, sizeof value) ? strtoll(value, NULL, 10) : 0;
  out->mtime = http_header(&resp, "Last-Modified", value, sizeof value) ? parse_http_date(value) : 0;
  http_response_free(&resp);
  return 1;
}

/* Appends "&name=value" (value encoded) to a query being built. */
static void query_add(http_buf *q, const char *name, const char *value) {
  size_t n = strlen(value) * 3 + 1;
  char *enc = malloc(n);
  http_uri_encode(value, 0, enc, n);
  if (q->len) http_buf_append(q, "&", 1);
  http_buf_append(q, name, strlen(name));
  http_buf_append(q, "=", 1);
  http_buf_append(q, enc, strlen(enc));
  free(enc);
}

static int s3_list(void *self, const char *prefix, void (*fn)(void *, const storage_entry *), void *ctx,
                   storage_error *err) {
  s3_store *s = self;
  char *token = NULL, *full, page[16];
  size_t plen = strlen(s->prefix);
  int ok = 1, more = 1;
  full = malloc(plen + strlen(prefix) + 1);
  sprintf(full, "%s%s", s->prefix, prefix);
  snprintf(page, sizeof page, "%d", s->list_page);
  while (ok && more) {
    http_buf q = {0};
    http_response resp;
    const char *p;
    char *truncated;
    /* Sorted by name: continuation-token, list-type, max-keys, prefix. */
    if (token) query_add(&q, "continuation-token", token);
    query_add(&q, "list-type", "2");
    query_add(&q, "max-keys", page);
    query_add(&q, "prefix", full);
    ok = object_request(s, "GET", NULL, q.data, NULL, 0, NULL, 0, &resp, "cannot list", err);
    http_buf_free(&q);
    if (!ok) break;
    if (resp.status != 200) {
      ok = fail_status(s, &resp, "cannot list", prefix, err);
      http_response_free(&resp);
      break;
    }
    p = resp.body.data;
    for (;;) {
      char *contents = xml_element(&p, "Contents", 0), *key, *size, *mtime;
      const char *c = contents;
      if (!contents) break;
      key = xml_take(&c, "Key");
      c = contents;
      size = xml_take(&c, "Size");
      c = contents;
      mtime = xml_take(&c, "LastModified");
      if (key && strncmp(key, s->prefix, plen) == 0 && key[plen]) {
        storage_entry e = {key + plen, size ? strtoll(size, NULL, 10) : 0, parse_iso_date(mtime)};
        fn(ctx, &e);
      }
      free(key);
      free(size);
      free(mtime);
      free(contents);
    }
    p = resp.body.data;
    truncated = xml_take(&p, "IsTruncated");
    more = truncated && strcmp(truncated, "true") == 0;
    free(truncated);
    free(token);
    p = resp.body.data;
    token = more ? xml_take(&p, "NextContinuationToken") : NULL;
    if (more && !token) {
      storage_fail(err, "IO_ERROR", "s3: listing s3://%s/%s: a truncated page without NextContinuationToken",
                   s->bucket, full);
      ok = 0;
    }
    http_response_free(&resp);
  }
  free(token);
  free(full);
  return ok;
}

static int s3_remove(void *self, const char *key, storage_error *err) {
  s3_store *s = self;
  storage_entry e;
  http_response resp;
  /* S3 deletes a missing key without a word; say NOT_FOUND as files do. */
  if (!s3_stat(self, key, &e, err)) return 0;
  if (!object_request(s, "DELETE", key, "", NULL, 0, NULL, 0, &resp, "cannot delete", err)) return 0;
  if (resp.status != 204 && resp.status != 200) {
    fail_status(s, &resp, "cannot delete", key, err);
    http_response_free(&resp);
    return 0;
  }
  http_response_free(&resp);
  return 1;
}

/* --- writers ------------------------------------------------------------- */

static size_t sse_headers(const s3_store *s, s3_header h[2]) {
  size_t n = 0;
  if (s->sse) h[n++] = (s3_header){"x-amz-server-side-encryption", s->sse};
  if (s->kms_key_id) h[n++] = (s3_header){"x-amz-server-side-encryption-aws-kms-key-id", s->kms_key_id};
  return n;
}

static storage_writer *s3_open_writer(void *self, const char *key, storage_error *err) {
  s3_store *s = self;
  storage_writer *w;
  if (!storage_check_key(key, err)) return NULL;
  w = calloc(1, sizeof *w);
  w->s = s;
  w->key = strdup(key);
  w->http = borrow(s, err);
  w->filling.data = malloc(s->part_size);
  if (!w->http || !w->filling.data) {
    if (!err->message[0]) storage_fail(err, "IO_ERROR", "s3: out of memory for a %zu-byte part", s->part_size);
    give_back(s, w->http);
    free(w->filling.data);
    free(w->key);
    free(w);
    return NULL;
  }
  return w;
}

static int create_upload(storage_writer *w, storage_error *err) {
  s3_header h[2];
  size_t nh = sse_headers(w->s, h);
  http_response resp;
  char *path = object_path(w->s, w->key);
  const char *p;
  int ok = s3_do(w->s, &w->http->http, "POST", path, "uploads=", h, nh, NULL, 0, &resp, err);
  free(path);
  if (!ok) return fail_transport(w->s, "cannot start a multipart upload of", w->key, err);
  if (resp.status != 200) {
    fail_status(w->s, &resp, "cannot start a multipart upload of", w->key, err);
    http_response_free(&resp);
    return 0;
  }
  p = resp.body.data;
  w->upload_id = xml_take(&p, "UploadId");
  http_response_free(&resp);
  if (!w->upload_id || !w->upload_id[0]) {
    storage_fail(err, "IO_ERROR", "s3: no UploadId in the answer to CreateMultipartUpload for s3://%s/%s%s",
                 w->s->bucket, w->s->prefix, w->key);
    return 0;
  }
  return 1;
}

/* Uploads part `part` with client http; stores its ETag. */
static int upload_part(storage_writer *w, http_client *http, const part_buf *part, storage_error *err) {
  http_buf q = {0};
  http_response resp;
  char number[16], etag[256], *path = object_path(w->s, w->key);
  int ok;
  snprintf(number, sizeof number, "%d", part->number);
  query_add(&q, "partNumber", number);
  query_add(&q, "uploadId", w->upload_id);
  ok = s3_do(w->s, http, "PUT", path, q.data, NULL, 0, part->data, part->len, &resp, err);
  free(path);
  http_buf_free(&q);
  if (!ok) return fail_transport(w->s, "cannot upload a part of", w->key, err);
  if (resp.status != 200) {
    fail_status(w->s, &resp, "cannot upload a part of", w->key, err);
    http_response_free(&resp);
    return 0;
  }
  if (!http_header(&resp, "ETag", etag, sizeof etag)) {
    storage_fail(err, "IO_ERROR", "s3: no ETag for part %d of s3://%s/%s%s", part->number, w->s->bucket,
                 w->s->prefix, w->key);
    http_response_free(&resp);
    return 0;
  }
  http_response_free(&resp);
  w->etags[part->number - 1] = strdup(etag); /* each part number has one slot: no lock needed */
  return 1;
}

static void *upload_thread(void *arg) {
  storage_writer *w = arg;
  w->flying_ok = upload_part(w, &w->uploader->http, &w->flying, &w->flying_err);
  return NULL;
}

/* Waits for the part in flight; returns its outcome. */
static int join_part(storage_writer *w, storage_error *err) {
  if (!w->thread_running) return 1;
  pthread_join(w->thread, NULL);
  w->thread_running = 0;
  if (!w->flying_ok) {
    *err = w->flying_err;
    w->failed = 1;
    return 0;
  }
  return 1;
}

/* Sends the full buffer as the next part, in the background. */
static int send_part(storage_writer *w, storage_error *err) {
  part_buf spare;
  if (!w->upload_id && !create_upload(w, err)) return 0;
  if (!join_part(w, err)) return 0;
  if (w->parts == MAX_PARTS) {
    storage_fail(err, "IO_ERROR", "s3: s3://%s/%s%s needs more than %d parts: raise KALUA_S3_PART_SIZE",
                 w->s->bucket, w->s->prefix, w->key, MAX_PARTS);
    return 0;
  }
  if (!w->etags) w->etags = calloc(MAX_PARTS, sizeof *w->etags);
  if (!w->uploader && (w->uploader = borrow(w->s, err)) == NULL) return 0;
  if (!w->flying.data && (w->flying.data = malloc(w->s->part_size)) == NULL) {
    storage_fail(err, "IO_ERROR", "s3: out of memory for a part");
    return 0;
  }
  w->filling.number = ++w->parts;
  spare = w->flying;
  w->flying = w->filling;
  w->filling = spare;
  w->filling.len = 0;
  w->flying_ok = 0;
  if (pthread_create(&w->thread, NULL, upload_thread, w) == 0) {
    w->thread_running = 1;
    return 1;
  }
  /* No thread: upload here. */
  return upload_part(w, &w->uploader->http, &w->flying, err);
}

static int s3_write(storage_writer *w, const void *data, size_t len, storage_error *err) {
  const char *p = data;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "s3: an earlier part of s3://%s/%s%s failed", w->s->bucket, w->s->prefix, w->key);
    return 0;
  }
  while (len > 0) {
    size_t room = w->s->part_size - w->filling.len, n = len < room ? len : room;
    if (room == 0) {
      /* Full, and more is coming: this part goes now. */
      if (!send_part(w, err)) {
        w->failed = 1;
        return 0;
      }
      continue;
    }
    memcpy(w->filling.data + w->filling.len, p, n);
    w->filling.len += n;
    p += n;
    len -= n;
  }
  return 1;
}

static void free_writer(storage_writer *w) {
  int i;
  give_back(w->s, w->http);
  give_back(w->s, w->uploader);
  if (w->etags)
    for (i = 0; i < w->parts; i++) free(w->etags[i]);
  free(w->etags);
  free(w->filling.data);
  free(w->flying.data);
  free(w->upload_id);
  free(w->key);
  free(w);
}

static void abort_upload(storage_writer *w) {
  storage_error ignored = {"", NULL};
  http_buf q = {0};
  http_response resp;
  char *path;
  join_part(w, &ignored);
  if (!w->upload_id) return;
  path = object_path(w->s, w->key);
  query_add(&q, "uploadId", w->upload_id);
  if (s3_do(w->s, &w->http->http, "DELETE", path, q.data, NULL, 0, NULL, 0, &resp, &ignored))
    http_response_free(&resp);
  http_buf_free(&q);
  free(path);
}

static void s3_abort(storage_writer *w) {
  abort_upload(w);
  free_writer(w);
}

static int put_whole(storage_writer *w, storage_error *err) {
  s3_header h[2];
  size_t nh = sse_headers(w->s, h);
  http_response resp;
  char *path = object_path(w->s, w->key);
  int ok = s3_do(w->s, &w->http->http, "PUT", path, "", h, nh, w->filling.data, w->filling.len, &resp, err);
  free(path);
  if (!ok) return fail_transport(w->s, "cannot write", w->key, err);
  ok = resp.status == 200 || fail_status(w->s, &resp, "cannot write", w->key, err);
  http_response_free(&resp);
  return ok;
}

static int complete_upload(storage_writer *w, storage_error *err) {
  http_buf body = {0}, q = {0};
  http_response resp;
  char line[400], *path;
  int i, ok;
  http_buf_append(&body, "<CompleteMultipartUpload>", 25);
  for (i = 0; i < w->parts; i++) {
    snprintf(line, sizeof line, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1, w->etags[i]);
    http_buf_append(&body, line, strlen(line));
  }
  http_buf_append(&body, "</CompleteMultipartUpload>", 26);
  query_add(&q, "uploadId", w->upload_id);
  path = object_path(w->s, w->key);
  ok = s3_do(w->s, &w->http->http, "POST", path, q.data, NULL, 0, body.data, body.len, &resp, err);
  free(path);
  http_buf_free(&q);
  http_buf_free(&body);
  if (!ok) return fail_transport(w->s, "cannot complete the upload of", w->key, err);
  /* S3 may answer 200 with an <Error> body. */
  if (resp.status != 200 || (resp.body.data && strstr(resp.body.data, "<Error>")))
    ok = fail_status(w->s, &resp, "cannot complete the upload of", w->key, err);
  http_response_free(&resp);
  return ok;
}

static int s3_commit(storage_writer *w, storage_error *err) {
  int ok;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "s3: an earlier part of s3://%s/%s%s failed", w->s->bucket, w->s->prefix, w->key);
    ok = 0;
  } else if (!w->upload_id) {
    ok = put_whole(w, err);
  } else {
    ok = (w->filling.len == 0 || send_part(w, err)) && join_part(w, err) && complete_upload(w, err);
  }
  if (!ok) abort_upload(w);
  free_writer(w);
  return ok;
}

/* --- readers ------------------------------------------------------------- */

/* Fetches the next chunk at r->pos into r->chunk. */
static int fetch_chunk(storage_reader *r, storage_error *err) {
  s3_store *s = r->s;
  char range[96], value[128];
  s3_header h[1];
  http_response resp;
  int64_t last = r->pos + READ_CHUNK - 1;
  if (r->end >= 0 && last > r->end - 1) last = r->end - 1;
  snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)r->pos, (long long)last);
  h[0] = (s3_header){"range", range};
  if (!object_request(s, "GET", r->key, "", h, 1, NULL, 0, &resp, "cannot read", err)) return 0;
  if (resp.status == 416) { /* past the end */
    r->eof = 1;
    http_response_free(&resp);
    return 1;
  }
  if (resp.status != 206 && resp.status != 200) {
    fail_status(s, &resp, "cannot read", r->key, err);
    http_response_free(&resp);
    return 0;
  }
  if (resp.status == 206 && http_header(&resp, "Content-Range", value, sizeof value)) {
    const char *slash = strchr(value, '/');
    if (slash && slash[1] != '*') {
      int64_t total = strtoll(slash + 1, NULL, 10);
      if (r->end < 0 || r->end > total) r->end = total;
    }
  } else if (resp.status == 200) { /* the whole object: keep what the range asked */
    int64_t total = (int64_t)resp.body.len;
    size_t from = r->pos < total ? (size_t)r->pos : (size_t)total;
    memmove(resp.body.data, resp.body.data + from, resp.body.len - from);
    resp.body.len -= from;
    if (r->end < 0 || r->end > total) r->end = total;
    if ((int64_t)resp.body.len > last - r->pos + 1) resp.body.len = (size_t)(last - r->pos + 1);
  }
  http_buf_free(&r->chunk);
  r->chunk = resp.body;
  resp.body.data = NULL;
  resp.body.len = resp.body.cap = 0;
  r->chunk_off = 0;
  r->pos += (int64_t)r->chunk.len;
  if (r->chunk.len == 0 || (r->end >= 0 && r->pos >= r->end)) r->eof = 1;
  http_response_free(&resp);
  return 1;
}

static storage_reader *s3_open_reader(void *self, const char *key, int64_t offset, int64_t length,
                                      storage_error *err) {
  s3_store *s = self;
  storage_reader *r;
  if (!storage_check_key(key, err)) return NULL;
  r = calloc(1, sizeof *r);
  r->s = s;
  r->key = strdup(key);
  r->pos = offset;
  r->end = length >= 0 ? offset + length : -1;
  if (length == 0) {
    storage_entry e;
    r->eof = 1;
    if (!s3_stat(s, key, &e, err)) goto fail;
  } else if (!fetch_chunk(r, err)) {
    goto fail;
  }
  return r;
fail:
  http_buf_free(&r->chunk);
  free(r->key);
  free(r);
  return NULL;
}

static int64_t s3_read(storage_reader *r, void *buf, size_t len, storage_error *err) {
  size_t avail;
  while ((avail = r->chunk.len - r->chunk_off) == 0) {
    if (r->eof) return 0;
    if (!fetch_chunk(r, err)) return -1;
  }
  if (len > avail) len = avail;
  memcpy(buf, r->chunk.data + r->chunk_off, len);
  r->chunk_off += len;
  return (int64_t)len;
}

static void s3_close_reader(storage_reader *r) {
  http_buf_free(&r->chunk);
  free(r->key);
  free(r);
}

/* --- presigned URLs ------------------------------------------------------ */

/* A presigned URL for method (GET, PUT, ...) on key, valid for expires
 * seconds (at most 7 days): anyone holding it may do that one thing.
 * Returns a malloc'd URL, or NULL with err set. */
char *s3_presign(void *self, const char *method, const char *key, long expires, storage_error *err) {
  s3_store *s = self;
  s3_creds creds;
  char *path, *query, *url = NULL;
  size_t n;
  if (!storage_check_key(key, err)) return NULL;
  if (expires < 1 || expires > 604800) {
    storage_fail(err, "IO_ERROR", "s3: a presigned URL lives from 1 second to 7 days, not %ld seconds", expires);
    return NULL;
  }
  if (!current_creds(s, &creds, err)) return NULL;
  path = object_path(s, key);
  query = s3_presign_query(&creds, s->region, method, s->host, path, expires, time(NULL));
  s3_creds_clear(&creds);
  if (query) {
    n = strlen(s->scheme_host) + strlen(path) + strlen(query) + 2;
    url = malloc(n);
    snprintf(url, n, "%s%s?%s", s->scheme_host, path, query);
  } else {
    storage_fail(err, "IO_ERROR", "s3: cannot presign s3://%s/%s%s", s->bucket, s->prefix, key);
  }
  free(query);
  free(path);
  return url;
}

const storage_backend storage_s3_backend = {
  "s3", s3_destroy, s3_stat, s3_list, s3_remove,
  s3_open_writer, s3_write, s3_commit, s3_abort,
  s3_open_reader, s3_read, s3_close_reader,
};
