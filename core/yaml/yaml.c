/* kalua.yaml: YAML to Lua values over libyaml's event parser.
 *
 *   value, positions = yaml.load(text [, name [, opts]])
 *   value, positions = yaml.load_file(path [, opts])
 *
 * On error: nil, "name:line:column: message" (1-based). positions maps
 * every table produced to { [key or index] = {line=, column=} } so callers
 * can point at a key. Scalars: YAML 1.2 core schema for plain scalars;
 * quoted and block scalars stay strings. `${VAR}` and `${VAR:-default}` are
 * replaced from the environment (or opts.env) in every scalar, and `$${`
 * stands for a literal `${`; a scalar that had a substitution stays a string,
 * so a numeric-looking password is never turned into a number. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "kalua_util.h"

#define MAX_DEPTH 64
#define MAX_ALIASES 256
#define ERR_MAX 600

struct loader {
  yaml_parser_t parser;
  lua_State *L;
  const char *name;
  int env;       /* stack index of opts.env, or 0 for the process env */
  int anchors;   /* stack index: anchor name -> value */
  int positions; /* stack index: table -> {key -> {line, column}} */
  int depth;
  int aliases;
  char err[ERR_MAX];
};

static int fail_at(struct loader *ld, yaml_mark_t mark, const char *fmt, const char *arg) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, arg);
  snprintf(ld->err, sizeof ld->err, "%s:%lu:%lu: %s", ld->name, (unsigned long)mark.line + 1,
           (unsigned long)mark.column + 1, msg);
  return 0;
}

static int parse_event(struct loader *ld, yaml_event_t *ev) {
  if (yaml_parser_parse(&ld->parser, ev)) return 1;
  if (ld->parser.context)
    snprintf(ld->err, sizeof ld->err, "%s:%lu:%lu: %s %s", ld->name,
             (unsigned long)ld->parser.problem_mark.line + 1, (unsigned long)ld->parser.problem_mark.column + 1,
             ld->parser.problem ? ld->parser.problem : "syntax error", ld->parser.context);
  else
    fail_at(ld, ld->parser.problem_mark, "%s", ld->parser.problem ? ld->parser.problem : "syntax error");
  return 0;
}

/* --- scalars -------------------------------------------------------------- */

static const char *lookup_env(struct loader *ld, const char *name) {
  if (ld->env) {
    const char *v;
    lua_pushstring(ld->L, name);
    lua_rawget(ld->L, ld->env); /* raw: no metamethod may raise mid-parse */
    v = lua_tostring(ld->L, -1);
    lua_pop(ld->L, 1); /* the string stays alive in opts.env */
    return v;
  }
  return getenv(name);
}

static int is_name_char(char ch, int first) {
  return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (!first && ch >= '0' && ch <= '9');
}

/* Pushes the scalar with ${...} replaced; *substituted tells whether any
 * replacement happened. Returns 0 on error. */
