/* The Azure Blob backend: the Blob REST API over the shared libcurl client.
 *
 *   storage.open { backend = "azure", container = "backups", prefix = "kafka",
 *                  account_name = "acct", account_key = os.getenv "AZURE_KEY" }
 *   storage.open("az://backups/kafka", { connection_string = "...;AccountKey=...;" })
 *
 * Config keys: container, prefix, account_name, account_key, sas_token,
 * connection_string (AccountName, AccountKey, SharedAccessSignature,
 * BlobEndpoint, DefaultEndpointsProtocol, EndpointSuffix,
 * UseDevelopmentStorage), endpoint (e.g. Azurite's path-style
 * http://127.0.0.1:10000/devstoreaccount1). Table keys win over the
 * connection string; without credentials in the table (e.g. a bare
 * "az://container/prefix" from --path), the environment's
 * AZURE_STORAGE_CONNECTION_STRING, else AZURE_STORAGE_ACCOUNT with
 * AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (as the az CLI reads them).
 * From Lua only (or the environment): block_size
 * (KALUA_AZURE_BLOCK_SIZE, default 8 MiB) and max_results, the List Blobs
 * page size (KALUA_AZURE_MAX_RESULTS).
 *
 * Auth: SharedKey (HMAC-SHA256 under the account key over the canonical
 * request, signed afresh for every attempt) or a SAS token appended to
 * every URL. Writes hold at most one block in memory: a blob that fits in
 * one block is one Put Blob at commit; a larger one is a Put Block per
 * block as it fills, then Put Block List at commit. Nothing is visible
 * under the key before commit; an abort leaves only uncommitted blocks,
 * which Azure discards. Reads are ranged GETs in chunks, pinned to the
 * first chunk's ETag so a blob replaced mid-read fails instead of mixing.
 *
 * Errors are one line naming the container and blob and the likely cause;
 * no key, SAS or signature is ever part of one. */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "storage/http.h"
#include "storage/storage.h"

#define AZ_VERSION "2021-08-06"
#define AZ_DEFAULT_BLOCK (8u << 20)
#define AZ_MIN_BLOCK 1024u
#define AZ_MAX_BLOCK (4000u << 20) /* the service's limit per block */
#define AZ_MAX_BLOCKS 50000u       /* ... and per blob */
#define AZ_READ_CHUNK (4 << 20)
#define AZ_WRITE_TIMEOUT_MS 300000L
/* Azurite's (and Azure's documentation's) well-known development account. */
#define AZ_DEV_ACCOUNT "devstoreaccount1"
#define AZ_DEV_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define AZ_DEV_ENDPOINT "http://127.0.0.1:10000/" AZ_DEV_ACCOUNT

typedef struct {
  atomic_int refs;          /* the store, and each open writer and reader */
  char *endpoint;           /* scheme://host[:port][/path], no trailing '/' */
  char *account;
  char *container;
  char *prefix;             /* "" or "a/b/" */
  unsigned char key[128];   /* the decoded account key */
  size_t key_len;           /* 0: SAS, no SharedKey */
  char *sas;                /* without '?', or NULL */
  size_t block_size;
  int max_results;          /* 0: the service's default */
  http_client client;       /* the Lua thread's: stat, list, remove, readers */
} az_store;

struct storage_writer {
  az_store *s;
  http_client client;       /* the writer's own: write may run on a worker thread */
  char *blob;               /* the full blob name (prefix + key) */
  char *buf;
  size_t len, cap;
  unsigned nblocks;
  char nonce[9];            /* block ids: base64("<nonce>-<index>"), equal lengths */
  int failed;
};

struct storage_reader {
  az_store *s;
  char *blob;
  int64_t next, end;        /* end: exclusive, -1 until known */
  char etag[128];
  http_response chunk;
  size_t pos;
};

typedef struct {
  const char *name, *value;
} az_param;

/* --- small helpers ------------------------------------------------------ */

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int oom(storage_error *err) {
  storage_fail(err, "IO_ERROR", "azure: out of memory");
  return 0;
}

static void cut_at_newline(char *s) {
  s[strcspn(s, "\r\n")] = '\0';
}

static int base64_encode(const unsigned char *in, size_t n, char *out, size_t out_size) {
  if (out_size < 4 * ((n + 2) / 3) + 1) return -1;
  return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Returns the decoded length, or -1 when s is not base64 or out too small. */
static int base64_decode(const char *s, unsigned char *out, size_t out_size) {
  size_t n = strlen(s), pad = 0;
  unsigned char tmp[192];
  int got;
  if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof tmp) return -1;
  if (s[n - 1] == '=') pad++;
  if (s[n - 2] == '=') pad++;
  got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
  if (got < 0 || (size_t)got - pad > out_size) return -1;
  memcpy(out, tmp, (size_t)got - pad);
  OPENSSL_cleanse(tmp, sizeof tmp);
  return got - (int)pad;
}

