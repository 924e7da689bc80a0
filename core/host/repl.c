/* The read-eval-print loop.
 *
 * Reads like `lua`'s: an expression is tried as `return <line>` first, an
 * incomplete statement asks for more lines, results are printed. Results go
 * through kalua.repl, which pretty-prints tables and records; the loop falls
 * back to the global `print` when that module cannot load. Lines starting
 * with ':' are REPL commands (kalua.repl.command: `:help`). Tab completes
 * through kalua.repl.complete: fields, methods, globals, topic names. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include <lua.h>
#include <lauxlib.h>

#include "host.h"

#define MAX_INPUT_LINE 4096
#define HISTORY_LENGTH 1000

struct line_reader {
  int tty;
  char history_file[PATH_MAX];
};

/* --- tab completion -------------------------------------------------------
 * readline's callbacks take no user data, and a process has one terminal:
 * the REPL's state is kept here while it runs (set and cleared by host_repl). */
static lua_State *completing;
static char **candidates;
static size_t candidate_count;

static void free_candidates(void) {
  size_t i;
  for (i = 0; i < candidate_count; i++) free(candidates[i]);
  free(candidates);
  candidates = NULL;
  candidate_count = 0;
}

/* Asks kalua.repl.complete(line_before_word, word) for the candidates. */
static void collect_candidates(const char *before, size_t before_len, const char *word) {
  lua_State *L = completing;
  int top = lua_gettop(L);
  free_candidates();
  lua_getglobal(L, "require");
  lua_pushliteral(L, "kalua.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_getfield(L, -1, "complete") != LUA_TFUNCTION) goto done;
  lua_pushlstring(L, before, before_len);
  lua_pushstring(L, word);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_istable(L, -1)) goto done;
  {
    size_t n = (size_t)luaL_len(L, -1), i;
    candidates = calloc(n ? n : 1, sizeof *candidates);
    for (i = 0; candidates && i < n; i++) {
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      if (lua_type(L, -1) == LUA_TSTRING) candidates[candidate_count++] = strdup(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
done:
  lua_settop(L, top);
}

static char *next_candidate(const char *text, int state) {
  static size_t at;
  (void)text;
  if (state == 0) at = 0;
  return at < candidate_count ? strdup(candidates[at++]) : NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  collect_candidates(rl_line_buffer, (size_t)start, text);
  return candidate_count ? rl_completion_matches(text, next_candidate) : NULL;
}

static void setup_completion(lua_State *L) {
  completing = L;
  rl_attempted_completion_function = complete;
  /* "kafka.producer" and "admin:list_topics" are one word; a quote starts
   * a topic name */
  rl_completer_word_break_characters = (char *)" \t\n\"'(,=[{+-*/<>~;";
}

/* A line ":name args" runs kalua.repl.command(name, args). */
static int run_command(lua_State *L, const char *line) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "kalua.repl");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_getfield(L, -1, "command") != LUA_TFUNCTION) {
    lua_settop(L, 0);
    fputs("REPL commands need kalua.repl\n", stderr);
    return 0;
  }
  lua_pushstring(L, line + 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) host_message(NULL, lua_tostring(L, -1));
  lua_settop(L, 0);
  return 1;
}

static const char *prompt_for(lua_State *L, int first_line) {
  const char *p;
  lua_getglobal(L, first_line ? "_PROMPT" : "_PROMPT2");
  p = lua_tostring(L, -1);
  if (p == NULL) p = first_line ? "> " : ">> ";
  lua_pop(L, 1); /* the string stays reachable from the global */
  return p;
}

/* Reads one line without its newline; NULL at end of input. Caller frees. */
static char *read_line(struct line_reader *r, const char *prompt) {
  char buf[MAX_INPUT_LINE];
  size_t len;
  if (r->tty) return readline(prompt);
  fputs(prompt, stdout);
  fflush(stdout);
  if (fgets(buf, sizeof buf, stdin) == NULL) return NULL;
  len = strlen(buf);
  if (len > 0 && buf[len - 1] == '\n') buf[len - 1] = '\0';
  return strdup(buf);
}

