/* Where S3 credentials come from, in the AWS SDKs' order: the config, the
 * environment, the shared credentials file, container credentials (ECS,
 * EKS pod identity), then the instance metadata service (IMDSv2). */
#define _XOPEN_SOURCE 700 /* strptime */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "storage/http.h"
#include "storage/s3_internal.h"

#define CONTAINER_HOST "http://169.254.170.2"
#define IMDS_HOST "http://169.254.169.254"
#define METADATA_TIMEOUT_MS 2000

static void free_secret(char *s) {
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

void s3_creds_clear(s3_creds *c) {
  free(c->access_key);
  free_secret(c->secret_key);
  free_secret(c->session_token);
  memset(c, 0, sizeof *c);
}

static char *dup_or_null(const char *s) {
  return s && s[0] ? strdup(s) : NULL;
}

int s3_creds_copy(s3_creds *dst, const s3_creds *src) {
  memset(dst, 0, sizeof *dst);
  dst->access_key = dup_or_null(src->access_key);
  dst->secret_key = dup_or_null(src->secret_key);
  dst->session_token = dup_or_null(src->session_token);
  dst->expires = src->expires;
  dst->source = src->source;
  return dst->access_key && dst->secret_key;
}

static int set_static(s3_creds *out, const char *ak, const char *sk, const char *token) {
  out->access_key = strdup(ak);
  out->secret_key = strdup(sk);
  out->session_token = dup_or_null(token);
  out->source = S3_CREDS_STATIC;
  return 1;
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && v[0] ? v : NULL;
}

static char *trim(char *s) {
  char *end;
  while (isspace((unsigned char)*s)) s++;
  end = s + strlen(s);
  while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
  return s;
}

/* Reads [profile] from an INI credentials file. Returns 1 found, 0 not
 * found (or no file), -1 error (err set). */
static int from_file(const char *path, const char *profile, int profile_asked, s3_creds *out, storage_error *err) {
  FILE *f = fopen(path, "r");
  char line[4096], *ak = NULL, *sk = NULL, *token = NULL;
  int in_section = 0, found = 0;
  if (!f) {
    if (profile_asked) {
      storage_fail(err, "NOT_FOUND", "s3: profile '%s' asked for, but there is no credentials file %s", profile, path);
      return -1;
    }
    return 0;
  }
  while (fgets(line, sizeof line, f)) {
    char *s = trim(line), *eq;
    if (s[0] == '#' || s[0] == ';' || s[0] == '\0') continue;
    if (s[0] == '[') {
      char *end = strchr(s, ']');
      if (end) *end = '\0';
      s = trim(s + 1);
      if (strncmp(s, "profile ", 8) == 0) s = trim(s + 8);
      in_section = strcmp(s, profile) == 0;
      found |= in_section;
      continue;
    }
    if (!in_section || (eq = strchr(s, '=')) == NULL) continue;
    *eq = '\0';
    {
      char *k = trim(s), *v = trim(eq + 1);
      if (strcmp(k, "aws_access_key_id") == 0) { free(ak); ak = strdup(v); }
      else if (strcmp(k, "aws_secret_access_key") == 0) { free_secret(sk); sk = strdup(v); }
      else if (strcmp(k, "aws_session_token") == 0) { free_secret(token); token = strdup(v); }
    }
  }
  OPENSSL_cleanse(line, sizeof line);
  fclose(f);
  if (ak && sk && ak[0] && sk[0]) {
    set_static(out, ak, sk, token);
    found = 1;
  } else if (found || profile_asked) {
    storage_fail(err, "NOT_FOUND", found ? "s3: profile '%s' in %s has no aws_access_key_id/aws_secret_access_key"
                                          : "s3: no profile '%s' in %s", profile, path);
    found = -1;
  }
  free(ak);
  free_secret(sk);
  free_secret(token);
  return found;
}

/* The string value of "name" in a flat JSON object, malloc'd. */
static char *json_string(const char *body, const char *name) {
  char pat[64];
  const char *p, *q;
  char *out;
  size_t n = 0;
  snprintf(pat, sizeof pat, "\"%s\"", name);
  if (!body || (p = strstr(body, pat)) == NULL) return NULL;
  p += strlen(pat);
  while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p != '"') return NULL;
  p++;
  out = malloc(strlen(p) + 1);
  for (q = p; *q && *q != '"'; q++) {
    if (*q == '\\' && q[1]) q++; /* credentials never hold escapes worth decoding */
    out[n++] = *q;
  }
  out[n] = '\0';
  return out;
}

