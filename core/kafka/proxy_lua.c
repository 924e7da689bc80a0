/* kafka.proxy(opts): kalua proxy's engine (proxy.h) as a Lua object, for
 * scripts/proxy.lua and for users' own scripts. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "kafka/kafka_internal.h"
#include "kalua_util.h"
#include "kafka/proxy.h"
#include "kafka/relay_tls.h"

#define PROXY_MT "kalua.kafka.Proxy"

static kafka_proxy **check_box(lua_State *L) {
  return luaL_checkudata(L, 1, PROXY_MT);
}

static kafka_proxy *check_proxy(lua_State *L) {
  kafka_proxy **box = check_box(L);
  if (*box == NULL) luaL_error(L, "the proxy is closed");
  return *box;
}

static int fail(lua_State *L, const char *msg) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  return 2;
}

/* A relay from a table of kalua.* properties (see config.relay_properties). */
static kafka_relay *relay_from(lua_State *L, int idx, const char *what, char *err, size_t errlen) {
  kafka_relay *r = relay_new(NULL);
  char e[PROXY_ERR_MAX - 64];
  if (r == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && strncmp(lua_tostring(L, -2), "kalua.", 6) == 0) {
      const char *v = luaL_tolstring(L, -1, NULL);
      int ok = relay_set(r, lua_tostring(L, -3), v, e, sizeof e);
      lua_pop(L, 1);
      if (!ok) {
        lua_pop(L, 2);
        snprintf(err, errlen, "%s: %s", what, e);
        relay_destroy(r);
        return NULL;
      }
    }
    lua_pop(L, 1);
  }
  if (!relay_check(r, L, e, sizeof e)) {
    snprintf(err, errlen, "%s: %s", what, e);
    relay_destroy(r);
    return NULL;
  }
  return r;
}

