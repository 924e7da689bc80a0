/* kalua.kafka.Admin: topics, partitions and watermarks, configs, consumer
 * groups and their offsets, offsets for times. */
#include <stdlib.h>
#include <string.h>

#include "kafka/kafka_internal.h"

#define POLL_SLICE_MS 100

static kafka_client *check_open(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_ADMIN_MT);
  if (c->rk == NULL) luaL_error(L, "admin client is closed");
  return c;
}

int kafka_admin_new(lua_State *L) {
  /* Admin requests ride a producer handle, as in librdkafka's examples. */
  kafka_client *c = kafka_client_new(L, "admin", RD_KAFKA_PRODUCER, KAFKA_ADMIN_MT, 0);
  if (c == NULL) return 3;
  c->admin_queue = rd_kafka_queue_new(c->rk);
  return 1;
}

static rd_kafka_AdminOptions_t *options(kafka_client *c, int timeout, int with_operation_timeout) {
  char errstr[256];
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(c->rk, RD_KAFKA_ADMIN_OP_ANY);
  rd_kafka_AdminOptions_set_request_timeout(o, timeout, errstr, sizeof errstr);
  /* The broker answers once the change is done, so a created topic is
   * ready for use when create_topics returns. */
  if (with_operation_timeout) rd_kafka_AdminOptions_set_operation_timeout(o, timeout, errstr, sizeof errstr);
  return o;
}

/* Waits for the admin result, serving error callbacks meanwhile. Returns
 * the event, or NULL with nil, message, name pushed. */
static rd_kafka_event_t *await(lua_State *L, kafka_client *c, const char *what, int timeout) {
  int waited = 0;
  for (;;) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(c->admin_queue, POLL_SLICE_MS);
    rd_kafka_poll(c->rk, 0);
    if (ev) {
      rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
      if (err) {
        char msg[700];
        if (err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
          rd_kafka_event_destroy(ev);
          kafka_fail(L, c, err, what);
          return NULL;
        }
        snprintf(msg, sizeof msg, "%s: %s", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
        return NULL;
      }
      return ev;
    }
    waited += POLL_SLICE_MS;
    if (waited > timeout + 2000) {
      kafka_fail(L, c, RD_KAFKA_RESP_ERR__TIMED_OUT, what);
      return NULL;
    }
  }
}

/* Shared shape of per-topic results: true, or the first topic's error. */
static int topic_results(lua_State *L, kafka_client *c, const rd_kafka_topic_result_t **res, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
    if (err) {
      char msg[700];
      const char *s = rd_kafka_topic_result_error_string(res[i]);
      snprintf(msg, sizeof msg, "%s: %s", rd_kafka_topic_result_name(res[i]), s ? s : rd_kafka_err2str(err));
      return kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void free_new_topics(rd_kafka_NewTopic_t **t, size_t n) {
  rd_kafka_NewTopic_destroy_array(t, n);
  free(t);
}

/* a:create_topics{ {name=, partitions=, replication_factor=, config={}}, ... } */
static int admin_create_topics(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 3, c);
  size_t i, n;
  rd_kafka_NewTopic_t **topics;
  rd_kafka_AdminOptions_t *o;
  rd_kafka_event_t *ev;
  int nres;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (size_t)luaL_len(L, 2);
  for (i = 0; i < n; i++) { /* everything that can raise, before allocating */
    if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE || lua_getfield(L, -1, "name") != LUA_TSTRING)
      return luaL_error(L, "create_topics: entry %d needs a name", (int)i + 1);
    kalua_optfield_int(L, -2, "partitions", 1);
    kalua_optfield_int(L, -2, "replication_factor", -1);
    if (lua_getfield(L, -2, "config") == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (!lua_isstring(L, -1) && !lua_isboolean(L, -1))
          return luaL_error(L, "create_topics: config values must be strings or numbers");
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 3);
  }
  topics = calloc(n ? n : 1, sizeof *topics);
  for (i = 0; i < n; i++) {
    char errstr[256];
    const char *name;
    lua_Integer partitions, rf;
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    lua_getfield(L, -1, "name");
    name = lua_tostring(L, -1);
    lua_pop(L, 1);
    partitions = kalua_optfield_int(L, -1, "partitions", 1);
    rf = kalua_optfield_int(L, -1, "replication_factor", -1);
    topics[i] = rd_kafka_NewTopic_new(name, (int)partitions, (int)rf, errstr, sizeof errstr);
    if (topics[i] == NULL) {
      free_new_topics(topics, i);
      return kafka_fail_msg(L, c, errstr, "_INVALID_ARG");
    }
    if (lua_getfield(L, -1, "config") == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        const char *value = luaL_tolstring(L, -1, NULL); /* pushes */
        lua_pushvalue(L, -3);
        rd_kafka_NewTopic_set_config(topics[i], luaL_tolstring(L, -1, NULL), value);
        lua_pop(L, 4);
      }
    }
    lua_pop(L, 2);
  }
  o = options(c, timeout, 1);
  rd_kafka_CreateTopics(c->rk, topics, n, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  free_new_topics(topics, n);
  ev = await(L, c, "create_topics", timeout);
  if (ev == NULL) return 3;
  {
    size_t cnt;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    nres = topic_results(L, c, res, cnt);
  }
  rd_kafka_event_destroy(ev);
  return nres;
}