static int hexval(int c) {
  return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Percent-decodes s[0..n) into a new string ('+' stays '+'). */
static char *uri_decode(const char *s, size_t n) {
  char *out = malloc(n + 1), *o = out;
  size_t i;
  if (!out) return NULL;
  for (i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return out;
}

/* "Wed, 25 Nov 2026 17:34:42 GMT", independent of the locale. */
static void rfc1123_now(char *out, size_t size) {
  static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int64_t parse_rfc1123(const char *s) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char mon[4];
  struct tm tm;
  const char *m;
  memset(&tm, 0, sizeof tm);
  if (sscanf(s, "%*3s, %d %3s %d %d:%d:%d", &tm.tm_mday, mon, &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return 0;
  mon[3] = '\0';
  if ((m = strstr(months, mon)) == NULL) return 0;
  tm.tm_mon = (int)(m - months) / 3;
  tm.tm_year -= 1900;
  return (int64_t)timegm(&tm);
}

/* --- URLs --------------------------------------------------------------- */

/* endpoint/container[/blob][?params][&sas] */
static char *az_url(const az_store *s, const char *blob, const az_param *params, int nparams) {
  size_t size = strlen(s->endpoint) + strlen(s->container) + (blob ? 3 * strlen(blob) : 0) +
                (s->sas ? strlen(s->sas) : 0) + 16;
  char *url, *p;
  int i, n;
  for (i = 0; i < nparams; i++) size += 3 * (strlen(params[i].name) + strlen(params[i].value)) + 2;
  if ((url = malloc(size)) == NULL) return NULL;
  p = url + sprintf(url, "%s/%s", s->endpoint, s->container);
  if (blob) {
    *p++ = '/';
    n = http_uri_encode(blob, 1, p, size - (size_t)(p - url));
    p += n;
  }
  for (i = 0; i < nparams; i++) {
    *p++ = i == 0 ? '?' : '&';
    p += http_uri_encode(params[i].name, 0, p, size - (size_t)(p - url));
    *p++ = '=';
    p += http_uri_encode(params[i].value, 0, p, size - (size_t)(p - url));
  }
  if (s->sas) p += sprintf(p, "%c%s", nparams ? '&' : '?', s->sas);
  *p = '\0';
  return url;
}

/* --- SharedKey ---------------------------------------------------------- */

static const char *header_value(const struct curl_slist *h, const char *name) {
  size_t n = strlen(name);
  for (; h; h = h->next)
    if (strncasecmp(h->data, name, n) == 0 && h->data[n] == ':') {
      const char *v = h->data + n + 1;
      while (*v == ' ') v++;
      return v;
    }
  return "";
}

static int name_cmp(const void *a, const void *b) {
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  size_t nx = strcspn(x, ":"), ny = strcspn(y, ":"), n = nx < ny ? nx : ny;
  int c = strncmp(x, y, n);
  return c ? c : (nx > ny) - (nx < ny);
}

/* Appends "\n" then the x-ms-* headers of h (and date) as lowercase
 * "name:value" lines, sorted by name. */
static int canonical_headers(http_buf *sts, const struct curl_slist *h, const char *date_line) {
  const char *lines[64];
  char *owned[64];
  size_t n = 0, i;
  int ok = 1;
  for (; h && n < 63; h = h->next)
    if (strncasecmp(h->data, "x-ms-", 5) == 0) lines[n++] = h->data;
  lines[n++] = date_line;
  for (i = 0; i < n; i++) {
    const char *colon = strchr(lines[i], ':'), *v = colon + 1;
    size_t k, nlen = (size_t)(colon - lines[i]);
    while (*v == ' ') v++;
    owned[i] = malloc(nlen + strlen(v) + 2);
    if (!owned[i]) {
      while (i > 0) free(owned[--i]);
      return 0;
    }
    for (k = 0; k < nlen; k++) owned[i][k] = (char)tolower((unsigned char)lines[i][k]);
    sprintf(owned[i] + nlen, ":%s", v);
  }
  qsort(owned, n, sizeof owned[0], name_cmp);
  for (i = 0; i < n; i++) {
    ok = ok && http_buf_append(sts, owned[i], strlen(owned[i])) && http_buf_append(sts, "\n", 1);
    free(owned[i]);
  }
  return ok;
}

typedef struct {
  char *name, *value;
} qparam;

static int qparam_cmp(const void *a, const void *b) {
  return strcmp(((const qparam *)a)->name, ((const qparam *)b)->name);
}

/* "/account/encoded/path" then "\nname:value" per query parameter, sorted,
 * names lowercased, values decoded. */
static int canonical_resource(http_buf *sts, const char *account, const char *url) {
  const char *p = strstr(url, "://"), *q;
  qparam params[16];
  size_t n = 0, i;
  int ok;
  p = p ? strchr(p + 3, '/') : NULL;
  if (!p) p = "/";
  q = strchr(p, '?');
  ok = http_buf_append(sts, "/", 1) && http_buf_append(sts, account, strlen(account)) &&
       http_buf_append(sts, p, q ? (size_t)(q - p) : strlen(p));
  while (ok && q && *q && n < 16) {
    const char *start = q + 1, *end = strchr(start, '&'), *eq;
    size_t len = end ? (size_t)(end - start) : strlen(start);
    char *c;
    eq = memchr(start, '=', len);
    if (len > 0) {
      params[n].name = uri_decode(start, eq ? (size_t)(eq - start) : len);
      params[n].value = eq ? uri_decode(eq + 1, len - (size_t)(eq + 1 - start)) : strdup("");
      if (!params[n].name || !params[n].value) {
        free(params[n].name);
        free(params[n].value);
        ok = 0;
        break;
      }
      for (c = params[n].name; *c; c++) *c = (char)tolower((unsigned char)*c);
      n++;
    }
    q = end;
  }
  qsort(params, n, sizeof params[0], qparam_cmp);
  for (i = 0; i < n; i++) {
    ok = ok && http_buf_append(sts, "\n", 1) && http_buf_append(sts, params[i].name, strlen(params[i].name)) &&
         http_buf_append(sts, ":", 1) && http_buf_append(sts, params[i].value, strlen(params[i].value));
    free(params[i].name);
    free(params[i].value);
  }
  return ok;
}

/* http.c's sign callback: a fresh x-ms-date, and with a key the
 * Authorization header over the string-to-sign of the 2015-02-21+ rules. */
static int az_sign(void *ctx, const http_request *req, struct curl_slist **out, storage_error *err) {
  static const char *standard[] = {"Content-Encoding", "Content-Language", NULL, "Content-MD5", "Content-Type",
                                   "Date", "If-Modified-Since", "If-Match", "If-None-Match",
                                   "If-Unmodified-Since", "Range"};
  az_store *s = ctx;
  char date[40], date_line[64], length[24], auth[256], sig[64];
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  http_buf sts = {NULL, 0, 0};
  size_t i;
  int ok = 1;
  rfc1123_now(date, sizeof date);
  snprintf(date_line, sizeof date_line, "x-ms-date: %s", date);
  *out = curl_slist_append(*out, date_line);
  if (s->key_len == 0) return 1; /* SAS: the URL carries the authorization */
  ok = http_buf_append(&sts, req->method, strlen(req->method)) && http_buf_append(&sts, "\n", 1);
  snprintf(length, sizeof length, "%zu", req->body ? req->body_len : 0);
  for (i = 0; ok && i < sizeof standard / sizeof standard[0]; i++) {
    const char *v = standard[i] ? header_value(req->headers, standard[i])
                                : (req->body && req->body_len > 0 ? length : "");
    ok = http_buf_append(&sts, v, strlen(v)) && http_buf_append(&sts, "\n", 1);
  }
  ok = ok && canonical_headers(&sts, req->headers, date_line) && canonical_resource(&sts, s->account, req->url);
  if (ok && HMAC(EVP_sha256(), s->key, (int)s->key_len, (const unsigned char *)sts.data, sts.len, mac, &mac_len) == NULL)
    ok = 0;
  http_buf_free(&sts);
  if (!ok || base64_encode(mac, mac_len, sig, sizeof sig) < 0) {
    storage_fail(err, "IO_ERROR", "azure: cannot sign a request to container '%s'", s->container);
    return 0;
  }
  snprintf(auth, sizeof auth, "Authorization: SharedKey %s:%s", s->account, sig);
  *out = curl_slist_append(*out, auth);
  return 1;
}

/* --- requests and their errors ------------------------------------------ */

/* The URL without its query (a SAS is a secret). */
static void url_for_message(const char *url, char *out, size_t size) {
  size_t n = strcspn(url, "?");
  if (n >= size) n = size - 1;
  memcpy(out, url, n);
  out[n] = '\0';
}

/* One request with retries (http.c). Returns 1 with resp to free, or 0
 * with err set when no response came. `doing` names the operation for
 * messages, e.g. "cannot read 'a/b' in container 'c'". */
static int az_call(az_store *s, http_client *c, const char *method, const char *url, struct curl_slist *headers,
                   const void *body, size_t body_len, http_response *resp, const char *doing, storage_error *err) {
  http_request req;
  struct curl_slist *all = curl_slist_append(NULL, "x-ms-version: " AZ_VERSION), *h;
  char where[512], reason[STORAGE_ERR_MAX] = "no response";
  size_t skip;
  int ok;
  for (h = headers; h; h = h->next) all = curl_slist_append(all, h->data);
  memset(&req, 0, sizeof req);
  req.method = method;
  req.url = url;
  req.headers = all;
  req.body = body;
  req.body_len = body_len;
  req.timeout_ms = body_len > 0 ? AZ_WRITE_TIMEOUT_MS : 0;
  req.sign = az_sign;
  req.sign_ctx = s;
  ok = http_do(c, &req, resp, err);
  curl_slist_free_all(all);
  if (ok) return 1;
  /* http.c's message is "METHOD URL: reason": keep the reason, drop the URL. */
  skip = strlen(method) + 1 + strlen(url) + 2;
  if (strncmp(err->message, method, strlen(method)) == 0 && strlen(err->message) > skip &&
      strncmp(err->message + strlen(method) + 1, url, strlen(url)) == 0)
    snprintf(reason, sizeof reason, "%s", err->message + skip);
  url_for_message(s->endpoint, where, sizeof where);
  storage_fail(err, "IO_ERROR", "azure: %s: %s (endpoint %s)", doing, reason, where);
  http_response_free(resp);
  return 0;
}

/* A one-line error for a response that is not a success. */
static int az_status_fail(const az_store *s, const http_response *resp, const char *doing, const char *blob,
                          storage_error *err) {
  char code[96] = "";
  if (!http_header(resp, "x-ms-error-code", code, sizeof code) && resp->body.data) {
    const char *a = strstr(resp->body.data, "<Code>"), *b = a ? strstr(a, "</Code>") : NULL;
    if (a && b && (size_t)(b - a - 6) < sizeof code) {
      memcpy(code, a + 6, (size_t)(b - a - 6));
      code[b - a - 6] = '\0';
    }
  }
  if (resp->status == 401 || resp->status == 403) {
    storage_fail(err, "PERMISSION_DENIED",
                 "azure: %s: HTTP %ld %s for account '%s': check account_key / sas_token "
                 "(wrong key, or a SAS that expired or lacks this permission)",
                 doing, resp->status, code[0] ? code : "Forbidden", s->account);
  } else if (resp->status == 404 && strcmp(code, "ContainerNotFound") == 0) {
    storage_fail(err, "NOT_FOUND", "azure: %s: container '%s' does not exist in account '%s' (create it first)",
                 doing, s->container, s->account);
  } else if (resp->status == 404 && strcmp(code, "ResourceNotFound") == 0 && blob == NULL) {
    storage_fail(err, "NOT_FOUND", "azure: %s: account '%s' or container '%s' not found at the endpoint", doing,
                 s->account, s->container);
  } else if (resp->status == 404 && blob) {
    storage_fail(err, "NOT_FOUND", "azure: %s: no such blob", doing);
  } else {
    char what[STORAGE_ERR_MAX];
    snprintf(what, sizeof what, "azure: %s", doing);
    http_status_error(err, resp, what);
    cut_at_newline(err->message);
  }
  return 0;
}

/* --- configuration -------------------------------------------------------- */

typedef struct {
  char *account, *key, *sas, *endpoint, *protocol, *suffix;
  int dev;
} conn_string;

static void conn_string_free(conn_string *cs) {
  free(cs->account);
  if (cs->key) OPENSSL_cleanse(cs->key, strlen(cs->key));
  free(cs->key);
  if (cs->sas) OPENSSL_cleanse(cs->sas, strlen(cs->sas));
  free(cs->sas);
  free(cs->endpoint);
  free(cs->protocol);
  free(cs->suffix);
}

/* "Key=Value;Key=Value" (values may hold '='; keys case-insensitive;
 * unknown keys such as QueueEndpoint are ignored). */
static int parse_connection_string(const char *s, conn_string *cs, storage_error *err) {
  static const struct {
    const char *name;
    size_t off;
  } keys[] = {
    {"AccountName", offsetof(conn_string, account)}, {"AccountKey", offsetof(conn_string, key)},
    {"SharedAccessSignature", offsetof(conn_string, sas)}, {"BlobEndpoint", offsetof(conn_string, endpoint)},
    {"DefaultEndpointsProtocol", offsetof(conn_string, protocol)}, {"EndpointSuffix", offsetof(conn_string, suffix)},
  };
  while (*s) {
    const char *end = s + strcspn(s, ";"), *eq = memchr(s, '=', (size_t)(end - s));
    size_t i, nlen;
    while (*s == ' ') s++;
    if (eq) {
      nlen = (size_t)(eq - s);
      if (nlen == 21 && strncasecmp(s, "UseDevelopmentStorage", 21) == 0) {
        cs->dev = strncasecmp(eq + 1, "true", 4) == 0;
      } else {
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
          if (strlen(keys[i].name) == nlen && strncasecmp(s, keys[i].name, nlen) == 0) {
            char **field = (char **)((char *)cs + keys[i].off);
            free(*field);
            *field = dup_n(eq + 1, (size_t)(end - eq - 1));
            if (!*field) return oom(err);
          }
      }
    } else if (end > s) {
      storage_fail(err, "PERMISSION_DENIED", "azure: connection_string: expected Key=Value parts separated by ';'");
      return 0;
    }
    s = *end ? end + 1 : end;
  }
  return 1;
}

static const char *opt_field(lua_State *L, int idx, const char *name) {
  const char *v;
  lua_getfield(L, idx, name);
  v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the config table still holds the string */
  return v && v[0] ? v : NULL;
}

static const char *env_field(const char *name) {
  const char *v = getenv(name);
  return v && v[0] ? v : NULL;
}

/* The account from an endpoint: the host's first label
 * (acct.blob.core.windows.net), or for an IP or localhost the first path
 * segment (Azurite's http://127.0.0.1:10000/devstoreaccount1). */
static char *account_from_endpoint(const char *endpoint) {
  const char *host = strstr(endpoint, "://"), *end, *path;
  size_t n;
  if (!host) return NULL;
  host += 3;
  n = strcspn(host, ".:/");
  path = strchr(host, '/');
  if (isdigit((unsigned char)host[0]) || (n == 9 && strncmp(host, "localhost", 9) == 0) || host[n] != '.') {
    if (!path || !path[1]) return NULL;
    end = path + 1 + strcspn(path + 1, "/");
    return dup_n(path + 1, (size_t)(end - path - 1));
  }
  return dup_n(host, n);
}

static size_t size_setting(lua_State *L, int idx, const char *field, const char *env, size_t dflt) {
  const char *e = getenv(env);
  lua_getfield(L, idx, field);
  if (lua_isinteger(L, -1)) dflt = (size_t)lua_tointeger(L, -1);
  else if (e && *e) dflt = (size_t)strtoull(e, NULL, 10);
  lua_pop(L, 1);
  return dflt;
}

static void store_release(az_store *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  http_client_free(&s->client);
  OPENSSL_cleanse(s->key, sizeof s->key);
  if (s->sas) OPENSSL_cleanse(s->sas, strlen(s->sas));
  free(s->sas);
  free(s->endpoint);
  free(s->account);
  free(s->container);
  free(s->prefix);
  free(s);
}

static void *open_fail(az_store *s, conn_string *cs) {
  conn_string_free(cs);
  store_release(s);
  return NULL;
}

void *storage_azure_open(lua_State *L, int idx, storage_error *err) {
  conn_string cs;
  az_store *s;
  const char *container, *prefix, *key, *sas, *endpoint, *cstr;
  size_t plen;
  idx = lua_absindex(L, idx);
  memset(&cs, 0, sizeof cs);
  s = calloc(1, sizeof *s);
  if (!s) return oom(err), NULL;
  atomic_init(&s->refs, 1);
  if (!http_client_init(&s->client, err)) {
    free(s);
    return NULL;
  }
  container = opt_field(L, idx, "container");
  if (!container) {
    storage_fail(err, "IO_ERROR", "azure storage needs a container (storage.container, or az://container/prefix)");
    return open_fail(s, &cs);
  }
  cstr = opt_field(L, idx, "connection_string");
  if (!cstr && (cstr = getenv("AZURE_STORAGE_CONNECTION_STRING")) != NULL && !cstr[0]) cstr = NULL;
  if (cstr && !parse_connection_string(cstr, &cs, err)) return open_fail(s, &cs);
  if (cs.dev) {
    if (!cs.account) cs.account = strdup(AZ_DEV_ACCOUNT);
    if (!cs.key && !cs.sas) cs.key = strdup(AZ_DEV_KEY);
    if (!cs.endpoint) cs.endpoint = strdup(AZ_DEV_ENDPOINT);
  }
  s->container = strdup(container);
  s->account = dup_or_null(opt_field(L, idx, "account_name"));
  if (!s->account) s->account = dup_or_null(cs.account);
  if (!s->account) s->account = dup_or_null(env_field("AZURE_STORAGE_ACCOUNT"));
  endpoint = opt_field(L, idx, "endpoint");
  if (!endpoint) endpoint = cs.endpoint;
  if (endpoint) {
    s->endpoint = strdup(endpoint);
  } else if (s->account) {
    size_t n = strlen(s->account) + 64 + (cs.suffix ? strlen(cs.suffix) : 0);
    s->endpoint = malloc(n);
    if (s->endpoint)
      snprintf(s->endpoint, n, "%s://%s.blob.%s", cs.protocol ? cs.protocol : "https", s->account,
               cs.suffix ? cs.suffix : "core.windows.net");
  }
  if (!s->endpoint) {
    storage_fail(err, "PERMISSION_DENIED",
                 "azure storage for container '%s' needs account_name, endpoint or a connection_string", container);
    return open_fail(s, &cs);
  }
  while (s->endpoint[0] && s->endpoint[strlen(s->endpoint) - 1] == '/') s->endpoint[strlen(s->endpoint) - 1] = '\0';
  if (!strstr(s->endpoint, "://")) {
    storage_fail(err, "IO_ERROR", "azure: endpoint '%s' is not a URL (like https://acct.blob.core.windows.net)",
                 s->endpoint);
    return open_fail(s, &cs);
  }
  if (!s->account && (s->account = account_from_endpoint(s->endpoint)) == NULL) {
    storage_fail(err, "PERMISSION_DENIED", "azure storage for container '%s' needs account_name", container);
    return open_fail(s, &cs);
  }
  key = opt_field(L, idx, "account_key");
  sas = opt_field(L, idx, "sas_token");
  if (!key && !sas) {
    key = cs.key;
    sas = cs.sas;
  }
  if (!key && !sas) {
    key = env_field("AZURE_STORAGE_KEY");
    sas = env_field("AZURE_STORAGE_SAS_TOKEN");
  }
  if (key) {
    int n = base64_decode(key, s->key, sizeof s->key);
    if (n <= 0) {
      storage_fail(err, "PERMISSION_DENIED",
                   "azure: the account_key of account '%s' is not base64 (check account_key)", s->account);
      return open_fail(s, &cs);
    }
    s->key_len = (size_t)n;
  } else if (sas) {
    while (*sas == '?') sas++;
    s->sas = strdup(sas);
  } else {
    storage_fail(err, "PERMISSION_DENIED",
                 "azure storage for container '%s' needs account_key, sas_token or a connection_string with one",
                 container);
    return open_fail(s, &cs);
  }
  prefix = opt_field(L, idx, "prefix");
  while (prefix && *prefix == '/') prefix++;
  plen = prefix ? strlen(prefix) : 0;
  while (plen > 0 && prefix[plen - 1] == '/') plen--;
  s->prefix = malloc(plen + 2);
  if (!s->prefix || !s->container) return oom(err), open_fail(s, &cs);
  memcpy(s->prefix, prefix ? prefix : "", plen);
  s->prefix[plen] = '\0';
  if (plen > 0 && !storage_check_key(s->prefix, err)) return open_fail(s, &cs);
  if (plen > 0) strcpy(s->prefix + plen, "/");
  s->block_size = size_setting(L, idx, "block_size", "KALUA_AZURE_BLOCK_SIZE", AZ_DEFAULT_BLOCK);
  if (s->block_size < AZ_MIN_BLOCK || s->block_size > AZ_MAX_BLOCK) {
    storage_fail(err, "IO_ERROR", "azure: block size %zu is out of range (%u bytes to 4000 MiB)", s->block_size,
                 AZ_MIN_BLOCK);
    return open_fail(s, &cs);
  }
  s->max_results = (int)size_setting(L, idx, "max_results", "KALUA_AZURE_MAX_RESULTS", 0);
  conn_string_free(&cs);
  return s;
}

static void az_destroy(void *self) { store_release(self); }

/* prefix + key in a new string, after checking key. */
static char *blob_name(const az_store *s, const char *key, storage_error *err) {
  char *name;
  if (!storage_check_key(key, err)) return NULL;
  name = malloc(strlen(s->prefix) + strlen(key) + 1);
  if (!name) return oom(err), NULL;
  sprintf(name, "%s%s", s->prefix, key);
  return name;
}

/* --- stat, list, remove --------------------------------------------------- */

static int az_stat(void *self, const char *key, storage_entry *out, storage_error *err) {
  az_store *s = self;
  http_response resp;
  char doing[STORAGE_ERR_MAX], value[64];
  char *blob = blob_name(s, key, err), *url;
  int ok = 0;
  if (!blob) return 0;
  snprintf(doing, sizeof doing, "cannot stat '%s' in container '%s'", blob, s->container);
  url = az_url(s, blob, NULL, 0);
  if (url && az_call(s, &s->client, "HEAD", url, NULL, NULL, 0, &resp, doing, err)) {
    if (resp.status == 200) {
      out->key = NULL;
      out->size = http_header(&resp, "Content-Length", value, sizeof value) ? strtoll(value, NULL, 10) : 0;
      out->mtime = http_header(&resp, "Last-Modified", value, sizeof value) ? parse_rfc1123(value) : 0;
      ok = 1;
    } else {
      az_status_fail(s, &resp, doing, blob, err);
    }
    http_response_free(&resp);
  } else if (!url) {
    oom(err);
  }
  free(url);
  free(blob);
  return ok;
}

/* The text of <tag>...</tag> between p and end, or NULL. */
static const char *xml_find(const char *p, const char *end, const char *tag, size_t *len) {
  char open[48], close[48];
  const char *a, *b;
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  a = strstr(p, open);
  if (!a || (end && a >= end)) return NULL;
  a += strlen(open);
  b = strstr(a, close);
  if (!b || (end && b > end)) return NULL;
  *len = (size_t)(b - a);
  return a;
}

/* XML text to plain text: the five entities and numeric references. */
static char *xml_text(const char *s, size_t n) {
  static const struct {
    const char *ent;
    char ch;
  } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  char *out = malloc(n * 4 + 1), *o = out;
  size_t i, k;
  if (!out) return NULL;
  for (i = 0; i < n;) {
    if (s[i] == '&') {
      for (k = 0; k < 5; k++)
        if (strncmp(s + i, ents[k].ent, strlen(ents[k].ent)) == 0) break;
      if (k < 5) {
        *o++ = ents[k].ch;
        i += strlen(ents[k].ent);
        continue;
      }
      if (s[i + 1] == '#') {
        char *e;
        unsigned long cp = s[i + 2] == 'x' ? strtoul(s + i + 3, &e, 16) : strtoul(s + i + 2, &e, 10);
        if (*e == ';' && cp > 0 && cp < 0x110000) { /* as UTF-8 */
          if (cp < 0x80) *o++ = (char)cp;
          else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
          else if (cp < 0x10000) { *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
          else { *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63)); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
          i = (size_t)(e - s) + 1;
          continue;
        }
      }
    }
    *o++ = s[i++];
  }
  *o = '\0';
  return out;
}

/* Calls fn for each <Blob> of one List Blobs page; copies <NextMarker>. */
static int list_page(const az_store *s, const char *body, void (*fn)(void *, const storage_entry *), void *ctx,
                     char **marker, storage_error *err) {
  const char *p = body, *end, *v;
  size_t len;
  while ((p = strstr(p, "<Blob>")) != NULL && (end = strstr(p, "</Blob>")) != NULL) {
    char *name = NULL, num[64];
    storage_entry e = {NULL, 0, 0};
    if ((v = xml_find(p, end, "Name", &len)) && (name = xml_text(v, len)) == NULL) return oom(err);
    if (name && strncmp(name, s->prefix, strlen(s->prefix)) == 0 && name[strlen(s->prefix)]) {
      e.key = name + strlen(s->prefix);
      if ((v = xml_find(p, end, "Content-Length", &len)) && len < sizeof num) {
        memcpy(num, v, len);
        num[len] = '\0';
        e.size = strtoll(num, NULL, 10);
      }
      if ((v = xml_find(p, end, "Last-Modified", &len)) && len < sizeof num) {
        memcpy(num, v, len);
        num[len] = '\0';
        e.mtime = parse_rfc1123(num);
      }
      fn(ctx, &e);
    }
    free(name);
    p = end + 7;
  }
  free(*marker);
  *marker = NULL;
  if ((v = xml_find(body, NULL, "NextMarker", &len)) && len > 0 && (*marker = xml_text(v, len)) == NULL)
    return oom(err);
  return 1;
}

static int az_list(void *self, const char *prefix, void (*fn)(void *, const storage_entry *), void *ctx,
                   storage_error *err) {
  az_store *s = self;
  char *full = malloc(strlen(s->prefix) + strlen(prefix) + 1), *marker = NULL, max[16], doing[STORAGE_ERR_MAX];
  int ok = 1;
  if (!full) return oom(err);
  sprintf(full, "%s%s", s->prefix, prefix);
  snprintf(max, sizeof max, "%d", s->max_results);
  if (full[0])
    snprintf(doing, sizeof doing, "cannot list '%s' in container '%s'", full, s->container);
  else
    snprintf(doing, sizeof doing, "cannot list container '%s'", s->container);
  do {
    az_param params[5] = {{"restype", "container"}, {"comp", "list"}, {"prefix", full}};
    int n = 3;
    http_response resp;
    char *url;
    if (s->max_results > 0) params[n++] = (az_param){"maxresults", max};
    if (marker) params[n++] = (az_param){"marker", marker};
    url = az_url(s, NULL, params, n);
    if (!url) {
      ok = oom(err);
      break;
    }
    ok = az_call(s, &s->client, "GET", url, NULL, NULL, 0, &resp, doing, err);
    free(url);
    if (!ok) break;
    if (resp.status == 200)
      ok = list_page(s, resp.body.data ? resp.body.data : "", fn, ctx, &marker, err);
    else
      ok = az_status_fail(s, &resp, doing, NULL, err);
    http_response_free(&resp);
  } while (ok && marker);
  free(marker);
  free(full);
  return ok;
}

static int az_remove(void *self, const char *key, storage_error *err) {
  az_store *s = self;
  http_response resp;
  char doing[STORAGE_ERR_MAX], *blob = blob_name(s, key, err), *url;
  int ok = 0;
  if (!blob) return 0;
  snprintf(doing, sizeof doing, "cannot delete '%s' in container '%s'", blob, s->container);
  url = az_url(s, blob, NULL, 0);
  if (!url) {
    oom(err);
  } else if (az_call(s, &s->client, "DELETE", url, NULL, NULL, 0, &resp, doing, err)) {
    ok = resp.status == 202 || resp.status == 200 || az_status_fail(s, &resp, doing, blob, err);
    http_response_free(&resp);
  }
  free(url);
  free(blob);
  return ok;
}

/* --- writers -------------------------------------------------------------- */

static storage_writer *az_open_writer(void *self, const char *key, storage_error *err) {
  az_store *s = self;
  unsigned char nonce[4];
  storage_writer *w;
  char *blob = blob_name(s, key, err);
  if (!blob) return NULL;
  w = calloc(1, sizeof *w);
  if (!w) {
    free(blob);
    return oom(err), NULL;
  }
  if (!http_client_init(&w->client, err)) {
    free(blob);
    free(w);
    return NULL;
  }
  if (RAND_bytes(nonce, sizeof nonce) != 1) memcpy(nonce, &w, sizeof nonce);
  snprintf(w->nonce, sizeof w->nonce, "%02x%02x%02x%02x", nonce[0], nonce[1], nonce[2], nonce[3]);
  w->s = s;
  w->blob = blob;
  atomic_fetch_add(&s->refs, 1);
  return w;
}

static void free_writer(storage_writer *w) {
  http_client_free(&w->client);
  free(w->buf);
  free(w->blob);
  store_release(w->s);
  free(w);
}

static void block_id(const storage_writer *w, unsigned index, char *out, size_t size) {
  char raw[24];
  int n = snprintf(raw, sizeof raw, "%s-%06u", w->nonce, index);
  base64_encode((const unsigned char *)raw, (size_t)n, out, size);
}

static int md5_header(const void *data, size_t len, char *out, size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  char b64[32];
  if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1 || base64_encode(md, n, b64, sizeof b64) < 0) return 0;
  snprintf(out, size, "Content-MD5: %s", b64);
  return 1;
}

/* PUT to the writer's blob with params, extra header and body; expects 201. */
static int writer_put(storage_writer *w, const az_param *params, int nparams, const char *header, const void *body,
                      size_t len, const char *doing, storage_error *err) {
  az_store *s = w->s;
  http_response resp;
  struct curl_slist *headers = NULL;
  char md5[64];
  char *url = az_url(s, w->blob, params, nparams);
  int ok = 0;
  if (!url) return oom(err);
  if (header) headers = curl_slist_append(headers, header);
  if (len > 0 && md5_header(body, len, md5, sizeof md5)) headers = curl_slist_append(headers, md5);
  if (az_call(s, &w->client, "PUT", url, headers, body, len, &resp, doing, err)) {
    ok = resp.status == 201 || az_status_fail(s, &resp, doing, NULL, err);
    http_response_free(&resp);
  }
  curl_slist_free_all(headers);
  free(url);
  return ok;
}

static int put_block(storage_writer *w, const void *data, size_t len, storage_error *err) {
  char id[40], doing[STORAGE_ERR_MAX];
  az_param params[2] = {{"comp", "block"}, {"blockid", id}};
  if (w->nblocks >= AZ_MAX_BLOCKS) {
    storage_fail(err, "IO_ERROR", "azure: '%s' in container '%s' needs more than %u blocks: raise the block size",
                 w->blob, w->s->container, AZ_MAX_BLOCKS);
    return 0;
  }
  block_id(w, w->nblocks, id, sizeof id);
  snprintf(doing, sizeof doing, "cannot write block %u of '%s' to container '%s'", w->nblocks, w->blob,
           w->s->container);
  if (!writer_put(w, params, 2, NULL, data, len, doing, err)) return 0;
  w->nblocks++;
  return 1;
}

static int az_write(storage_writer *w, const void *data, size_t len, storage_error *err) {
  const char *p = data;
  size_t block = w->s->block_size;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "azure: an earlier write to '%s' in container '%s' failed", w->blob,
                 w->s->container);
    return 0;
  }
  while (len > 0) {
    size_t n;
    if (w->len == 0 && len >= block) { /* a whole block straight from the caller */
      if (!put_block(w, p, block, err)) return w->failed = 1, 0;
      p += block;
      len -= block;
      continue;
    }
    if (w->cap < block && w->len + len > w->cap) { /* grow toward one block */
      size_t cap = w->cap ? w->cap : 65536;
      char *grown;
      while (cap < w->len + len && cap < block) cap *= 2;
      if (cap > block) cap = block;
      if ((grown = realloc(w->buf, cap)) == NULL) return w->failed = 1, oom(err);
      w->buf = grown;
      w->cap = cap;
    }
    n = w->cap - w->len < len ? w->cap - w->len : len;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    p += n;
    len -= n;
    if (w->len == block) {
      if (!put_block(w, w->buf, block, err)) return w->failed = 1, 0;
      w->len = 0;
    }
  }
  return 1;
}

static int put_block_list(storage_writer *w, storage_error *err) {
  az_param params[1] = {{"comp", "blocklist"}};
  char doing[STORAGE_ERR_MAX], id[40];
  http_buf body = {NULL, 0, 0};
  unsigned i;
  int ok = http_buf_append(&body, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>", 49);
  for (i = 0; ok && i < w->nblocks; i++) {
    block_id(w, i, id, sizeof id);
    ok = http_buf_append(&body, "<Latest>", 8) && http_buf_append(&body, id, strlen(id)) &&
         http_buf_append(&body, "</Latest>", 9);
  }
  ok = ok && http_buf_append(&body, "</BlockList>", 12);
  snprintf(doing, sizeof doing, "cannot commit the %u blocks of '%s' in container '%s'", w->nblocks, w->blob,
           w->s->container);
  ok = ok ? writer_put(w, params, 1, NULL, body.data, body.len, doing, err) : oom(err);
  http_buf_free(&body);
  return ok;
}

static int az_commit(storage_writer *w, storage_error *err) {
  char doing[STORAGE_ERR_MAX];
  int ok;
  if (w->failed) {
    storage_fail(err, "IO_ERROR", "azure: an earlier write to '%s' in container '%s' failed: not committed",
                 w->blob, w->s->container);
    ok = 0;
  } else if (w->nblocks == 0) {
    snprintf(doing, sizeof doing, "cannot write '%s' to container '%s'", w->blob, w->s->container);
    ok = writer_put(w, NULL, 0, "x-ms-blob-type: BlockBlob", w->buf ? w->buf : "", w->len, doing, err);
  } else {
    ok = (w->len == 0 || put_block(w, w->buf, w->len, err)) && put_block_list(w, err);
  }
  free_writer(w);
  return ok;
}

/* Uncommitted blocks are invisible and Azure discards them: nothing to send. */
static void az_abort(storage_writer *w) { free_writer(w); }

/* --- readers -------------------------------------------------------------- */

static void free_reader(storage_reader *r) {
  http_response_free(&r->chunk);
  free(r->blob);
  store_release(r->s);
  free(r);
}

/* Fetches the next chunk into r->chunk; at the end leaves it empty. */
static int fetch_chunk(storage_reader *r, storage_error *err) {
  az_store *s = r->s;
  struct curl_slist *headers = NULL;
  char range[96], etag[160], doing[STORAGE_ERR_MAX], value[128], *url;
  int64_t last = r->next + AZ_READ_CHUNK - 1;
  int ok = 0;
  http_response_free(&r->chunk);
  r->pos = 0;
  if (r->end >= 0 && last > r->end - 1) last = r->end - 1;
  snprintf(range, sizeof range, "x-ms-range: bytes=%lld-%lld", (long long)r->next, (long long)last);
  headers = curl_slist_append(headers, range);
  if (r->etag[0]) {
    snprintf(etag, sizeof etag, "If-Match: %s", r->etag);
    headers = curl_slist_append(headers, etag);
  }
  snprintf(doing, sizeof doing, "cannot read '%s' in container '%s'", r->blob, s->container);
  url = az_url(s, r->blob, NULL, 0);
  if (!url) {
    curl_slist_free_all(headers);
    return oom(err);
  }
  if (az_call(s, &s->client, "GET", url, headers, NULL, 0, &r->chunk, doing, err)) {
    if (r->chunk.status == 206 || r->chunk.status == 200) {
      const char *slash;
      if (!r->etag[0]) http_header(&r->chunk, "ETag", r->etag, sizeof r->etag);
      if (http_header(&r->chunk, "Content-Range", value, sizeof value) && (slash = strchr(value, '/'))) {
        int64_t total = strtoll(slash + 1, NULL, 10);
        if (r->end < 0 || r->end > total) r->end = total;
      }
      r->next += (int64_t)r->chunk.body.len;
      ok = 1;
    } else if (r->chunk.status == 416) { /* at or past the end */
      r->end = r->next;
      http_response_free(&r->chunk);
      ok = 1;
    } else if (r->chunk.status == 412) {
      storage_fail(err, "IO_ERROR", "azure: %s: the blob changed while it was being read", doing);
    } else {
      az_status_fail(s, &r->chunk, doing, r->blob, err);
    }
    if (!ok) http_response_free(&r->chunk);
  }
  curl_slist_free_all(headers);
  free(url);
  return ok;
}

static storage_reader *az_open_reader(void *self, const char *key, int64_t offset, int64_t length,
                                      storage_error *err) {
  az_store *s = self;
  storage_reader *r;
  char *blob = blob_name(s, key, err);
  if (!blob) return NULL;
  if (length == 0) { /* nothing to read, but the blob must exist */
    storage_entry e;
    if (!az_stat(s, key, &e, err)) {
      free(blob);
      return NULL;
    }
  }
  r = calloc(1, sizeof *r);
  if (!r) {
    free(blob);
    return oom(err), NULL;
  }
  r->s = s;
  r->blob = blob;
  r->next = offset;
  r->end = length >= 0 ? offset + length : -1;
  atomic_fetch_add(&s->refs, 1);
  if (length != 0 && !fetch_chunk(r, err)) {
    free_reader(r);
    return NULL;
  }
  return r;
}

static int64_t az_read(storage_reader *r, void *buf, size_t len, storage_error *err) {
  size_t n;
  if (r->pos >= r->chunk.body.len) {
    if (r->end >= 0 && r->next >= r->end) return 0;
    if (!fetch_chunk(r, err)) return -1;
    if (r->chunk.body.len == 0) return 0;
  }
  n = r->chunk.body.len - r->pos;
  if (n > len) n = len;
  memcpy(buf, r->chunk.body.data + r->pos, n);
  r->pos += n;
  return (int64_t)n;
}

static void az_close_reader(storage_reader *r) { free_reader(r); }

const storage_backend storage_azure_backend = {
  "azure", az_destroy, az_stat, az_list, az_remove,
  az_open_writer, az_write, az_commit, az_abort,
  az_open_reader, az_read, az_close_reader,
};
