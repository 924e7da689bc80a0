/* kalua.sasl: SASL mechanisms with one shape, in C or in Lua.
 *
 *   local sasl = require "kalua.sasl"
 *   local m = assert(sasl.new("SCRAM-SHA-512", { username = "alice", password = pw }))
 *   local first = assert(m:start())                 -- the client's first message
 *   local reply, done = assert(m:step(challenge))   -- until done is true
 *
 *   sasl.register("X-TOKEN", {                      -- a mechanism written in Lua
 *     start = function(ctx) return "token " .. ctx.username end,
 *     step = function(ctx, challenge) return nil, true end,   -- message, done
 *   })
 *   sasl.mechanisms()   -- built-in and registered names, sorted
 *
 *   local entries = assert(sasl.jaas(text))    -- a JAAS login configuration
 *   local entries = assert(sasl.jaas_file(path))
 *
 * sasl.jaas reads Java's JAAS files (KafkaClient { ... }; sections) and
 * the one entry of Kafka's sasl.jaas.config property. It gives the entries
 * in file order, each { section = "KafkaClient" (nil without a section),
 * module = the LoginModule class, flag = "required", mechanism = "GSSAPI",
 * "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER" (nil for a
 * module kalua does not know: the caller decides), principal = the Krb5
 * principal or the PLAIN/SCRAM username, line = where the entry starts,
 * options = { key = value } } (all values strings), or nil, "jaas: line 3
 * column 14: expected ...", "CONFIG". jaas_file says which file, and
 * fails the same way when it cannot read it.
 *
 * A failed exchange (wrong server signature, a refusal, a KDC that says
 * no) returns nil, message, "SASL_AUTHENTICATION" from start or step;
 * calling out of order raises. Secrets are
 * wiped when a C mechanism is closed. Registered mechanisms live in this
 * Lua state's registry: two states never share them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kalua_util.h"
#include "sasl/jaas.h"
#include "sasl/mech.h"

#define MECH_MT "kalua.sasl.Mechanism"
#define LUA_MECH_MT "kalua.sasl.LuaMechanism"
#define REGISTRY_KEY "kalua.sasl.registry"

static const sasl_mech_type *const builtins[] = {
#ifdef KALUA_WITH_GSSAPI
  &sasl_gssapi,
#endif
  &sasl_oauthbearer, &sasl_plain, &sasl_scram_sha256, &sasl_scram_sha512,
};
#define NBUILTINS (sizeof builtins / sizeof builtins[0])

typedef struct {
  const sasl_mech_type *type;
  sasl_mech *m;
  int started, done;
} mech_ud;

static const sasl_mech_type *find_builtin(const char *name) {
  size_t i;
  for (i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i]->name, name) == 0) return builtins[i];
  return NULL;
}

static void push_registry(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
  }
}

static const char *optstring_field(lua_State *L, int idx, const char *k) {
  const char *v;
  lua_getfield(L, idx, k);
  v = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays alive in the caller's table */
  return v;
}

/* --- C mechanisms ------------------------------------------------------------ */

static mech_ud *check_mech(lua_State *L) {
  mech_ud *u = luaL_checkudata(L, 1, MECH_MT);
  if (u->m == NULL) luaL_error(L, "the SASL mechanism is closed");
  return u;
}

static int push_bytes(lua_State *L, sasl_bytes *b) {
  if (b->data) {
    lua_pushlstring(L, b->data, b->len);
    memset(b->data, 0, b->len); /* PLAIN carries the password */
    free(b->data);
  } else {
    lua_pushliteral(L, "");
  }
  return 1;
}

static int mech_start(lua_State *L) {
  mech_ud *u = check_mech(L);
  sasl_bytes out = {NULL, 0};
  char err[SASL_ERR_MAX] = "";
  if (u->started) return luaL_error(L, "%s: start() called twice", u->type->name);
  /* GSSAPI's start asks the KDC: its failures are expected ones */
  if (!u->type->start(u->m, &out, err)) return kalua_fail(L, err, "SASL_AUTHENTICATION");
  u->started = 1;
  return push_bytes(L, &out);
}

