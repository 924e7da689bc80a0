/* Client configuration: a Lua table becomes a librdkafka conf.
 *
 * Keys other than the friendly ones below are librdkafka properties,
 * passed as they are (like kcat -X). The OSO-style keys (bootstrap_servers, security, properties)
 * go through kalua.config.client_properties, which owns their meaning.
 * A few friendly keys (group_id, idempotence, ...) are spelled out below. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kafka/kafka_internal.h"
#include "kafka/relay.h"

struct friendly_key {
  const char *name;
  const char *property; /* NULL: handled in code */
};

static const struct friendly_key friendly_keys[] = {
  {"group_id", "group.id"},
  {"client_id", "client.id"},
  {"idempotence", "enable.idempotence"},
  {"compression", "compression.type"},
  {"acks", "acks"},
  {"transactional_id", "transactional.id"},
  {"isolation_level", "isolation.level"},
  {"auto_commit", "enable.auto.commit"},
  {"partition_eof", "enable.partition.eof"},
  {"bootstrap_servers", NULL},
  {"security", NULL},
  {"properties", NULL},
  {"timeout_ms", NULL},
  {"log", NULL},
  {NULL, NULL}
};

static const char *const secret_properties[] = {
  "sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret", NULL
};

static void remember_secret(kafka_client *c, const char *value) {
  int i;
  for (i = 0; i < KAFKA_SECRETS_MAX; i++) {
    if (c->secrets[i] == NULL) {
      c->secrets[i] = strdup(value);
      return;
    }
  }
}

static void note_property(kafka_client *c, const char *name, const char *value) {
  int i;
  for (i = 0; secret_properties[i]; i++)
    if (strcmp(name, secret_properties[i]) == 0) remember_secret(c, value);
  if (strcmp(name, "sasl.mechanism") == 0 || strcmp(name, "sasl.mechanisms") == 0)
    snprintf(c->mechanism, sizeof c->mechanism, "%s", value);
  if (strcmp(name, "debug") == 0) c->log_requested = 1;
}

/* The value at idx as a property string (booleans as true/false). */
static const char *property_value(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER:
    case LUA_TSTRING:
      return lua_tostring(L, lua_absindex(L, idx)); /* converts numbers in place on a copy */
    default:
      return NULL;
  }
}

/* Sets one property; on failure pushes nil, message, name and returns 0. */
static int set_property(lua_State *L, rd_kafka_conf_t *conf, kafka_client *c, const char *name, int vidx) {
  char errstr[512], msg[700];
  const char *value;
  lua_pushvalue(L, vidx); /* tostring on a copy keeps the table's value intact */
  value = property_value(L, -1);
  if (value == NULL) {
    lua_pop(L, 1);
    snprintf(msg, sizeof msg, "%s: expected a string, number or boolean", name);
    kafka_fail_msg(L, c, msg, "_INVALID_ARG");
    return 0;
  }
  note_property(c, name, value);
  if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    lua_pop(L, 1);
    snprintf(msg, sizeof msg, "%s: %s", name, errstr);
    kafka_fail_msg(L, c, msg, "_INVALID_ARG");
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static int needs_translation(lua_State *L, int idx) {
  static const char *const keys[] = {"bootstrap_servers", "security", "properties", NULL};
  int i, found = 0;
  for (i = 0; keys[i] && !found; i++) {
    found = lua_getfield(L, idx, keys[i]) != LUA_TNIL;
    lua_pop(L, 1);
  }
  return found;
}

/* Pushes kalua.config.client_properties(t) (a flat property table), or
 * nil, message. Runs protected so a failing Lua call cannot leak the conf. */
static int translate(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "kalua.config");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "client_properties");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 2);
  return 2;
}

/* A kalua.* property from kalua.config: settings for kalua's auth relay,
 * which then carries the client's SASL (librdkafka speaks PLAINTEXT to it). */