static int push_substituted(struct loader *ld, const yaml_event_t *ev, int *substituted) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t len = ev->data.scalar.length, i = 0;
  luaL_Buffer b;
  *substituted = 0;
  if (memchr(s, '$', len) == NULL) {
    lua_pushlstring(ld->L, s, len);
    return 1;
  }
  luaL_buffinit(ld->L, &b);
  while (i < len) {
    if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
      luaL_addstring(&b, "${");
      i += 3;
      *substituted = 1;
    } else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
      char name[128];
      size_t j = i + 2, n = 0;
      const char *value, *dflt = NULL;
      size_t dflt_len = 0;
      while (j < len && is_name_char(s[j], n == 0) && n < sizeof name - 1) name[n++] = s[j++];
      name[n] = '\0';
      if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
        size_t k = j + 2;
        while (k < len && s[k] != '}') k++;
        dflt = s + j + 2;
        dflt_len = k - (j + 2);
        j = k;
      }
      if (n == 0 || j >= len || s[j] != '}') {
        luaL_pushresult(&b);
        return fail_at(ld, ev->start_mark, "%s", "bad ${...} reference (expected ${NAME} or ${NAME:-default})");
      }
      value = lookup_env(ld, name);
      if (value != NULL && (value[0] != '\0' || dflt == NULL))
        luaL_addstring(&b, value);
      else if (dflt != NULL)
        luaL_addlstring(&b, dflt, dflt_len);
      else {
        luaL_pushresult(&b);
        return fail_at(ld, ev->start_mark, "environment variable %s is not set", name);
      }
      i = j + 1;
      *substituted = 1;
    } else {
      luaL_addchar(&b, s[i++]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

static int is_one_of(const char *s, const char *const *words) {
  for (; *words; words++)
    if (strcmp(s, *words) == 0) return 1;
  return 0;
}

static int parse_integer(const char *s, lua_Integer *out) {
  const char *digits = s;
  int base = 10, neg = 0;
  char *end;
  long long v;
  if (*digits == '-' || *digits == '+') neg = *digits++ == '-';
  if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    if (s != digits) return 0; /* no sign on 0x / 0o in the core schema */
    base = digits[1] == 'x' ? 16 : 8;
    digits += 2;
  }
  if (*digits == '\0') return 0;
  for (end = (char *)digits; *end; end++) {
    int ok = base == 16 ? ((*end >= '0' && *end <= '9') || (*end >= 'a' && *end <= 'f') || (*end >= 'A' && *end <= 'F'))
                        : (*end >= '0' && *end <= (base == 8 ? '7' : '9'));
    if (!ok) return 0;
  }
  errno = 0;
  v = strtoll(digits, &end, base);
  if (errno == ERANGE) return 0;
  *out = neg ? -(lua_Integer)v : (lua_Integer)v;
  return 1;
}

static int parse_float(const char *s, lua_Number *out) {
  static const char *const inf[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
  static const char *const ninf[] = {"-.inf", "-.Inf", "-.INF", NULL};
  static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
  const char *p = s;
  char *end;
  int digits = 0;
  if (is_one_of(s, inf)) { *out = HUGE_VAL; return 1; }
  if (is_one_of(s, ninf)) { *out = -HUGE_VAL; return 1; }
  if (is_one_of(s, nan)) { *out = NAN; return 1; }
  /* [-+]? ( . [0-9]+ | [0-9]+ ( . [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
  if (*p == '-' || *p == '+') p++;
  while (*p >= '0' && *p <= '9') { p++; digits++; }
  if (*p == '.') { p++; while (*p >= '0' && *p <= '9') { p++; digits++; } }
  if (digits == 0) return 0;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '-' || *p == '+') p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p != '\0') return 0;
  *out = strtod(s, &end);
  return *end == '\0';
}

/* Replaces the string on top with its YAML 1.2 core-schema value. */
static void resolve_plain(lua_State *L) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", NULL};
  const char *s = lua_tostring(L, -1);
  lua_Integer i;
  lua_Number f;
  if (is_one_of(s, nulls)) {
    lua_pop(L, 1);
    lua_pushnil(L);
  } else if (is_one_of(s, trues) || is_one_of(s, falses)) {
    int v = is_one_of(s, trues);
    lua_pop(L, 1);
    lua_pushboolean(L, v);
  } else if (parse_integer(s, &i)) {
    lua_pop(L, 1);
    lua_pushinteger(L, i);
  } else if (parse_float(s, &f)) {
    lua_pop(L, 1);
    lua_pushnumber(L, f);
  }
}

static int push_scalar(struct loader *ld, const yaml_event_t *ev) {
  int substituted;
  if (!push_substituted(ld, ev, &substituted)) return 0;
  if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !substituted && !ev->data.scalar.tag) resolve_plain(ld->L);
  return 1;
}

/* --- nodes -------------------------------------------------------------- */

static int load_node(struct loader *ld, yaml_event_t *ev);

static void remember_anchor(struct loader *ld, const yaml_char_t *anchor) {
  if (anchor == NULL) return;
  lua_pushvalue(ld->L, -1);
  lua_setfield(ld->L, ld->anchors, (const char *)anchor);
}

/* Records where key (on top of the stack) of table t starts. */
static void remember_position(struct loader *ld, int t, int key, yaml_mark_t mark) {
  lua_State *L = ld->L;
  lua_pushvalue(L, t);
  if (lua_rawget(L, ld->positions) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, t);
    lua_pushvalue(L, -2);
    lua_rawset(L, ld->positions);
  }
  lua_pushvalue(L, key);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)mark.line + 1);
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)mark.column + 1);
  lua_setfield(L, -2, "column");
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int enter(struct loader *ld, const yaml_event_t *ev) {
  if (++ld->depth > MAX_DEPTH) return fail_at(ld, ev->start_mark, "nesting deeper than %s levels", "64");
  luaL_checkstack(ld->L, 8, "yaml nesting");
  return 1;
}