static int mech_step(lua_State *L) {
  mech_ud *u = check_mech(L);
  size_t len;
  const char *challenge = luaL_optlstring(L, 2, "", &len);
  sasl_bytes out = {NULL, 0};
  char err[SASL_ERR_MAX] = "";
  int done = 0;
  if (!u->started) return luaL_error(L, "%s: call start() before step()", u->type->name);
  if (u->done) return luaL_error(L, "%s: the exchange is already complete", u->type->name);
  if (!u->type->step(u->m, challenge, len, &out, &done, err)) return kalua_fail(L, err, "SASL_AUTHENTICATION");
  u->done = done;
  push_bytes(L, &out);
  lua_pushboolean(L, done);
  return 2;
}

static int mech_name(lua_State *L) {
  mech_ud *u = luaL_checkudata(L, 1, MECH_MT);
  lua_pushstring(L, u->type->name);
  return 1;
}

static int mech_close(lua_State *L) {
  mech_ud *u = luaL_checkudata(L, 1, MECH_MT);
  if (u->m) u->type->destroy(u->m);
  u->m = NULL;
  return 0;
}

static int mech_tostring(lua_State *L) {
  mech_ud *u = luaL_checkudata(L, 1, MECH_MT);
  lua_pushfstring(L, "kalua.sasl.Mechanism (%s%s)", u->type->name, u->m ? "" : ", closed");
  return 1;
}

/* creds.token: a string, or a function giving one (called now: each
 * exchange gets a fresh token). The string is left on the stack. */
static const char *token_field(lua_State *L) {
  int t = lua_getfield(L, 2, "token");
  if (t == LUA_TFUNCTION) {
    lua_call(L, 0, 1);
    t = lua_type(L, -1);
  }
  if (t == LUA_TNIL) return NULL;
  if (t != LUA_TSTRING) luaL_error(L, "token must be a string or a function returning one");
  return lua_tostring(L, -1);
}

/* creds.extensions {key = value}: a NULL-terminated key, value array in a
 * userdata left on the stack (the strings stay in the caller's table). */
static const char *const *extensions_field(lua_State *L) {
  const char **list;
  int n = 0;
  if (lua_getfield(L, 2, "extensions") != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  list = lua_newuserdatauv(L, sizeof *list * (size_t)(2 * n + 1), 0);
  n = 0;
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "extensions must map names to strings");
    list[n++] = lua_tostring(L, -2);
    list[n++] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  list[n] = NULL;
  return list;
}

static int new_builtin(lua_State *L, const sasl_mech_type *type) {
  sasl_creds c;
  char err[SASL_ERR_MAX] = "";
  mech_ud *u;
  memset(&c, 0, sizeof c);
  c.username = optstring_field(L, 2, "username");
  c.password = optstring_field(L, 2, "password");
  c.authzid = optstring_field(L, 2, "authzid");
  c.nonce = optstring_field(L, 2, "nonce");
  c.min_iterations = (int)kalua_optfield_int(L, 2, "min_iterations", 4096);
  c.max_iterations = (int)kalua_optfield_int(L, 2, "max_iterations", 10000000);
  c.keytab = optstring_field(L, 2, "keytab");
  c.principal = optstring_field(L, 2, "principal");
  c.service = optstring_field(L, 2, "service");
  c.host = optstring_field(L, 2, "host");
  c.krb5_config = optstring_field(L, 2, "krb5_config");
  c.token = token_field(L);
  c.extensions = extensions_field(L);
  u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, MECH_MT);
  u->type = type;
  if ((u->m = type->create(&c, err)) == NULL) return kalua_fail(L, err, "SASL_CONFIG");
  return 1;
}

/* --- Lua mechanisms ------------------------------------------------------------
 * An instance is a table {def=, ctx=} whose ctx is a copy of the
 * credentials, where the mechanism may keep its state. */

static int lua_mech_call(lua_State *L, const char *fn, int nargs_after_ctx) {
  int base = lua_gettop(L) - nargs_after_ctx;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "def");
  lua_getfield(L, -1, fn);
  lua_getfield(L, 1, "ctx");
  for (int i = 0; i < nargs_after_ctx; i++) lua_pushvalue(L, base + 1 + i);
  lua_call(L, 1 + nargs_after_ctx, 2);
  return 2;
}

static int lua_mech_start(lua_State *L) {
  lua_mech_call(L, "start", 0);
  lua_pop(L, 1); /* start gives just the message */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  return 1;
}