static int set_relay_property(lua_State *L, kafka_client *c, const char *name, int vidx) {
  char err[256], msg[400];
  const char *value;
  lua_pushvalue(L, vidx);
  value = property_value(L, -1);
  if (value == NULL) {
    lua_pop(L, 1);
    snprintf(msg, sizeof msg, "%s: expected a string, number or boolean", name);
    kafka_fail_msg(L, c, msg, "_INVALID_ARG");
    return 0;
  }
  if (c->relay == NULL && (c->relay = relay_new(c)) == NULL) {
    lua_pop(L, 1);
    kafka_fail_msg(L, c, "cannot start the auth relay: out of memory", "_INVALID_ARG");
    return 0;
  }
  if (strcmp(name, "kalua.sasl.password") == 0 || strcmp(name, "kalua.sasl.token") == 0 ||
      strcmp(name, "kalua.ssl.key_password") == 0)
    remember_secret(c, value);
  if (strcmp(name, "kalua.sasl.mechanism") == 0) snprintf(c->mechanism, sizeof c->mechanism, "%s", value);
  if (!relay_set(c->relay, name, value, err, sizeof err)) {
    lua_pop(L, 1);
    kafka_fail_msg(L, c, err, "_INVALID_ARG");
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static int apply_translated(lua_State *L, int idx, rd_kafka_conf_t *conf, kafka_client *c) {
  int flat;
  lua_pushcfunction(L, translate);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
    kafka_fail_msg(L, c, lua_tostring(L, -1), "_INVALID_ARG");
    return 0;
  }
  if (!lua_istable(L, -2)) {
    const char *msg = lua_tostring(L, -1);
    kafka_fail_msg(L, c, msg ? msg : "invalid client configuration", "_INVALID_ARG");
    return 0;
  }
  lua_pop(L, 1);
  flat = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, flat)) {
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    /* kalua.* entries are for kalua's own SASL engine, not librdkafka. */
    if (name && strncmp(name, "kalua.", 6) == 0) {
      if (!set_relay_property(L, c, name, lua_gettop(L))) return 0;
    } else if (name && !set_property(L, conf, c, name, lua_gettop(L))) {
      return 0;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (c->relay) {
    char err[256];
    if (!relay_check(c->relay, L, err, sizeof err)) {
      kafka_fail_msg(L, c, err, "_INVALID_ARG");
      return 0;
    }
  }
  return 1;
}

static const struct friendly_key *find_friendly(const char *name) {
  const struct friendly_key *k;
  for (k = friendly_keys; k->name; k++)
    if (strcmp(k->name, name) == 0) return k;
  return NULL;
}

static int apply_keys(lua_State *L, int idx, rd_kafka_conf_t *conf, kafka_client *c) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *name;
    const struct friendly_key *k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      kafka_fail_msg(L, c, "client config keys must be strings", "_INVALID_ARG");
      return 0;
    }
    name = lua_tostring(L, -2);
    if ((k = find_friendly(name)) == NULL) {
      /* librdkafka's own names (some have no dot: debug, acks, retries);
       * it rejects unknown ones with a message naming the property. */
      if (!set_property(L, conf, c, name, lua_gettop(L))) goto failed;
    } else if (k->property) {
      if (!set_property(L, conf, c, k->property, lua_gettop(L))) goto failed;
      if (strcmp(name, "partition_eof") == 0) c->partition_eof = lua_toboolean(L, -1);
    } else if (strcmp(name, "timeout_ms") == 0) {
      c->timeout_ms = (int)luaL_checkinteger(L, -1);
    } else if (strcmp(name, "log") == 0) {
      c->log_requested = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  return 1;
failed:
  return 0; /* nil, message, name are on top: the caller returns them */
}

static int set_default(rd_kafka_conf_t *conf, const char *name, const char *value) {
  char errstr[256];
  return rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK;
}

rd_kafka_conf_t *kafka_conf_from_table(lua_State *L, int idx, kafka_client *c) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  idx = lua_absindex(L, idx);
  if (strcmp(c->kind, "consumer") == 0) {
    /* Scripts decide when a position is safe: no commits behind their back,
     * and no records of aborted transactions. */
    set_default(conf, "enable.auto.commit", "false");
    set_default(conf, "isolation.level", "read_committed");
    /* librdkafka 2.0.2 refuses assign() without a group; this one is never
     * joined and holds no offsets unless the script commits. */
    {
      char group[64];
      snprintf(group, sizeof group, "kalua-%ld-%p", (long)getpid(), (void *)c);
      set_default(conf, "group.id", group);
    }
  }
  if (needs_translation(L, idx) && !apply_translated(L, idx, conf, c)) goto failed;
  if (!apply_keys(L, idx, conf, c)) goto failed;
  kafka_install_callbacks(conf, c);
  if (c->relay) relay_install(c->relay, conf);
  return conf;
failed:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

/* --- kafka.sasl_probe --------------------------------------------------------------- */

#define RELAY_BOX_MT "kalua.kafka.ProbeRelay"

static int relay_box_gc(lua_State *L) {
  kafka_relay **box = luaL_checkudata(L, 1, RELAY_BOX_MT);
  relay_destroy(*box);
  *box = NULL;
  return 0;
}

/* kafka.sasl_probe(conf [, {timeout_ms=}]) -> result (see relay_probe), or
 * nil, message for a config that cannot be probed. The relay lives in a
 * userdata so that any error on the way still frees it. */
int kafka_sasl_probe(lua_State *L) {
  kafka_relay **box;
  char err[256];
  const char *bootstrap = NULL;
  int props, has_relay = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  box = lua_newuserdatauv(L, sizeof *box, 0); /* 3 */
  *box = NULL;
  if (luaL_newmetatable(L, RELAY_BOX_MT)) {
    lua_pushcfunction(L, relay_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if ((*box = relay_new(NULL)) == NULL) return luaL_error(L, "out of memory");
  lua_pushcfunction(L, translate);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 2);
  if (!lua_istable(L, -2)) return kalua_fail(L, lua_tostring(L, -1), "_INVALID_ARG");
  lua_pop(L, 1);
  props = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, props)) {
    const char *name, *value;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    name = lua_tostring(L, -2);
    value = property_value(L, -1);
    if (strcmp(name, "bootstrap.servers") == 0) bootstrap = value;
    if (strncmp(name, "kalua.", 6) == 0 && value) {
      has_relay = 1;
      if (!relay_set(*box, name, value, err, sizeof err)) return kalua_fail(L, err, "_INVALID_ARG");
    }
    lua_pop(L, 1);
  }
  if (!has_relay)
    return kalua_fail(L, "nothing to probe: security_protocol must be SASL_PLAINTEXT or SASL_SSL", "_INVALID_ARG");
  if (lua_istable(L, 2) && lua_getfield(L, 2, "timeout_ms") == LUA_TNUMBER) {
    relay_set(*box, "kalua.relay.timeout_ms", lua_tostring(L, -1), err, sizeof err);
  }
  if (!relay_check(*box, L, err, sizeof err)) return kalua_fail(L, err, "_INVALID_ARG");
  if (bootstrap == NULL || *bootstrap == '\0') return kalua_fail(L, "no bootstrap_servers to probe", "_INVALID_ARG");
  {
    char first[300];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(bootstrap, ","), bootstrap);
    relay_probe(L, *box, first);
  }
  return 1;
}
