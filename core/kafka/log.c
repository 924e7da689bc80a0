/* librdkafka's log lines, carried to the Lua thread.
 *
 * librdkafka calls log_cb on its own threads, so the callback only queues
 * the line (secrets already scrubbed) in the client's bounded ring; a full
 * ring drops lines and counts them. Every client method is wrapped: when
 * it returns, still on the Lua thread that called it, the queued lines go
 * to the function set with kafka.set_logger(fn) -- kalua.log sets one --
 * kept per Lua state in the registry:
 *
 *   fn(severity, facility, message, requested, client_name, ts_ms)
 *
 * severity is syslog's (0..7); requested is true when the client asked for
 * its logs (conf `log = true` or a `debug` property). Without a logger, a
 * client that asked writes them to stderr, as librdkafka would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka/kafka_internal.h"

void kafka_logq_init(struct kafka_logq *q) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->lock, NULL);
  q->live = 1;
}

/* Frees the ring and its lock; lines still queued are lost. Idempotent. */
void kafka_logq_free(struct kafka_logq *q) {
  size_t i;
  if (!q->live) return;
  for (i = 0; q->lines && i < q->len; i++) free(q->lines[(q->head + i) % KAFKA_LOG_LINES_MAX].text);
  free(q->lines);
  q->lines = NULL;
  q->head = q->len = 0;
  pthread_mutex_destroy(&q->lock);
  q->live = 0;
}

static long long wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logq_push(struct kafka_logq *q, int level, char *text) {
  struct kafka_log_line *slot;
  pthread_mutex_lock(&q->lock);
  if (q->lines == NULL && text != NULL) q->lines = calloc(KAFKA_LOG_LINES_MAX, sizeof *q->lines);
  if (text == NULL || q->lines == NULL || q->len == KAFKA_LOG_LINES_MAX) {
    q->dropped++;
    pthread_mutex_unlock(&q->lock);
    free(text);
    return;
  }
  slot = &q->lines[(q->head + q->len) % KAFKA_LOG_LINES_MAX];
  slot->level = level;
  slot->ts_ms = wall_ms();
  slot->text = text;
  q->len++;
  pthread_mutex_unlock(&q->lock);
}

/* Takes the oldest line into *line (the caller frees line->text). */
static int logq_pop(struct kafka_logq *q, struct kafka_log_line *line) {
  int got = 0;
  pthread_mutex_lock(&q->lock);
  if (q->len > 0) {
    *line = q->lines[q->head];
    q->head = (q->head + 1) % KAFKA_LOG_LINES_MAX;
    q->len--;
    got = 1;
  }
  pthread_mutex_unlock(&q->lock);
  return got;
}

static unsigned long logq_take_dropped(struct kafka_logq *q) {
  unsigned long n;
  pthread_mutex_lock(&q->lock);
  n = q->dropped;
  q->dropped = 0;
  pthread_mutex_unlock(&q->lock);
  return n;
}

static int logq_pending(struct kafka_logq *q) {
  int pending;
  pthread_mutex_lock(&q->lock);
  pending = q->len > 0 || q->dropped > 0;
  pthread_mutex_unlock(&q->lock);
  return pending;
}

/* log_cb: runs on librdkafka's threads (and inside rd_kafka_new and
 * rd_kafka_destroy). Queue only. */
void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  kafka_client *c = rd_kafka_opaque(rk);
  size_t flen, mlen;
  char *text;
  if (c == NULL || !c->log_wanted) return;
  flen = strlen(fac) + 1;
  mlen = strlen(buf) + 1;
  if ((text = malloc(flen + mlen)) == NULL) {
    logq_push(&c->logq, level, NULL); /* counts the drop */
    return;
  }
  memcpy(text, fac, flen);
  memcpy(text + flen, buf, mlen);
  kafka_scrub(c, text + flen); /* the secrets live as long as rk does */
  logq_push(&c->logq, level, text);
}

