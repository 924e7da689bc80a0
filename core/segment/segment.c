/* kalua.segment: the backup segment format (see segment.h for the layout). */
#include <lauxlib.h>

#include "segment/segment.h"

int luaopen_kalua_segment(lua_State *L) {
  lua_newtable(L);
  segment_open_writer(L);
  segment_open_reader(L);
  lua_pushinteger(L, SEGMENT_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
