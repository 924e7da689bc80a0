/* The GCS backend: the JSON API over the shared libcurl client, with a
 * service-account key (an RS256 JWT exchanged at token_uri for a bearer
 * token, cached until shortly before it expires).
 *
 *   storage: {backend: gcs, bucket: b, prefix: p, credentials_file: key.json,
 *             endpoint: http://127.0.0.1:4443}      -- or gs://b/p with
 *                                                    -- GOOGLE_APPLICATION_CREDENTIALS
 *                                                    -- (and STORAGE_EMULATOR_HOST)
 *
 * Objects are named "<prefix>/<key>". A writer buffers one chunk (8 MiB, or
 * chunk_size / KALUA_GCS_CHUNK_SIZE, a multiple of 256 KiB): an object that
 * fits is one uploadType=media request at commit; a larger one is a
 * resumable upload whose session takes a chunk each time the buffer fills
 * and is finalized at commit, so nothing is visible under the key before
 * commit and memory stays at one chunk. A reader fetches ranged windows of
 * one chunk. Writers run on worker threads: each has its own curl handle;
 * the token cache is shared under a mutex. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "storage/gcs_json.h"
#include "storage/http.h"
#include "storage/storage.h"

#define GCS_ENDPOINT "https://storage.googleapis.com"
#define GCS_TOKEN_URI "https://oauth2.googleapis.com/token"
#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define CHUNK_QUANTUM (256 * 1024)
#define DEFAULT_CHUNK (8 * 1024 * 1024)
#define DEFAULT_PAGE 1000
#define TOKEN_MAX 4096
#define KEY_FILE_MAX (64 * 1024)

typedef struct {
  char *bucket, *prefix; /* prefix: "" or "a/b" */
  char *endpoint, *token_uri, *client_email, *key_source;
  EVP_PKEY *pkey;
  size_t chunk;
  int page_size;
  http_client http; /* the Lua thread's requests: stat, list, delete, readers */
  pthread_mutex_t lock; /* guards what follows */
  http_client token_http;
  char token[TOKEN_MAX];
  struct timespec refresh_at;
  unsigned long tokens_fetched;
} gcs_store;

struct storage_writer {
  gcs_store *s;
  http_client http;
  char *name, *where;
  char *session; /* the resumable session URI, once started */
  unsigned char *buf;
  size_t len, cap;
  int64_t sent; /* bytes the session holds */
  int failed;
};

struct storage_reader {
  gcs_store *s;
  char *url, *where;
  int64_t pos, end; /* end: -1 until known */
  unsigned char *buf;
  size_t len, off;
  int eof;
};

/* --- small helpers -------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static char *opt_field(lua_State *L, int idx, const char *field) {
  char *out = NULL;
  if (lua_getfield(L, idx, field) == LUA_TSTRING && lua_tostring(L, -1)[0]) out = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  return out;
}

static long long opt_number(lua_State *L, int idx, const char *field, const char *env, long long def) {
  long long v = def;
  const char *e = getenv(env);
  if (e && *e) v = strtoll(e, NULL, 10);
  if (lua_getfield(L, idx, field) != LUA_TNIL && lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static char *encode(const char *s) {
  size_t n = strlen(s) * 3 + 1;
  char *out = malloc(n);
  if (out) http_uri_encode(s, 0, out, n);
  return out;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...) {
  va_list ap;
  int n;
  char *out;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  out = malloc((size_t)n + 1);
  if (!out) return NULL;
  va_start(ap, fmt);
  vsnprintf(out, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return out;
}

/* "<prefix>/<key>" (or key when there is no prefix). */
static char *object_name(const gcs_store *s, const char *key) {
  return s->prefix[0] ? format("%s/%s", s->prefix, key) : strdup(key);
}

static char *object_url(const gcs_store *s, const char *name, const char *query) {
  char *b = encode(s->bucket), *o = encode(name), *url;
  url = format("%s/storage/v1/b/%s/o/%s%s", s->endpoint, b, o, query ? query : "");
  free(b);
  free(o);
  return url;
}

static int64_t parse_time(const char *rfc3339) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!rfc3339 || sscanf(rfc3339, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                         &tm.tm_min, &tm.tm_sec) != 6)
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm);
}

static int before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* --- the access token ----------------------------------------------------- */

