/* Helpers every kalua C module uses; header-only so each module stays a
 * self-contained object library that also builds as a loadable .so. */
#ifndef KALUA_UTIL_H
#define KALUA_UTIL_H

#include <lua.h>
#include <lauxlib.h>

/* Expected failures (network, auth, missing files) return nil, message, name
 * so scripts can branch on the symbolic name, as luv does. */
static inline int kalua_fail(lua_State *L, const char *message, const char *name) {
  lua_pushnil(L);
  lua_pushstring(L, message);
  lua_pushstring(L, name ? name : "ERROR");
  return 3;
}

/* Optional integer field of the table at idx, or dflt when absent. */
static inline lua_Integer kalua_optfield_int(lua_State *L, int idx, const char *k, lua_Integer dflt) {
  lua_Integer v = dflt;
  if (lua_getfield(L, idx, k) != LUA_TNIL) {
    int isnum = 0;
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum) luaL_error(L, "field '%s' must be an integer", k);
  }
  lua_pop(L, 1);
  return v;
}

/* Registers a userdata type: metatable `name` whose __gc and __close are
 * `close` (which must be safe to call twice), optional __tostring, and the
 * methods (plus close) as __index. */
static inline void kalua_newtype(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close,
                                 lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__close");
  if (tostring) {
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "close");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

#endif