/* a:delete_topics{ "name", ... } */
static int admin_delete_topics(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 3, c);
  size_t i, n, cnt;
  rd_kafka_DeleteTopic_t **topics;
  rd_kafka_AdminOptions_t *o;
  rd_kafka_event_t *ev;
  const rd_kafka_topic_result_t **res;
  int nres;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (size_t)luaL_len(L, 2);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    if (!lua_isstring(L, -1)) return luaL_error(L, "delete_topics expects a list of names");
    lua_pop(L, 1);
  }
  topics = calloc(n ? n : 1, sizeof *topics);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    topics[i] = rd_kafka_DeleteTopic_new(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  o = options(c, timeout, 1);
  rd_kafka_DeleteTopics(c->rk, topics, n, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteTopic_destroy_array(topics, n);
  free(topics);
  ev = await(L, c, "delete_topics", timeout);
  if (ev == NULL) return 3;
  res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
  nres = topic_results(L, c, res, cnt);
  rd_kafka_event_destroy(ev);
  return nres;
}

/* a:delete_records{ {topic, partition, offset}... } -> the new low
 * watermarks: removes every record before offset (-1: all of them), like
 * kafka-delete-records. */
static int admin_delete_records(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *parts = kafka_check_partitions(L, 2, 1);
  int timeout = kafka_opt_timeout(L, 3, c), i;
  rd_kafka_DeleteRecords_t *req = rd_kafka_DeleteRecords_new(parts);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 1);
  const rd_kafka_topic_partition_list_t *out;
  rd_kafka_event_t *ev;
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_DeleteRecords(c->rk, &req, 1, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteRecords_destroy(req);
  ev = await(L, c, "delete_records", timeout);
  if (ev == NULL) return 3;
  out = rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
  for (i = 0; out && i < out->cnt; i++) {
    if (out->elems[i].err) {
      char msg[700];
      rd_kafka_resp_err_t err = out->elems[i].err;
      snprintf(msg, sizeof msg, "delete_records %s [%d]: %s", out->elems[i].topic, out->elems[i].partition,
               rd_kafka_err2str(err));
      rd_kafka_event_destroy(ev);
      return kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
    }
  }
  kafka_push_partitions(L, out);
  rd_kafka_event_destroy(ev);
  return 1;
}

/* a:cluster_id([timeout_ms]) -> the cluster's id, or nil, message */
static int admin_cluster_id(lua_State *L) {
  kafka_client *c = check_open(L);
  char *id = rd_kafka_clusterid(c->rk, kafka_opt_timeout(L, 2, c));
  if (id == NULL) return kafka_fail_msg(L, c, "cluster_id: the cluster did not say its id in time", "_TIMED_OUT");
  lua_pushstring(L, id);
  rd_kafka_mem_free(c->rk, id);
  return 1;
}

static void push_int_array(lua_State *L, const int32_t *v, int n) {
  int i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void push_partition(lua_State *L, kafka_client *c, const char *topic,
                           const rd_kafka_metadata_partition_t *p, int watermarks, int timeout) {
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, p->id);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, p->leader);
  lua_setfield(L, -2, "leader");
  push_int_array(L, p->replicas, p->replica_cnt);
  lua_setfield(L, -2, "replicas");
  push_int_array(L, p->isrs, p->isr_cnt);
  lua_setfield(L, -2, "isrs");
  if (p->err) {
    lua_pushstring(L, rd_kafka_err2name(p->err));
    lua_setfield(L, -2, "error");
  }
  if (watermarks) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(c->rk, topic, p->id, &low, &high, timeout);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      lua_pushinteger(L, low);
      lua_setfield(L, -2, "low");
      lua_pushinteger(L, high);
      lua_setfield(L, -2, "high");
    } else { /* e.g. a new partition whose leader is not known yet */
      lua_pushstring(L, rd_kafka_err2name(err));
      lua_setfield(L, -2, "watermark_error");
    }
  }
}