static char *base64url(const unsigned char *data, size_t len) {
  char *out = malloc(4 * ((len + 2) / 3) + 1), *p;
  int n;
  if (!out) return NULL;
  n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  while (n > 0 && out[n - 1] == '=') n--;
  out[n] = '\0';
  for (p = out; *p; p++) {
    if (*p == '+') *p = '-';
    else if (*p == '/') *p = '_';
  }
  return out;
}

/* header.claims.signature, RS256 over the service account's key. */
static char *make_jwt(gcs_store *s, storage_error *err) {
  static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
  long long now = (long long)time(NULL);
  char *claims = format("{\"iss\":\"%s\",\"scope\":\"" GCS_SCOPE "\",\"aud\":\"%s\",\"iat\":%lld,\"exp\":%lld}",
                        s->client_email, s->token_uri, now, now + 3600);
  char *h64 = base64url((const unsigned char *)header, sizeof header - 1);
  char *c64 = claims ? base64url((const unsigned char *)claims, strlen(claims)) : NULL;
  char *signing = h64 && c64 ? format("%s.%s", h64, c64) : NULL, *jwt = NULL;
  unsigned char sig[1024];
  size_t siglen = sizeof sig;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (signing && md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->pkey) == 1 &&
      EVP_DigestSign(md, sig, &siglen, (const unsigned char *)signing, strlen(signing)) == 1) {
    char *s64 = base64url(sig, siglen);
    if (s64) jwt = format("%s.%s", signing, s64);
    free(s64);
  }
  if (!jwt) storage_fail(err, "IO_ERROR", "GCS: cannot sign the token request for %s (OpenSSL)", s->client_email);
  EVP_MD_CTX_free(md);
  free(claims);
  free(h64);
  free(c64);
  free(signing);
  return jwt;
}

/* Exchanges a fresh JWT for an access token; s->lock is held. */
static int fetch_token(gcs_store *s, const char *where, storage_error *err) {
  char *jwt = make_jwt(s, err), *body;
  http_request req;
  http_response resp;
  struct curl_slist *headers = NULL;
  json_value *doc;
  const char *token;
  long long expires_in;
  int ok = 0;
  if (!jwt) return 0;
  body = format("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s", jwt);
  free(jwt);
  headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.url = s->token_uri;
  req.headers = headers;
  req.body = body;
  req.body_len = strlen(body);
  req.timeout_ms = 30000;
  if (!http_do(&s->token_http, &req, &resp, err)) {
    char why[STORAGE_ERR_MAX];
    http_response_free(&resp);
    snprintf(why, sizeof why, "%s", err->message);
    storage_fail(err, "IO_ERROR", "GCS %s: no access token: %s", where, why);
    goto done;
  }
  doc = json_parse(resp.body.data, resp.body.len);
  token = json_get_string(doc, "access_token");
  if (resp.status == 200 && token && strlen(token) < TOKEN_MAX && !strpbrk(token, "\r\n")) {
    struct timespec now;
    long long margin;
    expires_in = json_get_int(doc, "expires_in", 3600);
    margin = expires_in >= 600 ? 60 : expires_in / 10;
    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(s->token, sizeof s->token, "%s", token);
    s->refresh_at = now;
    s->refresh_at.tv_sec += (time_t)(expires_in - margin);
    s->tokens_fetched++;
    ok = 1;
  } else {
    const char *code = json_get_string(doc, "error"), *why = json_get_string(doc, "error_description");
    int denied = resp.status == 400 || resp.status == 401 || resp.status == 403;
    storage_fail(err, denied ? "PERMISSION_DENIED" : "IO_ERROR",
                 "GCS %s: %s refused an access token for %s: HTTP %ld%s%s%s%s (%s)", where, s->token_uri,
                 s->client_email, resp.status, code ? " " : "", code ? code : "", why ? ": " : "", why ? why : "",
                 denied ? "check the service account key: is it this account's current key?"
                        : "the token service failed");
  }
  json_free(doc);
  http_response_free(&resp);
done:
  OPENSSL_cleanse(body, strlen(body));
  free(body);
  curl_slist_free_all(headers);
  return ok;
}

/* Copies a valid access token into out, fetching one when the cache is
 * empty or near its expiry. */
static int get_token(gcs_store *s, char *out, const char *where, storage_error *err) {
  struct timespec now;
  int ok = 1;
  clock_gettime(CLOCK_MONOTONIC, &now);
  pthread_mutex_lock(&s->lock);
  if (s->token[0] == '\0' || !before(&now, &s->refresh_at)) {
    s->token[0] = '\0';
    ok = fetch_token(s, where, err);
  }
  if (ok) memcpy(out, s->token, sizeof s->token);
  pthread_mutex_unlock(&s->lock);
  return ok;
}

