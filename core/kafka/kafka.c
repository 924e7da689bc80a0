/* kalua.kafka: Kafka clients over librdkafka.
 *
 * kafka.producer(conf), kafka.consumer(conf), kafka.admin(conf) return
 * objects or nil, message, name where name is librdkafka's error name
 * ("_TRANSPORT", "_AUTHENTICATION", "TOPIC_ALREADY_EXISTS", ...).
 * kafka.set_logger(fn) routes librdkafka's log lines to fn (see log.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/kafka_internal.h"
#include "kafka/relay.h"

void kafka_client_init(kafka_client *c, const char *kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->timeout_ms = 10000;
  pthread_mutex_init(&c->lock, NULL);
  kafka_logq_init(&c->logq);
}

void kafka_client_release(kafka_client *c) {
  size_t i;
  relay_destroy(c->relay); /* joins its threads before the lock goes */
  c->relay = NULL;
  for (i = 0; i < c->dr_len; i++) free(c->dr[i].topic);
  free(c->dr);
  c->dr = NULL;
  c->dr_len = c->dr_cap = 0;
  for (i = 0; i < KAFKA_SECRETS_MAX; i++) {
    if (c->secrets[i]) {
      memset(c->secrets[i], 0, strlen(c->secrets[i]));
      free(c->secrets[i]);
      c->secrets[i] = NULL;
    }
  }
  pthread_mutex_destroy(&c->lock);
}

static int is_auth_error(rd_kafka_resp_err_t err, const char *reason) {
  return err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
         err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED ||
         (reason && strstr(reason, "SASL authentication") != NULL);
}

/* Runs inside rd_kafka_poll/consumer_poll or a librdkafka thread: store only. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kafka_client *c = opaque;
  (void)rk;
  pthread_mutex_lock(&c->lock);
  if (is_auth_error(err, reason)) {
    c->auth_err = RD_KAFKA_RESP_ERR__AUTHENTICATION;
    snprintf(c->auth_errstr, sizeof c->auth_errstr, "%s", reason);
  } else {
    c->last_err = err;
    snprintf(c->last_errstr, sizeof c->last_errstr, "%s", reason);
  }
  pthread_mutex_unlock(&c->lock);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  kafka_client *c = opaque;
  struct kafka_delivery *d;
  (void)rk;
  pthread_mutex_lock(&c->lock);
  if (m->err && !c->dr_first_err) {
    c->dr_first_err = m->err;
    snprintf(c->dr_first_topic, sizeof c->dr_first_topic, "%s", rd_kafka_topic_name(m->rkt));
  }
  if (c->dr_len == c->dr_cap) {
    size_t cap = c->dr_cap ? c->dr_cap * 2 : 64;
    struct kafka_delivery *grown = realloc(c->dr, cap * sizeof *grown);
    if (grown == NULL) goto out; /* the report is lost, the count stays right */
    c->dr = grown;
    c->dr_cap = cap;
  }
  d = &c->dr[c->dr_len++];
  d->topic = strdup(rd_kafka_topic_name(m->rkt));
  d->partition = m->partition;
  d->offset = m->offset;
  d->err = m->err;
out:
  pthread_mutex_unlock(&c->lock);
}

void kafka_install_callbacks(rd_kafka_conf_t *conf, kafka_client *c) {
  rd_kafka_conf_set_opaque(conf, c);
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_log_cb(conf, kafka_on_log); /* log.c: queued for the Lua thread */
  /* A consumer would log a CONFWARN for a delivery callback. */
  if (strcmp(c->kind, "consumer") != 0) rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
}

/* Replaces every secret in msg (in place) with "***". */
void kafka_scrub(kafka_client *c, char *msg) {
  int i;
  for (i = 0; i < KAFKA_SECRETS_MAX; i++) {
    const char *s = c->secrets[i];
    size_t n = s ? strlen(s) : 0;
    char *at;
    if (n < 3) continue;
    while ((at = strstr(msg, s)) != NULL) {
      memcpy(at, "***", 3);
      memmove(at + 3, at + n, strlen(at + n) + 1);
    }
  }
}

static int push_failure(lua_State *L, kafka_client *c, const char *msg, const char *name) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", msg);
  if (c) kafka_scrub(c, buf);
  lua_pushnil(L);
  lua_pushstring(L, buf);
  lua_pushstring(L, name);
  return 3;
}

