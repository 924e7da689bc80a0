/* kalua.storage: the Lua face of the storage backends.
 *
 *   local store = assert(storage.open("/var/backups"))      -- or "file:///...",
 *                                                           -- or {backend="filesystem", path=...}
 *   store:put(key, data)            store:get(key [, offset [, length]])
 *   store:stat(key)                 store:list([prefix])    store:delete(key)
 *   local w <close> = assert(store:open_writer(key))
 *   w:write(chunk) ... w:commit()   -- nothing is visible under key before commit;
 *                                   -- closing without commit discards the write
 *   local r <close> = assert(store:open_reader(key [, offset [, length]]))
 *   r:read([n]) -> bytes | nil at the end
 *   store:stats() -> {backend=, requests = {["PUT 200"] = n, ...},
 *                     seconds = {PUT = {count=, sum=, buckets={...}}, ...}, bounds={...}}
 *
 * Every backend call, from Lua or from another module through the
 * userdata's vtable (the segment writer's worker thread, the segment
 * reader), goes through a counting layer here that marks the thread for
 * the store's stats (see stats.h): object stores count each HTTP attempt,
 * the filesystem its operations.
 *
 * Failures return nil, message, name (NOT_FOUND, NO_SPACE, PERMISSION_DENIED,
 * INVALID_KEY, IO_ERROR, UNSUPPORTED). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kalua_util.h"
#include <curl/curl.h>

#include "storage/stats.h"
#include "storage/storage.h"

#define READ_CHUNK 65536

static int push_error(lua_State *L, const storage_error *err) {
  return kalua_fail(L, err->message, err->name ? err->name : "IO_ERROR");
}

static store_ud *check_store(lua_State *L) {
  store_ud *s = luaL_checkudata(L, 1, STORE_MT);
  if (s->self == NULL) luaL_error(L, "storage is closed");
  return s;
}

/* --- counting ----------------------------------------------------------- */

/* What a store's userdata holds as self: the backend's own self, and the
 * stats its calls count into. The filesystem counts its operations here;
 * object stores count their HTTP attempts in http_do. */
typedef struct {
  const storage_backend *inner;
  void *self;
  storage_stats *stats;
  int count_ops;
} counted_store;

/* Writers and readers: the backend's, and the time spent in them so far
 * (a filesystem PUT is counted once, at commit, with all of it). */
typedef struct {
  const storage_backend *inner;
  storage_writer *w;
  storage_stats *stats;
  int count_ops;
  double seconds;
} counted_writer;

typedef struct {
  const storage_backend *inner;
  storage_reader *r;
  storage_stats *stats;
  int count_ops;
  double seconds;
  const char *failed; /* the first error's name */
} counted_reader;

typedef struct {
  storage_stats *previous;
  double started;
} call_scope;

static void call_begin(call_scope *c, storage_stats *stats) {
  c->previous = storage_stats_enter(stats);
  c->started = storage_stats_now();
}

static double call_end(call_scope *c) {
  storage_stats_leave(c->previous);
  return storage_stats_now() - c->started;
}

static void count_op(storage_stats *stats, int count_ops, const char *method, int ok, const storage_error *err,
                     double seconds) {
  if (count_ops) storage_stats_record(stats, method, ok ? "ok" : (err->name ? err->name : "IO_ERROR"), seconds);
}

static void counted_destroy(void *self) {
  counted_store *cs = self;
  cs->inner->destroy(cs->self);
  storage_stats_release(cs->stats);
  free(cs);
}

static int counted_stat(void *self, const char *key, storage_entry *out, storage_error *err) {
  counted_store *cs = self;
  call_scope c;
  int ok;
  call_begin(&c, cs->stats);
  ok = cs->inner->stat(cs->self, key, out, err);
  count_op(cs->stats, cs->count_ops, "HEAD", ok, err, call_end(&c));
  return ok;
}

static int counted_list(void *self, const char *prefix, void (*fn)(void *ctx, const storage_entry *e), void *ctx,
                        storage_error *err) {
  counted_store *cs = self;
  call_scope c;
  int ok;
  call_begin(&c, cs->stats);
  ok = cs->inner->list(cs->self, prefix, fn, ctx, err);
  count_op(cs->stats, cs->count_ops, "LIST", ok, err, call_end(&c));
  return ok;
}