/* Forgets token when it is still the cached one (the service refused it). */
static void drop_token(gcs_store *s, const char *token) {
  pthread_mutex_lock(&s->lock);
  if (strcmp(s->token, token) == 0) s->token[0] = '\0';
  pthread_mutex_unlock(&s->lock);
}

/* --- requests --------------------------------------------------------------- */

typedef struct {
  gcs_store *s;
  const char *where;
  char token[TOKEN_MAX];
} gcs_call;

static int sign(void *ctx, const http_request *req, struct curl_slist **signed_headers, storage_error *err) {
  gcs_call *call = ctx;
  char *line;
  (void)req;
  if (!get_token(call->s, call->token, call->where, err)) return 0;
  line = format("Authorization: Bearer %s", call->token);
  *signed_headers = curl_slist_append(*signed_headers, line);
  OPENSSL_cleanse(line, strlen(line));
  free(line);
  return 1;
}

/* One authorized request. A refused token (401) is dropped and the request
 * tried once more with a new one: tokens can be revoked early. */
static int gcs_do(gcs_store *s, http_client *c, http_request *req, http_response *resp, const char *where,
                  storage_error *err) {
  gcs_call call;
  int round;
  call.s = s;
  call.where = where;
  call.token[0] = '\0';
  req->sign = sign;
  req->sign_ctx = &call;
  for (round = 0; round < 2; round++) {
    if (!http_do(c, req, resp, err)) {
      http_response_free(resp);
      OPENSSL_cleanse(call.token, sizeof call.token);
      if (strncmp(err->message, "GCS ", 4) != 0) { /* no response at all: say where it went */
        char why[STORAGE_ERR_MAX];
        snprintf(why, sizeof why, "%s", err->message);
        storage_fail(err, "IO_ERROR", "GCS %s: %s (is %s reachable?)", where, why, s->endpoint);
      }
      return 0;
    }
    if (resp->status != 401) break;
    drop_token(s, call.token);
    if (round == 0) http_response_free(resp);
  }
  OPENSSL_cleanse(call.token, sizeof call.token);
  return 1;
}

/* One line for a failed status: what, where, and the likely cause. */
static int status_error(gcs_store *s, const http_response *resp, const char *op, const char *where,
                        storage_error *err) {
  char what[STORAGE_ERR_MAX / 2];
  snprintf(what, sizeof what, "GCS %s %s", op, where);
  if (resp->status == 404) {
    if (resp->body.data && strstr(resp->body.data, "bucket does not exist"))
      storage_fail(err, "NOT_FOUND", "%s: bucket '%s' does not exist (HTTP 404)", what, s->bucket);
    else
      storage_fail(err, "NOT_FOUND", "%s: no such object (HTTP 404)", what);
    return 0;
  }
  http_status_error(err, resp, what);
  if (resp->status == 401) {
    size_t n = strlen(err->message);
    snprintf(err->message + n, sizeof err->message - n,
             " (the access token was refused twice: expired or revoked; check the service account key)");
  } else if (resp->status == 403) {
    size_t n = strlen(err->message);
    snprintf(err->message + n, sizeof err->message - n,
             " (check that %s may use bucket '%s', e.g. roles/storage.objectAdmin)", s->client_email, s->bucket);
  }
  return 0;
}

/* --- open and destroy ------------------------------------------------------- */

static void gcs_destroy(void *self) {
  gcs_store *s = self;
  http_client_free(&s->http);
  http_client_free(&s->token_http);
  pthread_mutex_destroy(&s->lock);
  EVP_PKEY_free(s->pkey);
  OPENSSL_cleanse(s->token, sizeof s->token);
  free(s->bucket);
  free(s->prefix);
  free(s->endpoint);
  free(s->token_uri);
  free(s->client_email);
  free(s->key_source);
  free(s);
}

