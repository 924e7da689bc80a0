/* libFuzzer target: the segment reader on arbitrary bytes stored as a
 * segment file: open (header, trailer, index), deep verify, and iterate.
 * Any input must end in a value or nil, message: never a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

int luaopen_kalua_storage(lua_State *L);
int luaopen_kalua_segment(lua_State *L);

static char dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  FILE *f;
  char path[96];
  if (!dir[0]) snprintf(dir, sizeof dir, "/tmp/kalua-segment-fuzz-%ld", (long)getpid());
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "kalua.storage", luaopen_kalua_storage, 0);
  luaL_requiref(L, "kalua.segment", luaopen_kalua_segment, 0);
  lua_pop(L, 2);
  lua_pushstring(L, dir);
  lua_setglobal(L, "dir");
  luaL_dostring(L, "store = require('kalua.storage').open(dir)");
  snprintf(path, sizeof path, "%s/f.kseg", dir);
  f = fopen(path, "wb");
  if (f) {
    fwrite(data, 1, size, f);
    fclose(f);
  }
  luaL_dostring(L,
    "local r = require('kalua.segment').open(store, 'f.kseg')\n"
    "if r then r:info() r:index() r:verify(true) pcall(function() for _ in r:records() do end end) end\n");
  lua_close(L);
  return 0;
}