static void push_topic(lua_State *L, kafka_client *c, const rd_kafka_metadata_topic_t *t, int watermarks, int timeout) {
  int i;
  lua_createtable(L, 0, 4);
  lua_pushstring(L, t->topic);
  lua_setfield(L, -2, "name");
  lua_pushboolean(L, t->topic[0] == '_' && t->topic[1] == '_');
  lua_setfield(L, -2, "internal");
  if (t->err) {
    lua_pushstring(L, rd_kafka_err2name(t->err));
    lua_setfield(L, -2, "error");
  }
  lua_createtable(L, t->partition_cnt, 0);
  for (i = 0; i < t->partition_cnt; i++) {
    push_partition(L, c, t->topic, &t->partitions[i], watermarks, timeout);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "partitions");
}

/* a:metadata{topic=, watermarks=, timeout_ms=} -> list of topics. Asks for
 * all topics and filters, so asking never auto-creates a topic. */
static int admin_metadata(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  const char *only = NULL;
  int watermarks = 0, i, n = 0, found = 0;
  const struct rd_kafka_metadata *md;
  rd_kafka_resp_err_t err;
  if (lua_istable(L, 2)) {
    if (lua_getfield(L, 2, "topic") == LUA_TSTRING) only = lua_tostring(L, -1);
    lua_getfield(L, 2, "watermarks");
    watermarks = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  err = rd_kafka_metadata(c->rk, 1, NULL, &md, timeout);
  if (err) return kafka_fail(L, c, err, "metadata");
  lua_newtable(L);
  for (i = 0; i < md->topic_cnt; i++) {
    if (only && strcmp(only, md->topics[i].topic) != 0) continue;
    found = 1;
    push_topic(L, c, &md->topics[i], watermarks, timeout);
    lua_rawseti(L, -2, ++n);
  }
  if (only && !found) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, only);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, rd_kafka_err2name(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    lua_setfield(L, -2, "error");
    lua_newtable(L);
    lua_setfield(L, -2, "partitions");
    lua_rawseti(L, -2, 1);
  }
  rd_kafka_metadata_destroy(md);
  return 1;
}

/* a:brokers() -> { {id=, host=, port=}, ... } */
static int admin_brokers(lua_State *L) {
  kafka_client *c = check_open(L);
  const struct rd_kafka_metadata *md;
  int i;
  rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, NULL, &md, kafka_opt_timeout(L, 2, c));
  if (err) return kafka_fail(L, c, err, "brokers");
  lua_createtable(L, md->broker_cnt, 0);
  for (i = 0; i < md->broker_cnt; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, md->brokers[i].id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, md->brokers[i].host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, md->brokers[i].port);
    lua_setfield(L, -2, "port");
    lua_rawseti(L, -2, i + 1);
  }
  rd_kafka_metadata_destroy(md);
  return 1;
}

