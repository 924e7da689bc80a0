#include "kalua_util.h"

static const luaL_Reg kafka_funcs[] = {{NULL, NULL}};

int luaopen_kalua_kafka(lua_State *L) {
  luaL_newlib(L, kafka_funcs);
  return 1;
}
