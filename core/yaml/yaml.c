#include "kalua_util.h"

static const luaL_Reg yaml_funcs[] = {{NULL, NULL}};

int luaopen_kalua_yaml(lua_State *L) {
  luaL_newlib(L, yaml_funcs);
  return 1;
}