/* a:describe_configs{ {type="topic"|"broker", name=}, ... }
 * -> { [name] = { [key] = {value=, source=, is_default=, is_sensitive=} } } */
static int admin_describe_configs(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 3, c);
  size_t i, n, cnt;
  rd_kafka_ConfigResource_t **res;
  rd_kafka_AdminOptions_t *o;
  rd_kafka_event_t *ev;
  const rd_kafka_ConfigResource_t **out;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (size_t)luaL_len(L, 2);
  for (i = 0; i < n; i++) { /* everything that can raise, before allocating */
    if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE || lua_getfield(L, -1, "name") != LUA_TSTRING)
      return luaL_error(L, "describe_configs: entry %d needs a name", (int)i + 1);
    lua_getfield(L, -2, "type");
    luaL_optstring(L, -1, "topic");
    lua_pop(L, 3);
  }
  res = calloc(n ? n : 1, sizeof *res);
  for (i = 0; i < n; i++) {
    const char *type, *name;
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    lua_getfield(L, -1, "type");
    lua_getfield(L, -2, "name");
    type = luaL_optstring(L, -2, "topic");
    name = lua_tostring(L, -1);
    res[i] = rd_kafka_ConfigResource_new(strcmp(type, "broker") == 0 ? RD_KAFKA_RESOURCE_BROKER : RD_KAFKA_RESOURCE_TOPIC, name);
    lua_pop(L, 3);
  }
  o = options(c, timeout, 0);
  rd_kafka_DescribeConfigs(c->rk, res, n, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy_array(res, n);
  free(res);
  ev = await(L, c, "describe_configs", timeout);
  if (ev == NULL) return 3;
  out = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &cnt);
  lua_newtable(L);
  for (i = 0; i < cnt; i++) {
    size_t j, nentries;
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(out[i], &nentries);
    if (rd_kafka_ConfigResource_error(out[i])) {
      char msg[700];
      snprintf(msg, sizeof msg, "describe_configs %s: %s", rd_kafka_ConfigResource_name(out[i]),
               rd_kafka_ConfigResource_error_string(out[i]));
      rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(out[i]);
      rd_kafka_event_destroy(ev);
      return kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
    }
    lua_newtable(L);
    for (j = 0; j < nentries; j++) {
      const char *value = rd_kafka_ConfigEntry_value(entries[j]);
      lua_createtable(L, 0, 4);
      if (value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, "value");
      }
      lua_pushstring(L, rd_kafka_ConfigSource_name(rd_kafka_ConfigEntry_source(entries[j])));
      lua_setfield(L, -2, "source");
      lua_pushboolean(L, rd_kafka_ConfigEntry_is_default(entries[j]));
      lua_setfield(L, -2, "is_default");
      lua_pushboolean(L, rd_kafka_ConfigEntry_is_sensitive(entries[j]));
      lua_setfield(L, -2, "is_sensitive");
      lua_setfield(L, -2, rd_kafka_ConfigEntry_name(entries[j]));
    }
    lua_setfield(L, -2, rd_kafka_ConfigResource_name(out[i]));
  }
  rd_kafka_event_destroy(ev);
  return 1;
}

/* a:list_groups() -> { {group_id=, state=, simple=}, ... } */
static int admin_list_groups(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 2, c);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 0);
  rd_kafka_event_t *ev;
  const rd_kafka_ListConsumerGroups_result_t *r;
  const rd_kafka_ConsumerGroupListing_t **groups;
  size_t i, n;
  rd_kafka_ListConsumerGroups(c->rk, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  ev = await(L, c, "list_groups", timeout);
  if (ev == NULL) return 3;
  r = rd_kafka_event_ListConsumerGroups_result(ev);
  groups = rd_kafka_ListConsumerGroups_result_valid(r, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, rd_kafka_ConsumerGroupListing_group_id(groups[i]));
    lua_setfield(L, -2, "group_id");
    lua_pushstring(L, rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupListing_state(groups[i])));
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, rd_kafka_ConsumerGroupListing_is_simple_consumer_group(groups[i]));
    lua_setfield(L, -2, "simple");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  rd_kafka_event_destroy(ev);
  return 1;
}

