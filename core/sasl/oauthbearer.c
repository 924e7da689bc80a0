/* OAUTHBEARER (RFC 7628) as Kafka speaks it (KIP-255, KIP-342):
 *
 *   client  n,[a=authzid],^Aauth=Bearer <token>^A[key=value^A]...^A
 *   server  empty on success, or a JSON error ({"status": "invalid_token", ...})
 *
 * The token comes from the caller (kalua.sasl calls the config's token
 * function for each new exchange, so a refreshed token is used). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/mech.h"

struct sasl_mech {
  char *message;
  size_t len;
  int started;
};

static int b64token(const char *t) {
  size_t i = 0;
  if (t == NULL || *t == '\0') return 0;
  for (; t[i] && t[i] != '='; i++)
    if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') ||
          strchr("-._~+/", t[i])))
      return 0;
  for (; t[i]; i++)
    if (t[i] != '=') return 0;
  return 1;
}

static int extension_ok(const char *k, const char *v) {
  const char *p;
  if (*k == '\0' || strcmp(k, "auth") == 0) return 0;
  for (p = k; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))) return 0;
  for (p = v; *p; p++)
    if (!((*p >= 0x21 && *p <= 0x7E) || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) return 0;
  return *v != '\0';
}

static sasl_mech *oauth_create(const sasl_creds *c, char *err) {
  size_t n = 64 + (c->token ? strlen(c->token) : 0) + (c->authzid ? strlen(c->authzid) : 0), i;
  sasl_mech *m;
  char *o;
  if (!b64token(c->token)) {
    snprintf(err, SASL_ERR_MAX, "OAUTHBEARER needs a token (RFC 6750 b64token characters only)");
    return NULL;
  }
  for (i = 0; c->extensions && c->extensions[i]; i += 2) {
    if (c->extensions[i + 1] == NULL || !extension_ok(c->extensions[i], c->extensions[i + 1])) {
      snprintf(err, SASL_ERR_MAX, "OAUTHBEARER: bad extension '%.64s' (letters only, not 'auth'; printable value)",
               c->extensions[i]);
      return NULL;
    }
    n += strlen(c->extensions[i]) + strlen(c->extensions[i + 1]) + 2;
  }
  if ((m = calloc(1, sizeof *m)) == NULL || (m->message = malloc(n)) == NULL) {
    free(m);
    snprintf(err, SASL_ERR_MAX, "out of memory");
    return NULL;
  }
  o = m->message;
  o += sprintf(o, c->authzid && *c->authzid ? "n,a=%s," : "n,,", c->authzid);
  o += sprintf(o, "\001auth=Bearer %s\001", c->token);
  for (i = 0; c->extensions && c->extensions[i]; i += 2) o += sprintf(o, "%s=%s\001", c->extensions[i], c->extensions[i + 1]);
  *o++ = '\001';
  m->len = (size_t)(o - m->message);
  return m;
}

static int oauth_start(sasl_mech *m, sasl_bytes *out, char *err) {
  if ((out->data = malloc(m->len)) == NULL) {
    snprintf(err, SASL_ERR_MAX, "out of memory");
    return 0;
  }
  memcpy(out->data, m->message, m->len);
  out->len = m->len;
  m->started = 1;
  return 1;
}

/* The value of "key" in a flat JSON object, good enough for one line. */
static void json_field(const char *json, size_t len, const char *key, char *out, size_t size) {
  char pat[32];
  const char *p, *q, *end = json + len;
  out[0] = '\0';
  snprintf(pat, sizeof pat, "\"%s\"", key);
  for (p = json; p + strlen(pat) <= end; p++) {
    if (memcmp(p, pat, strlen(pat)) != 0) continue;
    p += strlen(pat);
    while (p < end && (*p == ' ' || *p == ':')) p++;
    if (p >= end || *p != '"') return;
    for (q = ++p; q < end && *q != '"'; q++) {
    }
    snprintf(out, size, "%.*s", (int)(q - p), p);
    return;
  }
}

static int oauth_step(sasl_mech *m, const char *challenge, size_t len, sasl_bytes *out, int *done, char *err) {
  char status[64], scope[128];
  (void)m;
  out->data = NULL;
  out->len = 0;
  if (len == 0) {
    *done = 1;
    return 1;
  }
  json_field(challenge, len, "status", status, sizeof status);
  json_field(challenge, len, "scope", scope, sizeof scope);
  snprintf(err, SASL_ERR_MAX, "OAUTHBEARER: the server refused the token (status %s%s%s)",
           status[0] ? status : "unknown", scope[0] ? ", scope " : "", scope);
  return 0;
}

static void oauth_destroy(sasl_mech *m) {
  if (m == NULL) return;
  if (m->message) {
    memset(m->message, 0, m->len); /* the token */
    free(m->message);
  }
  free(m);
}

const sasl_mech_type sasl_oauthbearer = {"OAUTHBEARER", oauth_create, oauth_start, oauth_step, oauth_destroy};