static int load_sequence(struct loader *ld, yaml_event_t *start) {
  lua_State *L = ld->L;
  lua_Integer n = 0;
  int t;
  if (!enter(ld, start)) return 0;
  lua_newtable(L);
  t = lua_gettop(L);
  remember_anchor(ld, start->data.sequence_start.anchor);
  for (;;) {
    yaml_event_t ev;
    if (!parse_event(ld, &ev)) return 0;
    if (ev.type == YAML_SEQUENCE_END_EVENT) {
      yaml_event_delete(&ev);
      break;
    }
    lua_pushinteger(L, ++n);
    remember_position(ld, t, lua_gettop(L), ev.start_mark);
    lua_pop(L, 1);
    if (!load_node(ld, &ev)) return 0;
    lua_rawseti(L, t, n);
  }
  ld->depth--;
  return 1;
}

static int load_mapping(struct loader *ld, yaml_event_t *start) {
  lua_State *L = ld->L;
  int t;
  if (!enter(ld, start)) return 0;
  lua_newtable(L);
  t = lua_gettop(L);
  remember_anchor(ld, start->data.mapping_start.anchor);
  for (;;) {
    yaml_event_t kev, vev;
    yaml_mark_t mark;
    if (!parse_event(ld, &kev)) return 0;
    if (kev.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&kev);
      break;
    }
    mark = kev.start_mark;
    if (kev.type != YAML_SCALAR_EVENT) {
      yaml_event_delete(&kev);
      return fail_at(ld, mark, "%s", "only scalar mapping keys are supported");
    }
    if (!push_scalar(ld, &kev)) {
      yaml_event_delete(&kev);
      return 0;
    }
    yaml_event_delete(&kev);
    if (lua_isnil(L, -1)) return fail_at(ld, mark, "%s", "a mapping key cannot be null");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
      return fail_at(ld, mark, "%s", "a mapping key cannot be NaN");
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) != LUA_TNIL) return fail_at(ld, mark, "duplicate key '%s'", luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
    remember_position(ld, t, lua_gettop(L), mark);
    if (!parse_event(ld, &vev)) return 0;
    if (!load_node(ld, &vev)) return 0;
    lua_rawset(L, t);
  }
  ld->depth--;
  return 1;
}

/* Pushes the value the event starts; always deletes the event. */
static int load_node(struct loader *ld, yaml_event_t *ev) {
  int ok;
  switch (ev->type) {
    case YAML_SCALAR_EVENT:
      ok = push_scalar(ld, ev);
      if (ok) remember_anchor(ld, ev->data.scalar.anchor);
      break;
    case YAML_SEQUENCE_START_EVENT:
      ok = load_sequence(ld, ev);
      break;
    case YAML_MAPPING_START_EVENT:
      ok = load_mapping(ld, ev);
      break;
    case YAML_ALIAS_EVENT:
      if (++ld->aliases > MAX_ALIASES) {
        ok = fail_at(ld, ev->start_mark, "more than %s aliases", "256");
      } else if (lua_getfield(ld->L, ld->anchors, (const char *)ev->data.alias.anchor) == LUA_TNIL) {
        lua_pop(ld->L, 1);
        ok = fail_at(ld, ev->start_mark, "unknown anchor '%s'", (const char *)ev->data.alias.anchor);
      } else {
        ok = 1;
      }
      break;
    default:
      ok = fail_at(ld, ev->start_mark, "%s", "unexpected YAML event");
  }
  yaml_event_delete(ev);
  return ok;
}

