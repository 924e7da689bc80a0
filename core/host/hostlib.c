/* `kalua.host`: what this executable is and what it links. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <yaml.h>
#include <zstd.h>

#include <lua.h>
#include <lauxlib.h>

#include "host.h"

#ifndef KALUA_KRB5_VERSION
#define KALUA_KRB5_VERSION NULL
#endif
#ifndef KALUA_EDIT_VERSION
#define KALUA_EDIT_VERSION "unknown"
#endif

struct lib_version {
  const char *name;
  const char *version;
};

/* MIT krb5 and libedit have no run-time version call: theirs are the
 * versions kalua was built against. */
static int collect_versions(struct lib_version *out, int max) {
  int n = 0;
  const char *krb5 = KALUA_KRB5_VERSION;
  if (max < 9) return 0;
  out[n++] = (struct lib_version){"kalua", KALUA_VERSION};
  out[n++] = (struct lib_version){"Lua", LUA_RELEASE};
  out[n++] = (struct lib_version){"librdkafka", rd_kafka_version_str()};
  out[n++] = (struct lib_version){"MIT krb5", krb5 ? krb5 : "not built (KALUA_WITH_GSSAPI=OFF)"};
  out[n++] = (struct lib_version){"OpenSSL", OpenSSL_version(OPENSSL_VERSION)};
  out[n++] = (struct lib_version){"zstd", ZSTD_versionString()};
  out[n++] = (struct lib_version){"libcurl", curl_version_info(CURLVERSION_NOW)->version};
  out[n++] = (struct lib_version){"libyaml", yaml_get_version_string()};
  out[n++] = (struct lib_version){"libedit", KALUA_EDIT_VERSION};
  return n;
}

void host_print_versions(void) {
  struct lib_version v[16];
  int i, n = collect_versions(v, 16);
  for (i = 0; i < n; i++) printf("%-11s %s\n", v[i].name, v[i].version);
}

static int host_versions(lua_State *L) {
  struct lib_version v[16];
  int i, n = collect_versions(v, 16);
  lua_createtable(L, 0, n);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, v[i].version);
    lua_setfield(L, -2, v[i].name);
  }
  return 1;
}

static int host_command(lua_State *L) {
  const char *path = host_command_path(luaL_checkstring(L, 1));
  if (path == NULL) return 0;
  lua_pushstring(L, path);
  return 1;
}


/* Sorted names of the built-in commands (scripts/<name>.lua). */
static int host_commands(lua_State *L) {
  DIR *d = opendir(host_scripts_dir());
  struct dirent *e;
  int n = 0;
  lua_newtable(L);
  if (d == NULL) return 1;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len > 4 && e->d_name[0] != '.' && strcmp(e->d_name + len - 4, ".lua") == 0) {
      lua_pushlstring(L, e->d_name, len - 4);
      lua_rawseti(L, -2, ++n);
    }
  }
  closedir(d);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* host.isatty(fd) -> whether fd (0, 1, 2) is a terminal: progress lines and
 * colour only go to people, never into pipes and logs. */
static int host_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg host_funcs[] = {
  {"isatty", host_isatty},
  {"commands", host_commands},
  {"versions", host_versions},
  {"command_path", host_command},
  {NULL, NULL}
};

int luaopen_kalua_host(lua_State *L) {
  luaL_newlib(L, host_funcs);
  lua_pushstring(L, KALUA_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, host_scripts_dir());
  lua_setfield(L, -2, "scripts_dir");
  return 1;
}
