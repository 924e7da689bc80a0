/* kalua.kafka.Consumer: assign or subscribe, poll, poll_batch, seek,
 * pause/resume, commit, committed, position, close. */
#include <string.h>

#include "kafka/kafka_internal.h"

static kafka_client *check_open(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_CONSUMER_MT);
  if (c->rk == NULL) luaL_error(L, "consumer is closed");
  return c;
}

int kafka_consumer_new(lua_State *L) {
  kafka_client *c = kafka_client_new(L, "consumer", RD_KAFKA_CONSUMER, KAFKA_CONSUMER_MT, 1);
  if (c == NULL) return 3;
  /* Uservalue: a weak-keyed set of this consumer's live batches. */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, -2, 1);
  /* Errors and logs arrive through consumer_poll, in the Lua thread. */
  rd_kafka_poll_set_consumer(c->rk);
  return 1;
}

/* Replaces {timestamp=ms} entries (flagged by opaque) with the offsets the
 * broker finds for those times; the end when no record is that late. */
static rd_kafka_resp_err_t resolve_timestamps(kafka_client *c, rd_kafka_topic_partition_list_t *list) {
  rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new(list->cnt);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  int i;
  for (i = 0; i < list->cnt; i++)
    if (list->elems[i].opaque)
      rd_kafka_topic_partition_list_add(times, list->elems[i].topic, list->elems[i].partition)->offset =
          list->elems[i].offset;
  if (times->cnt > 0) err = rd_kafka_offsets_for_times(c->rk, times, c->timeout_ms);
  for (i = 0; !err && i < list->cnt; i++) {
    rd_kafka_topic_partition_t *tp = &list->elems[i], *found;
    if (!tp->opaque) continue;
    found = rd_kafka_topic_partition_list_find(times, tp->topic, tp->partition);
    tp->offset = found && found->offset >= 0 ? found->offset : RD_KAFKA_OFFSET_END;
    tp->opaque = NULL;
  }
  rd_kafka_topic_partition_list_destroy(times);
  return err;
}

/* c:assign{ {topic=, partition=, offset=}, ... } */
static int consumer_assign(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = kafka_check_partitions(L, 2, 1);
  rd_kafka_resp_err_t err = resolve_timestamps(c, list);
  if (!err) err = rd_kafka_assign(c->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return kafka_fail(L, c, err, "assign");
  lua_pushboolean(L, 1);
  return 1;
}

/* c:subscribe{ "topic", "^regex.*", ... } (needs group_id) */
static int consumer_subscribe(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list;
  rd_kafka_resp_err_t err;
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  list = rd_kafka_topic_partition_list_new((int)(n > 0 ? n : 1));
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (!lua_isstring(L, -1)) {
      rd_kafka_topic_partition_list_destroy(list);
      return luaL_error(L, "subscribe expects a list of topic names");
    }
    rd_kafka_topic_partition_list_add(list, lua_tostring(L, -1), RD_KAFKA_PARTITION_UA);
    lua_pop(L, 1);
  }
  err = rd_kafka_subscribe(c->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return kafka_fail(L, c, err, "subscribe");
  lua_pushboolean(L, 1);
  return 1;
}

static int consumer_unsubscribe(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_resp_err_t err = rd_kafka_unsubscribe(c->rk);
  if (err) return kafka_fail(L, c, err, "unsubscribe");
  lua_pushboolean(L, 1);
  return 1;
}

static int consumer_assignment(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = NULL;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &list);
  if (err) return kafka_fail(L, c, err, "assignment");
  kafka_push_partitions(L, list);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

static int is_partition_eof(const rd_kafka_message_t *m) {
  return m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
}

static void push_eof(lua_State *L, const rd_kafka_message_t *m) {
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "eof");
  lua_pushstring(L, m->rkt ? rd_kafka_topic_name(m->rkt) : "");
  lua_setfield(L, -2, "topic");
  lua_pushinteger(L, m->partition);
  lua_setfield(L, -2, "partition");
  lua_pushinteger(L, m->offset);
  lua_setfield(L, -2, "offset");
}

/* Turns an error message event into nil, message, name (and destroys it). */
static int fail_message(lua_State *L, kafka_client *c, rd_kafka_message_t *m) {
  char what[600];
  rd_kafka_resp_err_t err = m->err;
  snprintf(what, sizeof what, "consume%s%s", m->rkt ? " " : "", m->rkt ? rd_kafka_topic_name(m->rkt) : "");
  if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    char msg[900];
    snprintf(msg, sizeof msg, "%s: %s", what, rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
  }
  rd_kafka_message_destroy(m);
  return kafka_fail(L, c, err, what);
}

/* c:poll([timeout_ms]) -> record | nil (nothing yet) | nil, msg, name */
static int consumer_poll(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, (int)luaL_optinteger(L, 2, c->timeout_ms));
  if (m == NULL) return 0;
  if (is_partition_eof(m)) {
    if (c->partition_eof) push_eof(L, m);
    rd_kafka_message_destroy(m);
    return c->partition_eof ? 1 : 0;
  }
  if (m->err) return fail_message(L, c, m);
  kafka_push_message(L, m);
  rd_kafka_message_destroy(m);
  return 1;
}

/* c:poll_batch(max, [timeout_ms]) -> Batch. Waits up to timeout_ms for the
 * first record, then takes whatever else is ready, up to max. */