/* Pushes the single document's value (nil when empty) on success. */
static int load_stream(struct loader *ld) {
  yaml_event_t ev;
  int have_doc = 0;
  lua_pushnil(ld->L); /* the value of an empty stream */
  for (;;) {
    if (!parse_event(ld, &ev)) return 0;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT:
        yaml_event_delete(&ev);
        return 1;
      case YAML_DOCUMENT_START_EVENT:
        if (have_doc) {
          yaml_mark_t mark = ev.start_mark;
          yaml_event_delete(&ev);
          return fail_at(ld, mark, "%s", "more than one YAML document (one file holds one config)");
        }
        have_doc = 1;
        yaml_event_delete(&ev);
        if (!parse_event(ld, &ev)) return 0;
        if (ev.type == YAML_DOCUMENT_END_EVENT) {
          yaml_event_delete(&ev);
          break;
        }
        lua_pop(ld->L, 1);
        if (!load_node(ld, &ev)) return 0;
        break;
      default: /* stream start, document end */
        yaml_event_delete(&ev);
        break;
    }
  }
}

#define LOADER_MT "kalua.yaml.Loader"

/* The parser lives in a userdata so that a Lua error (out of memory) during
 * a load still frees it when the userdata is collected. */
static int loader_gc(lua_State *L) {
  struct loader *ld = luaL_checkudata(L, 1, LOADER_MT);
  if (ld->L) {
    yaml_parser_delete(&ld->parser);
    ld->L = NULL;
  }
  return 0;
}

static int load_text(lua_State *L, const char *text, size_t len, const char *name, int opts) {
  struct loader *ld = lua_newuserdatauv(L, sizeof *ld, 0);
  int ok;
  memset(ld, 0, sizeof *ld);
  if (luaL_newmetatable(L, LOADER_MT)) {
    lua_pushcfunction(L, loader_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (!yaml_parser_initialize(&ld->parser)) return luaL_error(L, "yaml: out of memory");
  ld->L = L;
  ld->name = name;
  if (opts && lua_istable(L, opts)) {
    if (lua_getfield(L, opts, "env") == LUA_TTABLE)
      ld->env = lua_gettop(L);
    else
      lua_pop(L, 1);
  }
  lua_newtable(L);
  ld->anchors = lua_gettop(L);
  lua_newtable(L);
  ld->positions = lua_gettop(L);
  yaml_parser_set_input_string(&ld->parser, (const unsigned char *)text, len);
  ok = load_stream(ld);
  yaml_parser_delete(&ld->parser);
  ld->L = NULL;
  if (!ok) {
    lua_pushnil(L);
    lua_pushstring(L, ld->err);
    return 2;
  }
  lua_pushvalue(L, ld->positions);
  return 2;
}

static int yaml_load(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=yaml");
  if (name[0] == '=' || name[0] == '@') name++;
  return load_text(L, text, len, name, lua_istable(L, 3) ? 3 : 0);
}

static int yaml_load_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  luaL_Buffer b;
  size_t n;
  if (f == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: cannot read: %s", path, strerror(errno));
    return 2;
  }
  luaL_buffinit(L, &b);
  do {
    char *p = luaL_prepbuffer(&b);
    n = fread(p, 1, LUAL_BUFFERSIZE, f);
    luaL_addsize(&b, n);
  } while (n == LUAL_BUFFERSIZE);
  if (ferror(f)) {
    int e = errno;
    fclose(f);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: cannot read: %s", path, strerror(e));
    return 2;
  }
  fclose(f);
  luaL_pushresult(&b);
  {
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    return load_text(L, text, len, path, lua_istable(L, 2) ? 2 : 0);
  }
}

static const luaL_Reg yaml_funcs[] = {
  {"load", yaml_load},
  {"load_file", yaml_load_file},
  {NULL, NULL}
};

int luaopen_kalua_yaml(lua_State *L) {
  luaL_newlib(L, yaml_funcs);
  return 1;
}
