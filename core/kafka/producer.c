/* kalua.kafka.Producer: produce, produce_batch, poll, deliveries, flush,
 * and transactions (init_transactions, begin_transaction,
 * commit_transaction, abort_transaction) for a producer configured with a
 * ["transactional.id"] property (it implies idempotence). */
#include <stdlib.h>
#include <string.h>

#include "kafka/kafka_internal.h"

#define QUEUE_FULL_RETRY_MS 100

static kafka_client *check_open(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_PRODUCER_MT);
  if (c->rk == NULL) luaL_error(L, "producer is closed");
  return c;
}

int kafka_producer_new(lua_State *L) {
  return kafka_client_new(L, "producer", RD_KAFKA_PRODUCER, KAFKA_PRODUCER_MT, 0) ? 1 : 3;
}

/* Headers from {{name, value}, ...} (repeatable, value may be nil) or
 * {name = value}. NULL when the argument is nil or empty. */
static rd_kafka_headers_t *check_headers(lua_State *L, int idx) {
  rd_kafka_headers_t *hdrs;
  lua_Integer i, n;
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  idx = lua_absindex(L, idx);
  n = luaL_len(L, idx);
  hdrs = rd_kafka_headers_new(8);
  for (i = 1; i <= n; i++) {
    size_t len = 0;
    const char *name, *value;
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE) {
      rd_kafka_headers_destroy(hdrs);
      luaL_error(L, "header %d must be a {name, value} pair", (int)i);
    }
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    name = lua_tostring(L, -2);
    value = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &len);
    if (name == NULL) {
      rd_kafka_headers_destroy(hdrs);
      luaL_error(L, "header %d has no name", (int)i);
    }
    rd_kafka_header_add(hdrs, name, -1, value, value ? (ssize_t)len : 0);
    lua_pop(L, 3);
  }
  if (n == 0) { /* map form */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t len;
      const char *value = lua_tolstring(L, -1, &len);
      if (lua_type(L, -2) == LUA_TSTRING && value)
        rd_kafka_header_add(hdrs, lua_tostring(L, -2), -1, value, (ssize_t)len);
      lua_pop(L, 1);
    }
  }
  return hdrs;
}

/* Optional bytes field: NULL for nil (Kafka null), else the string. */
static const char *opt_bytes(lua_State *L, int t, const char *k, size_t *len) {
  const char *s = NULL;
  *len = 0;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    s = lua_tolstring(L, -1, len);
    if (s == NULL) luaL_error(L, "field '%s' must be a string or nil", k);
  }
  lua_pop(L, 1); /* the string stays alive in the record table */
  return s;
}

/* Enqueues one message, waiting on a full queue for up to timeout_ms. */
static rd_kafka_resp_err_t enqueue(kafka_client *c, const char *topic, int32_t partition,
                                   const char *key, size_t klen, const char *value, size_t vlen,
                                   int64_t timestamp, rd_kafka_headers_t *hdrs, int timeout_ms) {
  rd_kafka_resp_err_t err;
  int waited = 0;
  for (;;) {
    err = rd_kafka_producev(c->rk,
                            RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(key, klen),
                            RD_KAFKA_V_VALUE((void *)value, vlen),
                            RD_KAFKA_V_TIMESTAMP(timestamp),
                            RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= timeout_ms) return err;
    rd_kafka_poll(c->rk, QUEUE_FULL_RETRY_MS);
    waited += QUEUE_FULL_RETRY_MS;
  }
}