static const char **check_names(lua_State *L, int idx, size_t *n) {
  const char **names;
  size_t i;
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (size_t)luaL_len(L, idx);
  names = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *names, 0); /* freed by the GC */
  for (i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    names[i] = lua_tostring(L, -1);
    if (names[i] == NULL) luaL_error(L, "expected a list of group names");
    lua_pop(L, 1); /* the string stays alive in the argument table */
  }
  return names;
}

static void push_member(lua_State *L, const rd_kafka_MemberDescription_t *m) {
  const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(m);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, rd_kafka_MemberDescription_client_id(m));
  lua_setfield(L, -2, "client_id");
  lua_pushstring(L, rd_kafka_MemberDescription_consumer_id(m));
  lua_setfield(L, -2, "member_id");
  lua_pushstring(L, rd_kafka_MemberDescription_host(m));
  lua_setfield(L, -2, "host");
  kafka_push_partitions(L, a ? rd_kafka_MemberAssignment_partitions(a) : NULL);
  lua_setfield(L, -2, "assignment");
}

/* a:describe_groups{ "group", ... } -> { {group_id=, state=, protocol=, members={...}}, ... } */
static int admin_describe_groups(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 3, c);
  size_t n, i, cnt;
  const char **names = check_names(L, 2, &n);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 0);
  rd_kafka_event_t *ev;
  const rd_kafka_ConsumerGroupDescription_t **groups;
  rd_kafka_DescribeConsumerGroups(c->rk, names, n, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  ev = await(L, c, "describe_groups", timeout);
  if (ev == NULL) return 3;
  groups = rd_kafka_DescribeConsumerGroups_result_groups(rd_kafka_event_DescribeConsumerGroups_result(ev), &cnt);
  lua_createtable(L, (int)cnt, 0);
  for (i = 0; i < cnt; i++) {
    const rd_kafka_error_t *error = rd_kafka_ConsumerGroupDescription_error(groups[i]);
    size_t j, members = rd_kafka_ConsumerGroupDescription_member_count(groups[i]);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, rd_kafka_ConsumerGroupDescription_group_id(groups[i]));
    lua_setfield(L, -2, "group_id");
    lua_pushstring(L, rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(groups[i])));
    lua_setfield(L, -2, "state");
    lua_pushstring(L, rd_kafka_ConsumerGroupDescription_partition_assignor(groups[i]));
    lua_setfield(L, -2, "protocol");
    if (error) {
      lua_pushstring(L, rd_kafka_error_name(error));
      lua_setfield(L, -2, "error");
    }
    lua_createtable(L, (int)members, 0);
    for (j = 0; j < members; j++) {
      push_member(L, rd_kafka_ConsumerGroupDescription_member(groups[i], j));
      lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_setfield(L, -2, "members");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  rd_kafka_event_destroy(ev);
  return 1;
}

/* The partitions of the first group result, or its error. */
static int group_partitions(lua_State *L, kafka_client *c, const rd_kafka_group_result_t **groups, size_t cnt,
                            const char *what) {
  const rd_kafka_error_t *error;
  if (cnt == 0) {
    lua_newtable(L);
    return 1;
  }
  error = rd_kafka_group_result_error(groups[0]);
  if (error) {
    char msg[700];
    snprintf(msg, sizeof msg, "%s %s: %s", what, rd_kafka_group_result_name(groups[0]), rd_kafka_error_string(error));
    return kafka_fail_msg(L, c, msg, rd_kafka_error_name(error));
  }
  kafka_push_partitions(L, rd_kafka_group_result_partitions(groups[0]));
  return 1;
}

