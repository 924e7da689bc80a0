/* kalua.metrics inside: a registry of metric families, their series and
 * values, rendered in the Prometheus text exposition format 0.0.4, and a
 * small HTTP server that serves it from its own thread.
 *
 * Plain C, no Lua: a registry's values may be updated from any thread
 * (one mutex per registry guards families, series, values and health), and
 * the server thread reads them without the Lua state. Nothing is global:
 * two registries share nothing. */
#ifndef KALUA_METRICS_H
#define KALUA_METRICS_H

#include <pthread.h>
#include <stddef.h>

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

typedef struct metric_series {
  char *labels; /* rendered pairs: a="x",b="y" (escaped), "" for none */
  double value; /* counter or gauge */
  double sum;   /* histogram */
  unsigned long long count;
  unsigned long long *buckets; /* histogram: per bucket, nbounds + 1 (+Inf last) */
  struct metric_series *next;
} metric_series;

typedef struct metric_family {
  char *name, *help;
  metric_type type;
  char **label_names; /* sorted */
  int nlabels;
  double *bounds; /* histogram: increasing, +Inf left out */
  int nbounds;
  metric_series *series, *last;
  struct metric_family *next;
} metric_family;

typedef struct metrics_server metrics_server;

typedef struct {
  pthread_mutex_t lock;
  metric_family *families, *last;
  int healthy;
  char *health_reason;
  metrics_server *server;
  int closed;
} metrics_registry;

/* A text buffer that grows; on out of memory it stays truncated and
 * failed is set. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} metrics_buf;

void metrics_buf_add(metrics_buf *b, const char *s, size_t n);
void metrics_buf_addf(metrics_buf *b, const char *fmt, ...);
void metrics_buf_free(metrics_buf *b);

void metrics_registry_init(metrics_registry *r);
/* Frees families and health; the server must be stopped first. */
void metrics_registry_free(metrics_registry *r);

/* Prometheus name rules: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label
 * names [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__". */
int metrics_valid_name(const char *name);
int metrics_valid_label_name(const char *name);

/* The family `name`, made when missing; NULL with why written into
 * why_buf when it exists with another type, help, labels or buckets.
 * label_names sorted; bounds NULL: the family's, or Prometheus' default
 * buckets for a new histogram. Call with the lock held. */
metric_family *metrics_family(metrics_registry *r, const char *name, const char *help, metric_type type,
                              const char *const *label_names, int nlabels, const double *bounds, int nbounds,
                              char *why_buf, size_t why_size);
/* The family's series for the rendered labels, made when missing; NULL
 * when out of memory. Call with the lock held. */
metric_series *metrics_series(metric_family *f, const char *labels);

/* Appends a label value escaped for the exposition format (\\, \", \n). */
void metrics_escape_label(metrics_buf *b, const char *v, size_t n);

/* Renders every family (text format 0.0.4). Call with the lock held. */
void metrics_render(metrics_registry *r, metrics_buf *out);

/* The server: listens on addr ("host:port", ":port", "[::1]:port"; port
 * 0 picks a free one) and serves GET /metrics and /healthz from a thread
 * of its own, one connection at a time. NULL with err set (and *name the
 * symbolic error). */
metrics_server *metrics_serve(metrics_registry *r, const char *addr, char *err, size_t errlen, const char **name);
/* "127.0.0.1:9464" (or "[::]:9464") of the listening socket. */
const char *metrics_server_address(const metrics_server *s);
/* Wakes, joins and frees the server. Call without the lock. */
void metrics_server_stop(metrics_server *s);

#endif
