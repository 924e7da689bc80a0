/* The JAAS login configuration parser (see jaas.h): a lexer that knows
 * its line and column, and a descent over sections and entries. Every
 * error names where it happened and what was expected there. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sasl/jaas.h"

static const char *const FLAGS[] = {"required", "requisite", "sufficient", "optional"};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])
#define FLAG_LIST "required, requisite, sufficient or optional"

typedef struct {
  const char *p, *end; /* p: the next byte */
  int line, col;       /* p's position, from 1 */
  char *err;
  size_t errlen;
  jaas_config *cfg;
} parser;

/* --- errors ------------------------------------------------------------------ */

__attribute__((format(printf, 4, 5))) static int fail_at(parser *ps, int line, int col, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (ps->errlen) snprintf(ps->err, ps->errlen, "jaas: line %d column %d: %s", line, col, what);
  return 0;
}

static int out_of_memory(parser *ps) {
  if (ps->errlen) snprintf(ps->err, ps->errlen, "jaas: out of memory");
  return 0;
}

/* --- the lexer --------------------------------------------------------------- */

static int at_end(const parser *ps) { return ps->p >= ps->end; }
static int peek(const parser *ps) { return at_end(ps) ? -1 : (unsigned char)ps->p[0]; }
static int peek2(const parser *ps) { return ps->p + 1 < ps->end ? (unsigned char)ps->p[1] : -1; }

