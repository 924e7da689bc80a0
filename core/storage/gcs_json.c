/* A small JSON reader (see gcs_json.h). Recursive descent, depth-limited. */
#include <stdlib.h>
#include <string.h>

#include "storage/gcs_json.h"

#define MAX_DEPTH 64

typedef struct {
  const char *p, *end;
} cursor;

static void skip_space(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    char ch = p[i];
    v <<= 4;
    if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
    else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
    else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* At the opening quote; the unescaped string, malloc'd. */
static char *parse_string(cursor *c, size_t *len) {
  const char *p = c->p + 1;
  char *out, *o;
  size_t n = 0;
  while (p < c->end && *p != '"') { /* measure: escapes only shrink */
    if (*p == '\\') p++;
    p++, n++;
  }
  if (p >= c->end) return NULL;
  out = o = malloc(n * 4 + 1);
  if (!out) return NULL;
  for (p = c->p + 1; *p != '"'; p++) {
    if ((unsigned char)*p < 0x20) goto bad;
    if (*p != '\\') { *o++ = *p; continue; }
    switch (*++p) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (c->end - p < 5 || !hex4(p + 1, &cp)) goto bad;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && c->end - p >= 7 && p[1] == '\\' && p[2] == 'u' && hex4(p + 3, &lo) &&
            lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
        o += put_utf8(o, cp);
        break;
      }
      default: goto bad;
    }
  }
  *o = '\0';
  *len = (size_t)(o - out);
  c->p = p + 1;
  return out;
bad:
  free(out);
  return NULL;
}

static json_value *parse_value(cursor *c, int depth);

static json_value *parse_container(cursor *c, int depth, int type) {
  json_value *v = calloc(1, sizeof *v), **tail;
  char close = type == JSON_OBJECT ? '}' : ']';
  if (!v) return NULL;
  v->type = type;
  tail = &v->child;
  c->p++;
  skip_space(c);
  if (c->p < c->end && *c->p == close) {
    c->p++;
    return v;
  }
  for (;;) {
    char *key = NULL;
    size_t klen;
    json_value *item;
    skip_space(c);
    if (type == JSON_OBJECT) {
      if (c->p >= c->end || *c->p != '"' || (key = parse_string(c, &klen)) == NULL) goto bad;
      skip_space(c);
      if (c->p >= c->end || *c->p != ':') {
        free(key);
        goto bad;
      }
      c->p++;
    }
    item = parse_value(c, depth + 1);
    if (!item) {
      free(key);
      goto bad;
    }
    item->key = key;
    *tail = item;
    tail = &item->next;
    skip_space(c);
    if (c->p < c->end && *c->p == ',') {
      c->p++;
      continue;
    }
    if (c->p < c->end && *c->p == close) {
      c->p++;
      return v;
    }
    goto bad;
  }
bad:
  json_free(v);
  return NULL;
}

static json_value *parse_value(cursor *c, int depth) {
  json_value *v;
  skip_space(c);
  if (c->p >= c->end || depth > MAX_DEPTH) return NULL;
  if (*c->p == '{') return parse_container(c, depth, JSON_OBJECT);
  if (*c->p == '[') return parse_container(c, depth, JSON_ARRAY);
  v = calloc(1, sizeof *v);
  if (!v) return NULL;
  if (*c->p == '"') {
    v->type = JSON_STRING;
    if ((v->text = parse_string(c, &v->len)) == NULL) goto bad;
    return v;
  }
  if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) { v->type = JSON_NULL; c->p += 4; return v; }
  if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) { v->type = JSON_TRUE; c->p += 4; return v; }
  if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) { v->type = JSON_FALSE; c->p += 5; return v; }
  if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) {
    const char *start = c->p;
    while (c->p < c->end && *c->p && strchr("+-0123456789.eE", *c->p)) c->p++;
    v->type = JSON_NUMBER;
    v->len = (size_t)(c->p - start);
    v->text = malloc(v->len + 1);
    if (!v->text) goto bad;
    memcpy(v->text, start, v->len);
    v->text[v->len] = '\0';
    return v;
  }
bad:
  json_free(v);
  return NULL;
}

json_value *json_parse(const char *text, size_t len) {
  cursor c = {text, text + len};
  json_value *v;
  if (text == NULL) return NULL;
  v = parse_value(&c, 0);
  skip_space(&c);
  if (v && c.p != c.end) {
    json_free(v);
    return NULL;
  }
  return v;
}

void json_free(json_value *v) {
  while (v) {
    json_value *next = v->next;
    json_free(v->child);
    free(v->key);
    free(v->text);
    free(v);
    v = next;
  }
}

const json_value *json_get(const json_value *v, const char *key) {
  const json_value *m;
  if (v == NULL || v->type != JSON_OBJECT) return NULL;
  for (m = v->child; m; m = m->next)
    if (strcmp(m->key, key) == 0) return m;
  return NULL;
}

const char *json_get_string(const json_value *v, const char *key) {
  const json_value *m = json_get(v, key);
  return m && m->type == JSON_STRING ? m->text : NULL;
}

long long json_get_int(const json_value *v, const char *key, long long def) {
  const json_value *m = json_get(v, key);
  char *end;
  long long n;
  if (m == NULL || (m->type != JSON_NUMBER && m->type != JSON_STRING)) return def;
  n = strtoll(m->text, &end, 10);
  return end == m->text ? def : n;
}
