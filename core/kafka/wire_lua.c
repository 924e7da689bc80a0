/* kafka.wire: kalua proxy's message functions (wire.h) for Lua, so specs
 * and users' scripts can build, rewrite and read the same frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "kafka/kafka_internal.h"
#include "kafka/wire.h"

static const unsigned char *check_bytes(lua_State *L, int idx, size_t *len) {
  return (const unsigned char *)luaL_checklstring(L, idx, len);
}

static int push_frame(lua_State *L, unsigned char *out, size_t len) {
  lua_pushlstring(L, (const char *)out, len);
  free(out);
  return 1;
}

static int push_fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

/* map: a table {["host:port"] = "host:port"} or function(node, host, port) -> host, port */
static int lua_map(void *ud, int32_t node_id, const char *host, int32_t port, wire_addr *out) {
  lua_State *L = ud;
  const char *to;
  int rc = 0;
  if (lua_isfunction(L, 4)) {
    lua_pushvalue(L, 4);
    lua_pushinteger(L, node_id);
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
      lua_pop(L, 1);
      return -1;
    }
    if (lua_type(L, -2) == LUA_TSTRING && lua_isinteger(L, -1)) {
      snprintf(out->host, sizeof out->host, "%s", lua_tostring(L, -2));
      out->port = (int32_t)lua_tointeger(L, -1);
      rc = 1;
    } else if (lua_toboolean(L, -2) == 0 && lua_type(L, -1) == LUA_TSTRING) {
      rc = -1;
    }
    lua_pop(L, 2);
    return rc;
  }
  lua_pushfstring(L, "%s:%d", host, (int)port);
  lua_gettable(L, 4);
  to = lua_tostring(L, -1);
  if (to && strrchr(to, ':')) {
    const char *colon = strrchr(to, ':');
    snprintf(out->host, sizeof out->host, "%.*s", (int)(colon - to), to);
    out->port = (int32_t)atoi(colon + 1);
    rc = 1;
  }
  lua_pop(L, 1);
  return rc;
}

/* wire.rewrite_response(api_key, version, frame, map) -> frame | nil, err (frames with their size) */
static int l_rewrite(lua_State *L) {
  int16_t key = (int16_t)luaL_checkinteger(L, 1), version = (int16_t)luaL_checkinteger(L, 2);
  size_t len;
  const unsigned char *frame = check_bytes(L, 3, &len);
  unsigned char *out;
  size_t out_len;
  char err[WIRE_ERR_MAX];
  luaL_argcheck(L, lua_istable(L, 4) || lua_isfunction(L, 4), 4, "a table or a function");
  luaL_argcheck(L, len >= 4, 3, "a frame with its size");
  if (!wire_rewrite_response(key, version, frame + 4, len - 4, lua_map, L, &out, &out_len, err, sizeof err))
    return push_fail(L, err);
  return push_frame(L, out, out_len);
}