static void advance(parser *ps) {
  if (*ps->p == '\n') {
    ps->line++;
    ps->col = 1;
  } else {
    ps->col++;
  }
  ps->p++;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Section names, class names, flags and option names. */
static int is_word(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         c == '.' || c == '-' || c == '*' || c >= 0x80;
}

static size_t word_len(const parser *ps) {
  size_t n = 0;
  while (ps->p + n < ps->end && is_word((unsigned char)ps->p[n])) n++;
  return n;
}

/* Skips whitespace and comments; 0 with the error on an unterminated one. */
static int skip_space(parser *ps) {
  for (;;) {
    int c = peek(ps);
    if (c >= 0 && is_space(c)) {
      advance(ps);
    } else if (c == '#' || (c == '/' && peek2(ps) == '/')) {
      while (!at_end(ps) && *ps->p != '\n') advance(ps);
    } else if (c == '/' && peek2(ps) == '*') {
      int line = ps->line, col = ps->col;
      advance(ps);
      advance(ps);
      while (!(peek(ps) == '*' && peek2(ps) == '/')) {
        if (at_end(ps)) return fail_at(ps, line, col, "unterminated comment: no '*/' after this '/*'");
        advance(ps);
      }
      advance(ps);
      advance(ps);
    } else {
      return 1;
    }
  }
}

/* What comes next, for "found ..." in messages. */
static const char *found(const parser *ps, char *buf, size_t size) {
  size_t n = word_len(ps);
  int c = peek(ps);
  if (c < 0) return "the end of the input";
  if (n > 0)
    snprintf(buf, size, "'%.*s%s'", (int)(n > 60 ? 60 : n), ps->p, n > 60 ? "..." : "");
  else if (c > ' ' && c < 0x7f)
    snprintf(buf, size, "'%c'", c);
  else
    snprintf(buf, size, "byte 0x%02x", (unsigned)c);
  return buf;
}

static char *dup_range(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* The word at p, malloc'd (NULL when out of memory). */
static char *read_word(parser *ps) {
  const char *start = ps->p;
  while (!at_end(ps) && is_word((unsigned char)*ps->p)) advance(ps);
  return dup_range(start, (size_t)(ps->p - start));
}

/* The index in FLAGS of the word at p, or -1. */
static int flag_at(const parser *ps) {
  size_t n = word_len(ps), i;
  for (i = 0; i < NFLAGS; i++)
    if (strlen(FLAGS[i]) == n && strncasecmp(FLAGS[i], ps->p, n) == 0) return (int)i;
  return -1;
}

/* A quoted value, p at its '"'. Ends on its line; \" and \\ are escapes,
 * any other backslash is kept. */
static char *read_quoted(parser *ps, const char *key, const char *module) {
  int line = ps->line, col = ps->col;
  const char *q;
  char *v, *w;
  advance(ps);
  for (q = ps->p; q < ps->end && *q != '"' && *q != '\n'; q++)
    if (*q == '\\' && q + 1 < ps->end && (q[1] == '"' || q[1] == '\\')) q++;
  if (q >= ps->end || *q != '"') {
    fail_at(ps, line, col, "unterminated quoted value of option %s of %s: no closing '\"' on its line", key, module);
    return NULL;
  }
  if ((w = v = malloc((size_t)(q - ps->p) + 1)) == NULL) {
    out_of_memory(ps);
    return NULL;
  }
  while (ps->p < q) {
    if (*ps->p == '\\' && ps->p + 1 < q && (ps->p[1] == '"' || ps->p[1] == '\\')) advance(ps);
    *w++ = *ps->p;
    advance(ps);
  }
  *w = '\0';
  advance(ps); /* the closing quote */
  return v;
}

/* An unquoted value: up to whitespace or ';'. */
static char *read_bare(parser *ps) {
  const char *start = ps->p;
  while (!at_end(ps) && !is_space((unsigned char)*ps->p) && *ps->p != ';') advance(ps);
  return dup_range(start, (size_t)(ps->p - start));
}

/* --- entries ------------------------------------------------------------------ */

static void free_entry(jaas_entry *e) {
  size_t i;
  for (i = 0; i < e->noptions; i++) {
    free(e->options[i].key);
    if (e->options[i].value) {
      memset(e->options[i].value, 0, strlen(e->options[i].value));
      free(e->options[i].value);
    }
  }
  free(e->options);
  free(e->section);
  free(e->module);
}

void jaas_free(jaas_config *c) {
  size_t i;
  if (c == NULL) return;
  for (i = 0; i < c->nentries; i++) free_entry(&c->entries[i]);
  free(c->entries);
  free(c);
}

static int add_option(parser *ps, jaas_entry *e, size_t *cap, char *key, char *value) {
  if (e->noptions == *cap) {
    size_t n = *cap ? *cap * 2 : 8;
    jaas_option *o = realloc(e->options, n * sizeof *o);
    if (o == NULL) {
      free(key);
      free(value);
      return out_of_memory(ps);
    }
    e->options = o;
    *cap = n;
  }
  e->options[e->noptions].key = key;
  e->options[e->noptions].value = value;
  e->noptions++;
  return 1;
}

static int add_entry(parser *ps, jaas_entry *e) {
  jaas_config *c = ps->cfg;
  /* nentries never exceeds JAAS_MAX_ENTRIES: room for all of them at once */
  if (c->entries == NULL && (c->entries = malloc(JAAS_MAX_ENTRIES * sizeof *c->entries)) == NULL)
    return out_of_memory(ps);
  c->entries[c->nentries++] = *e;
  return 1;
}

/* The options of e and the ';' that ends them. */
static int parse_options(parser *ps, jaas_entry *e) {
  size_t cap = 0;
  char buf[80];
  for (;;) {
    int line, col, quoted;
    const char *what;
    char *key, *value;
    if (!skip_space(ps)) return 0;
    if (peek(ps) == ';') {
      advance(ps);
      return 1;
    }
    what = found(ps, buf, sizeof buf);
    if (!is_word(peek(ps))) return fail_at(ps, ps->line, ps->col, "expected ';' after the options of %s, found %s", e->module, what);
    line = ps->line;
    col = ps->col;
    if ((key = read_word(ps)) == NULL) return out_of_memory(ps);
    if (!skip_space(ps)) {
      free(key);
      return 0;
    }
    if (peek(ps) != '=') {
      /* A class name or a flag next: the ';' is missing, not the '=' */
      if (strchr(key, '.') != NULL || flag_at(ps) >= 0) {
        free(key);
        return fail_at(ps, line, col, "expected ';' after the options of %s, found %s", e->module, what);
      }
      fail_at(ps, ps->line, ps->col, "expected '=' after option %s of %s, found %s", key, e->module,
              found(ps, buf, sizeof buf));
      free(key);
      return 0;
    }
    advance(ps);
    if (!skip_space(ps)) {
      free(key);
      return 0;
    }
    if (at_end(ps) || peek(ps) == ';') {
      fail_at(ps, ps->line, ps->col, "expected a value after %s= in the options of %s, found %s", key, e->module,
              found(ps, buf, sizeof buf));
      free(key);
      return 0;
    }
    quoted = peek(ps) == '"';
    value = quoted ? read_quoted(ps, key, e->module) : read_bare(ps);
    if (value == NULL) {
      if (!quoted) out_of_memory(ps); /* read_quoted says why */
      free(key);
      return 0;
    }
    if (!add_option(ps, e, &cap, key, value)) return 0;
  }
}

/* One entry, its module class (owned) already read: the flag, the options, ';'. */
static int parse_entry(parser *ps, const char *section, char *module, int line, int col) {
  jaas_entry e;
  char buf[80];
  int flag;
  memset(&e, 0, sizeof e);
  e.module = module;
  e.line = line;
  e.column = col;
  if (ps->cfg->nentries >= JAAS_MAX_ENTRIES) {
    fail_at(ps, line, col, "more than %d login entries (kalua's limit)", JAAS_MAX_ENTRIES);
    goto fail;
  }
  if (section && (e.section = dup_range(section, strlen(section))) == NULL) {
    out_of_memory(ps);
    goto fail;
  }
  if (!skip_space(ps)) goto fail;
  if ((flag = flag_at(ps)) < 0) {
    fail_at(ps, ps->line, ps->col, "expected a flag (" FLAG_LIST ") after %s, found %s", module,
            found(ps, buf, sizeof buf));
    goto fail;
  }
  e.flag = FLAGS[flag];
  ps->p += strlen(FLAGS[flag]);
  ps->col += (int)strlen(FLAGS[flag]);
  if (!parse_options(ps, &e)) goto fail;
  e.mechanism = jaas_mechanism(&e);
  if (!add_entry(ps, &e)) goto fail;
  return 1;
fail:
  free_entry(&e);
  return 0;
}

/* `Name { entry; ... };`, p just after the '{'. */
static int parse_section(parser *ps, const char *name, int line, int col) {
  char buf[80];
  for (;;) {
    int mline, mcol, c;
    char *module;
    if (!skip_space(ps)) return 0;
    c = peek(ps);
    if (c == '}') {
      advance(ps);
      if (!skip_space(ps)) return 0;
      if (peek(ps) != ';')
        return fail_at(ps, ps->line, ps->col, "expected ';' after the '}' closing section %s, found %s", name,
                       found(ps, buf, sizeof buf));
      advance(ps);
      return 1;
    }
    if (c < 0)
      return fail_at(ps, ps->line, ps->col, "expected '}' to close section %s (opened at line %d column %d), found %s",
                     name, line, col, found(ps, buf, sizeof buf));
    if (!is_word(c))
      return fail_at(ps, ps->line, ps->col, "expected a LoginModule class or the '}' closing section %s, found %s",
                     name, found(ps, buf, sizeof buf));
    mline = ps->line;
    mcol = ps->col;
    if ((module = read_word(ps)) == NULL) return out_of_memory(ps);
    if (!parse_entry(ps, name, module, mline, mcol)) return 0;
  }
}

/* A section, or (the sasl.jaas.config form) an entry without one. */
static int parse_top(parser *ps) {
  char buf[80];
  int line = ps->line, col = ps->col, ok;
  char *word;
  if (!is_word(peek(ps)))
    return fail_at(ps, line, col, "expected a section name or a LoginModule class, found %s", found(ps, buf, sizeof buf));
  if ((word = read_word(ps)) == NULL) return out_of_memory(ps);
  if (!skip_space(ps)) {
    free(word);
    return 0;
  }
  if (peek(ps) == '{') {
    advance(ps);
    ok = parse_section(ps, word, line, col);
    free(word);
    return ok;
  }
  /* Class names have dots; a bare word is a section missing its '{'. */
  if (flag_at(ps) < 0 && strchr(word, '.') == NULL) {
    fail_at(ps, ps->line, ps->col, "expected '{' after the section name %s, found %s", word, found(ps, buf, sizeof buf));
    free(word);
    return 0;
  }
  return parse_entry(ps, NULL, word, line, col);
}

int jaas_parse(const char *text, size_t len, jaas_config **out, char *err, size_t errlen) {
  parser ps;
  const char *nul;
  *out = NULL;
  if (errlen) err[0] = '\0';
  memset(&ps, 0, sizeof ps);
  ps.p = text ? text : "";
  ps.end = ps.p + (text ? len : 0);
  ps.line = ps.col = 1;
  ps.err = err;
  ps.errlen = errlen;
  if (len > JAAS_MAX_INPUT) {
    if (errlen) snprintf(err, errlen, "jaas: the configuration is larger than %d bytes (1 MiB), kalua's limit", JAAS_MAX_INPUT);
    return 0;
  }
  if ((nul = memchr(ps.p, '\0', (size_t)(ps.end - ps.p))) != NULL) {
    while (ps.p < nul) advance(&ps);
    return fail_at(&ps, ps.line, ps.col, "a NUL byte: this is not a text file");
  }
  if (ps.end - ps.p >= 3 && memcmp(ps.p, "\xEF\xBB\xBF", 3) == 0) ps.p += 3; /* a UTF-8 byte order mark */
  if ((ps.cfg = calloc(1, sizeof *ps.cfg)) == NULL) return out_of_memory(&ps);
  if (!skip_space(&ps)) goto fail;
  if (at_end(&ps)) {
    fail_at(&ps, ps.line, ps.col,
            "no login entries: expected a section (KafkaClient { ... };) or an entry (<LoginModule class> <flag> "
            "key=value ...;), found the end of the input");
    goto fail;
  }
  while (!at_end(&ps)) {
    if (!parse_top(&ps) || !skip_space(&ps)) goto fail;
  }
  *out = ps.cfg;
  return 1;
fail:
  jaas_free(ps.cfg);
  return 0;
}

/* --- what the entries mean ------------------------------------------------------ */

const char *jaas_option_get(const jaas_entry *e, const char *key) {
  size_t i;
  for (i = e->noptions; i > 0; i--)
    if (strcmp(e->options[i - 1].key, key) == 0) return e->options[i - 1].value;
  return NULL;
}

const char *jaas_mechanism(const jaas_entry *e) {
  const char *m = e->module;
  if (strcmp(m, "com.sun.security.auth.module.Krb5LoginModule") == 0) return "GSSAPI";
  if (strcmp(m, "org.apache.kafka.common.security.plain.PlainLoginModule") == 0) return "PLAIN";
  if (strcmp(m, "org.apache.kafka.common.security.scram.ScramLoginModule") == 0) {
    const char *mech = jaas_option_get(e, "mechanism");
    return mech && strcasecmp(mech, "SCRAM-SHA-256") == 0 ? "SCRAM-SHA-256" : "SCRAM-SHA-512";
  }
  if (strcmp(m, "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule") == 0) return "OAUTHBEARER";
  return NULL;
}

const char *jaas_principal(const jaas_entry *e) {
  const char *mech = jaas_mechanism(e);
  if (mech == NULL) return NULL;
  if (strcmp(mech, "GSSAPI") == 0) return jaas_option_get(e, "principal");
  if (strcmp(mech, "PLAIN") == 0 || strncmp(mech, "SCRAM-", 6) == 0) return jaas_option_get(e, "username");
  return NULL;
}