static int64_t parse_iso8601(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  return (int64_t)timegm(&tm);
}

/* Credentials from a metadata service's JSON answer. */
static int from_json(const char *body, int source, s3_creds *out, const char *where, storage_error *err) {
  char *ak = json_string(body, "AccessKeyId"), *sk = json_string(body, "SecretAccessKey"),
       *token = json_string(body, "Token"), *exp = json_string(body, "Expiration");
  int ok = ak && sk && ak[0] && sk[0];
  if (ok) {
    set_static(out, ak, sk, token);
    out->source = source;
    out->expires = parse_iso8601(exp);
  } else {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s answered without AccessKeyId/SecretAccessKey", where);
  }
  free(ak);
  free_secret(sk);
  free_secret(token);
  free(exp);
  return ok;
}

static int metadata_get(http_client *http, const char *method, const char *url, struct curl_slist *headers,
                        http_response *resp, storage_error *err) {
  http_request req = {0};
  req.method = method;
  req.url = url;
  req.headers = headers;
  req.timeout_ms = METADATA_TIMEOUT_MS;
  req.max_attempts = 2;
  if (strcmp(method, "PUT") == 0) req.body = "";
  return http_do(http, &req, resp, err);
}

static int from_container(s3_creds *out, storage_error *err) {
  const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI"), *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN"), *token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  char url[2048], auth[4200] = "";
  struct curl_slist *headers = NULL;
  http_client http;
  http_response resp;
  int ok;
  if (full) snprintf(url, sizeof url, "%s", full);
  else snprintf(url, sizeof url, CONTAINER_HOST "%s", rel);
  if (token_file) {
    FILE *f = fopen(token_file, "r");
    char buf[4096] = "";
    if (f) {
      if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
      fclose(f);
    }
    snprintf(auth, sizeof auth, "Authorization: %s", trim(buf));
    OPENSSL_cleanse(buf, sizeof buf);
  } else if (token) {
    snprintf(auth, sizeof auth, "Authorization: %s", token);
  }
  if (auth[0]) headers = curl_slist_append(headers, auth);
  OPENSSL_cleanse(auth, sizeof auth);
  if (!http_client_init(&http, err)) {
    curl_slist_free_all(headers);
    return 0;
  }
  ok = metadata_get(&http, "GET", url, headers, &resp, err);
  curl_slist_free_all(headers);
  http_client_free(&http);
  if (ok && resp.status != 200) {
    storage_fail(err, "PERMISSION_DENIED", "s3: container credentials endpoint %s answered HTTP %ld", url, resp.status);
    ok = 0;
  } else if (ok) {
    ok = from_json(resp.body.data, S3_CREDS_CONTAINER, out, "the container credentials endpoint", err);
  }
  http_response_free(&resp);
  return ok;
}