/* a:list_group_offsets(group[, { {topic, partition}... }]) -> { {topic, partition, offset}... } */
static int admin_list_group_offsets(lua_State *L) {
  kafka_client *c = check_open(L);
  const char *group = luaL_checkstring(L, 2);
  int timeout = kafka_opt_timeout(L, 4, c);
  rd_kafka_topic_partition_list_t *parts = lua_istable(L, 3) ? kafka_check_partitions(L, 3, 0) : NULL;
  rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, parts);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 0);
  rd_kafka_event_t *ev;
  const rd_kafka_group_result_t **groups;
  size_t cnt;
  int nres;
  rd_kafka_ListConsumerGroupOffsets(c->rk, &req, 1, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ListConsumerGroupOffsets_destroy(req);
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  ev = await(L, c, "list_group_offsets", timeout);
  if (ev == NULL) return 3;
  groups = rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(ev), &cnt);
  nres = group_partitions(L, c, groups, cnt, "list_group_offsets");
  rd_kafka_event_destroy(ev);
  return nres;
}

/* a:alter_group_offsets(group, { {topic, partition, offset}... }) -> results */
static int admin_alter_group_offsets(lua_State *L) {
  kafka_client *c = check_open(L);
  const char *group = luaL_checkstring(L, 2);
  rd_kafka_topic_partition_list_t *parts = kafka_check_partitions(L, 3, 1);
  int timeout = kafka_opt_timeout(L, 4, c);
  rd_kafka_AlterConsumerGroupOffsets_t *req = rd_kafka_AlterConsumerGroupOffsets_new(group, parts);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 0);
  rd_kafka_event_t *ev;
  const rd_kafka_group_result_t **groups;
  size_t cnt;
  int nres, i;
  rd_kafka_AlterConsumerGroupOffsets(c->rk, &req, 1, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_AlterConsumerGroupOffsets_destroy(req);
  rd_kafka_topic_partition_list_destroy(parts);
  ev = await(L, c, "alter_group_offsets", timeout);
  if (ev == NULL) return 3;
  groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &cnt);
  nres = group_partitions(L, c, groups, cnt, "alter_group_offsets");
  /* A partition-level error (e.g. the group has active members) fails the call. */
  if (nres == 1 && cnt > 0) {
    const rd_kafka_topic_partition_list_t *out = rd_kafka_group_result_partitions(groups[0]);
    for (i = 0; out && i < out->cnt; i++) {
      if (out->elems[i].err) {
        char msg[700];
        rd_kafka_resp_err_t err = out->elems[i].err;
        snprintf(msg, sizeof msg, "alter_group_offsets %s: %s [%d]: %s", group, out->elems[i].topic,
                 out->elems[i].partition, rd_kafka_err2str(err));
        rd_kafka_event_destroy(ev);
        return kafka_fail_msg(L, c, msg, rd_kafka_err2name(err));
      }
    }
  }
  rd_kafka_event_destroy(ev);
  return nres;
}

/* a:delete_groups{ "group", ... } */
static int admin_delete_groups(lua_State *L) {
  kafka_client *c = check_open(L);
  int timeout = kafka_opt_timeout(L, 3, c);
  size_t n, i, cnt;
  const char **names = check_names(L, 2, &n);
  rd_kafka_DeleteGroup_t **del = calloc(n ? n : 1, sizeof *del);
  rd_kafka_AdminOptions_t *o = options(c, timeout, 0);
  rd_kafka_event_t *ev;
  const rd_kafka_group_result_t **groups;
  for (i = 0; i < n; i++) del[i] = rd_kafka_DeleteGroup_new(names[i]);
  rd_kafka_DeleteGroups(c->rk, del, n, o, c->admin_queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteGroup_destroy_array(del, n);
  free(del);
  ev = await(L, c, "delete_groups", timeout);
  if (ev == NULL) return 3;
  groups = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &cnt);
  for (i = 0; i < cnt; i++) {
    const rd_kafka_error_t *error = rd_kafka_group_result_error(groups[i]);
    if (error) {
      char msg[700];
      snprintf(msg, sizeof msg, "delete_groups %s: %s", rd_kafka_group_result_name(groups[i]), rd_kafka_error_string(error));
      lua_pushstring(L, rd_kafka_error_name(error));
      rd_kafka_event_destroy(ev);
      return kafka_fail_msg(L, c, msg, lua_tostring(L, -1));
    }
  }
  rd_kafka_event_destroy(ev);
  lua_pushboolean(L, 1);
  return 1;
}

