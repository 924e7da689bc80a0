/* libFuzzer target: kalua.codec's bounded zstd decompression (one-shot and
 * streamed in two pieces) on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

int luaopen_kalua_codec(lua_State *L);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "kalua.codec", luaopen_kalua_codec, 1);
  lua_pop(L, 1);
  lua_pushlstring(L, (const char *)data, size);
  lua_setglobal(L, "input");
  luaL_dostring(L,
    "local codec = require 'kalua.codec'\n"
    "codec.decompress(input, 1 << 20)\n"
    "local d = codec.decompressor(1 << 20)\n"
    "local half = #input // 2\n"
    "if d:update(input:sub(1, half)) then d:update(input:sub(half + 1)) d:finish() end\n"
    "codec.crc32c(input)\n");
  lua_close(L);
  return 0;
}