static int counted_remove(void *self, const char *key, storage_error *err) {
  counted_store *cs = self;
  call_scope c;
  int ok;
  call_begin(&c, cs->stats);
  ok = cs->inner->remove(cs->self, key, err);
  count_op(cs->stats, cs->count_ops, "DELETE", ok, err, call_end(&c));
  return ok;
}

static storage_writer *counted_open_writer(void *self, const char *key, storage_error *err) {
  counted_store *cs = self;
  counted_writer *cw = calloc(1, sizeof *cw);
  call_scope c;
  if (cw == NULL) {
    storage_fail(err, "IO_ERROR", "out of memory opening a writer for %s", key);
    return NULL;
  }
  call_begin(&c, cs->stats);
  cw->w = cs->inner->open_writer(cs->self, key, err);
  cw->seconds = call_end(&c);
  if (cw->w == NULL) {
    count_op(cs->stats, cs->count_ops, "PUT", 0, err, cw->seconds);
    free(cw);
    return NULL;
  }
  cw->inner = cs->inner;
  cw->stats = cs->stats;
  cw->count_ops = cs->count_ops;
  storage_stats_retain(cw->stats);
  return (storage_writer *)cw;
}

static void free_counted_writer(counted_writer *cw) {
  storage_stats_release(cw->stats);
  free(cw);
}

static int counted_write(storage_writer *w, const void *data, size_t len, storage_error *err) {
  counted_writer *cw = (counted_writer *)w;
  call_scope c;
  int ok;
  call_begin(&c, cw->stats);
  ok = cw->inner->write(cw->w, data, len, err);
  cw->seconds += call_end(&c);
  return ok;
}

static int counted_commit(storage_writer *w, storage_error *err) {
  counted_writer *cw = (counted_writer *)w;
  call_scope c;
  int ok;
  call_begin(&c, cw->stats);
  ok = cw->inner->commit(cw->w, err);
  cw->seconds += call_end(&c);
  count_op(cw->stats, cw->count_ops, "PUT", ok, err, cw->seconds);
  free_counted_writer(cw);
  return ok;
}

static void counted_abort(storage_writer *w) {
  counted_writer *cw = (counted_writer *)w;
  call_scope c;
  call_begin(&c, cw->stats);
  cw->inner->abort(cw->w);
  call_end(&c);
  free_counted_writer(cw);
}

static storage_reader *counted_open_reader(void *self, const char *key, int64_t offset, int64_t length,
                                           storage_error *err) {
  counted_store *cs = self;
  counted_reader *cr = calloc(1, sizeof *cr);
  call_scope c;
  if (cr == NULL) {
    storage_fail(err, "IO_ERROR", "out of memory opening a reader for %s", key);
    return NULL;
  }
  call_begin(&c, cs->stats);
  cr->r = cs->inner->open_reader(cs->self, key, offset, length, err);
  cr->seconds = call_end(&c);
  if (cr->r == NULL) {
    count_op(cs->stats, cs->count_ops, "GET", 0, err, cr->seconds);
    free(cr);
    return NULL;
  }
  cr->inner = cs->inner;
  cr->stats = cs->stats;
  cr->count_ops = cs->count_ops;
  storage_stats_retain(cr->stats);
  return (storage_reader *)cr;
}

static int64_t counted_read(storage_reader *r, void *buf, size_t len, storage_error *err) {
  counted_reader *cr = (counted_reader *)r;
  call_scope c;
  int64_t n;
  call_begin(&c, cr->stats);
  n = cr->inner->read(cr->r, buf, len, err);
  cr->seconds += call_end(&c);
  if (n < 0 && cr->failed == NULL) cr->failed = err->name ? err->name : "IO_ERROR";
  return n;
}

static void counted_close_reader(storage_reader *r) {
  counted_reader *cr = (counted_reader *)r;
  call_scope c;
  call_begin(&c, cr->stats);
  cr->inner->close_reader(cr->r);
  cr->seconds += call_end(&c);
  if (cr->count_ops) storage_stats_record(cr->stats, "GET", cr->failed ? cr->failed : "ok", cr->seconds);
  storage_stats_release(cr->stats);
  free(cr);
}

/* One vtable per backend, for its name; static, so a writer's vtable
 * pointer never outlives it. */