/* The key file's text: source is a path, or the JSON itself. */
static char *read_key(const char *source, size_t *len, storage_error *err) {
  FILE *f;
  char *text;
  const char *p = source;
  while (isspace((unsigned char)*p)) p++;
  if (*p == '{') {
    *len = strlen(source);
    return strdup(source);
  }
  f = fopen(source, "rb");
  if (!f) {
    storage_fail(err, errno == ENOENT ? "NOT_FOUND" : "PERMISSION_DENIED",
                 "GCS: cannot read the service account key %s: %s", source, strerror(errno));
    return NULL;
  }
  text = malloc(KEY_FILE_MAX + 1);
  *len = text ? fread(text, 1, KEY_FILE_MAX, f) : 0;
  fclose(f);
  if (text) text[*len] = '\0';
  return text;
}

static int load_account(gcs_store *s, const char *source, storage_error *err) {
  size_t len;
  char *text = read_key(source, &len, err);
  const char *shown = source[strspn(source, " \t\r\n")] == '{' ? "(inline JSON)" : source;
  json_value *doc;
  const char *type, *email, *pem, *uri;
  int ok = 0;
  if (!text) return 0;
  doc = json_parse(text, len);
  type = json_get_string(doc, "type");
  email = json_get_string(doc, "client_email");
  pem = json_get_string(doc, "private_key");
  uri = json_get_string(doc, "token_uri");
  if (doc == NULL) {
    storage_fail(err, "PERMISSION_DENIED", "GCS: the service account key %s is not JSON", shown);
  } else if (type && strcmp(type, "service_account") != 0) {
    storage_fail(err, "UNSUPPORTED", "GCS: %s holds '%s' credentials: only service-account keys are supported",
                 shown, type);
  } else if (!email || !pem || strpbrk(email, "\"\\") || (uri && strpbrk(uri, "\"\\"))) {
    storage_fail(err, "PERMISSION_DENIED",
                 "GCS: %s is not a service-account key (client_email and private_key expected)", shown);
  } else {
    BIO *bio = BIO_new_mem_buf(pem, -1);
    s->pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!s->pkey || EVP_PKEY_get_base_id(s->pkey) != EVP_PKEY_RSA) {
      storage_fail(err, "PERMISSION_DENIED", "GCS: the private_key in %s is not a PEM RSA key", shown);
    } else {
      s->client_email = strdup(email);
      s->token_uri = strdup(uri ? uri : GCS_TOKEN_URI);
      s->key_source = strdup(shown);
      ok = 1;
    }
  }
  if (doc) {
    json_value *key = (json_value *)json_get(doc, "private_key");
    if (key && key->text) OPENSSL_cleanse(key->text, key->len);
  }
  json_free(doc);
  OPENSSL_cleanse(text, len);
  free(text);
  return ok;
}

void *storage_gcs_open(lua_State *L, int idx, storage_error *err) {
  gcs_store *s;
  char *key, *prefix, *hmac;
  long long chunk, page;
  idx = lua_absindex(L, idx);
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  pthread_mutex_init(&s->lock, NULL);
  s->bucket = opt_field(L, idx, "bucket");
  prefix = opt_field(L, idx, "prefix");
  s->endpoint = opt_field(L, idx, "endpoint");
  if (!s->endpoint && getenv("STORAGE_EMULATOR_HOST") && *getenv("STORAGE_EMULATOR_HOST")) {
    const char *host = getenv("STORAGE_EMULATOR_HOST"); /* as Google's client libraries take it */
    s->endpoint = strstr(host, "://") ? strdup(host) : format("http://%s", host);
  }
  if (!s->endpoint) s->endpoint = strdup(GCS_ENDPOINT);
  while (strlen(s->endpoint) > 1 && s->endpoint[strlen(s->endpoint) - 1] == '/') s->endpoint[strlen(s->endpoint) - 1] = 0;
  {
    const char *p = prefix ? prefix : "";
    size_t n;
    while (*p == '/') p++;
    s->prefix = strdup(p);
    n = strlen(s->prefix);
    while (n > 0 && s->prefix[n - 1] == '/') s->prefix[--n] = '\0';
    free(prefix);
  }
  chunk = opt_number(L, idx, "chunk_size", "KALUA_GCS_CHUNK_SIZE", DEFAULT_CHUNK);
  if (chunk < CHUNK_QUANTUM) chunk = CHUNK_QUANTUM;
  s->chunk = (size_t)((chunk + CHUNK_QUANTUM - 1) / CHUNK_QUANTUM * CHUNK_QUANTUM);
  page = opt_number(L, idx, "page_size", "KALUA_GCS_PAGE_SIZE", DEFAULT_PAGE);
  s->page_size = page < 1 ? 1 : page > 1000 ? 1000 : (int)page;

  key = opt_field(L, idx, "credentials_file");
  if (!key) key = opt_field(L, idx, "service_account_key");
  if (!key) key = dup_or_null(getenv("GOOGLE_APPLICATION_CREDENTIALS"));
  hmac = opt_field(L, idx, "hmac_access_id");
  if (!s->bucket) {
    storage_fail(err, "INVALID_KEY", "GCS storage needs a bucket (storage.bucket, or a gs://bucket/prefix URL)");
  } else if (!key && hmac) {
    storage_fail(err, "UNSUPPORTED",
                 "GCS bucket '%s': HMAC keys (the XML API) are not supported yet; use a service-account key "
                 "(storage.credentials_file)", s->bucket);
  } else if (!key) {
    storage_fail(err, "PERMISSION_DENIED",
                 "GCS bucket '%s': no credentials; set storage.credentials_file to a service-account JSON key, "
                 "or GOOGLE_APPLICATION_CREDENTIALS", s->bucket);
  } else if (load_account(s, key, err) && http_client_init(&s->http, err) && http_client_init(&s->token_http, err)) {
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    free(hmac);
    return s;
  }
  if (key) OPENSSL_cleanse(key, strlen(key));
  free(key);
  free(hmac);
  gcs_destroy(s);
  return NULL;
}

