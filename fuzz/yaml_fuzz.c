/* libFuzzer target: kalua.yaml's loader on arbitrary bytes. Any input must
 * give a value or nil, message: never a crash, a leak or a hang. */
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

int luaopen_kalua_yaml(lua_State *L);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "kalua.yaml", luaopen_kalua_yaml, 0);
  lua_getfield(L, -1, "load");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushliteral(L, "fuzz.yaml");
  lua_createtable(L, 0, 1); /* a fixed environment keeps runs reproducible */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "value");
  lua_setfield(L, -2, "A");
  lua_setfield(L, -2, "env");
  lua_pcall(L, 3, 2, 0);
  lua_close(L);
  return 0;
}