int kafka_fail_msg(lua_State *L, kafka_client *c, const char *msg, const char *name) {
  return push_failure(L, c, msg, name);
}

/* Explains a failure. A recorded authentication error wins: a wrong
 * password otherwise shows up as a bare timeout. Other recorded errors
 * (TLS handshake, connection refused) are added as the likely cause. */
int kafka_fail(lua_State *L, kafka_client *c, rd_kafka_resp_err_t err, const char *what) {
  char msg[1024];
  rd_kafka_resp_err_t auth, last;
  char auth_str[KAFKA_ERRSTR_MAX], last_str[KAFKA_ERRSTR_MAX], relay_str[KAFKA_ERRSTR_MAX];
  int relay_auth = 0, relay_cause = 0;
  if (c && c->rk) rd_kafka_poll(c->rk, 0); /* serve pending error callbacks */
  if (c) {
    pthread_mutex_lock(&c->lock);
    auth = c->auth_err;
    last = c->last_err;
    memcpy(auth_str, c->auth_errstr, sizeof auth_str);
    memcpy(last_str, c->last_errstr, sizeof last_str);
    pthread_mutex_unlock(&c->lock);
  } else {
    auth = last = RD_KAFKA_RESP_ERR_NO_ERROR;
    auth_str[0] = last_str[0] = '\0';
  }
  /* Behind the relay librdkafka only sees a closed socket: the relay's own
   * reason (connect refused, ...) explains it better. */
  if (c && c->relay && relay_last_failure(c->relay, relay_str, sizeof relay_str, &relay_auth) && !relay_auth) {
    memcpy(last_str, relay_str, sizeof last_str);
    relay_cause = 1;
  }
  if (auth) {
    if (c->mechanism[0] && strstr(auth_str, c->mechanism) == NULL)
      snprintf(msg, sizeof msg, "%s: SASL authentication failed with mechanism %s: %s", what, c->mechanism, auth_str);
    else
      snprintf(msg, sizeof msg, "%s: %s", what, auth_str);
    return push_failure(L, c, msg, rd_kafka_err2name(auth));
  }
  if (((last && last != err) || relay_cause) &&
      (err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
       err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)) {
    snprintf(msg, sizeof msg, "%s: %s (%s)", what, rd_kafka_err2str(err), last_str);
    return push_failure(L, c, msg, rd_kafka_err2name(err));
  }
  snprintf(msg, sizeof msg, "%s: %s", what, rd_kafka_err2str(err));
  return push_failure(L, c, msg, rd_kafka_err2name(err));
}

int kafka_fail_error(lua_State *L, kafka_client *c, rd_kafka_error_t *error) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", rd_kafka_error_string(error));
  push_failure(L, c, msg, rd_kafka_error_name(error));
  rd_kafka_error_destroy(error);
  return 3;
}

static void push_bytes(lua_State *L, const void *p, size_t len) {
  if (p == NULL)
    lua_pushnil(L);
  else
    lua_pushlstring(L, p, len);
}

static void push_headers(lua_State *L, const rd_kafka_message_t *m) {
  rd_kafka_headers_t *hdrs = NULL;
  size_t i;
  const char *name;
  const void *value;
  size_t size;
  lua_newtable(L);
  /* headers() parses from the message and needs a mutable pointer. */
  if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  for (i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
    lua_createtable(L, 2, 0);
    lua_pushstring(L, name);
    lua_rawseti(L, -2, 1);
    push_bytes(L, value, size);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

void kafka_push_message(lua_State *L, const rd_kafka_message_t *m) {
  rd_kafka_timestamp_type_t tstype;
  int64_t ts = rd_kafka_message_timestamp(m, &tstype);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, rd_kafka_topic_name(m->rkt));
  lua_setfield(L, -2, "topic");
  lua_pushinteger(L, m->partition);
  lua_setfield(L, -2, "partition");
  lua_pushinteger(L, m->offset);
  lua_setfield(L, -2, "offset");
  if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
    lua_pushinteger(L, ts);
    lua_setfield(L, -2, "timestamp");
    lua_pushstring(L, tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? "create" : "log_append");
    lua_setfield(L, -2, "timestamp_type");
  }
  push_bytes(L, m->key, m->key_len);
  lua_setfield(L, -2, "key");
  push_bytes(L, m->payload, m->len);
  lua_setfield(L, -2, "value");
  push_headers(L, m);
  lua_setfield(L, -2, "headers");
}