static int consumer_poll_batch(lua_State *L) {
  kafka_client *c = check_open(L);
  int max = (int)luaL_checkinteger(L, 2);
  int timeout = (int)luaL_optinteger(L, 3, c->timeout_ms);
  kalua_batch *b;
  luaL_argcheck(L, max > 0, 2, "batch size must be positive");
  b = kafka_batch_push(L, max);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  while (b->n < max) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, b->n == 0 ? timeout : 0);
    if (m == NULL) break;
    if (is_partition_eof(m)) {
      rd_kafka_message_destroy(m);
      if (b->n > 0) break;
      continue; /* keep waiting within this call for the first record */
    }
    if (m->err) {
      if (b->n == 0) return fail_message(L, c, m);
      rd_kafka_message_destroy(m); /* the error recurs on the next poll */
      break;
    }
    b->bytes += m->len + m->key_len;
    b->msgs[b->n++] = m;
  }
  return 1;
}

/* c:seek(topic, partition, offset[, timeout_ms]) */
static int consumer_seek(lua_State *L) {
  kafka_client *c = check_open(L);
  const char *topic = luaL_checkstring(L, 2);
  int32_t partition = (int32_t)luaL_checkinteger(L, 3);
  int64_t ts;
  int64_t offset = kafka_check_offset(L, 4, &ts);
  int timeout = (int)luaL_optinteger(L, 5, c->timeout_ms);
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(list, topic, partition);
  rd_kafka_error_t *error;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  tp->offset = ts >= 0 ? ts : offset;
  tp->opaque = ts >= 0 ? (void *)1 : NULL;
  if (ts >= 0) err = resolve_timestamps(c, list);
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return kafka_fail(L, c, err, "seek");
  }
  error = rd_kafka_seek_partitions(c->rk, list, timeout);
  if (!error && list->elems[0].err) err = list->elems[0].err;
  rd_kafka_topic_partition_list_destroy(list);
  if (error) return kafka_fail_error(L, c, error);
  if (err) return kafka_fail(L, c, err, "seek");
  lua_pushboolean(L, 1);
  return 1;
}

static int pause_or_resume(lua_State *L, int pause) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = kafka_check_partitions(L, 2, 0);
  rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, list) : rd_kafka_resume_partitions(c->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return kafka_fail(L, c, err, pause ? "pause" : "resume");
  lua_pushboolean(L, 1);
  return 1;
}

static int consumer_pause(lua_State *L) { return pause_or_resume(L, 1); }
static int consumer_resume(lua_State *L) { return pause_or_resume(L, 0); }

/* c:commit([ {topic,partition,offset}... ]) commits synchronously: the
 * given offsets (the next record to read), or the positions consumed. */
static int consumer_commit(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = lua_istable(L, 2) ? kafka_check_partitions(L, 2, 1) : NULL;
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, list, 0);
  if (list) rd_kafka_topic_partition_list_destroy(list);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) return kafka_fail(L, c, err, "commit");
  lua_pushboolean(L, 1);
  return 1;
}

/* c:committed{ {topic, partition}... } -> the group's committed offsets */
static int consumer_committed(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = kafka_check_partitions(L, 2, 0);
  rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, list, (int)luaL_optinteger(L, 3, c->timeout_ms));
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return kafka_fail(L, c, err, "committed");
  }
  kafka_push_partitions(L, list);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

/* c:position{ {topic, partition}... } -> the next offset this consumer reads */
static int consumer_position(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list = kafka_check_partitions(L, 2, 0);
  rd_kafka_resp_err_t err = rd_kafka_position(c->rk, list);
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return kafka_fail(L, c, err, "position");
  }
  kafka_push_partitions(L, list);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

/* Empties every batch this consumer handed out, so closing never waits on
 * messages a script still holds (their records read as an empty batch). */
static void release_batches(lua_State *L) {
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    kalua_batch *b = luaL_testudata(L, -2, KAFKA_BATCH_MT);
    if (b) kafka_batch_release(b);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int consumer_close(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_CONSUMER_MT);
  if (c->rk) {
    release_batches(L);
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    kafka_client_release(c);
  }
  return 0;
}

static int consumer_tostring(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_CONSUMER_MT);
  if (c->rk)
    lua_pushfstring(L, "kalua.kafka.Consumer (%s)", rd_kafka_name(c->rk));
  else
    lua_pushliteral(L, "kalua.kafka.Consumer (closed)");
  return 1;
}

static const luaL_Reg consumer_methods[] = {
  {"assign", consumer_assign},
  {"subscribe", consumer_subscribe},
  {"unsubscribe", consumer_unsubscribe},
  {"assignment", consumer_assignment},
  {"poll", consumer_poll},
  {"poll_batch", consumer_poll_batch},
  {"seek", consumer_seek},
  {"pause", consumer_pause},
  {"resume", consumer_resume},
  {"commit", consumer_commit},
  {"committed", consumer_committed},
  {"position", consumer_position},
  {"close", consumer_close},
  {NULL, NULL}
};

static const luaL_Reg consumer_meta[] = {
  {"__gc", consumer_close},
  {"__close", consumer_close},
  {"__tostring", consumer_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

void kafka_open_consumer(lua_State *L) {
  luaL_newmetatable(L, KAFKA_CONSUMER_MT);
  luaL_setfuncs(L, consumer_meta, 0);
  luaL_newlib(L, consumer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
