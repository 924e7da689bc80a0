/* kalua.metrics: Prometheus metrics kept in C, rendered in the text
 * exposition format 0.0.4, served over HTTP from a thread of their own.
 *
 *   local metrics = require "kalua.metrics"
 *   local reg <close> = metrics.registry()
 *   reg:counter(name, help [, {label = value, ...}]) -> Counter   :add([n]) :inc() :value()
 *   reg:gauge(name, help [, labels])                 -> Gauge     :set(v) :add(n) :inc() :dec() :value()
 *   reg:histogram(name, help [, buckets [, labels]]) -> Histogram :observe(v) :value() -> count, sum
 *                                                      :add_buckets(counts, sum) (a histogram kept elsewhere)
 *   reg:render()                 -> the exposition text
 *   reg:serve("127.0.0.1:9464")  -> "127.0.0.1:9464" | nil, message, name
 *                                   (":9464" every interface; port 0 picks a free one)
 *   reg:address()                -> where it serves, or nil
 *   reg:health(false, "reason")  /healthz answers 503 with the reason (true: 200 "ok");
 *   reg:health()                 -> ok, reason
 *   reg:write_textfile(path)     -> true | nil, message, name (temp file + rename)
 *   reg:close()                  stops and joins the server (also __close, __gc)
 *
 * Asking for the same name and labels again gives the same series; the
 * same name with another type, help, label names or buckets raises, as
 * does a name outside Prometheus' rules. The server answers GET /metrics
 * and /healthz (404 otherwise) from its own thread, one connection at a
 * time, without the Lua state: the Lua thread never waits for a scraper. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kalua_util.h"
#include "metrics/metrics.h"

#define REGISTRY_MT "kalua.metrics.Registry"
#define COUNTER_MT "kalua.metrics.Counter"
#define GAUGE_MT "kalua.metrics.Gauge"
#define HISTOGRAM_MT "kalua.metrics.Histogram"
#define MAX_BUCKETS 256

typedef struct {
  metrics_registry *reg; /* the registry's userdata, kept alive through uservalue 1 */
  metric_family *family; /* freed with the registry: look at reg->closed first */
  metric_series *series;
  metric_type type;
} metric_ud;

static metrics_registry *check_registry(lua_State *L) {
  metrics_registry *r = luaL_checkudata(L, 1, REGISTRY_MT);
  if (r->closed) luaL_error(L, "metrics registry is closed");
  return r;
}

static metric_ud *check_metric(lua_State *L, const char *mt) {
  metric_ud *m = luaL_checkudata(L, 1, mt);
  if (m->reg->closed) luaL_error(L, "metrics registry is closed");
  return m;
}

/* --- registering -------------------------------------------------------- */

typedef struct {
  const char *name, *value;
  size_t value_len;
} label;

static int label_less(const void *a, const void *b) { return strcmp(((const label *)a)->name, ((const label *)b)->name); }

/* Reads the labels table at idx (may be nil) into a sorted array (a
 * userdata pushed on the stack; the strings stay anchored in a table
 * pushed below it). Returns the count. */
static int read_labels(lua_State *L, int idx, metric_type type, label **out) {
  int n = 0, i = 0;
  label *labels;
  lua_newtable(L); /* name -> value as a string */
  if (!lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      const char *name;
      if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, idx, "label names must be strings");
      name = lua_tostring(L, -2);
      if (!metrics_valid_label_name(name))
        luaL_argerror(L, idx, lua_pushfstring(L, "invalid label name '%s' (want [a-zA-Z_][a-zA-Z0-9_]*, not __*)", name));
      if (type == METRIC_HISTOGRAM && strcmp(name, "le") == 0)
        luaL_argerror(L, idx, "'le' is the histogram's own label");
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_argerror(L, idx, lua_pushfstring(L, "label '%s' must be a string, number or boolean", name));
      lua_pushvalue(L, -2);
      luaL_tolstring(L, -2, NULL);
      lua_settable(L, -5);
      lua_pop(L, 1);
      n++;
    }
  }
  labels = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *labels, 0);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    labels[i].name = lua_tostring(L, -2);
    labels[i].value = lua_tolstring(L, -1, &labels[i].value_len);
    i++;
    lua_pop(L, 1);
  }
  qsort(labels, (size_t)n, sizeof *labels, label_less);
  *out = labels;
  return n;
}

