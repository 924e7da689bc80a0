/* The kalua host: the parts of the executable beyond Lua's own `lua`. */
#ifndef KALUA_HOST_H
#define KALUA_HOST_H

#include <lua.h>

/* Writes "progname: msg" (or just "msg" when progname is NULL) to stderr. */
void host_message(const char *progname, const char *msg);

/* Calls the function below its nargs arguments with a traceback handler and
 * Ctrl-C turned into a Lua error, as `lua` does. */
int host_docall(lua_State *L, int nargs, int nres);

/* Prints the error on top of the stack (if status is not OK) and pops it. */
int host_report(lua_State *L, int status, const char *progname);

/* Finds where the Lua modules, scripts and C modules live (build tree or
 * installed tree), then prepends them to package.path/cpath and preloads
 * the C modules linked into the host. */
void host_setup_paths(lua_State *L);

/* Full path of the built-in command script for `name`, or NULL if `name` is
 * not a command (has a '/', ends in .lua, or no scripts/<name>.lua exists).
 * The result lives in a static buffer. */
const char *host_command_path(const char *name);

/* Directory holding scripts/ for the built-in commands. */
const char *host_scripts_dir(void);

/* The `kalua.host` module: versions and paths of this executable. */
int luaopen_kalua_host(lua_State *L);

/* The read-eval-print loop: libedit on a TTY (with tab completion), plain
 * lines otherwise. flags: NULL, or the NULL-terminated connection flags of
 * `kalua -i --bootstrap-servers ...` for kalua.repl.setup. */
void host_repl(lua_State *L, char **flags);

/* Prints the versions of kalua and every library it links. */
void host_print_versions(void);

#endif