/* One line to the logger at fn (a stack index), or to stderr. */
static void deliver(lua_State *L, kafka_client *c, int fn, int level, const char *fac, const char *msg, long long ts) {
  if (lua_isfunction(L, fn)) {
    lua_pushvalue(L, fn);
    lua_pushinteger(L, level);
    lua_pushstring(L, fac);
    lua_pushstring(L, msg);
    lua_pushboolean(L, c->log_requested);
    lua_pushstring(L, c->name);
    lua_pushinteger(L, (lua_Integer)ts);
    if (lua_pcall(L, 6, 0, 0) != LUA_OK) {
      lua_warning(L, "kalua.kafka: the log function failed: ", 1);
      lua_warning(L, lua_isstring(L, -1) ? lua_tostring(L, -1) : "(not a string)", 0);
      lua_pop(L, 1);
    }
  } else if (c->log_requested) {
    fprintf(stderr, "%%%d|%s|%s: %s\n", level, fac, c->name, msg);
  }
}

void kafka_drain_logs(lua_State *L, kafka_client *c) {
  struct kafka_log_line line;
  unsigned long dropped;
  int top = lua_gettop(L), fn;
  if (!c->logq.live || !logq_pending(&c->logq)) return;
  luaL_checkstack(L, 10, "draining librdkafka logs");
  lua_getfield(L, LUA_REGISTRYINDEX, KAFKA_LOGGER_KEY);
  fn = lua_gettop(L);
  while (logq_pop(&c->logq, &line)) {
    const char *fac = line.text, *msg = line.text + strlen(line.text) + 1;
    deliver(L, c, fn, line.level, fac, msg, line.ts_ms);
    free(line.text);
  }
  if ((dropped = logq_take_dropped(&c->logq)) > 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "%lu librdkafka log line(s) dropped: more than %d queued between two calls", dropped,
             KAFKA_LOG_LINES_MAX);
    deliver(L, c, fn, 4, "KALUA", msg, wall_ms());
  }
  lua_settop(L, top);
}

/* True when this Lua state has a logger: the client then queues its lines. */
int kafka_has_logger(lua_State *L) {
  int set = lua_getfield(L, LUA_REGISTRYINDEX, KAFKA_LOGGER_KEY) == LUA_TFUNCTION;
  lua_pop(L, 1);
  return set;
}

/* kafka.set_logger(fn | nil): where this state's clients send librdkafka's
 * lines from now on (clients made before a logger was set keep stderr). */
int kafka_set_logger(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, KAFKA_LOGGER_KEY);
  return 0;
}

/* A client method (upvalue 1) followed by a drain of the client's lines.
 * The method runs in this frame, so its argument errors name it as usual. */
static int method_then_drain(lua_State *L) {
  lua_CFunction method = lua_tocfunction(L, lua_upvalueindex(1));
  kafka_client *c = luaL_testudata(L, 1, lua_tostring(L, lua_upvalueindex(2)));
  int n = method(L);
  if (c) kafka_drain_logs(L, c);
  return n;
}

/* __gc: closes (upvalue 1), then frees the ring that close() left for a
 * last drain. */
static int gc_then_free(lua_State *L) {
  lua_CFunction close = lua_tocfunction(L, lua_upvalueindex(1));
  kafka_client *c = luaL_testudata(L, 1, lua_tostring(L, lua_upvalueindex(2)));
  close(L);
  if (c) kafka_logq_free(&c->logq);
  return 0;
}

static void wrap_field(lua_State *L, int t, const char *key, const char *mt, lua_CFunction wrapper) {
  lua_CFunction f;
  lua_getfield(L, t, key);
  f = lua_tocfunction(L, -1);
  if (f != NULL && lua_getupvalue(L, -1, 1) != NULL) {
    f = NULL; /* a closure's upvalues would be lost: leave it as it is */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (f == NULL) return;
  lua_pushcfunction(L, f);
  lua_pushstring(L, mt);
  lua_pushcclosure(L, wrapper, 2);
  lua_setfield(L, t, key);
}

void kafka_wrap_methods(lua_State *L, const char *mt) {
  int meta, methods;
  luaL_getmetatable(L, mt);
  meta = lua_gettop(L);
  lua_getfield(L, meta, "__index");
  methods = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, methods)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) wrap_field(L, methods, lua_tostring(L, -1), mt, method_then_drain);
  }
  wrap_field(L, meta, "__close", mt, method_then_drain);
  wrap_field(L, meta, "__gc", mt, gc_then_free);
  lua_settop(L, meta - 1);
}