static int lua_mech_step(lua_State *L) {
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_pushliteral(L, "");
    lua_replace(L, 2);
  }
  lua_mech_call(L, "step", 1);
  /* (message, done) or (nil, error message) */
  if (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
    const char *msg = lua_tostring(L, -1);
    return kalua_fail(L, msg, "SASL_AUTHENTICATION");
  }
  if (lua_isnil(L, -2)) {
    lua_pushliteral(L, "");
    lua_replace(L, -3);
  }
  lua_pushboolean(L, lua_toboolean(L, -1));
  lua_replace(L, -2);
  return 2;
}

static int lua_mech_name(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "mechanism");
  return 1;
}

static int new_lua(lua_State *L, const char *name) {
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -2); /* the definition */
  lua_setfield(L, -2, "def");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "mechanism");
  lua_newtable(L);
  if (lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  lua_setfield(L, -2, "ctx");
  luaL_setmetatable(L, LUA_MECH_MT);
  return 1;
}

/* --- the module -------------------------------------------------------------- */

/* sasl.new(name, credentials) -> mechanism, or nil, message, name */
static int sasl_new(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const sasl_mech_type *type;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  push_registry(L);
  if (lua_getfield(L, -1, name) == LUA_TTABLE) return new_lua(L, name);
  lua_pop(L, 2);
  if ((type = find_builtin(name)) != NULL) {
    if (lua_isnoneornil(L, 2)) {
      lua_settop(L, 1);
      lua_newtable(L);
    }
    return new_builtin(L, type);
  }
  if (strcmp(name, "GSSAPI") == 0)
    return kalua_fail(L, "SASL mechanism 'GSSAPI' is not in this build: rebuild with -DKALUA_WITH_GSSAPI=ON "
                         "(needs the libkrb5-dev package)", "UNSUPPORTED");
  return kalua_fail(L, lua_pushfstring(L, "unknown SASL mechanism '%s' (see sasl.mechanisms())", name), "UNSUPPORTED");
}