/* Reads the buckets table at idx: increasing finite bounds (+Inf, when
 * given last, is implied anyway). NULL when nil. */
static double *read_buckets(lua_State *L, int idx, int *n) {
  double *bounds;
  lua_Integer i, len;
  *n = 0;
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  len = luaL_len(L, idx);
  luaL_argcheck(L, len >= 1 && len <= MAX_BUCKETS, idx, "buckets must list 1 to 256 upper bounds");
  bounds = lua_newuserdatauv(L, (size_t)len * sizeof *bounds, 0);
  for (i = 1; i <= len; i++) {
    int isnum;
    lua_geti(L, idx, i);
    bounds[*n] = lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || isnan(bounds[*n])) luaL_argerror(L, idx, "buckets must be numbers");
    if (isinf(bounds[*n]) && bounds[*n] > 0 && i == len) break;
    if (isinf(bounds[*n]) || (*n > 0 && bounds[*n] <= bounds[*n - 1]))
      luaL_argerror(L, idx, "buckets must be finite and increasing");
    (*n)++;
  }
  luaL_argcheck(L, *n >= 1, idx, "buckets need a finite upper bound");
  return bounds;
}

static void add_escaped(luaL_Buffer *b, const char *v, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (v[i] == '\\') luaL_addstring(b, "\\\\");
    else if (v[i] == '"') luaL_addstring(b, "\\\"");
    else if (v[i] == '\n') luaL_addstring(b, "\\n");
    else luaL_addchar(b, v[i]);
  }
}

static int new_metric(lua_State *L, metric_type type, const char *mt) {
  metrics_registry *r = check_registry(L);
  const char *name = luaL_checkstring(L, 2), *help = luaL_checkstring(L, 3);
  const char **names;
  double *bounds = NULL;
  int nbounds = 0, n, i;
  label *labels;
  luaL_Buffer b;
  metric_family *f;
  metric_series *s = NULL;
  metric_ud *m;
  char why[256];
  if (!metrics_valid_name(name))
    return luaL_argerror(L, 2, lua_pushfstring(L, "invalid metric name '%s' (want [a-zA-Z_:][a-zA-Z0-9_:]*)", name));
  lua_settop(L, type == METRIC_HISTOGRAM ? 5 : 4); /* what we push lands above the arguments */
  if (type == METRIC_HISTOGRAM) bounds = read_buckets(L, 4, &nbounds);
  n = read_labels(L, type == METRIC_HISTOGRAM ? 5 : 4, type, &labels);
  names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  for (i = 0; i < n; i++) names[i] = labels[i].name;
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    if (i) luaL_addchar(&b, ',');
    luaL_addstring(&b, labels[i].name);
    luaL_addstring(&b, "=\"");
    add_escaped(&b, labels[i].value, labels[i].value_len);
    luaL_addchar(&b, '"');
  }
  luaL_pushresult(&b);
  pthread_mutex_lock(&r->lock);
  f = metrics_family(r, name, help, type, names, n, bounds, nbounds, why, sizeof why);
  if (f) s = metrics_series(f, lua_tostring(L, -1));
  pthread_mutex_unlock(&r->lock);
  if (f == NULL) return luaL_error(L, "metrics: %s", why);
  if (s == NULL) return luaL_error(L, "metrics: out of memory");
  m = lua_newuserdatauv(L, sizeof *m, 1);
  m->reg = r;
  m->family = f;
  m->series = s;
  m->type = type;
  luaL_setmetatable(L, mt);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int registry_counter(lua_State *L) { return new_metric(L, METRIC_COUNTER, COUNTER_MT); }