#define COUNTED(name)                                                                                              \
  {                                                                                                                \
    name, counted_destroy, counted_stat, counted_list, counted_remove, counted_open_writer, counted_write,         \
      counted_commit, counted_abort, counted_open_reader, counted_read, counted_close_reader                       \
  }
static const storage_backend counted_backends[] = {COUNTED("filesystem"), COUNTED("s3"), COUNTED("azure"),
                                                   COUNTED("gcs")};

static const storage_backend *counted_vtable(const storage_backend *inner) {
  size_t i;
  for (i = 0; i < sizeof counted_backends / sizeof counted_backends[0]; i++)
    if (strcmp(counted_backends[i].name, inner->name) == 0) return &counted_backends[i];
  return NULL;
}

/* Opens a store through its backend with the thread marked for a new
 * stats, and sets s up with the counting layer over it. Returns 0 with
 * err set on failure. */
static int counted_open(store_ud *s, const storage_backend *inner, void *(*open)(void *arg, storage_error *err),
                        void *arg, storage_error *err) {
  counted_store *cs;
  storage_stats *previous;
  if (counted_vtable(inner) == NULL) {
    storage_fail(err, "UNSUPPORTED", "storage backend %s has no counting layer (storage.c)", inner->name);
    return 0;
  }
  cs = calloc(1, sizeof *cs);
  if (cs == NULL || (cs->stats = storage_stats_new()) == NULL) {
    free(cs);
    storage_fail(err, "IO_ERROR", "out of memory opening %s storage", inner->name);
    return 0;
  }
  previous = storage_stats_enter(cs->stats);
  cs->self = open(arg, err);
  storage_stats_leave(previous);
  if (cs->self == NULL) {
    storage_stats_release(cs->stats);
    free(cs);
    return 0;
  }
  cs->inner = inner;
  cs->count_ops = inner == &storage_fs_backend;
  s->backend = counted_vtable(inner);
  s->self = cs;
  return 1;
}

typedef struct {
  lua_State *L;
  int cfg;
  storage_open_fn open;
  storage_error *err;
  void *self;
} object_open_args;

static int open_object_protected(lua_State *L) {
  object_open_args *a = lua_touserdata(L, 1);
  a->self = a->open(L, 2, a->err);
  return 0;
}

/* A backend's open reads the config table from Lua: in a protected call,
 * so that an error there cannot leave the thread marked. */
static void *open_object(void *arg, storage_error *err) {
  object_open_args *a = arg;
  lua_State *L = a->L;
  a->err = err;
  a->self = NULL;
  lua_pushcfunction(L, open_object_protected);
  lua_pushlightuserdata(L, a);
  lua_pushvalue(L, a->cfg);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    storage_fail(err, "IO_ERROR", "cannot open storage: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  return a->self;
}

static void *open_fs(void *arg, storage_error *err) { return storage_fs_open(arg, err); }

static const struct {
  const char *name, *scheme, *container; /* the URL's first part is this field */
  const storage_backend *backend;
  storage_open_fn open;
} kinds[] = {
  {"s3", "s3://", "bucket", &storage_s3_backend, storage_s3_open},
  {"azure", "az://", "container", &storage_azure_backend, storage_azure_open},
  {"gcs", "gs://", "bucket", &storage_gcs_backend, storage_gcs_open},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* Turns "s3://bucket/a/b" into {backend="s3", bucket="bucket", prefix="a/b"}
 * on the stack; fields of the table at cfg (when not 0) fill what the URL
 * leaves out. Returns the kind's index, or -1 for an unknown scheme. */
static int url_to_table(lua_State *L, const char *url, int cfg) {
  size_t i;
  for (i = 0; i < NKINDS; i++) {
    size_t n = strlen(kinds[i].scheme);
    if (strncmp(url, kinds[i].scheme, n) == 0) {
      const char *rest = url + n, *slash = strchr(rest, '/');
      lua_newtable(L);
      if (cfg) {
        lua_pushnil(L);
        while (lua_next(L, cfg)) {
          lua_pushvalue(L, -2);
          lua_insert(L, -2);
          lua_settable(L, -4);
        }
      }
      lua_pushstring(L, kinds[i].name);
      lua_setfield(L, -2, "backend");
      lua_pushlstring(L, rest, slash ? (size_t)(slash - rest) : strlen(rest));
      lua_setfield(L, -2, kinds[i].container);
      if (slash && slash[1]) {
        lua_pushstring(L, slash + 1);
        lua_setfield(L, -2, "prefix");
      }
      return (int)i;
    }
  }
  return -1;
}

static int open_object_store(lua_State *L, int kind, int cfg) {
  storage_error err = {"", NULL};
  store_ud *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, STORE_MT);
  {
    object_open_args args = {L, cfg, kinds[kind].open, NULL, NULL};
    if (!counted_open(s, kinds[kind].backend, open_object, &args, &err)) return push_error(L, &err);
  }
  lua_getfield(L, cfg, kinds[kind].container);
  lua_getfield(L, cfg, "prefix");
  lua_pushfstring(L, "%s%s/%s", kinds[kind].scheme, luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, ""));
  s->where = strdup(lua_tostring(L, -1));
  lua_pop(L, 3);
  return 1;
}

