/* kalua: a drop-in for Lua 5.4's `lua` with Kafka, SASL and storage modules.
 *
 * Options, the `arg` table, LUA_INIT, exit codes and error reports behave as
 * in `lua` so busted, shebang scripts and editors work unchanged. On top:
 * `kalua <command>` runs scripts/<command>.lua, `--version` names every
 * library, `--help` lists the commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

#include "host/host.h"

static const char *progname = "lua";

enum {
  OPT_ERROR = 1, /* bad option: stop and print usage */
  OPT_I = 2,     /* -i */
  OPT_V = 4,     /* -v */
  OPT_E = 8,     /* -e */
  OPT_NOENV = 16, /* -E */
  OPT_REPL_FLAGS = 32 /* -i followed by --long flags: the REPL's clients */
};

/* lua5.4's option list, word for word: its usage message must match. */
static const char lua_options[] =
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -l mod    require library 'mod' into global 'mod'\n"
    "  -l g=mod  require library 'mod' into global 'g'\n"
    "  -v        show version information\n"
    "  -E        ignore environment variables\n"
    "  -W        turn warnings on\n"
    "  --        stop handling options\n"
    "  -         stop handling options and execute stdin\n";

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr, "usage: %s [options] [script [args]]\nAvailable options are:\n%s", progname, lua_options);
  fflush(stderr);
}

static void print_help(void) {
  printf("usage: kalua [options] [script [args]]\n"
         "       kalua <command> [args]\n"
         "\n"
         "Runs Lua 5.4 scripts with kalua's modules (kalua.kafka, kalua.yaml,\n"
         "kalua.config, ...), or one of kalua's built-in commands.\n"
         "\n"
         "Options are those of lua5.4:\n%s"
         "and kalua's own:\n"
         "  --version show the versions of kalua and its libraries\n"
         "  --help    show this help\n"
         "\n"
         "`kalua help` lists the commands; `kalua help <command>` describes one.\n",
         lua_options);
}

static void print_lua_version(void) {
  fputs(LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}

/* Scans the options as `lua` does. *first receives the index of the script
 * (argc if none), or of the bad option on error. */
static int collect_args(char **argv, int *first) {
  int args = 0;
  int i;
  if (argv[0] == NULL) {
    *first = -1;
    return 0;
  }
  if (argv[0][0]) progname = argv[0];
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') {
          /* kalua -i --bootstrap-servers ...: the REPL's connection flags */
          if (!(args & OPT_I)) return OPT_ERROR;
          return args | OPT_REPL_FLAGS;
        }
        *first = i + 1;
        return args;
      case '\0':
        return args;
      case 'E':
        if (argv[i][2] != '\0') return OPT_ERROR;
        args |= OPT_NOENV;
        break;
      case 'W':
        if (argv[i][2] != '\0') return OPT_ERROR;
        break;
      case 'i':
        args |= OPT_I; /* -i implies -v */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return OPT_ERROR;
        args |= OPT_V;
        break;
      case 'e':
        args |= OPT_E;
        /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return OPT_ERROR;
        }
        break;
      default:
        return OPT_ERROR;
    }
  }
  *first = i;
  return args;
}

static int run_string(lua_State *L, const char *s, const char *name) {
  int status = luaL_loadbuffer(L, s, strlen(s), name);
  if (status == LUA_OK) status = host_docall(L, 0, 0);
  return host_report(L, status, progname);
}

static int run_file(lua_State *L, const char *fname) {
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) status = host_docall(L, 0, 0);
  return host_report(L, status, progname);
}

/* -l mod or -l g=mod: global g (or mod) = require(mod). */
static int require_library(lua_State *L, char *spec) {
  char *modname = strchr(spec, '=');
  int status;
  if (modname == NULL) {
    modname = spec;
  } else {
    *modname = '\0';
    modname++;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = host_docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, spec);
  return host_report(L, status, progname);
}

static int run_options(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == 'e' || option == 'l') {
      char *extra = argv[i] + 2;
      int status;
      if (*extra == '\0') extra = argv[++i];
      status = option == 'e' ? run_string(L, extra, "=(command line)")
                             : require_library(L, extra);
      if (status != LUA_OK) return 0;
    } else if (option == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

static int run_lua_init(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return run_file(L, init + 1);
  return run_string(L, init, name);
}

/* arg[0] is the script, arg[1..] its arguments, negative indices the
 * interpreter and its options. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int i;
  if (script == argc) script = 0;
  lua_createtable(L, argc - (script + 1), script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int push_script_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* Runs the script at argv[0]: a file, stdin for "-", or a built-in command. */
static int run_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  const char *command;
  int status;
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  else if ((command = host_command_path(fname)) != NULL)
    fname = command;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = host_docall(L, n, LUA_MULTRET);
  }
  return host_report(L, status, progname);
}

/* kalua's long options stand alone, before anything `lua` would parse. */
static int handle_kalua_option(int argc, char **argv, int *exit_code) {
  if (argc != 2) return 0;
  if (strcmp(argv[1], "--version") == 0) {
    host_print_versions();
    *exit_code = EXIT_SUCCESS;
    return 1;
  }
  if (strcmp(argv[1], "--help") == 0) {
    print_help();
    *exit_code = EXIT_SUCCESS;
    return 1;
  }
  return 0;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int args = collect_args(argv, &script);
  luaL_checkversion(L);
  if (args == OPT_ERROR) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & OPT_V) print_lua_version();
  if (args & OPT_NOENV) {
    lua_pushboolean(L, 1); /* tells the package library to ignore LUA_PATH */
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  host_setup_paths(L);
  create_arg_table(L, argv, argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(args & OPT_NOENV) && run_lua_init(L) != LUA_OK) return 0;
  if (!run_options(L, argv, script)) return 0;
  if (args & OPT_REPL_FLAGS) {
    host_repl(L, argv + script);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (script < argc && run_script(L, argv + script) != LUA_OK) return 0;
  if (args & OPT_I) {
    host_repl(L, NULL);
  } else if (script == argc && !(args & (OPT_E | OPT_V))) {
    if (isatty(STDIN_FILENO)) {
      print_lua_version();
      host_repl(L, NULL);
    } else {
      run_file(L, NULL);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, result;
  lua_State *L;
  if (handle_kalua_option(argc, argv, &result)) return result;
  L = luaL_newstate();
  if (L == NULL) {
    host_message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, &pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  result = lua_toboolean(L, -1);
  host_report(L, status, progname);
  lua_close(L);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