/* wire.refusal(request frame) -> response frame | false (acks=0) | nil, err */
static int l_refusal(lua_State *L) {
  size_t len, out_len;
  const unsigned char *frame = check_bytes(L, 1, &len);
  unsigned char *out;
  char err[WIRE_ERR_MAX];
  luaL_argcheck(L, len >= 4, 1, "a frame with its size");
  if (!wire_refusal(frame + 4, len - 4, &out, &out_len, err, sizeof err)) return push_fail(L, err);
  if (out == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return push_frame(L, out, out_len);
}

/* wire.clamp_api_versions(version, frame) -> frame | nil */
static int l_clamp(lua_State *L) {
  int16_t version = (int16_t)luaL_checkinteger(L, 1);
  size_t len;
  const unsigned char *frame = check_bytes(L, 2, &len);
  unsigned char *copy;
  luaL_argcheck(L, len >= 4, 2, "a frame with its size");
  if ((copy = malloc(len)) == NULL) return luaL_error(L, "out of memory");
  memcpy(copy, frame, len);
  if (!wire_clamp_api_versions(version, copy + 4, len - 4)) {
    free(copy);
    return push_fail(L, "malformed ApiVersions response");
  }
  return push_frame(L, copy, len);
}

/* wire.api_versions_response(version, correlation, error_code, {{key=, min=, max=}, ...}) -> frame */
static int l_api_versions(lua_State *L) {
  int16_t version = (int16_t)luaL_checkinteger(L, 1), code = (int16_t)luaL_checkinteger(L, 3);
  int32_t correlation = (int32_t)luaL_checkinteger(L, 2);
  size_t n, i, out_len;
  wire_api_range *r;
  unsigned char *out;
  luaL_checktype(L, 4, LUA_TTABLE);
  n = (size_t)luaL_len(L, 4);
  r = lua_newuserdatauv(L, (n + 1) * sizeof *r, 0);
  for (i = 0; i < n; i++) {
    lua_geti(L, 4, (lua_Integer)i + 1);
    lua_getfield(L, -1, "key");
    lua_getfield(L, -2, "min");
    lua_getfield(L, -3, "max");
    r[i].key = (int16_t)lua_tointeger(L, -3);
    r[i].min = (int16_t)lua_tointeger(L, -2);
    r[i].max = (int16_t)lua_tointeger(L, -1);
    lua_pop(L, 4);
  }
  if (!wire_api_versions_response(version, correlation, code, r, n, &out, &out_len))
    return luaL_error(L, "out of memory");
  return push_frame(L, out, out_len);
}

/* wire.parse_api_versions(version, frame) -> {{key=, min=, max=}, ...} | nil */
static int l_parse_api_versions(lua_State *L) {
  int16_t version = (int16_t)luaL_checkinteger(L, 1);
  size_t len, n, i;
  const unsigned char *frame = check_bytes(L, 2, &len);
  wire_api_range *r;
  luaL_argcheck(L, len >= 4, 2, "a frame with its size");
  if (!wire_parse_api_versions(version, frame + 4, len - 4, &r, &n)) return push_fail(L, "malformed");
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, r[i].key);
    lua_setfield(L, -2, "key");
    lua_pushinteger(L, r[i].min);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, r[i].max);
    lua_setfield(L, -2, "max");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(r);
  return 1;
}

/* wire.parse_request(frame) -> {api_key=, api_version=, correlation=, client_id=, flexible=, body=} | nil */
static int l_parse_request(lua_State *L) {
  size_t len;
  const unsigned char *frame = check_bytes(L, 1, &len);
  wire_request h;
  luaL_argcheck(L, len >= 4, 1, "a frame with its size");
  if (!wire_parse_request(frame + 4, len - 4, &h)) return push_fail(L, "malformed request header");
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, h.api_key);
  lua_setfield(L, -2, "api_key");
  lua_pushinteger(L, h.api_version);
  lua_setfield(L, -2, "api_version");
  lua_pushinteger(L, h.correlation);
  lua_setfield(L, -2, "correlation");
  if (h.client_id) {
    lua_pushlstring(L, h.client_id, h.client_id_len);
    lua_setfield(L, -2, "client_id");
  }
  lua_pushboolean(L, h.flexible);
  lua_setfield(L, -2, "flexible");
  lua_pushlstring(L, (const char *)frame + 4 + h.body_off, len - 4 - h.body_off);
  lua_setfield(L, -2, "body");
  return 1;
}

/* wire.sasl_plain(message) -> authzid, user, password | nil */
static int l_sasl_plain(lua_State *L) {
  size_t n, a, u, p;
  const unsigned char *msg = check_bytes(L, 1, &n);
  const char *authzid, *user, *pass;
  if (!wire_sasl_plain(msg, n, &authzid, &a, &user, &u, &pass, &p)) return push_fail(L, "malformed PLAIN message");
  lua_pushlstring(L, authzid, a);
  lua_pushlstring(L, user, u);
  lua_pushlstring(L, pass, p);
  return 3;
}

/* wire.sasl_handshake_mechanism(request frame) -> mechanism | nil, err */
static int l_sasl_handshake_mechanism(lua_State *L) {
  size_t len, n;
  const unsigned char *frame = check_bytes(L, 1, &len);
  const char *mech;
  wire_request h;
  luaL_argcheck(L, len >= 4, 1, "a frame with its size");
  if (!wire_parse_request(frame + 4, len - 4, &h) || h.api_key != 17 ||
      !wire_sasl_handshake_mechanism(&h, frame + 4, len - 4, &mech, &n))
    return push_fail(L, "malformed SaslHandshake request");
  lua_pushlstring(L, mech, n);
  return 1;
}