/* p:produce{topic=, partition=, key=, value=, headers=, timestamp=} */
static int producer_produce(lua_State *L) {
  kafka_client *c = check_open(L);
  const char *topic, *key, *value;
  size_t klen, vlen;
  int32_t partition;
  int64_t timestamp;
  rd_kafka_headers_t *hdrs;
  rd_kafka_resp_err_t err;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_getfield(L, 2, "topic") != LUA_TSTRING) luaL_error(L, "produce needs a 'topic' string");
  topic = lua_tostring(L, -1);
  lua_pop(L, 1);
  partition = (int32_t)kalua_optfield_int(L, 2, "partition", RD_KAFKA_PARTITION_UA);
  timestamp = kalua_optfield_int(L, 2, "timestamp", 0);
  key = opt_bytes(L, 2, "key", &klen);
  value = opt_bytes(L, 2, "value", &vlen);
  lua_getfield(L, 2, "headers");
  hdrs = check_headers(L, -1);
  lua_pop(L, 1);
  err = enqueue(c, topic, partition, key, klen, value, vlen, timestamp, hdrs, c->timeout_ms);
  if (err) {
    if (hdrs) rd_kafka_headers_destroy(hdrs); /* not taken on failure */
    return kafka_fail(L, c, err, topic);
  }
  rd_kafka_poll(c->rk, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* Copies a consumed message's headers for producing (producev owns them). */
static rd_kafka_headers_t *copy_headers(const rd_kafka_message_t *m) {
  rd_kafka_headers_t *src = NULL;
  if (rd_kafka_message_headers((rd_kafka_message_t *)m, &src) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
  return rd_kafka_headers_copy(src);
}

/* p:produce_batch(batch, {topic=, partition=}) sends every record of a
 * consumed batch, keeping keys, values, headers and timestamps, without a
 * Lua table per record. Returns the number enqueued. */
static int producer_produce_batch(lua_State *L) {
  kafka_client *c = check_open(L);
  kalua_batch *b = kalua_kafka_checkbatch(L, 2);
  const char *topic_override = NULL;
  lua_Integer partition_override = -2; /* keep the source partition */
  int i;
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "topic") == LUA_TSTRING) topic_override = lua_tostring(L, -1);
    lua_pop(L, 1);
    partition_override = kalua_optfield_int(L, 3, "partition", -2);
  }
  for (i = 0; i < b->n; i++) {
    const rd_kafka_message_t *m = b->msgs[i];
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    rd_kafka_headers_t *hdrs = copy_headers(m);
    const char *topic = topic_override ? topic_override : rd_kafka_topic_name(m->rkt);
    int32_t partition = partition_override == -2 ? m->partition : (int32_t)partition_override;
    rd_kafka_resp_err_t err = enqueue(c, topic, partition, m->key, m->key_len, m->payload, m->len,
                                      ts > 0 ? ts : 0, hdrs, c->timeout_ms);
    if (err) {
      if (hdrs) rd_kafka_headers_destroy(hdrs);
      return kafka_fail(L, c, err, topic);
    }
  }
  rd_kafka_poll(c->rk, 0);
  lua_pushinteger(L, b->n);
  return 1;
}

/* p:poll([timeout_ms]) serves delivery reports; returns how many. */
static int producer_poll(lua_State *L) {
  kafka_client *c = check_open(L);
  lua_pushinteger(L, rd_kafka_poll(c->rk, (int)luaL_optinteger(L, 2, 0)));
  return 1;
}

/* p:deliveries() returns and forgets the delivery reports so far. */
static int producer_deliveries(lua_State *L) {
  kafka_client *c = check_open(L);
  size_t i;
  rd_kafka_poll(c->rk, 0);
  pthread_mutex_lock(&c->lock);
  lua_createtable(L, (int)c->dr_len, 0);
  for (i = 0; i < c->dr_len; i++) {
    struct kafka_delivery *d = &c->dr[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, d->topic ? d->topic : "");
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, d->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, d->offset);
    lua_setfield(L, -2, "offset");
    if (d->err) {
      lua_pushstring(L, rd_kafka_err2name(d->err));
      lua_setfield(L, -2, "error");
      lua_pushstring(L, rd_kafka_err2str(d->err));
      lua_setfield(L, -2, "message");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(d->topic);
  }
  c->dr_len = 0;
  pthread_mutex_unlock(&c->lock);
  return 1;
}

/* p:flush([timeout_ms]): true once everything is delivered; nil, msg, name
 * on timeout or when a delivery failed since the last flush. */
