/* Metric families, series and the text exposition format (see metrics.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

/* --- buffers ------------------------------------------------------------ */

static int reserve(metrics_buf *b, size_t n) {
  size_t cap;
  char *grown;
  if (b->failed) return 0;
  if (b->len + n + 1 <= b->cap) return 1;
  cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1) cap *= 2;
  if ((grown = realloc(b->data, cap)) == NULL) {
    b->failed = 1;
    return 0;
  }
  b->data = grown;
  b->cap = cap;
  return 1;
}

void metrics_buf_add(metrics_buf *b, const char *s, size_t n) {
  if (!reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_puts(metrics_buf *b, const char *s) { metrics_buf_add(b, s, strlen(s)); }

void metrics_buf_addf(metrics_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void metrics_buf_free(metrics_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* --- names -------------------------------------------------------------- */

static int name_char(char c, int first, int colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return 1;
  if (colon && c == ':') return 1;
  return !first && c >= '0' && c <= '9';
}

int metrics_valid_name(const char *name) {
  const char *p;
  if (name[0] == '\0') return 0;
  for (p = name; *p; p++)
    if (!name_char(*p, p == name, 1)) return 0;
  return 1;
}

int metrics_valid_label_name(const char *name) {
  const char *p;
  if (name[0] == '\0' || (name[0] == '_' && name[1] == '_')) return 0;
  for (p = name; *p; p++)
    if (!name_char(*p, p == name, 0)) return 0;
  return 1;
}

/* --- the registry ------------------------------------------------------- */

void metrics_registry_init(metrics_registry *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->lock, NULL);
  r->healthy = 1;
}

static void free_family(metric_family *f) {
  metric_series *s, *next;
  int i;
  for (s = f->series; s; s = next) {
    next = s->next;
    free(s->labels);
    free(s->buckets);
    free(s);
  }
  for (i = 0; i < f->nlabels; i++) free(f->label_names[i]);
  free(f->label_names);
  free(f->bounds);
  free(f->name);
  free(f->help);
  free(f);
}

void metrics_registry_free(metrics_registry *r) {
  metric_family *f, *next;
  for (f = r->families; f; f = next) {
    next = f->next;
    free_family(f);
  }
  r->families = r->last = NULL;
  free(r->health_reason);
  r->health_reason = NULL;
  pthread_mutex_destroy(&r->lock);
}

static const char *type_name(metric_type t) {
  return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

/* Why an existing family does not match a new registration, or NULL. */
static const char *mismatch(const metric_family *f, const char *help, metric_type type, const char *const *label_names,
                            int nlabels, const double *bounds, int nbounds, char *why, size_t size) {
  int i;
  if (f->type != type) {
    snprintf(why, size, "%s is a %s, not a %s", f->name, type_name(f->type), type_name(type));
    return why;
  }
  if (strcmp(f->help, help) != 0) {
    snprintf(why, size, "%s is registered with another help text ('%s')", f->name, f->help);
    return why;
  }
  for (i = 0; i < nlabels && i < f->nlabels; i++)
    if (strcmp(f->label_names[i], label_names[i]) != 0) break;
  if (nlabels != f->nlabels || i < nlabels) {
    size_t o = (size_t)snprintf(why, size, "%s has labels {", f->name);
    for (i = 0; i < f->nlabels && o < size; i++)
      o += (size_t)snprintf(why + o, size - o, "%s%s", i ? "," : "", f->label_names[i]);
    if (o < size) snprintf(why + o, size - o, "%s", "}, every series must give exactly those");
    return why;
  }
  if (bounds && (nbounds != f->nbounds || memcmp(bounds, f->bounds, (size_t)nbounds * sizeof *bounds) != 0)) {
    snprintf(why, size, "%s is registered with other buckets", f->name);
    return why;
  }
  return NULL;
}

/* Prometheus' default buckets: request latencies in seconds. */
static const double default_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

metric_family *metrics_family(metrics_registry *r, const char *name, const char *help, metric_type type,
                              const char *const *label_names, int nlabels, const double *bounds, int nbounds,
                              char *why_buf, size_t why_size) {
  metric_family *f;
  int i;
  for (f = r->families; f; f = f->next)
    if (strcmp(f->name, name) == 0)
      return mismatch(f, help, type, label_names, nlabels, bounds, nbounds, why_buf, why_size) ? NULL : f;
  if (type == METRIC_HISTOGRAM && bounds == NULL) {
    bounds = default_bounds;
    nbounds = (int)(sizeof default_bounds / sizeof default_bounds[0]);
  }
  snprintf(why_buf, why_size, "out of memory");
  if ((f = calloc(1, sizeof *f)) == NULL) return NULL;
  f->type = type;
  f->name = strdup(name);
  f->help = strdup(help);
  f->label_names = calloc((size_t)nlabels + 1, sizeof *f->label_names);
  f->bounds = malloc(((size_t)nbounds + 1) * sizeof *f->bounds);
  if (!f->name || !f->help || !f->label_names || !f->bounds) {
    free_family(f);
    return NULL;
  }
  for (i = 0; i < nlabels; i++) {
    if ((f->label_names[i] = strdup(label_names[i])) == NULL) {
      free_family(f);
      return NULL;
    }
    f->nlabels = i + 1;
  }
  if (nbounds) memcpy(f->bounds, bounds, (size_t)nbounds * sizeof *bounds);
  f->nbounds = nbounds;
  if (r->last) r->last->next = f;
  else r->families = f;
  r->last = f;
  return f;
}

metric_series *metrics_series(metric_family *f, const char *labels) {
  metric_series *s;
  for (s = f->series; s; s = s->next)
    if (strcmp(s->labels, labels) == 0) return s;
  if ((s = calloc(1, sizeof *s)) == NULL) return NULL;
  s->labels = strdup(labels);
  if (f->type == METRIC_HISTOGRAM) s->buckets = calloc((size_t)f->nbounds + 1, sizeof *s->buckets);
  if (!s->labels || (f->type == METRIC_HISTOGRAM && !s->buckets)) {
    free(s->labels);
    free(s->buckets);
    free(s);
    return NULL;
  }
  if (f->last) f->last->next = s;
  else f->series = s;
  f->last = s;
  return s;
}

/* --- rendering ---------------------------------------------------------- */

void metrics_escape_label(metrics_buf *b, const char *v, size_t n) {
  size_t i, run = 0;
  for (i = 0; i < n; i++) {
    const char *esc = v[i] == '\\' ? "\\\\" : v[i] == '"' ? "\\\"" : v[i] == '\n' ? "\\n" : NULL;
    if (esc == NULL) continue;
    metrics_buf_add(b, v + run, i - run);
    buf_puts(b, esc);
    run = i + 1;
  }
  metrics_buf_add(b, v + run, n - run);
}

/* HELP text: only backslash and newline are escaped. */
static void escape_help(metrics_buf *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\') buf_puts(b, "\\\\");
    else if (*v == '\n') buf_puts(b, "\\n");
    else metrics_buf_add(b, v, 1);
  }
}

/* A sample value as Prometheus writes it: integers without a fraction,
 * others in the fewest digits that read back the same, +Inf, -Inf, NaN. */
static void add_number(metrics_buf *b, double v) {
  char text[40];
  int digits;
  if (isnan(v)) {
    buf_puts(b, "NaN");
    return;
  }
  if (isinf(v)) {
    buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  if (v == floor(v) && fabs(v) < 1e15) {
    metrics_buf_addf(b, "%.0f", v == 0 ? 0.0 : v);
    return;
  }
  for (digits = 15; digits < 17; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, v);
    if (strtod(text, NULL) == v) break;
  }
  snprintf(text, sizeof text, "%.*g", digits, v);
  buf_puts(b, text);
}

/* name{labels[,extra]} value\n */
static void add_sample(metrics_buf *b, const char *name, const char *suffix, const char *labels, const char *extra,
                       double value) {
  buf_puts(b, name);
  buf_puts(b, suffix);
  if (labels[0] || extra) {
    buf_puts(b, "{");
    buf_puts(b, labels);
    if (extra) {
      if (labels[0]) buf_puts(b, ",");
      buf_puts(b, extra);
    }
    buf_puts(b, "}");
  }
  buf_puts(b, " ");
  add_number(b, value);
  buf_puts(b, "\n");
}

static void render_histogram(metrics_buf *b, const metric_family *f, const metric_series *s) {
  unsigned long long cumulative = 0;
  metrics_buf le = {0};
  int i;
  for (i = 0; i <= f->nbounds; i++) {
    cumulative += s->buckets[i];
    le.len = 0;
    buf_puts(&le, "le=\"");
    if (i < f->nbounds) add_number(&le, f->bounds[i]);
    else buf_puts(&le, "+Inf");
    buf_puts(&le, "\"");
    if (le.failed) {
      b->failed = 1;
      break;
    }
    add_sample(b, f->name, "_bucket", s->labels, le.data, (double)cumulative);
  }
  metrics_buf_free(&le);
  add_sample(b, f->name, "_sum", s->labels, NULL, s->sum);
  add_sample(b, f->name, "_count", s->labels, NULL, (double)s->count);
}

void metrics_render(metrics_registry *r, metrics_buf *out) {
  const metric_family *f;
  const metric_series *s;
  for (f = r->families; f; f = f->next) {
    buf_puts(out, "# HELP ");
    buf_puts(out, f->name);
    buf_puts(out, " ");
    escape_help(out, f->help);
    metrics_buf_addf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    for (s = f->series; s; s = s->next) {
      if (f->type == METRIC_HISTOGRAM) render_histogram(out, f, s);
      else add_sample(out, f->name, "", s->labels, NULL, s->value);
    }
  }
}