/* IMDSv2: a session token (PUT), the role's name, then its credentials. */
static int from_imds(s3_creds *out, storage_error *err) {
  const char *host = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  char url[1024], role[256] = "", token_header[512];
  struct curl_slist *ttl = NULL, *auth = NULL;
  http_client http;
  http_response resp;
  size_t n;
  int ok;
  if (!host) host = IMDS_HOST;
  n = strlen(host);
  while (n && host[n - 1] == '/') n--;
  if (!http_client_init(&http, err)) return 0;
  ttl = curl_slist_append(ttl, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
  snprintf(url, sizeof url, "%.*s/latest/api/token", (int)n, host);
  ok = metadata_get(&http, "PUT", url, ttl, &resp, err);
  curl_slist_free_all(ttl);
  if (ok && (resp.status != 200 || resp.body.len == 0 || resp.body.len > 400)) {
    storage_fail(err, "PERMISSION_DENIED", "s3: the instance metadata service refused a token (HTTP %ld)", resp.status);
    ok = 0;
  }
  if (ok) {
    snprintf(token_header, sizeof token_header, "X-aws-ec2-metadata-token: %s", resp.body.data);
    auth = curl_slist_append(auth, token_header);
    OPENSSL_cleanse(token_header, sizeof token_header);
  }
  http_response_free(&resp);
  if (ok) {
    snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/", (int)n, host);
    ok = metadata_get(&http, "GET", url, auth, &resp, err);
    if (ok && resp.status == 200 && resp.body.len > 0 && resp.body.len < sizeof role) {
      char *nl;
      memcpy(role, resp.body.data, resp.body.len + 1);
      if ((nl = strchr(role, '\n')) != NULL) *nl = '\0';
      {
        char *t = trim(role);
        memmove(role, t, strlen(t) + 1);
      }
    }
    if (ok && role[0] == '\0') {
      storage_fail(err, "PERMISSION_DENIED", "s3: this instance has no IAM role (HTTP %ld from the metadata service)",
                   resp.status);
      ok = 0;
    }
    http_response_free(&resp);
  }
  if (ok) {
    snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/%s", (int)n, host, role);
    ok = metadata_get(&http, "GET", url, auth, &resp, err);
    if (ok && resp.status != 200) {
      storage_fail(err, "PERMISSION_DENIED", "s3: no credentials for IAM role '%s' (HTTP %ld)", role, resp.status);
      ok = 0;
    } else if (ok) {
      ok = from_json(resp.body.data, S3_CREDS_IMDS, out, "the instance metadata service", err);
    }
    http_response_free(&resp);
  }
  curl_slist_free_all(auth);
  http_client_free(&http);
  return ok;
}

int s3_creds_refetch(s3_creds *c, storage_error *err) {
  s3_creds fresh = {0};
  int ok = c->source == S3_CREDS_CONTAINER ? from_container(&fresh, err)
           : c->source == S3_CREDS_IMDS    ? from_imds(&fresh, err)
                                           : 1;
  if (ok && c->source != S3_CREDS_STATIC) {
    s3_creds_clear(c);
    *c = fresh;
  }
  return ok;
}

static const char *field(lua_State *L, int idx, const char *name) {
  const char *v;
  lua_getfield(L, idx, name);
  v = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return v && v[0] ? v : NULL;
}

int s3_creds_resolve(lua_State *L, int idx, s3_creds *out, storage_error *err) {
  const char *ak = field(L, idx, "access_key"), *sk = field(L, idx, "secret_key");
  const char *profile = field(L, idx, "profile");
  char path[4096];
  int found, profile_asked = profile != NULL;
  memset(out, 0, sizeof *out);
  if (ak && sk) return set_static(out, ak, sk, field(L, idx, "session_token"));
  if (ak || sk) {
    storage_fail(err, "PERMISSION_DENIED", "s3: %s is set but %s is empty: set both (or neither, to use the "
                 "environment, a profile or an instance role)", ak ? "access_key" : "secret_key",
                 ak ? "secret_key" : "access_key");
    return 0;
  }
  if (!profile_asked && env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY"))
    return set_static(out, env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN"));
  if (!profile) profile = env("AWS_PROFILE");
  if (!profile) profile = "default";
  if (env("AWS_SHARED_CREDENTIALS_FILE")) snprintf(path, sizeof path, "%s", env("AWS_SHARED_CREDENTIALS_FILE"));
  else snprintf(path, sizeof path, "%s/.aws/credentials", env("HOME") ? env("HOME") : "");
  found = from_file(path, profile, profile_asked || env("AWS_PROFILE") != NULL, out, err);
  if (found != 0) return found > 0;
  if (env("AWS_CONTAINER_CREDENTIALS_FULL_URI") || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
    return from_container(out, err);
  if (env("AWS_EC2_METADATA_DISABLED") && strcmp(env("AWS_EC2_METADATA_DISABLED"), "true") == 0) {
    storage_fail(err, "PERMISSION_DENIED", "s3: no credentials: set access_key/secret_key, AWS_ACCESS_KEY_ID/"
                 "AWS_SECRET_ACCESS_KEY, or a profile in %s", path);
    return 0;
  }
  if (from_imds(out, err)) return 1;
  {
    char why[200];
    snprintf(why, sizeof why, "%.199s", err->message);
    storage_fail(err, "PERMISSION_DENIED", "s3: no credentials: set access_key/secret_key, AWS_ACCESS_KEY_ID/"
                 "AWS_SECRET_ACCESS_KEY, a profile in %.200s, or run with a container or instance role "
                 "(instance metadata: %s)", path, why);
  }
  return 0;
}