/* --- stat, list, delete ------------------------------------------------------ */

static int gcs_stat(void *self, const char *key, storage_entry *out, storage_error *err) {
  gcs_store *s = self;
  char *name, *url, *where;
  http_request req;
  http_response resp;
  int ok = 0;
  if (!storage_check_key(key, err)) return 0;
  name = object_name(s, key);
  url = object_url(s, name, NULL);
  where = format("gs://%s/%s", s->bucket, name);
  memset(&req, 0, sizeof req);
  req.method = "GET";
  req.url = url;
  if (gcs_do(s, &s->http, &req, &resp, where, err)) {
    if (resp.status == 200) {
      json_value *doc = json_parse(resp.body.data, resp.body.len);
      out->key = NULL;
      out->size = json_get_int(doc, "size", 0);
      out->mtime = parse_time(json_get_string(doc, "updated"));
      ok = doc != NULL;
      if (!ok) storage_fail(err, "IO_ERROR", "GCS stat %s: the response is not JSON", where);
      json_free(doc);
    } else {
      status_error(s, &resp, "stat", where, err);
    }
    http_response_free(&resp);
  }
  free(name);
  free(url);
  free(where);
  return ok;
}

static int gcs_list(void *self, const char *prefix, void (*fn)(void *, const storage_entry *), void *ctx,
                    storage_error *err) {
  gcs_store *s = self;
  char *full = s->prefix[0] ? format("%s/%s", s->prefix, prefix) : strdup(prefix);
  char *where = format("gs://%s/%s", s->bucket, full), *enc_full = encode(full), *enc_bucket = encode(s->bucket);
  char *page_token = NULL;
  size_t strip = s->prefix[0] ? strlen(s->prefix) + 1 : 0;
  int ok = 1;
  do {
    char *enc_page = page_token ? encode(page_token) : NULL;
    char *url = format("%s/storage/v1/b/%s/o?prefix=%s&maxResults=%d%s%s", s->endpoint, enc_bucket, enc_full,
                       s->page_size, enc_page ? "&pageToken=" : "", enc_page ? enc_page : "");
    http_request req;
    http_response resp;
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.url = url;
    free(enc_page);
    free(page_token);
    page_token = NULL;
    if (!gcs_do(s, &s->http, &req, &resp, where, err)) {
      free(url);
      ok = 0;
      break;
    }
    if (resp.status != 200) {
      ok = status_error(s, &resp, "list", where, err);
    } else {
      json_value *doc = json_parse(resp.body.data, resp.body.len);
      const json_value *items = json_get(doc, "items"), *item;
      if (!doc) ok = 0, storage_fail(err, "IO_ERROR", "GCS list %s: the response is not JSON", where);
      for (item = items && items->type == JSON_ARRAY ? items->child : NULL; item; item = item->next) {
        const char *name = json_get_string(item, "name");
        storage_entry e;
        if (!name || strlen(name) <= strip || strncmp(name, full, strlen(full)) != 0) continue;
        e.key = (char *)name + strip;
        e.size = json_get_int(item, "size", 0);
        e.mtime = parse_time(json_get_string(item, "updated"));
        fn(ctx, &e);
      }
      page_token = dup_or_null(json_get_string(doc, "nextPageToken"));
      json_free(doc);
    }
    http_response_free(&resp);
    free(url);
  } while (ok && page_token);
  free(page_token);
  free(full);
  free(where);
  free(enc_full);
  free(enc_bucket);
  return ok;
}