static int registry_gauge(lua_State *L) { return new_metric(L, METRIC_GAUGE, GAUGE_MT); }
static int registry_histogram(lua_State *L) { return new_metric(L, METRIC_HISTOGRAM, HISTOGRAM_MT); }

/* --- values ------------------------------------------------------------- */

static void add_value(metric_ud *m, double v) {
  pthread_mutex_lock(&m->reg->lock);
  m->series->value += v;
  pthread_mutex_unlock(&m->reg->lock);
}

static int push_value(lua_State *L, metric_ud *m) {
  double v;
  pthread_mutex_lock(&m->reg->lock);
  v = m->series->value;
  pthread_mutex_unlock(&m->reg->lock);
  lua_pushnumber(L, v);
  return 1;
}

/* counter:add([n]) n >= 0, default 1 */
static int counter_add(lua_State *L) {
  metric_ud *m = check_metric(L, COUNTER_MT);
  double n = luaL_optnumber(L, 2, 1);
  luaL_argcheck(L, n >= 0 && !isinf(n), 2, "a counter only goes up (add a finite n >= 0)");
  add_value(m, n);
  return 0;
}

static int counter_value(lua_State *L) { return push_value(L, check_metric(L, COUNTER_MT)); }

static int gauge_set(lua_State *L) {
  metric_ud *m = check_metric(L, GAUGE_MT);
  double v = luaL_checknumber(L, 2);
  pthread_mutex_lock(&m->reg->lock);
  m->series->value = v;
  pthread_mutex_unlock(&m->reg->lock);
  return 0;
}

static int gauge_add(lua_State *L) {
  add_value(check_metric(L, GAUGE_MT), luaL_optnumber(L, 2, 1));
  return 0;
}

static int gauge_dec(lua_State *L) {
  add_value(check_metric(L, GAUGE_MT), -luaL_optnumber(L, 2, 1));
  return 0;
}

static int gauge_value(lua_State *L) { return push_value(L, check_metric(L, GAUGE_MT)); }

static int histogram_observe(lua_State *L) {
  metric_ud *m = check_metric(L, HISTOGRAM_MT);
  double v = luaL_checknumber(L, 2);
  const metric_family *f = m->family;
  int b = 0;
  luaL_argcheck(L, !isnan(v), 2, "cannot observe NaN");
  while (b < f->nbounds && v > f->bounds[b]) b++;
  pthread_mutex_lock(&m->reg->lock);
  m->series->buckets[b]++;
  m->series->count++;
  m->series->sum += v;
  pthread_mutex_unlock(&m->reg->lock);
  return 0;
}

/* histogram:add_buckets(counts, sum): counts[i] observations fell in
 * bucket i (not cumulative; one more than the bounds, +Inf last) and
 * added up to sum. For mirroring a histogram counted elsewhere with the
 * same bounds (kalua.storage's store:stats()). */
static int histogram_add_buckets(lua_State *L) {
  metric_ud *m = check_metric(L, HISTOGRAM_MT);
  int nb = m->family->nbounds, i;
  double sum = luaL_checknumber(L, 3);
  unsigned long long *add, total = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (luaL_len(L, 2) != nb + 1)
    return luaL_argerror(L, 2, lua_pushfstring(L, "want %d counts (the %d buckets and +Inf)", nb + 1, nb));
  add = lua_newuserdatauv(L, (size_t)(nb + 1) * sizeof *add, 0);
  for (i = 0; i <= nb; i++) {
    int isnum;
    lua_Integer c;
    lua_geti(L, 2, i + 1);
    c = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || c < 0) return luaL_argerror(L, 2, "counts must be integers >= 0");
    add[i] = (unsigned long long)c;
    total += add[i];
  }
  pthread_mutex_lock(&m->reg->lock);
  for (i = 0; i <= nb; i++) m->series->buckets[i] += add[i];
  m->series->count += total;
  m->series->sum += sum;
  pthread_mutex_unlock(&m->reg->lock);
  return 0;
}