/* An offset argument: a number, "beginning", "end", "stored", or
 * {timestamp = ms} (then *timestamp is set and INVALID returned). */
int64_t kafka_check_offset(lua_State *L, int idx, int64_t *timestamp) {
  *timestamp = -1;
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      return (int64_t)luaL_checkinteger(L, idx);
    case LUA_TSTRING: {
      const char *s = lua_tostring(L, idx);
      if (strcmp(s, "beginning") == 0) return RD_KAFKA_OFFSET_BEGINNING;
      if (strcmp(s, "end") == 0) return RD_KAFKA_OFFSET_END;
      if (strcmp(s, "stored") == 0) return RD_KAFKA_OFFSET_STORED;
      return luaL_error(L, "bad offset '%s' (expected a number, 'beginning', 'end', 'stored' or {timestamp=ms})", s);
    }
    case LUA_TTABLE:
      if (lua_getfield(L, idx, "timestamp") != LUA_TNUMBER)
        luaL_error(L, "offset table needs a numeric 'timestamp' (ms)");
      *timestamp = (int64_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
      return RD_KAFKA_OFFSET_INVALID;
    case LUA_TNIL:
    case LUA_TNONE:
      return RD_KAFKA_OFFSET_INVALID;
    default:
      return luaL_typeerror(L, idx, "offset");
  }
}

/* Pushes t[name], or t[i] when the named field is absent. */
static void field_or_index(lua_State *L, int t, const char *name, int i) {
  t = lua_absindex(L, t);
  if (lua_getfield(L, t, name) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawgeti(L, t, i);
  }
}

/* Raises unless entry i of the list at idx names a topic and partition
 * (and, with_offsets, a valid offset). */