static int gcs_remove(void *self, const char *key, storage_error *err) {
  gcs_store *s = self;
  char *name, *url, *where;
  http_request req;
  http_response resp;
  int ok = 0;
  if (!storage_check_key(key, err)) return 0;
  name = object_name(s, key);
  url = object_url(s, name, NULL);
  where = format("gs://%s/%s", s->bucket, name);
  memset(&req, 0, sizeof req);
  req.method = "DELETE";
  req.url = url;
  if (gcs_do(s, &s->http, &req, &resp, where, err)) {
    ok = resp.status == 204 || resp.status == 200;
    if (!ok) status_error(s, &resp, "delete", where, err);
    http_response_free(&resp);
  }
  free(name);
  free(url);
  free(where);
  return ok;
}

/* --- writers ------------------------------------------------------------------ */

static storage_writer *gcs_open_writer(void *self, const char *key, storage_error *err) {
  gcs_store *s = self;
  storage_writer *w;
  if (!storage_check_key(key, err)) return NULL;
  w = calloc(1, sizeof *w);
  if (!w) return NULL;
  if (!http_client_init(&w->http, err)) {
    free(w);
    return NULL;
  }
  w->s = s;
  w->name = object_name(s, key);
  w->where = format("gs://%s/%s", s->bucket, w->name);
  return w;
}

static void free_writer(storage_writer *w) {
  http_client_free(&w->http);
  free(w->name);
  free(w->where);
  free(w->session);
  free(w->buf);
  free(w);
}

/* POST .../o?uploadType=resumable&name=...: the session URI. */
static int start_session(storage_writer *w, storage_error *err) {
  gcs_store *s = w->s;
  char *b = encode(s->bucket), *n = encode(w->name), location[4096];
  char *url = format("%s/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s", s->endpoint, b, n);
  struct curl_slist *headers = curl_slist_append(NULL, "X-Upload-Content-Type: application/octet-stream");
  http_request req;
  http_response resp;
  int ok = 0;
  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.url = url;
  req.headers = headers;
  req.body = "";
  if (gcs_do(s, &w->http, &req, &resp, w->where, err)) {
    if (resp.status == 200 && http_header(&resp, "Location", location, sizeof location)) {
      w->session = location[0] == '/' ? format("%s%s", s->endpoint, location) : strdup(location);
      ok = 1;
    } else {
      status_error(s, &resp, "upload", w->where, err);
    }
    http_response_free(&resp);
  }
  curl_slist_free_all(headers);
  free(url);
  free(b);
  free(n);
  return ok;
}

/* The bytes a session holds, from a 308's "Range: bytes=0-N". */
static int64_t persisted(const http_response *resp) {
  char range[128];
  const char *dash;
  if (!http_header(resp, "Range", range, sizeof range) || (dash = strchr(range, '-')) == NULL) return 0;
  return strtoll(dash + 1, NULL, 10) + 1;
}

/* Sends the buffer to the session: a middle chunk (total < 0) or the last
 * one. A middle chunk the service kept only in part is finished by sending
 * the rest, as GCS asks. */
