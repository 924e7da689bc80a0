/* libFuzzer target: a backup's manifest.json, as every reader of it sees
 * it: kalua.catalog's describe and validate (deep) and kalua.restore's
 * plan. Whatever the bytes, each must return a value or nil, message;
 * a raised Lua error (a nil indexed, a number compared with a table) is a
 * bug and aborts. Run from the repository root (lua/ on package.path). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_kalua_storage(lua_State *L);
int luaopen_kalua_segment(lua_State *L);
int luaopen_kalua_kafka(lua_State *L);
int luaopen_kalua_codec(lua_State *L);
int luaopen_kalua_clock(lua_State *L);

static const char *SCRIPT =
    "package.path = 'lua/?.lua;' .. package.path\n"
    "local catalog, restore = require 'kalua.catalog', require 'kalua.restore'\n"
    "local store = assert(require('kalua.storage').open(dir))\n"
    "catalog.list(store)\n"
    "catalog.describe(store, 'b')\n"
    "catalog.validate(store, 'b', { deep = true })\n"
    "restore.plan { backup_id = 'b', storage = { backend = 'filesystem', path = dir }, restore = {} }\n";

static void preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64];
  char path[128];
  FILE *f;
  lua_State *L;
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/kalua-manifest-fuzz-%ld", (long)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/b", dir);
    mkdir(path, 0700);
  }
  snprintf(path, sizeof path, "%s/b/manifest.json", dir);
  f = fopen(path, "wb");
  if (f == NULL) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  L = luaL_newstate();
  luaL_openlibs(L);
  preload(L, "kalua.storage", luaopen_kalua_storage);
  preload(L, "kalua.segment", luaopen_kalua_segment);
  preload(L, "kalua.kafka", luaopen_kalua_kafka);
  preload(L, "kalua.codec", luaopen_kalua_codec);
  preload(L, "kalua.clock", luaopen_kalua_clock);
  lua_pushstring(L, dir);
  lua_setglobal(L, "dir");
  if (luaL_dostring(L, SCRIPT) != LUA_OK) {
    fprintf(stderr, "manifest raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_close(L);
  return 0;
}
