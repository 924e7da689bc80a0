/* Calling Lua the way `lua` does: traceback on error, Ctrl-C interrupts. */
#include <signal.h>
#include <stdio.h>

#include <lua.h>
#include <lauxlib.h>

#include "host.h"

/* The state a SIGINT should interrupt; only the main thread runs Lua. */
static lua_State *interrupted_state = NULL;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Async-signal-safe: sets a hook that raises an error at the next Lua
 * instruction, and restores the default action so a second Ctrl-C kills. */
static void on_sigint(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  signal(sig, SIG_DFL);
  lua_sethook(interrupted_state, stop_hook, flag, 1);
}

void host_message(const char *progname, const char *msg) {
  if (progname) fprintf(stderr, "%s: ", progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static int message_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1; /* an object that prints itself gets no traceback */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int host_docall(lua_State *L, int nargs, int nres) {
  int status;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, message_handler);
  lua_insert(L, base);
  interrupted_state = L;
  signal(SIGINT, on_sigint);
  status = lua_pcall(L, nargs, nres, base);
  signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return status;
}

int host_report(lua_State *L, int status, const char *progname) {
  if (status != LUA_OK) {
    host_message(progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}