static int send_chunk(storage_writer *w, int64_t total, storage_error *err) {
  gcs_store *s = w->s;
  size_t from = 0;
  int tries;
  for (tries = 0; tries < 5; tries++) {
    size_t n = w->len - from;
    char range[96];
    struct curl_slist *headers;
    http_request req;
    http_response resp;
    int ok;
    if (n > 0 && total >= 0)
      snprintf(range, sizeof range, "Content-Range: bytes %lld-%lld/%lld", (long long)w->sent,
               (long long)(w->sent + (int64_t)n - 1), (long long)total);
    else if (n > 0)
      snprintf(range, sizeof range, "Content-Range: bytes %lld-%lld/*", (long long)w->sent,
               (long long)(w->sent + (int64_t)n - 1));
    else
      snprintf(range, sizeof range, "Content-Range: bytes */%lld", (long long)total);
    headers = curl_slist_append(NULL, range);
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    memset(&req, 0, sizeof req);
    req.method = "PUT";
    req.url = w->session;
    req.headers = headers;
    req.body = w->buf ? (const char *)w->buf + from : "";
    req.body_len = n;
    req.timeout_ms = 300000;
    ok = gcs_do(s, &w->http, &req, &resp, w->where, err);
    curl_slist_free_all(headers);
    if (!ok) return 0;
    if (total >= 0 && (resp.status == 200 || resp.status == 201)) {
      json_value *doc = json_parse(resp.body.data, resp.body.len);
      long long size = json_get_int(doc, "size", -1);
      json_free(doc);
      http_response_free(&resp);
      if (size != total) {
        storage_fail(err, "IO_ERROR", "GCS upload %s: the service holds %lld bytes, %lld were written", w->where,
                     size, (long long)total);
        return 0;
      }
      return 1;
    }
    if (total < 0 && resp.status == 308) {
      int64_t have = persisted(&resp);
      http_response_free(&resp);
      if (have == w->sent + (int64_t)w->len) {
        w->sent = have;
        w->len = 0;
        return 1;
      }
      if (have < w->sent || have > w->sent + (int64_t)w->len) break;
      from = (size_t)(have - w->sent);
      continue;
    }
    if (resp.status == 404 || resp.status == 410)
      storage_fail(err, "IO_ERROR", "GCS upload %s: the upload session expired (HTTP %ld); nothing was written",
                   w->where, resp.status);
    else
      status_error(s, &resp, "upload", w->where, err);
    http_response_free(&resp);
    return 0;
  }
  storage_fail(err, "IO_ERROR", "GCS upload %s: the service lost part of a chunk", w->where);
  return 0;
}

static int gcs_write(storage_writer *w, const void *data, size_t len, storage_error *err) {
  const unsigned char *p = data;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "GCS upload %s: an earlier write failed", w->where);
    return 0;
  }
  while (len > 0) {
    size_t n;
    if (w->len == w->s->chunk) { /* full, and more is coming: send it */
      if ((!w->session && !start_session(w, err)) || !send_chunk(w, -1, err)) {
        w->failed = 1;
        return 0;
      }
    }
    if (w->cap < w->s->chunk && w->len + len > w->cap) {
      size_t cap = w->cap ? w->cap : 65536;
      unsigned char *grown;
      while (cap < w->len + len && cap < w->s->chunk) cap *= 2;
      if (cap > w->s->chunk) cap = w->s->chunk;
      grown = realloc(w->buf, cap);
      if (!grown) {
        storage_fail(err, "IO_ERROR", "GCS upload %s: out of memory", w->where);
        w->failed = 1;
        return 0;
      }
      w->buf = grown;
      w->cap = cap;
    }
    n = w->cap - w->len < len ? w->cap - w->len : len;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    p += n;
    len -= n;
  }
  return 1;
}

/* An object that fits one chunk: a single uploadType=media request. */
static int upload_media(storage_writer *w, storage_error *err) {
  gcs_store *s = w->s;
  char *b = encode(s->bucket), *n = encode(w->name);
  char *url = format("%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s", s->endpoint, b, n);
  struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
  http_request req;
  http_response resp;
  int ok = 0;
  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.url = url;
  req.headers = headers;
  req.body = w->buf ? (const char *)w->buf : "";
  req.body_len = w->len;
  req.timeout_ms = 300000;
  if (gcs_do(s, &w->http, &req, &resp, w->where, err)) {
    ok = resp.status == 200;
    if (!ok) status_error(s, &resp, "upload", w->where, err);
    http_response_free(&resp);
  }
  curl_slist_free_all(headers);
  free(url);
  free(b);
  free(n);
  return ok;
}

static void cancel_session(storage_writer *w) {
  http_request req;
  http_response resp;
  storage_error ignored;
  if (!w->session) return;
  memset(&req, 0, sizeof req);
  req.method = "DELETE";
  req.url = w->session;
  req.max_attempts = 2;
  req.timeout_ms = 10000;
  if (gcs_do(w->s, &w->http, &req, &resp, w->where, &ignored)) http_response_free(&resp);
}

static int gcs_commit(storage_writer *w, storage_error *err) {
  int ok;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "GCS upload %s: an earlier write failed; nothing was written", w->where);
    ok = 0;
  } else if (!w->session) {
    ok = upload_media(w, err);
  } else {
    ok = send_chunk(w, w->sent + (int64_t)w->len, err);
  }
  if (!ok) cancel_session(w);
  free_writer(w);
  return ok;
}