static int producer_flush(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  rd_kafka_resp_err_t err = rd_kafka_flush(c->rk, timeout), failed;
  char topic[256], what[320];
  if (err) {
    snprintf(what, sizeof what, "flush: %d messages not delivered", rd_kafka_outq_len(c->rk));
    return kafka_fail(L, c, err, what);
  }
  pthread_mutex_lock(&c->lock);
  failed = c->dr_first_err;
  memcpy(topic, c->dr_first_topic, sizeof topic);
  c->dr_first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  pthread_mutex_unlock(&c->lock);
  if (failed) {
    snprintf(what, sizeof what, "delivery to %s failed", topic);
    return kafka_fail(L, c, failed, what);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Transactions. A failed transactional call returns nil, message, name and
 * a table {retriable=, txn_requires_abort=, fatal=} saying what to do next:
 * call again, abort_transaction(), or close the producer. Calling them in
 * the wrong order (begin before init, commit with none begun) or on a
 * producer without a transactional.id raises. */
static void describe_txn_error(char *buf, size_t size, const char *what, rd_kafka_error_t *error) {
  const char *advice = rd_kafka_error_is_fatal(error)              ? " (fatal: close the producer)"
                       : rd_kafka_error_txn_requires_abort(error) ? " (abort the transaction)"
                       : rd_kafka_error_is_retriable(error)        ? " (retriable: call again)"
                                                                   : "";
  snprintf(buf, size, "%s: %s%s", what, rd_kafka_error_string(error), advice);
}

static int is_txn_misuse(rd_kafka_error_t *error) {
  rd_kafka_resp_err_t err = rd_kafka_error_code(error);
  return err == RD_KAFKA_RESP_ERR__STATE || err == RD_KAFKA_RESP_ERR__NOT_CONFIGURED;
}

/* Returns true, or the failure (destroying error); raises on misuse. */
static int txn_result(lua_State *L, kafka_client *c, const char *what, rd_kafka_error_t *error) {
  char msg[1024];
  int retriable, requires_abort, fatal;
  if (error == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  describe_txn_error(msg, sizeof msg, what, error);
  if (is_txn_misuse(error)) {
    int unconfigured = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__NOT_CONFIGURED;
    rd_kafka_error_destroy(error);
    return luaL_error(L, "%s%s", msg,
                      unconfigured ? " (set [\"transactional.id\"] in the producer's config)"
                                   : " (the order is init_transactions once, then begin_transaction and commit_transaction or abort_transaction)");
  }
  retriable = rd_kafka_error_is_retriable(error);
  requires_abort = rd_kafka_error_txn_requires_abort(error);
  fatal = rd_kafka_error_is_fatal(error);
  kafka_fail_msg(L, c, msg, rd_kafka_error_name(error));
  rd_kafka_error_destroy(error);
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, retriable);
  lua_setfield(L, -2, "retriable");
  lua_pushboolean(L, requires_abort);
  lua_setfield(L, -2, "txn_requires_abort");
  lua_pushboolean(L, fatal);
  lua_setfield(L, -2, "fatal");
  return 4;
}

/* p:init_transactions([timeout_ms]) once, before the first transaction. */
static int producer_init_transactions(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  return txn_result(L, c, "init_transactions", rd_kafka_init_transactions(c->rk, timeout));
}

/* p:begin_transaction(): what is produced next belongs to it. */
static int producer_begin_transaction(lua_State *L) {
  kafka_client *c = check_open(L);
  return txn_result(L, c, "begin_transaction", rd_kafka_begin_transaction(c->rk));
}

/* p:commit_transaction([timeout_ms]) flushes, then commits. */
static int producer_commit_transaction(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  return txn_result(L, c, "commit_transaction", rd_kafka_commit_transaction(c->rk, timeout));
}

/* p:abort_transaction([timeout_ms]) drops what the transaction produced.
 * Its undelivered records fail with _PURGE_*: that is what was asked for,
 * so the next flush does not report them. */
static int producer_abort_transaction(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  rd_kafka_error_t *error = rd_kafka_abort_transaction(c->rk, timeout);
  if (error == NULL) {
    rd_kafka_poll(c->rk, 0); /* serve the purged records' reports */
    pthread_mutex_lock(&c->lock);
    c->dr_first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    pthread_mutex_unlock(&c->lock);
  }
  return txn_result(L, c, "abort_transaction", error);
}

/* Closing discards what was not delivered: call flush first to wait. */
static int producer_close(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_PRODUCER_MT);
  if (c->rk) {
    rd_kafka_purge(c->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(c->rk, 0);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    kafka_client_release(c);
  }
  return 0;
}

static int producer_tostring(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_PRODUCER_MT);
  if (c->rk)
    lua_pushfstring(L, "kalua.kafka.Producer (%s, %d queued)", rd_kafka_name(c->rk), rd_kafka_outq_len(c->rk));
  else
    lua_pushliteral(L, "kalua.kafka.Producer (closed)");
  return 1;
}

static const luaL_Reg producer_methods[] = {
  {"produce", producer_produce},
  {"produce_batch", producer_produce_batch},
  {"poll", producer_poll},
  {"deliveries", producer_deliveries},
  {"flush", producer_flush},
  {"init_transactions", producer_init_transactions},
  {"begin_transaction", producer_begin_transaction},
  {"commit_transaction", producer_commit_transaction},
  {"abort_transaction", producer_abort_transaction},
  {"close", producer_close},
  {NULL, NULL}
};

static const luaL_Reg producer_meta[] = {
  {"__gc", producer_close},
  {"__close", producer_close},
  {"__tostring", producer_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

void kafka_open_producer(lua_State *L) {
  luaL_newmetatable(L, KAFKA_PRODUCER_MT);
  luaL_setfuncs(L, producer_meta, 0);
  luaL_newlib(L, producer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