/* wire.sasl_handshake_response(correlation, error_code, {mechanism, ...}) -> frame */
static int l_sasl_handshake_response(lua_State *L) {
  int32_t correlation = (int32_t)luaL_checkinteger(L, 1);
  int16_t code = (int16_t)luaL_checkinteger(L, 2);
  const char **mechs;
  size_t n, i, out_len;
  unsigned char *out;
  luaL_checktype(L, 3, LUA_TTABLE);
  n = (size_t)luaL_len(L, 3);
  mechs = lua_newuserdatauv(L, (n + 1) * sizeof *mechs, 0);
  for (i = 0; i < n; i++) {
    lua_geti(L, 3, (lua_Integer)i + 1);
    mechs[i] = luaL_checkstring(L, -1); /* stays alive: the table holds it */
    lua_pop(L, 1);
  }
  mechs[n] = NULL;
  if (!wire_sasl_handshake_response(correlation, code, mechs, &out, &out_len)) return luaL_error(L, "out of memory");
  return push_frame(L, out, out_len);
}

/* wire.sasl_authenticate_bytes(request frame) -> auth bytes | nil, err */
static int l_sasl_authenticate_bytes(lua_State *L) {
  size_t len, n;
  const unsigned char *frame = check_bytes(L, 1, &len), *bytes;
  wire_request h;
  luaL_argcheck(L, len >= 4, 1, "a frame with its size");
  if (!wire_parse_request(frame + 4, len - 4, &h) || h.api_key != 36 ||
      !wire_sasl_authenticate_bytes(&h, frame + 4, len - 4, &bytes, &n))
    return push_fail(L, "malformed SaslAuthenticate request");
  lua_pushlstring(L, (const char *)bytes, n);
  return 1;
}

/* wire.sasl_authenticate_response(version, correlation, error_code, message|nil, bytes, lifetime_ms) -> frame */
static int l_sasl_authenticate_response(lua_State *L) {
  int16_t version = (int16_t)luaL_checkinteger(L, 1), code = (int16_t)luaL_checkinteger(L, 3);
  int32_t correlation = (int32_t)luaL_checkinteger(L, 2);
  const char *msg = luaL_optstring(L, 4, NULL);
  size_t n, out_len;
  const unsigned char *bytes = (const unsigned char *)luaL_optlstring(L, 5, "", &n);
  int64_t lifetime = (int64_t)luaL_optinteger(L, 6, 0);
  unsigned char *out;
  if (!wire_sasl_authenticate_response(version, correlation, code, msg, bytes, n, lifetime, &out, &out_len))
    return luaL_error(L, "out of memory");
  return push_frame(L, out, out_len);
}

/* wire.client_max_version(api_key) -> highest version clients may use | nil */
static int l_client_max_version(lua_State *L) {
  int16_t v = wire_client_max_version((int16_t)luaL_checkinteger(L, 1));
  if (v < 0) return push_fail(L, "no limit");
  lua_pushinteger(L, v);
  return 1;
}

/* wire.response_flexible(api_key, version) -> boolean (response header v1) */
static int l_response_flexible(lua_State *L) {
  lua_pushboolean(L, wire_response_flexible((int16_t)luaL_checkinteger(L, 1), (int16_t)luaL_checkinteger(L, 2)));
  return 1;
}

static int l_api_key_name(lua_State *L) {
  lua_pushstring(L, wire_api_key_name((int16_t)luaL_checkinteger(L, 1)));
  return 1;
}

/* wire.api_key(name) -> key | nil */
static int l_api_key(lua_State *L) {
  int k = wire_api_key_parse(luaL_checkstring(L, 1));
  if (k < 0) return push_fail(L, "unknown API");
  lua_pushinteger(L, k);
  return 1;
}

static int l_can_refuse(lua_State *L) {
  lua_pushboolean(L, wire_can_refuse((int16_t)luaL_checkinteger(L, 1)));
  return 1;
}

void wire_lua_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"rewrite_response", l_rewrite},    {"refusal", l_refusal},
    {"clamp_api_versions", l_clamp},    {"api_versions_response", l_api_versions},
    {"parse_api_versions", l_parse_api_versions}, {"parse_request", l_parse_request},
    {"sasl_plain", l_sasl_plain},       {"api_key_name", l_api_key_name},
    {"api_key", l_api_key},             {"can_refuse", l_can_refuse},
    {"sasl_handshake_mechanism", l_sasl_handshake_mechanism},
    {"sasl_handshake_response", l_sasl_handshake_response},
    {"sasl_authenticate_bytes", l_sasl_authenticate_bytes},
    {"sasl_authenticate_response", l_sasl_authenticate_response},
    {"client_max_version", l_client_max_version},
    {"response_flexible", l_response_flexible},
    {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "wire");
}