/* storage.open(path | "file://path" | "s3://bucket/prefix" | "az://..." |
 *   "gs://..." | {backend=, path= | url= | bucket=, ...}) ; a URL may be
 * followed by a table of the backend's other keys (credentials...). */
static int storage_open(lua_State *L) {
  const char *backend = "filesystem", *path = NULL;
  storage_error err = {"", NULL};
  store_ud *s;
  size_t i;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "backend");
    backend = luaL_optstring(L, -1, "filesystem");
    lua_getfield(L, 1, "path");
    path = lua_tostring(L, -1);
    if (lua_getfield(L, 1, "url") == LUA_TSTRING && strstr(lua_tostring(L, -1), "://")) {
      int kind = url_to_table(L, lua_tostring(L, -1), 1);
      if (kind >= 0) return open_object_store(L, kind, lua_gettop(L));
      if (strncmp(lua_tostring(L, -1), "file://", 7) == 0) path = lua_tostring(L, -1) + 7;
    }
    for (i = 0; i < NKINDS; i++)
      if (strcmp(backend, kinds[i].name) == 0) return open_object_store(L, (int)i, 1);
    if (strcmp(backend, "filesystem") != 0)
      return kalua_fail(L, lua_pushfstring(L, "unknown storage backend '%s' (filesystem, s3, azure or gcs)", backend),
                        "UNSUPPORTED");
  } else {
    path = luaL_checkstring(L, 1);
    if (strncmp(path, "file://", 7) == 0) {
      path += 7;
    } else if (strstr(path, "://")) {
      int kind = url_to_table(L, path, lua_istable(L, 2) ? 2 : 0);
      if (kind < 0)
        return kalua_fail(L, lua_pushfstring(L, "unknown storage URL '%s' (file://, s3://, az:// or gs://)", path),
                          "UNSUPPORTED");
      return open_object_store(L, kind, lua_gettop(L));
    }
  }
  if (path == NULL) return luaL_error(L, "filesystem storage needs a path");
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, STORE_MT);
  if (!counted_open(s, &storage_fs_backend, open_fs, (void *)path, &err)) return push_error(L, &err);
  s->where = strdup(path);
  return 1;
}

/* store:presign(method, key, expires_seconds) -> URL (S3 only): a link that
 * works without credentials until it expires. */
static int store_presign(lua_State *L) {
  store_ud *s = check_store(L);
  counted_store *cs = s->self;
  const char *method = luaL_checkstring(L, 2), *key = luaL_checkstring(L, 3);
  long expires = (long)luaL_optinteger(L, 4, 3600);
  storage_error err = {"", NULL};
  char *url;
  if (cs->inner != &storage_s3_backend)
    return kalua_fail(L, lua_pushfstring(L, "presigned URLs are for s3 storage, not %s", s->backend->name), "UNSUPPORTED");
  if (expires < 1 || expires > 604800) return luaL_argerror(L, 4, "expires must be 1 .. 604800 seconds (7 days)");
  if ((url = s3_presign(cs->self, method, key, expires, &err)) == NULL) return push_error(L, &err);
  lua_pushstring(L, url);
  free(url);
  return 1;
}