static const char *opt_string(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays alive in the table */
  return v;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt) {
  lua_Integer v;
  lua_getfield(L, t, k);
  v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

static int set_identities(lua_State *L, kafka_proxy *p, char *err, size_t errlen) {
  if (lua_getfield(L, 2, "identities") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      proxy_identity *id;
      char what[200];
      if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
        snprintf(err, errlen, "identities: each entry is user = {connection settings}");
        return 0;
      }
      snprintf(what, sizeof what, "identity of user '%s'", lua_tostring(L, -2));
      if ((id = calloc(1, sizeof *id)) == NULL || (id->user = strdup(lua_tostring(L, -2))) == NULL) {
        free(id);
        snprintf(err, errlen, "out of memory");
        return 0;
      }
      id->next = p->identities;
      p->identities = id;
      if ((id->relay = relay_from(L, -1, what, err, errlen)) == NULL) return 0;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return 1;
}

static int set_tls(lua_State *L, kafka_proxy *p, char *err, size_t errlen) {
  if (lua_getfield(L, 2, "tls") == LUA_TTABLE) {
    int t = lua_gettop(L);
    relay_tls_files f = {opt_string(L, t, "ca"), opt_string(L, t, "cert"), opt_string(L, t, "key"),
                         opt_string(L, t, "key_password")};
    if ((p->server_ctx = relay_tls_server_context(&f, err, errlen)) == NULL) return 0;
    if (lua_getfield(L, t, "client_subjects") == LUA_TTABLE) {
      lua_Integer i, n = luaL_len(L, -1);
      proxy_subject_rule **tail = &p->subjects;
      for (i = 1; i <= n; i++) {
        proxy_subject_rule *r;
        const char *match, *user;
        lua_geti(L, -1, i);
        match = lua_istable(L, -1) ? opt_string(L, -1, "match") : NULL;
        user = lua_istable(L, -1) ? opt_string(L, -1, "user") : NULL;
        if (match == NULL || user == NULL) {
          snprintf(err, errlen, "tls.client_subjects[%d] needs match and user", (int)i);
          return 0;
        }
        if ((r = calloc(1, sizeof *r)) == NULL || (r->pattern = strdup(match)) == NULL ||
            (r->user = strdup(user)) == NULL) {
          if (r) free(r->pattern);
          free(r);
          snprintf(err, errlen, "out of memory");
          return 0;
        }
        *tail = r;
        tail = &r->next;
        lua_pop(L, 1);
      }
      if (p->subjects && f.ca == NULL) {
        snprintf(err, errlen, "tls.client_subjects needs tls.ca: without it clients show no certificate");
        return 0;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* check_script: a chunk returning function(user, password, info). */
static int set_check(lua_State *L, kafka_proxy *p, char *err, size_t errlen) {
  const char *path = opt_string(L, 2, "check_script");
  if (path == NULL) return 1;
  if ((p->check_path = strdup(path)) == NULL || (p->L = luaL_newstate()) == NULL) {
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  luaL_openlibs(p->L);
  relay_copy_package(L, p->L);
  if (luaL_loadfile(p->L, path) != LUA_OK || lua_pcall(p->L, 0, 1, 0) != LUA_OK) {
    snprintf(err, errlen, "auth_script: %s", lua_tostring(p->L, -1));
    return 0;
  }
  if (!lua_isfunction(p->L, -1)) {
    snprintf(err, errlen, "auth_script %s must return a function(user, password, info)", path);
    return 0;
  }
  p->check_fn = luaL_ref(p->L, LUA_REGISTRYINDEX);
  return 1;
}

static int set_policy(lua_State *L, kafka_proxy *p, char *err, size_t errlen) {
  p->max_connections = (int)opt_int(L, 2, "max_connections", 0);
  p->idle_timeout_ms = (int)opt_int(L, 2, "idle_timeout_ms", 0);
  p->handshake_timeout_ms = (int)opt_int(L, 2, "handshake_timeout_ms", 30000);
  if (lua_getfield(L, 2, "forbidden") == LUA_TTABLE) {
    lua_Integer i, n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
      lua_Integer key;
      lua_geti(L, -1, i);
      key = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
      lua_pop(L, 1);
      if (key < 0 || key >= PROXY_API_KEYS || !wire_can_refuse((int16_t)key)) {
        snprintf(err, errlen, "forbidden: kalua proxy cannot refuse API key %d with an error response", (int)key);
        return 0;
      }
      p->forbidden[key] = 1;
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "dynamic") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) p->dynamic = 0;
  if (lua_istable(L, -1)) {
    const char *host = opt_string(L, -1, "host"), *adv = opt_string(L, -1, "advertised_host");
    if (host) snprintf(p->dynamic_host, sizeof p->dynamic_host, "%s", host);
    if (adv) snprintf(p->dynamic_advertised, sizeof p->dynamic_advertised, "%s", adv);
    p->dynamic_port_next = (int)opt_int(L, -1, "port_min", 0);
  }
  lua_pop(L, 1);
  return 1;
}

static int set_listeners(lua_State *L, kafka_proxy *p, char *err, size_t errlen) {
  if (lua_getfield(L, 2, "listeners") == LUA_TTABLE) {
    lua_Integer i, n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
      const char *upstream, *listen;
      lua_geti(L, -1, i);
      upstream = lua_istable(L, -1) ? opt_string(L, -1, "upstream") : NULL;
      listen = lua_istable(L, -1) ? opt_string(L, -1, "listen") : NULL;
      if (upstream == NULL || listen == NULL) {
        snprintf(err, errlen, "listeners[%d] needs upstream and listen", (int)i);
        return 0;
      }
      if (!proxy_add_listener(p, upstream, listen, opt_string(L, -1, "advertised"), 0, err, errlen)) return 0;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (p->listeners == NULL) {
    snprintf(err, errlen, "no listeners: map at least one broker");
    return 0;
  }
  return 1;
}

/* kafka.proxy{upstream=, identities=, listeners=, dynamic=, forbidden=, tls=, check_script=,
 * max_connections=, idle_timeout_ms=, handshake_timeout_ms=} -> proxy | nil, message. */
int kafka_proxy_new(lua_State *L) {
  kafka_proxy **box;
  kafka_proxy *p;
  char err[PROXY_ERR_MAX] = "";
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, PROXY_MT);
  lua_insert(L, 1); /* box at 1, opts at 2 */
  if ((p = *box = proxy_new()) == NULL) return luaL_error(L, "out of memory");
  if (lua_getfield(L, 2, "upstream") != LUA_TTABLE) return luaL_error(L, "kafka.proxy needs upstream settings");
  p->upstream = relay_from(L, -1, "upstream", err, sizeof err);
  lua_pop(L, 1);
  if (p->upstream == NULL || !set_identities(L, p, err, sizeof err) || !set_tls(L, p, err, sizeof err) ||
      !set_check(L, p, err, sizeof err) || !set_policy(L, p, err, sizeof err) ||
      !set_listeners(L, p, err, sizeof err) || !proxy_start(p, err, sizeof err)) {
    proxy_free(p);
    *box = NULL;
    return fail(L, err);
  }
  lua_settop(L, 1);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* proxy:listeners() -> {{listen=, advertised=, upstream=, dynamic=, connections=}, ...} */
static int proxy_listeners(lua_State *L) {
  kafka_proxy *p = check_proxy(L);
  proxy_listener *l;
  int i = 0;
  lua_newtable(L);
  pthread_mutex_lock(&p->lock);
  for (l = p->listeners; l; l = l->next) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, l->listen);
    lua_setfield(L, -2, "listen");
    lua_pushstring(L, l->advertised);
    lua_setfield(L, -2, "advertised");
    lua_pushstring(L, l->upstream);
    lua_setfield(L, -2, "upstream");
    lua_pushboolean(L, l->dynamic);
    lua_setfield(L, -2, "dynamic");
    set_int(L, "connections", atomic_load(&l->connections));
    lua_rawseti(L, -2, ++i);
  }
  pthread_mutex_unlock(&p->lock);
  return 1;
}

/* proxy:events() -> {{kind=, message=}, ...}: what happened since the last call. */
static int proxy_events(lua_State *L) {
  kafka_proxy *p = check_proxy(L);
  proxy_event *e, *list;
  int i = 0;
  pthread_mutex_lock(&p->lock);
  list = p->events;
  p->events = p->events_tail = NULL;
  p->nevents = 0;
  pthread_mutex_unlock(&p->lock);
  lua_newtable(L);
  while ((e = list) != NULL) {
    list = e->next;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, e->kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, ++i);
    free(e->message);
    free(e);
  }
  return 1;
}

static void push_by_api(lua_State *L, kafka_proxy *p) {
  int k;
  lua_newtable(L);
  for (k = 0; k < PROXY_API_KEYS; k++) {
    long n = atomic_load(&p->requests[k]);
    long long lat_n = atomic_load(&p->latency_n[k]);
    if (n == 0 && lat_n == 0) continue;
    lua_createtable(L, 0, 4);
    set_int(L, "key", k);
    set_int(L, "requests", n);
    set_int(L, "responses", lat_n);
    lua_pushnumber(L, (lua_Number)atomic_load(&p->latency_us[k]) / 1e6);
    lua_setfield(L, -2, "latency_seconds");
    lua_setfield(L, -2, wire_api_key_name((int16_t)k));
  }
}

/* proxy:stats() -> {accepted=, active=, refused=, idle_closed=, local_ok=, local_failed=,
 * upstream_failed=, upstream_auth_failed=, forbidden=, rewritten=, unmatched_responses=,
 * bytes_in=, bytes_out=, api={[name]={key=, requests=, responses=, latency_seconds=}},
 * upstream={relay stats}} */
static int proxy_stats(lua_State *L) {
  kafka_proxy *p = check_proxy(L);
  lua_createtable(L, 0, 16);
  set_int(L, "accepted", atomic_load(&p->accepted));
  set_int(L, "active", atomic_load(&p->active));
  set_int(L, "refused", atomic_load(&p->refused));
  set_int(L, "idle_closed", atomic_load(&p->idle_closed));
  set_int(L, "local_ok", atomic_load(&p->local_ok));
  set_int(L, "local_failed", atomic_load(&p->local_failed));
  set_int(L, "upstream_failed", atomic_load(&p->upstream_failed));
  set_int(L, "upstream_auth_failed", atomic_load(&p->upstream_auth_failed));
  set_int(L, "forbidden", atomic_load(&p->forbidden_answered));
  set_int(L, "rewritten", atomic_load(&p->rewritten));
  set_int(L, "unmatched_responses", atomic_load(&p->unmatched));
  set_int(L, "bytes_in", atomic_load(&p->bytes_in));
  set_int(L, "bytes_out", atomic_load(&p->bytes_out));
  push_by_api(L, p);
  lua_setfield(L, -2, "api");
  relay_push_stats(L, p->upstream);
  lua_setfield(L, -2, "upstream");
  if (p->identities) {
    proxy_identity *id;
    lua_newtable(L);
    for (id = p->identities; id; id = id->next) {
      relay_push_stats(L, id->relay);
      lua_setfield(L, -2, id->user);
    }
    lua_setfield(L, -2, "identities");
  }
  return 1;
}

/* proxy:drop_upstream() -> n: shuts every broker connection down. */
static int proxy_drop(lua_State *L) {
  lua_pushinteger(L, proxy_drop_upstream(check_proxy(L)));
  return 1;
}

static int proxy_close(lua_State *L) {
  kafka_proxy **box = check_box(L);
  proxy_free(*box);
  *box = NULL;
  return 0;
}

static int proxy_tostring(lua_State *L) {
  kafka_proxy **box = check_box(L);
  if (*box == NULL)
    lua_pushstring(L, "kalua.kafka.Proxy (closed)");
  else
    lua_pushfstring(L, "kalua.kafka.Proxy (%d active connections)", (int)atomic_load(&(*box)->active));
  return 1;
}

void kafka_proxy_register(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"listeners", proxy_listeners}, {"events", proxy_events},      {"stats", proxy_stats},
    {"drop_upstream", proxy_drop},  {NULL, NULL},
  };
  kalua_newtype(L, PROXY_MT, methods, proxy_close, proxy_tostring); /* close, __close, __gc */
}