/* histogram:value() -> count, sum */
static int histogram_value(lua_State *L) {
  metric_ud *m = check_metric(L, HISTOGRAM_MT);
  unsigned long long count;
  double sum;
  pthread_mutex_lock(&m->reg->lock);
  count = m->series->count;
  sum = m->series->sum;
  pthread_mutex_unlock(&m->reg->lock);
  lua_pushinteger(L, (lua_Integer)count);
  lua_pushnumber(L, sum);
  return 2;
}

static int metric_tostring(lua_State *L) {
  metric_ud *m = lua_touserdata(L, 1);
  const char *kind = m->type == METRIC_COUNTER ? "Counter" : m->type == METRIC_GAUGE ? "Gauge" : "Histogram";
  if (m->reg->closed) lua_pushfstring(L, "kalua.metrics.%s (closed)", kind);
  else lua_pushfstring(L, "kalua.metrics.%s (%s{%s})", kind, m->family->name, m->series->labels);
  return 1;
}

/* A metric handle's type: it owns nothing (the registry does), so it has
 * no __gc and no close. */
static void new_metric_type(lua_State *L, const char *name, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, metric_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* --- the registry ------------------------------------------------------- */

static int metrics_registry_new(lua_State *L) {
  metrics_registry *r = lua_newuserdatauv(L, sizeof *r, 0);
  metrics_registry_init(r);
  luaL_setmetatable(L, REGISTRY_MT);
  return 1;
}

/* The exposition text as a Lua string. */
static int push_rendered(lua_State *L, metrics_registry *r) {
  metrics_buf out = {0};
  pthread_mutex_lock(&r->lock);
  metrics_render(r, &out);
  pthread_mutex_unlock(&r->lock);
  if (out.failed) {
    metrics_buf_free(&out);
    return luaL_error(L, "metrics: out of memory rendering");
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  metrics_buf_free(&out);
  return 1;
}

static int registry_render(lua_State *L) { return push_rendered(L, check_registry(L)); }

static int registry_serve(lua_State *L) {
  metrics_registry *r = check_registry(L);
  const char *addr = luaL_checkstring(L, 2), *name = "IO_ERROR";
  char err[512];
  if (r->server) return luaL_error(L, "metrics: already serving at %s", metrics_server_address(r->server));
  if ((r->server = metrics_serve(r, addr, err, sizeof err, &name)) == NULL) return kalua_fail(L, err, name);
  lua_pushstring(L, metrics_server_address(r->server));
  return 1;
}

static int registry_address(lua_State *L) {
  metrics_registry *r = check_registry(L);
  if (r->server == NULL) return 0;
  lua_pushstring(L, metrics_server_address(r->server));
  return 1;
}

/* reg:health(ok [, reason]) sets what /healthz answers; reg:health() -> ok, reason */
static int registry_health(lua_State *L) {
  metrics_registry *r = check_registry(L);
  char *reason = NULL;
  if (lua_isnone(L, 2)) {
    pthread_mutex_lock(&r->lock);
    lua_pushboolean(L, r->healthy);
    if (r->health_reason) lua_pushstring(L, r->health_reason);
    else lua_pushnil(L);
    pthread_mutex_unlock(&r->lock);
    return 2;
  }
  if (!lua_isnoneornil(L, 3) && (reason = strdup(luaL_checkstring(L, 3))) == NULL)
    return luaL_error(L, "metrics: out of memory");
  pthread_mutex_lock(&r->lock);
  r->healthy = lua_toboolean(L, 2);
  free(r->health_reason);
  r->health_reason = reason;
  pthread_mutex_unlock(&r->lock);
  return 0;
}

/* reg:write_textfile(path): the exposition into path.XXXXXX in the same
 * directory, fsync'd, made readable (0644) and renamed over path, so
 * node_exporter's textfile collector never reads half a file. */
static int registry_write_textfile(lua_State *L) {
  metrics_registry *r = check_registry(L);
  const char *path = luaL_checkstring(L, 2), *text;
  size_t len, done = 0;
  char *tmp;
  int fd, e = 0;
  push_rendered(L, r);
  text = lua_tolstring(L, -1, &len);
  tmp = lua_newuserdatauv(L, strlen(path) + 8, 0);
  snprintf(tmp, strlen(path) + 8, "%s.XXXXXX", path);
  if ((fd = mkstemp(tmp)) < 0)
    return kalua_fail(L, lua_pushfstring(L, "metrics: cannot create a file beside %s: %s", path, strerror(errno)),
                      "IO_ERROR");
  while (done < len && e == 0) {
    ssize_t n = write(fd, text + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) e = n < 0 ? errno : EIO;
    else done += (size_t)n;
  }
  if (e == 0 && fchmod(fd, 0644) != 0) e = errno;
  if (e == 0 && fsync(fd) != 0) e = errno;
  if (close(fd) != 0 && e == 0) e = errno;
  if (e == 0 && rename(tmp, path) != 0) e = errno;
  if (e != 0) {
    unlink(tmp);
    return kalua_fail(L, lua_pushfstring(L, "metrics: cannot write %s: %s", path, strerror(e)), "IO_ERROR");
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int registry_close(lua_State *L) {
  metrics_registry *r = luaL_checkudata(L, 1, REGISTRY_MT);
  if (r->closed) return 0;
  if (r->server) metrics_server_stop(r->server);
  r->server = NULL;
  metrics_registry_free(r);
  r->closed = 1;
  return 0;
}

static int registry_tostring(lua_State *L) {
  metrics_registry *r = luaL_checkudata(L, 1, REGISTRY_MT);
  const metric_family *f;
  int n = 0;
  if (r->closed) {
    lua_pushliteral(L, "kalua.metrics.Registry (closed)");
    return 1;
  }
  pthread_mutex_lock(&r->lock);
  for (f = r->families; f; f = f->next) n++;
  pthread_mutex_unlock(&r->lock);
  if (r->server) lua_pushfstring(L, "kalua.metrics.Registry (%d families, serving at %s)", n, metrics_server_address(r->server));
  else lua_pushfstring(L, "kalua.metrics.Registry (%d families)", n);
  return 1;
}

/* metrics.valid_name(name) -> true when Prometheus accepts it as a metric name */
static int metrics_is_valid_name(lua_State *L) {
  lua_pushboolean(L, metrics_valid_name(luaL_checkstring(L, 1)));
  return 1;
}

static const luaL_Reg registry_methods[] = {
  {"counter", registry_counter}, {"gauge", registry_gauge}, {"histogram", registry_histogram},
  {"render", registry_render}, {"serve", registry_serve}, {"address", registry_address},
  {"health", registry_health}, {"write_textfile", registry_write_textfile},
  {NULL, NULL}
};

static const luaL_Reg counter_methods[] = {
  {"add", counter_add}, {"inc", counter_add}, {"value", counter_value}, {NULL, NULL}
};

static const luaL_Reg gauge_methods[] = {
  {"set", gauge_set}, {"add", gauge_add}, {"inc", gauge_add}, {"dec", gauge_dec}, {"value", gauge_value},
  {NULL, NULL}
};

static const luaL_Reg histogram_methods[] = {
  {"observe", histogram_observe}, {"add_buckets", histogram_add_buckets}, {"value", histogram_value},
  {NULL, NULL}
};

static const luaL_Reg metrics_funcs[] = {
  {"registry", metrics_registry_new},
  {"valid_name", metrics_is_valid_name},
  {NULL, NULL}
};

int luaopen_kalua_metrics(lua_State *L) {
  kalua_newtype(L, REGISTRY_MT, registry_methods, registry_close, registry_tostring);
  new_metric_type(L, COUNTER_MT, counter_methods);
  new_metric_type(L, GAUGE_MT, gauge_methods);
  new_metric_type(L, HISTOGRAM_MT, histogram_methods);
  luaL_newlib(L, metrics_funcs);
  return 1;
}
