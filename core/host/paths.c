/* Where kalua's Lua modules, command scripts and C modules live.
 *
 * Run from the build directory, the executable uses the source tree's lua/
 * and scripts/ and the build tree's lib/. Installed, it uses
 * <prefix>/share/kalua and <prefix>/lib/lua/5.4, found relative to the
 * executable so a DESTDIR or relocated install works too. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "host.h"
#include "preload.h"

static char share_dir[PATH_MAX];  /* holds lua/ and scripts/ */
static char cmod_dir[PATH_MAX];   /* holds kalua/<module>.so */
static char scripts_dir[PATH_MAX];

/* dir + suffix into out; false when it does not fit. */
static int join(char *out, size_t size, const char *dir, const char *suffix) {
  size_t a = strlen(dir), b = strlen(suffix);
  if (a + b >= size) return 0;
  memmove(out, dir, a); /* dir may be out itself */
  memcpy(out + a, suffix, b + 1);
  return 1;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int exe_dir(char *out, size_t size) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char *slash;
  if (n <= 0) return 0;
  exe[n] = '\0';
  slash = strrchr(exe, '/');
  if (slash == NULL) return 0;
  *slash = '\0';
  return snprintf(out, size, "%s", exe) < (int)size;
}

static int same_dir(const char *a, const char *b) {
  char ra[PATH_MAX], rb[PATH_MAX];
  return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

static void locate(void) {
  char dir[PATH_MAX], candidate[PATH_MAX];
  const char *home = getenv("KALUA_HOME");
  if (share_dir[0]) return;
  if (home && is_dir(home)) {
    join(share_dir, sizeof share_dir, home, "");
    join(cmod_dir, sizeof cmod_dir, home, "/lib");
  } else if (exe_dir(dir, sizeof dir) && same_dir(dir, KALUA_BUILD_DIR)) {
    join(share_dir, sizeof share_dir, KALUA_SOURCE_DIR, "");
    join(cmod_dir, sizeof cmod_dir, KALUA_BUILD_DIR, "/lib");
  } else if (exe_dir(dir, sizeof dir) && join(candidate, sizeof candidate, dir, "/../share/kalua") &&
             is_dir(candidate)) {
    join(share_dir, sizeof share_dir, candidate, "");
    join(cmod_dir, sizeof cmod_dir, dir, "/../lib/lua/5.4");
  } else {
    join(share_dir, sizeof share_dir, KALUA_INSTALL_SHARE, "");
    join(cmod_dir, sizeof cmod_dir, KALUA_INSTALL_CMOD, "");
  }
  join(scripts_dir, sizeof scripts_dir, share_dir, "/scripts");
}

const char *host_scripts_dir(void) {
  locate();
  return scripts_dir;
}

const char *host_command_path(const char *name) {
  static char path[PATH_MAX];
  size_t len = strlen(name);
  if (len == 0 || strchr(name, '/') != NULL) return NULL;
  if (len >= 4 && strcmp(name + len - 4, ".lua") == 0) return NULL;
  locate();
  if (!join(path, sizeof path, scripts_dir, "/") || !join(path + strlen(path), sizeof path - strlen(path), name, ".lua"))
    return NULL;
  return is_file(path) ? path : NULL;
}

static void prepend_path(lua_State *L, const char *field, const char *entries) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  lua_pushfstring(L, "%s;%s", entries, lua_tostring(L, -1));
  lua_setfield(L, -3, field);
  lua_pop(L, 2);
}

void host_setup_paths(lua_State *L) {
  const luaL_Reg *m;
  locate();
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", share_dir, share_dir);
  prepend_path(L, "path", lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_pushfstring(L, "%s/?.so", cmod_dir);
  prepend_path(L, "cpath", lua_tostring(L, -1));
  lua_pop(L, 1);
  /* Modules linked into the host win over any .so on cpath. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (m = kalua_preload_modules; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pushcfunction(L, luaopen_kalua_host);
  lua_setfield(L, -2, "kalua.host");
  lua_pop(L, 1);
}