static int store_put(lua_State *L) {
  store_ud *s = check_store(L);
  const char *key = luaL_checkstring(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  storage_error err = {"", NULL};
  storage_writer *w = s->backend->open_writer(s->self, key, &err);
  if (w == NULL) return push_error(L, &err);
  if (!s->backend->write(w, data, len, &err)) {
    s->backend->abort(w);
    return push_error(L, &err);
  }
  if (!s->backend->commit(w, &err)) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int read_all(lua_State *L, const storage_backend *b, storage_reader *r) {
  storage_error err = {"", NULL};
  luaL_Buffer buf;
  int64_t n;
  luaL_buffinit(L, &buf);
  do {
    char *p = luaL_prepbuffsize(&buf, READ_CHUNK);
    n = b->read(r, p, READ_CHUNK, &err);
    if (n > 0) luaL_addsize(&buf, (size_t)n);
  } while (n > 0);
  b->close_reader(r);
  if (n < 0) return push_error(L, &err);
  luaL_pushresult(&buf);
  return 1;
}

/* store:get(key [, offset [, length]]) -> the bytes */
static int store_get(lua_State *L) {
  store_ud *s = check_store(L);
  const char *key = luaL_checkstring(L, 2);
  int64_t offset = luaL_optinteger(L, 3, 0), length = luaL_optinteger(L, 4, -1);
  storage_error err = {"", NULL};
  storage_reader *r;
  luaL_argcheck(L, offset >= 0, 3, "offset must not be negative");
  r = s->backend->open_reader(s->self, key, offset, length, &err);
  if (r == NULL) return push_error(L, &err);
  return read_all(L, s->backend, r);
}

static void push_entry(lua_State *L, const storage_entry *e) {
  lua_createtable(L, 0, 3);
  if (e->key) {
    lua_pushstring(L, e->key);
    lua_setfield(L, -2, "key");
  }
  lua_pushinteger(L, e->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, e->mtime);
  lua_setfield(L, -2, "mtime");
}

static int store_stat(lua_State *L) {
  store_ud *s = check_store(L);
  storage_entry e;
  storage_error err = {"", NULL};
  if (!s->backend->stat(s->self, luaL_checkstring(L, 2), &e, &err)) return push_error(L, &err);
  push_entry(L, &e);
  return 1;
}

static void collect(void *ctx, const storage_entry *e) {
  lua_State *L = ctx;
  push_entry(L, e);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

static int key_less(lua_State *L) {
  lua_getfield(L, 1, "key");
  lua_getfield(L, 2, "key");
  lua_pushboolean(L, lua_compare(L, -2, -1, LUA_OPLT));
  return 1;
}

/* store:list([prefix]) -> { {key=, size=, mtime=}, ... } sorted by key */
static int store_list(lua_State *L) {
  store_ud *s = check_store(L);
  const char *prefix = luaL_optstring(L, 2, "");
  storage_error err = {"", NULL};
  lua_newtable(L);
  if (!s->backend->list(s->self, prefix, collect, L, &err)) return push_error(L, &err);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_pushcfunction(L, key_less);
  lua_call(L, 2, 0);
  lua_pop(L, 1);
  return 1;
}

static int store_delete(lua_State *L) {
  store_ud *s = check_store(L);
  storage_error err = {"", NULL};
  if (!s->backend->remove(s->self, luaL_checkstring(L, 2), &err)) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int store_open_writer(lua_State *L) {
  store_ud *s = check_store(L);
  const char *key = luaL_checkstring(L, 2);
  storage_error err = {"", NULL};
  writer_ud *w = lua_newuserdatauv(L, sizeof *w, 1);
  w->backend = s->backend;
  w->w = NULL;
  luaL_setmetatable(L, WRITER_MT);
  lua_pushvalue(L, 1); /* the store outlives its writers */
  lua_setiuservalue(L, -2, 1);
  w->w = s->backend->open_writer(s->self, key, &err);
  if (w->w == NULL) return push_error(L, &err);
  return 1;
}

static int store_open_reader(lua_State *L) {
  store_ud *s = check_store(L);
  const char *key = luaL_checkstring(L, 2);
  int64_t offset = luaL_optinteger(L, 3, 0), length = luaL_optinteger(L, 4, -1);
  storage_error err = {"", NULL};
  reader_ud *r;
  luaL_argcheck(L, offset >= 0, 3, "offset must not be negative");
  r = lua_newuserdatauv(L, sizeof *r, 1);
  r->backend = s->backend;
  r->r = NULL;
  luaL_setmetatable(L, READER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  r->r = s->backend->open_reader(s->self, key, offset, length, &err);
  if (r->r == NULL) return push_error(L, &err);
  return 1;
}

/* store:stats() -> the requests counted so far (see the top of this file) */
static int store_stats(lua_State *L) {
  store_ud *s = check_store(L);
  counted_store *cs = s->self;
  storage_stats_push(L, cs->stats);
  lua_pushstring(L, s->backend->name);
  lua_setfield(L, -2, "backend");
  return 1;
}

static int store_close(lua_State *L) {
  store_ud *s = luaL_checkudata(L, 1, STORE_MT);
  if (s->self) s->backend->destroy(s->self);
  s->self = NULL;
  free(s->where);
  s->where = NULL;
  return 0;
}

static int store_tostring(lua_State *L) {
  store_ud *s = luaL_checkudata(L, 1, STORE_MT);
  if (s->self)
    lua_pushfstring(L, "kalua.storage.Store (%s %s)", s->backend->name, s->where);
  else
    lua_pushliteral(L, "kalua.storage.Store (closed)");
  return 1;
}

/* --- writer ------------------------------------------------------------- */

static writer_ud *check_writer(lua_State *L) {
  writer_ud *w = luaL_checkudata(L, 1, WRITER_MT);
  if (w->w == NULL) luaL_error(L, "writer is committed or closed");
  return w;
}

static int writer_write(lua_State *L) {
  writer_ud *w = check_writer(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  storage_error err = {"", NULL};
  if (!w->backend->write(w->w, data, len, &err)) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int writer_commit(lua_State *L) {
  writer_ud *w = check_writer(L);
  storage_error err = {"", NULL};
  storage_writer *inner = w->w;
  w->w = NULL;
  if (!w->backend->commit(inner, &err)) return push_error(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Closing an uncommitted writer discards it: a half-written object is
 * never published, whatever interrupted the script. */
static int writer_abort(lua_State *L) {
  writer_ud *w = luaL_checkudata(L, 1, WRITER_MT);
  if (w->w) w->backend->abort(w->w);
  w->w = NULL;
  return 0;
}

/* --- reader ------------------------------------------------------------- */

static int reader_read(lua_State *L) {
  reader_ud *r = luaL_checkudata(L, 1, READER_MT);
  lua_Integer want = luaL_optinteger(L, 2, READ_CHUNK);
  storage_error err = {"", NULL};
  luaL_Buffer buf;
  int64_t n;
  char *p;
  if (r->r == NULL) return luaL_error(L, "reader is closed");
  luaL_argcheck(L, want > 0, 2, "read size must be positive");
  p = luaL_buffinitsize(L, &buf, (size_t)want);
  n = r->backend->read(r->r, p, (size_t)want, &err);
  if (n < 0) return push_error(L, &err);
  if (n == 0) return 0;
  luaL_pushresultsize(&buf, (size_t)n);
  return 1;
}

static int reader_close(lua_State *L) {
  reader_ud *r = luaL_checkudata(L, 1, READER_MT);
  if (r->r) r->backend->close_reader(r->r);
  r->r = NULL;
  return 0;
}

static const luaL_Reg store_methods[] = {
  {"put", store_put}, {"get", store_get}, {"stat", store_stat}, {"list", store_list},
  {"delete", store_delete}, {"presign", store_presign}, {"open_writer", store_open_writer}, {"open_reader", store_open_reader},
  {"stats", store_stats}, {NULL, NULL}
};

static const luaL_Reg writer_methods[] = {
  {"write", writer_write}, {"commit", writer_commit}, {"abort", writer_abort},
  {NULL, NULL}
};

static const luaL_Reg reader_methods[] = {
  {"read", reader_read}, {NULL, NULL}
};

static const luaL_Reg storage_funcs[] = {
  {"open", storage_open},
  {NULL, NULL}
};

/* libcurl wants its global set-up once per process before any thread uses
 * it; every object store shares it. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void init_curl(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int luaopen_kalua_storage(lua_State *L) {
  pthread_once(&curl_once, init_curl);
  kalua_newtype(L, STORE_MT, store_methods, store_close, store_tostring);
  kalua_newtype(L, WRITER_MT, writer_methods, writer_abort, NULL);
  kalua_newtype(L, READER_MT, reader_methods, reader_close, NULL);
  luaL_newlib(L, storage_funcs);
  return 1;
}
