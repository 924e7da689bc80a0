/* kalua.clock: a monotonic clock and a sleep, for pacing and timeouts in
 * scripts (os.time has whole seconds and Lua has no sleep).
 *
 *   clock.now()        -> seconds (float) on CLOCK_MONOTONIC, the clock
 *                         kalua.segment's rate limit counts on too
 *   clock.sleep(secs)  -> sleeps, resuming after signals until done */
#include <errno.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

static int clock_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int clock_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  struct timespec ts;
  if (secs <= 0) return 0;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

static const luaL_Reg clock_funcs[] = {
  {"now", clock_now},
  {"sleep", clock_sleep},
  {NULL, NULL}
};

int luaopen_kalua_clock(lua_State *L) {
  luaL_newlib(L, clock_funcs);
  return 1;
}