static void gcs_abort(storage_writer *w) {
  cancel_session(w);
  free_writer(w);
}

/* --- readers ------------------------------------------------------------------- */

/* The next window of the object into r->buf; sets eof at the end. */
static int fetch_window(storage_reader *r, storage_error *err) {
  gcs_store *s = r->s;
  int64_t want = (int64_t)s->chunk;
  char range[96], content_range[128];
  struct curl_slist *headers;
  http_request req;
  http_response resp;
  int ok = 0;
  r->len = r->off = 0;
  if (r->end >= 0 && r->end - r->pos < want) want = r->end - r->pos;
  if (want <= 0) {
    r->eof = 1;
    return 1;
  }
  snprintf(range, sizeof range, "Range: bytes=%lld-%lld", (long long)r->pos, (long long)(r->pos + want - 1));
  headers = curl_slist_append(NULL, range);
  memset(&req, 0, sizeof req);
  req.method = "GET";
  req.url = r->url;
  req.headers = headers;
  req.timeout_ms = 300000;
  if (gcs_do(s, &s->http, &req, &resp, r->where, err)) {
    if (resp.status == 206 || resp.status == 200) {
      const char *body = resp.body.data ? resp.body.data : "";
      size_t n = resp.body.len;
      if (resp.status == 200 && r->pos > 0) { /* the whole object: the range was ignored */
        size_t skip = (size_t)r->pos < n ? (size_t)r->pos : n;
        body += skip;
        n -= skip;
      }
      if ((int64_t)n > want) n = (size_t)want;
      if (resp.status == 206 && http_header(&resp, "Content-Range", content_range, sizeof content_range)) {
        const char *slash = strchr(content_range, '/');
        long long total = slash && slash[1] != '*' ? strtoll(slash + 1, NULL, 10) : -1;
        if (total >= 0 && (r->end < 0 || r->end > total)) r->end = total;
      } else if (resp.status == 200) {
        r->end = r->pos + (int64_t)n; /* all there was */
      }
      free(r->buf);
      r->buf = malloc(n ? n : 1);
      if (r->buf) {
        memcpy(r->buf, body, n);
        r->len = n;
        r->pos += (int64_t)n;
        if (n == 0) r->eof = 1;
        ok = 1;
      }
    } else if (resp.status == 416) { /* at or past the end */
      r->eof = 1;
      ok = 1;
    } else {
      status_error(s, &resp, "read", r->where, err);
    }
    http_response_free(&resp);
  }
  curl_slist_free_all(headers);
  return ok;
}

static void gcs_close_reader(storage_reader *r) {
  free(r->url);
  free(r->where);
  free(r->buf);
  free(r);
}

static storage_reader *gcs_open_reader(void *self, const char *key, int64_t offset, int64_t length,
                                       storage_error *err) {
  gcs_store *s = self;
  storage_reader *r;
  char *name;
  if (!storage_check_key(key, err)) return NULL;
  r = calloc(1, sizeof *r);
  if (!r) return NULL;
  name = object_name(s, key);
  r->s = s;
  r->url = object_url(s, name, "?alt=media");
  r->where = format("gs://%s/%s", s->bucket, name);
  r->pos = offset;
  r->end = length >= 0 ? offset + length : -1;
  free(name);
  if (length == 0) { /* nothing to read, but the object must exist */
    storage_entry e;
    if (!gcs_stat(s, key, &e, err)) {
      gcs_close_reader(r);
      return NULL;
    }
    r->eof = 1;
    return r;
  }
  if (!fetch_window(r, err)) { /* the first window now: a missing object fails here */
    gcs_close_reader(r);
    return NULL;
  }
  return r;
}

static int64_t gcs_read(storage_reader *r, void *buf, size_t len, storage_error *err) {
  size_t n;
  while (r->off == r->len) {
    if (r->eof) return 0;
    if (!fetch_window(r, err)) return -1;
  }
  n = r->len - r->off < len ? r->len - r->off : len;
  memcpy(buf, r->buf + r->off, n);
  r->off += n;
  return (int64_t)n;
}

const storage_backend storage_gcs_backend = {
  "gcs", gcs_destroy, gcs_stat, gcs_list, gcs_remove,
  gcs_open_writer, gcs_write, gcs_commit, gcs_abort,
  gcs_open_reader, gcs_read, gcs_close_reader,
};