/* a:offsets_for_times{ {topic, partition, timestamp}... } -> the earliest
 * offset whose timestamp is at or after each time (-1: none yet). */
static int admin_offsets_for_times(lua_State *L) {
  kafka_client *c = check_open(L);
  rd_kafka_topic_partition_list_t *list;
  rd_kafka_resp_err_t err;
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  for (i = 1; i <= n; i++) { /* everything that can raise, before allocating */
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE || lua_getfield(L, -1, "topic") != LUA_TSTRING)
      return luaL_error(L, "offsets_for_times: entry %d needs topic, partition and timestamp", (int)i);
    kalua_optfield_int(L, -2, "partition", 0);
    kalua_optfield_int(L, -2, "timestamp", 0);
    lua_pop(L, 2);
  }
  list = rd_kafka_topic_partition_list_new((int)(n > 0 ? n : 1));
  for (i = 1; i <= n; i++) {
    const char *topic;
    lua_rawgeti(L, 2, i);
    lua_getfield(L, -1, "topic");
    topic = lua_tostring(L, -1);
    rd_kafka_topic_partition_list_add(list, topic, (int32_t)kalua_optfield_int(L, -2, "partition", 0))->offset =
        kalua_optfield_int(L, -2, "timestamp", 0);
    lua_pop(L, 2);
  }
  err = rd_kafka_offsets_for_times(c->rk, list, kafka_opt_timeout(L, 3, c));
  if (err) {
    rd_kafka_topic_partition_list_destroy(list);
    return kafka_fail(L, c, err, "offsets_for_times");
  }
  kafka_push_partitions(L, list);
  rd_kafka_topic_partition_list_destroy(list);
  return 1;
}

/* a:watermarks(topic, partition) -> low, high */
static int admin_watermarks(lua_State *L) {
  kafka_client *c = check_open(L);
  const char *topic = luaL_checkstring(L, 2);
  int32_t partition = (int32_t)luaL_checkinteger(L, 3);
  int64_t low, high;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(c->rk, topic, partition, &low, &high,
                                                             kafka_opt_timeout(L, 4, c));
  if (err) return kafka_fail(L, c, err, topic);
  lua_pushinteger(L, low);
  lua_pushinteger(L, high);
  return 2;
}

static int admin_close(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_ADMIN_MT);
  if (c->rk) {
    rd_kafka_queue_destroy(c->admin_queue);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    c->admin_queue = NULL;
    kafka_client_release(c);
  }
  return 0;
}

static int admin_tostring(lua_State *L) {
  kafka_client *c = luaL_checkudata(L, 1, KAFKA_ADMIN_MT);
  if (c->rk)
    lua_pushfstring(L, "kalua.kafka.Admin (%s)", rd_kafka_name(c->rk));
  else
    lua_pushliteral(L, "kalua.kafka.Admin (closed)");
  return 1;
}

static const luaL_Reg admin_methods[] = {
  {"metadata", admin_metadata},
  {"list_topics", admin_metadata},
  {"brokers", admin_brokers},
  {"create_topics", admin_create_topics},
  {"delete_topics", admin_delete_topics},
  {"describe_configs", admin_describe_configs},
  {"list_groups", admin_list_groups},
  {"describe_groups", admin_describe_groups},
  {"list_group_offsets", admin_list_group_offsets},
  {"alter_group_offsets", admin_alter_group_offsets},
  {"delete_records", admin_delete_records},
  {"cluster_id", admin_cluster_id},
  {"delete_groups", admin_delete_groups},
  {"offsets_for_times", admin_offsets_for_times},
  {"watermarks", admin_watermarks},
  {"close", admin_close},
  {NULL, NULL}
};

static const luaL_Reg admin_meta[] = {
  {"__gc", admin_close},
  {"__close", admin_close},
  {"__tostring", admin_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

void kafka_open_admin(lua_State *L) {
  luaL_newmetatable(L, KAFKA_ADMIN_MT);
  luaL_setfuncs(L, admin_meta, 0);
  luaL_newlib(L, admin_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
