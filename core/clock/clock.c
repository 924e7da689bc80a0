/* kalua.clock: a monotonic clock, the wall clock to the nanosecond and a
 * sleep, for pacing, timeouts and timestamps in scripts (os.time has whole
 * seconds and Lua has no sleep).
 *
 *   clock.now()        -> seconds (float) on CLOCK_MONOTONIC, the clock
 *                         kalua.segment's rate limit counts on too
 *   clock.time()       -> seconds since the epoch (float) on CLOCK_REALTIME,
 *                         for timestamps (log lines, metrics); it can jump
 *                         when the system clock is set: measure with now()
 *   clock.time_ms()    -> milliseconds since the epoch (integer)
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

static int clock_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int clock_time_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + (lua_Integer)(ts.tv_nsec / 1000000));
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
  {"time", clock_time},
  {"time_ms", clock_time_ms},
  {"sleep", clock_sleep},
  {NULL, NULL}
};

int luaopen_kalua_clock(lua_State *L) {
  luaL_newlib(L, clock_funcs);
  return 1;
}