static void check_partition_entry(lua_State *L, int idx, lua_Integer i, int with_offsets) {
  int64_t ts;
  if (lua_rawgeti(L, idx, i) != LUA_TTABLE) luaL_error(L, "partition list entry %d is not a table", (int)i);
  field_or_index(L, -1, "topic", 1);
  field_or_index(L, -2, "partition", 2);
  if (!lua_isstring(L, -2) || !lua_isinteger(L, -1))
    luaL_error(L, "partition list entry %d needs topic and partition", (int)i);
  lua_pop(L, 2);
  if (with_offsets) {
    field_or_index(L, -1, "offset", 3);
    kafka_check_offset(L, -1, &ts);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* A list of {topic=, partition=[, offset=]} (or {topic, partition, offset})
 * as a librdkafka partition list. Timestamps are put in the offset field
 * and flagged with opaque = (void*)1 for offsets_for_times. Everything is
 * checked before the list is allocated, so a raised error leaks nothing. */
rd_kafka_topic_partition_list_t *kafka_check_partitions(lua_State *L, int idx, int with_offsets) {
  rd_kafka_topic_partition_list_t *list;
  lua_Integer i, n;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  n = luaL_len(L, idx);
  for (i = 1; i <= n; i++) check_partition_entry(L, idx, i, with_offsets);
  list = rd_kafka_topic_partition_list_new((int)(n > 0 ? n : 1));
  for (i = 1; i <= n; i++) {
    rd_kafka_topic_partition_t *tp;
    lua_rawgeti(L, idx, i);
    field_or_index(L, -1, "topic", 1);
    field_or_index(L, -2, "partition", 2);
    tp = rd_kafka_topic_partition_list_add(list, lua_tostring(L, -2), (int32_t)lua_tointeger(L, -1));
    lua_pop(L, 2);
    if (with_offsets) {
      int64_t ts;
      field_or_index(L, -1, "offset", 3);
      tp->offset = kafka_check_offset(L, -1, &ts);
      if (ts >= 0) {
        tp->offset = ts;
        tp->opaque = (void *)1;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return list;
}

void kafka_push_partitions(lua_State *L, const rd_kafka_topic_partition_list_t *list) {
  int i;
  lua_createtable(L, list ? list->cnt : 0, 0);
  for (i = 0; list && i < list->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &list->elems[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, tp->topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, tp->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, tp->offset);
    lua_setfield(L, -2, "offset");
    if (tp->err) {
      lua_pushstring(L, rd_kafka_err2name(tp->err));
      lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/* A timeout argument (ms) at idx, or field timeout_ms of a table there. */
int kafka_opt_timeout(lua_State *L, int idx, kafka_client *c) {
  if (lua_istable(L, idx)) return (int)kalua_optfield_int(L, idx, "timeout_ms", c->timeout_ms);
  return (int)luaL_optinteger(L, idx, c->timeout_ms);
}

/* Creates a client userdata of metatable mt from the config table at 1.
 * Returns it on the stack (and the client through *out), or NULL with
 * nil, message, name pushed. */
kafka_client *kafka_client_new(lua_State *L, const char *kind, rd_kafka_type_t type, const char *mt, int nuv) {
  char errstr[512];
  rd_kafka_conf_t *conf;
  kafka_client *c;
  int ud;
  luaL_checktype(L, 1, LUA_TTABLE);
  c = lua_newuserdatauv(L, sizeof *c, nuv);
  ud = lua_gettop(L);
  kafka_client_init(c, kind);
  luaL_setmetatable(L, mt);
  conf = kafka_conf_from_table(L, 1, c);
  if (conf == NULL) {
    kafka_client_release(c);
    return NULL;
  }
  /* librdkafka's log lines are queued for kalua.log (which drops them
   * unless -v), or for stderr when the client asked for them. */
  c->log_wanted = c->log_requested || kafka_has_logger(L);
  snprintf(c->name, sizeof c->name, "%s", kind);
  c->rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
  if (c->rk == NULL) {
    rd_kafka_conf_destroy(conf);
    kafka_fail_msg(L, c, errstr, "_INVALID_ARG");
    kafka_client_release(c);
    return NULL;
  }
  snprintf(c->name, sizeof c->name, "%s", rd_kafka_name(c->rk));
  lua_settop(L, ud);
  return c;
}

static int kafka_version(lua_State *L) {
  lua_pushstring(L, rd_kafka_version_str());
  return 1;
}

static int kafka_err2name(lua_State *L) {
  lua_pushstring(L, rd_kafka_err2name((rd_kafka_resp_err_t)luaL_checkinteger(L, 1)));
  return 1;
}

/* client:relay_stats() -> {connections=, authentications=, failures=, ...},
 * or nil when kalua's auth relay does not carry this client. */
static int client_relay_stats(lua_State *L) {
  kafka_client *c = luaL_testudata(L, 1, KAFKA_PRODUCER_MT);
  if (c == NULL) c = luaL_testudata(L, 1, KAFKA_CONSUMER_MT);
  if (c == NULL) c = luaL_checkudata(L, 1, KAFKA_ADMIN_MT);
  if (c->rk == NULL) return luaL_error(L, "the %s is closed", c->kind);
  if (c->relay == NULL) {
    lua_pushnil(L);
    return 1;
  }
  relay_push_stats(L, c->relay);
  return 1;
}

/* Adds the methods every client type shares to its metatable's __index. */
static void add_client_methods(lua_State *L, const char *mt) {
  luaL_getmetatable(L, mt);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, client_relay_stats);
  lua_setfield(L, -2, "relay_stats");
  lua_pop(L, 2);
}

static const luaL_Reg kafka_funcs[] = {
  {"producer", kafka_producer_new},
  {"consumer", kafka_consumer_new},
  {"admin", kafka_admin_new},
  {"sasl_probe", kafka_sasl_probe},
  {"proxy", kafka_proxy_new},
  {"version", kafka_version},
  {"err2name", kafka_err2name},
  {"set_logger", kafka_set_logger},
  {NULL, NULL}
};

int luaopen_kalua_kafka(lua_State *L) {
  kafka_open_batch(L);
  kafka_open_producer(L);
  kafka_open_consumer(L);
  kafka_open_admin(L);
  add_client_methods(L, KAFKA_PRODUCER_MT);
  add_client_methods(L, KAFKA_CONSUMER_MT);
  add_client_methods(L, KAFKA_ADMIN_MT);
  kafka_wrap_methods(L, KAFKA_PRODUCER_MT);
  kafka_wrap_methods(L, KAFKA_CONSUMER_MT);
  kafka_wrap_methods(L, KAFKA_ADMIN_MT);
  kafka_proxy_register(L);
  luaL_newlib(L, kafka_funcs);
  wire_lua_open(L);
  return 1;
}
