/* kalua.storage: one interface over backends (filesystem now; S3, Azure
 * Blob and GCS later). Keys are relative, '/'-separated names; a backend
 * maps them onto files or objects. A write becomes visible under its key
 * only when committed, whole. */
#ifndef KALUA_STORAGE_H
#define KALUA_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define STORAGE_ERR_MAX 512

/* What a failed call reports: a message and a symbolic name
 * (NOT_FOUND, NO_SPACE, PERMISSION_DENIED, INVALID_KEY, IO_ERROR). */
typedef struct {
  char message[STORAGE_ERR_MAX];
  const char *name;
} storage_error;

typedef struct {
  char *key;
  int64_t size;
  int64_t mtime; /* seconds since the epoch */
} storage_entry;

typedef struct storage_writer storage_writer;
typedef struct storage_reader storage_reader;

typedef struct storage_backend {
  const char *name;
  void (*destroy)(void *self);
  int (*stat)(void *self, const char *key, storage_entry *out, storage_error *err);
  /* Calls fn for every key under prefix; returns 0 on error. */
  int (*list)(void *self, const char *prefix, void (*fn)(void *ctx, const storage_entry *e), void *ctx,
              storage_error *err);
  int (*remove)(void *self, const char *key, storage_error *err);
  storage_writer *(*open_writer)(void *self, const char *key, storage_error *err);
  int (*write)(storage_writer *w, const void *data, size_t len, storage_error *err);
  int (*commit)(storage_writer *w, storage_error *err); /* publishes and frees */
  void (*abort)(storage_writer *w);                     /* discards and frees */
  storage_reader *(*open_reader)(void *self, const char *key, int64_t offset, int64_t length, storage_error *err);
  /* Returns bytes read (0 at the end of the range) or -1. */
  int64_t (*read)(storage_reader *r, void *buf, size_t len, storage_error *err);
  void (*close_reader)(storage_reader *r);
} storage_backend;

/* The filesystem backend rooted at a directory (created if missing). */
void *storage_fs_open(const char *root, storage_error *err);
extern const storage_backend storage_fs_backend;

/* Object-storage backends, each in its own file. open reads the config
 * table at idx (the YAML `storage` section: backend=, bucket=, container=,
 * prefix=, region=, endpoint=, credentials...) on the Lua thread and
 * returns the backend's self, or NULL with err set. Their write may run on
 * a segment writer's worker thread, one call at a time per writer: no Lua
 * there. */
typedef void *(*storage_open_fn)(lua_State *L, int idx, storage_error *err);
void *storage_s3_open(lua_State *L, int idx, storage_error *err);
extern const storage_backend storage_s3_backend;
/* A presigned URL for method on key, valid for expires seconds (malloc'd). */
char *s3_presign(void *self, const char *method, const char *key, long expires, storage_error *err);
void *storage_azure_open(lua_State *L, int idx, storage_error *err);
extern const storage_backend storage_azure_backend;
void *storage_gcs_open(lua_State *L, int idx, storage_error *err);
extern const storage_backend storage_gcs_backend;

/* Rejects absolute keys, empty segments, "." and "..": no key may escape
 * the store's root. */
int storage_check_key(const char *key, storage_error *err);

void storage_fail(storage_error *err, const char *name, const char *fmt, ...);

/* The Lua userdata, shared with other C modules (the segment writer writes
 * through a Writer's vtable; no link-time dependency between modules). */
#define STORE_MT "kalua.storage.Store"
#define WRITER_MT "kalua.storage.Writer"
#define READER_MT "kalua.storage.Reader"

typedef struct {
  const storage_backend *backend;
  void *self;
  char *where; /* for messages and __tostring */
} store_ud;

typedef struct {
  const storage_backend *backend;
  storage_writer *w;
} writer_ud;

typedef struct {
  const storage_backend *backend;
  storage_reader *r;
} reader_ud;

#endif