static void remember(struct line_reader *r, const char *line) {
  if (r->tty && line[0] != '\0') add_history(line);
}

static void open_history(struct line_reader *r) {
  const char *file = getenv("KALUA_HISTORY");
  const char *home = getenv("HOME");
  r->history_file[0] = '\0';
  if (!r->tty) return;
  if (file && file[0])
    snprintf(r->history_file, sizeof r->history_file, "%s", file);
  else if (home && home[0])
    snprintf(r->history_file, sizeof r->history_file, "%s/.kalua_history", home);
  stifle_history(HISTORY_LENGTH);
  if (r->history_file[0]) read_history(r->history_file);
}

static void save_history(struct line_reader *r) {
  if (r->tty && r->history_file[0]) write_history(r->history_file);
}

/* An error at <eof> means the chunk is unfinished: ask for more. */
static int incomplete(lua_State *L, int status) {
  static const char mark[] = "<eof>";
  size_t len;
  const char *msg;
  if (status != LUA_ERRSYNTAX) return 0;
  msg = lua_tolstring(L, -1, &len);
  if (len >= sizeof mark - 1 && strcmp(msg + len - (sizeof mark - 1), mark) == 0) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static int try_expression(lua_State *L, const char *line) {
  const char *code = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
  lua_remove(L, -2);
  if (status != LUA_OK) lua_pop(L, 1);
  return status;
}

/* Compiles the statement on top of the stack, reading continuation lines
 * while it is unfinished. Replaces the source with the chunk (or error).
 * Returns -1 when input ends inside an unfinished statement. */
static int load_statement(struct line_reader *r, lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    char *line;
    if (!incomplete(L, status)) {
      remember(r, code);
      lua_remove(L, -2);
      return status;
    }
    line = read_line(r, prompt_for(L, 0));
    if (line == NULL) return -1;
    lua_pushfstring(L, "%s\n%s", code, line);
    free(line);
    lua_remove(L, -2);
  }
}

/* Leaves a compiled chunk (or an error message) on the stack.
 * Returns -1 at end of input. */
/* LUA_OK with a chunk on the stack, -1 at the end of input, -2 when the
 * line was a REPL command (already run), else a load error. */
static int load_input(struct line_reader *r, lua_State *L) {
  char *line = read_line(r, prompt_for(L, 1));
  const char *text;
  if (line == NULL) return -1;
  if (line[0] == ':') {
    remember(r, line);
    run_command(L, line);
    free(line);
    return -2;
  }
  text = line[0] == '=' ? line + 1 : line; /* Lua 5.2's `=expr` still works */
  if (try_expression(L, text) == LUA_OK) {
    remember(r, line);
    free(line);
    return LUA_OK;
  }
  lua_pushstring(L, line);
  free(line);
  return load_statement(r, L);
}

/* Prints the n results on the stack through kalua.repl.show, or print. */
static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "require");
  lua_pushstring(L, "kalua.repl");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "show");
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_getglobal(L, "print");
  }
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    host_message(NULL, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
}

/* Puts kalua's modules in globals for interactive use only; scripts keep
 * `lua`'s clean global table. flags (NULL-terminated, may be NULL) are
 * connection flags for the clients kalua.repl.setup opens. */
static void preload_globals(lua_State *L, char **flags) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "kalua.repl");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "setup");
    if (lua_isfunction(L, -1)) {
      int n = 0;
      while (flags && flags[n]) lua_pushstring(L, flags[n++]);
      if (lua_pcall(L, n, 0, 0) != LUA_OK) {
        host_message(NULL, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, 0);
}

void host_repl(lua_State *L, char **flags) {
  struct line_reader r;
  int status;
  r.tty = isatty(STDIN_FILENO);
  open_history(&r);
  preload_globals(L, flags);
  if (r.tty) setup_completion(L);
  while ((status = load_input(&r, L)) != -1) {
    if (status == -2) continue; /* a :command */
    if (status == LUA_OK) status = host_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L);
    else
      host_report(L, status, NULL);
    lua_settop(L, 0);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  save_history(&r);
  free_candidates();
  completing = NULL;
}