/* sasl.register(name, {start=function(ctx), step=function(ctx, challenge)}) */
static int sasl_register(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  size_t i;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_getfield(L, 2, "start") != LUA_TFUNCTION || lua_getfield(L, 2, "step") != LUA_TFUNCTION)
    return luaL_error(L, "sasl.register('%s'): the mechanism needs start and step functions", name);
  for (i = 0; name[i]; i++)
    if (!((name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-' || name[i] == '_'))
      return luaL_error(L, "sasl.register: '%s' is not a SASL mechanism name (A-Z, 0-9, -, _)", name);
  if (find_builtin(name)) return luaL_error(L, "sasl.register: '%s' is built in", name);
  push_registry(L);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  return 0;
}

/* sasl.mechanisms() -> sorted names, built-in and registered */
static int sasl_mechanisms(lua_State *L) {
  size_t i;
  int n = 0;
  lua_newtable(L);
  for (i = 0; i < NBUILTINS; i++) {
    lua_pushstring(L, builtins[i]->name);
    lua_rawseti(L, -2, ++n);
  }
  push_registry(L);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++n);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* sasl.saslprep(s) -> s prepared (RFC 4013, without NFKC), or nil, message */
static int sasl_saslprep_lua(lua_State *L) {
  char err[SASL_ERR_MAX] = "";
  char *out = sasl_saslprep(luaL_checkstring(L, 1), err);
  if (out == NULL) return kalua_fail(L, err, "SASL_CONFIG");
  lua_pushstring(L, out);
  free(out);
  return 1;
}

/* --- JAAS configuration --------------------------------------------------------
 * The parse and the file's text live in a userdata until the entries are
 * pushed, so a memory error while pushing frees them too. */

#define JAAS_BOX_MT "kalua.sasl.JaasParse"

typedef struct {
  jaas_config *cfg;
  char *text; /* jaas_file's copy of the file */
  size_t len;
} jaas_box;

static int jaas_box_free(lua_State *L) {
  jaas_box *b = luaL_checkudata(L, 1, JAAS_BOX_MT);
  jaas_free(b->cfg);
  b->cfg = NULL;
  if (b->text) {
    memset(b->text, 0, b->len); /* it holds passwords */
    free(b->text);
  }
  b->text = NULL;
  return 0;
}

static jaas_box *push_jaas_box(lua_State *L) {
  jaas_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, JAAS_BOX_MT)) {
    lua_pushcfunction(L, jaas_box_free);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static void set_string_field(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Pushes the entries of the box at the top; frees the box's contents. */
static int push_jaas_entries(lua_State *L) {
  jaas_box *b = luaL_checkudata(L, -1, JAAS_BOX_MT);
  size_t i, j;
  lua_createtable(L, (int)b->cfg->nentries, 0);
  for (i = 0; i < b->cfg->nentries; i++) {
    const jaas_entry *e = &b->cfg->entries[i];
    lua_createtable(L, 0, 8);
    set_string_field(L, "section", e->section);
    set_string_field(L, "module", e->module);
    set_string_field(L, "flag", e->flag);
    set_string_field(L, "mechanism", e->mechanism);
    set_string_field(L, "principal", jaas_principal(e));
    lua_pushinteger(L, e->line);
    lua_setfield(L, -2, "line");
    lua_createtable(L, 0, (int)e->noptions);
    for (j = 0; j < e->noptions; j++) set_string_field(L, e->options[j].key, e->options[j].value);
    lua_setfield(L, -2, "options");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushcfunction(L, jaas_box_free);
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  return 1;
}

/* sasl.jaas(text) -> entries, or nil, "jaas: line L column C: ...", "CONFIG" */
static int sasl_jaas(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  char err[JAAS_ERR_MAX];
  jaas_box *b = push_jaas_box(L);
  if (!jaas_parse(text, len, &b->cfg, err, sizeof err)) return kalua_fail(L, err, "CONFIG");
  return push_jaas_entries(L);
}

/* Reads the file into b->text: at most JAAS_MAX_INPUT + 1 bytes (jaas_parse
 * refuses more). 0 with errno on failure. */
static int read_jaas_file(const char *path, jaas_box *b) {
  size_t cap = 0, n;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  do {
    if (b->len == cap) {
      char *t;
      cap = cap ? cap * 2 : 4096;
      if (cap > JAAS_MAX_INPUT + 1) cap = JAAS_MAX_INPUT + 1;
      if ((t = realloc(b->text, cap)) == NULL) {
        fclose(f);
        errno = ENOMEM;
        return 0;
      }
      b->text = t;
    }
    n = fread(b->text + b->len, 1, cap - b->len, f);
    b->len += n;
  } while (n > 0 && b->len <= JAAS_MAX_INPUT);
  if (ferror(f)) {
    int e = errno;
    fclose(f);
    errno = e;
    return 0;
  }
  fclose(f);
  return 1;
}

/* sasl.jaas_file(path) -> entries, or nil, "jaas: <path>: ...", "CONFIG" */
static int sasl_jaas_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char err[JAAS_ERR_MAX];
  jaas_box *b = push_jaas_box(L);
  if (!read_jaas_file(path, b))
    return kalua_fail(L, lua_pushfstring(L, "jaas: cannot read %s: %s", path, strerror(errno)), "CONFIG");
  if (!jaas_parse(b->text, b->len, &b->cfg, err, sizeof err))
    return kalua_fail(L, lua_pushfstring(L, "jaas: %s: %s", path, strncmp(err, "jaas: ", 6) == 0 ? err + 6 : err),
                      "CONFIG");
  return push_jaas_entries(L);
}

static const luaL_Reg mech_methods[] = {
  {"start", mech_start}, {"step", mech_step}, {"name", mech_name}, {NULL, NULL}
};

static const luaL_Reg lua_mech_methods[] = {
  {"start", lua_mech_start}, {"step", lua_mech_step}, {"name", lua_mech_name}, {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"new", sasl_new}, {"register", sasl_register}, {"mechanisms", sasl_mechanisms},
  {"saslprep", sasl_saslprep_lua}, {"jaas", sasl_jaas}, {"jaas_file", sasl_jaas_file}, {NULL, NULL}
};

int luaopen_kalua_sasl(lua_State *L) {
  kalua_newtype(L, MECH_MT, mech_methods, mech_close, mech_tostring);
  luaL_newmetatable(L, LUA_MECH_MT);
  luaL_newlib(L, lua_mech_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
