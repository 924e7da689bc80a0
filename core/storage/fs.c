/* The filesystem backend. A write goes to "<key>.tmp-<pid>-<n>" in the key's
 * directory, is fsync'd, renamed over the key and the directory fsync'd:
 * after a crash a key holds the old whole file or the new whole file, and
 * stray .tmp- files are never listed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"

#define TMP_MARK ".tmp-"

typedef struct {
  char *root;
  unsigned long counter; /* unique temp names within this store */
} fs_store;

struct storage_writer {
  int fd;
  char *path;
  char *tmp;
};

struct storage_reader {
  int fd;
  int64_t remaining; /* -1: to the end of the file */
};

void storage_fail(storage_error *err, const char *name, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  err->name = name;
}

static const char *errno_name(int e) {
  switch (e) {
    case ENOENT: return "NOT_FOUND";
    case ENOSPC: case EDQUOT: return "NO_SPACE";
    case EACCES: case EPERM: case EROFS: return "PERMISSION_DENIED";
    default: return "IO_ERROR";
  }
}

static int fail_errno(storage_error *err, const char *what, const char *path) {
  int e = errno;
  storage_fail(err, errno_name(e), "%s %s: %s", what, path, strerror(e));
  return 0;
}

int storage_check_key(const char *key, storage_error *err) {
  const char *seg = key;
  if (key[0] == '\0' || key[0] == '/') {
    storage_fail(err, "INVALID_KEY", "invalid key '%s': keys are relative names like 'a/b/c'", key);
    return 0;
  }
  for (;;) {
    const char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
      storage_fail(err, "INVALID_KEY", "invalid key '%s': empty, '.' and '..' segments are not allowed", key);
      return 0;
    }
    if (!end) break;
    seg = end + 1;
  }
  if (strstr(key, TMP_MARK)) {
    storage_fail(err, "INVALID_KEY", "invalid key '%s': '" TMP_MARK "' marks unfinished writes", key);
    return 0;
  }
  return 1;
}

static char *join(const char *root, const char *key) {
  size_t n = strlen(root) + strlen(key) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", root, key);
  return p;
}

/* mkdir -p of the directories above path. */
static int make_parents(char *path, storage_error *err) {
  char *slash;
  for (slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
      int ok = fail_errno(err, "cannot create directory", path);
      *slash = '/';
      return ok;
    }
    *slash = '/';
  }
  return 1;
}

static int sync_parent(const char *path) {
  char *dir = strdup(path), *slash;
  int fd, rc = 0;
  if (!dir) return -1;
  slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    rc = fsync(fd);
    close(fd);
  }
  free(dir);
  return rc;
}

void *storage_fs_open(const char *root, storage_error *err) {
  fs_store *s;
  char *probe;
  size_t len = strlen(root);
  if (len == 0) {
    storage_fail(err, "INVALID_KEY", "filesystem storage needs a path");
    return NULL;
  }
  probe = malloc(len + 3);
  if (!probe) return NULL;
  snprintf(probe, len + 3, "%s/x", root);
  if (!make_parents(probe, err)) {
    free(probe);
    return NULL;
  }
  free(probe);
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->root = strdup(root);
  while (len > 1 && s->root[len - 1] == '/') s->root[--len] = '\0';
  return s;
}

static void fs_destroy(void *self) {
  fs_store *s = self;
  free(s->root);
  free(s);
}

static int fs_stat(void *self, const char *key, storage_entry *out, storage_error *err) {
  fs_store *s = self;
  struct stat st;
  char *path;
  if (!storage_check_key(key, err)) return 0;
  path = join(s->root, key);
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (errno == 0 || S_ISDIR(st.st_mode)) errno = ENOENT;
    fail_errno(err, "cannot stat", path);
    free(path);
    return 0;
  }
  free(path);
  out->key = NULL;
  out->size = st.st_size;
  out->mtime = st.st_mtime;
  return 1;
}

/* Walks dir (the path for key prefix rel), calling fn for regular files. */
static int walk(const char *dir, const char *rel, const char *prefix,
                void (*fn)(void *, const storage_entry *), void *ctx, storage_error *err) {
  DIR *d = opendir(dir);
  struct dirent *e;
  if (!d) {
    if (errno == ENOENT || errno == ENOTDIR) return 1; /* nothing under this prefix */
    return fail_errno(err, "cannot list", dir);
  }
  while ((e = readdir(d)) != NULL) {
    char *path, *key;
    struct stat st;
    size_t klen;
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strstr(e->d_name, TMP_MARK)) continue;
    path = join(dir, e->d_name);
    klen = strlen(rel) + strlen(e->d_name) + 2;
    key = malloc(klen);
    snprintf(key, klen, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    if (stat(path, &st) == 0) {
      if (S_ISDIR(st.st_mode)) {
        if (!walk(path, key, prefix, fn, ctx, err)) {
          free(path);
          free(key);
          closedir(d);
          return 0;
        }
      } else if (S_ISREG(st.st_mode) && strncmp(key, prefix, strlen(prefix)) == 0) {
        storage_entry entry = {key, st.st_size, st.st_mtime};
        fn(ctx, &entry);
      }
    }
    free(path);
    free(key);
  }
  closedir(d);
  return 1;
}

static int fs_list(void *self, const char *prefix, void (*fn)(void *, const storage_entry *), void *ctx,
                   storage_error *err) {
  fs_store *s = self;
  /* Start at the deepest directory the prefix names, then filter. */
  char *rel = strdup(prefix), *slash = strrchr(rel, '/'), *dir;
  int ok;
  if (slash) *slash = '\0'; else rel[0] = '\0';
  if (rel[0] && !storage_check_key(rel, err)) {
    free(rel);
    return 0;
  }
  dir = rel[0] ? join(s->root, rel) : strdup(s->root);
  ok = walk(dir, rel, prefix, fn, ctx, err);
  free(dir);
  free(rel);
  return ok;
}

static int fs_remove(void *self, const char *key, storage_error *err) {
  fs_store *s = self;
  char *path;
  int ok = 1;
  if (!storage_check_key(key, err)) return 0;
  path = join(s->root, key);
  if (unlink(path) != 0) ok = fail_errno(err, "cannot delete", path);
  else sync_parent(path);
  free(path);
  return ok;
}

static storage_writer *fs_open_writer(void *self, const char *key, storage_error *err) {
  fs_store *s = self;
  storage_writer *w;
  size_t n;
  if (!storage_check_key(key, err)) return NULL;
  w = calloc(1, sizeof *w);
  w->path = join(s->root, key);
  if (!make_parents(w->path, err)) {
    free(w->path);
    free(w);
    return NULL;
  }
  n = strlen(w->path) + 48;
  w->tmp = malloc(n);
  snprintf(w->tmp, n, "%s" TMP_MARK "%ld-%lu", w->path, (long)getpid(), ++s->counter);
  w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (w->fd < 0) {
    fail_errno(err, "cannot create", w->tmp);
    free(w->tmp);
    free(w->path);
    free(w);
    return NULL;
  }
  return w;
}

static int fs_write(storage_writer *w, const void *data, size_t len, storage_error *err) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(w->fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(err, "cannot write", w->path);
    }
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

static void free_writer(storage_writer *w) {
  free(w->tmp);
  free(w->path);
  free(w);
}

static void fs_abort(storage_writer *w) {
  if (w->fd >= 0) close(w->fd);
  unlink(w->tmp);
  free_writer(w);
}

static int fs_commit(storage_writer *w, storage_error *err) {
  int ok = 1;
  if (fsync(w->fd) != 0) ok = fail_errno(err, "cannot sync", w->path);
  if (close(w->fd) != 0 && ok) ok = fail_errno(err, "cannot close", w->path);
  w->fd = -1;
  if (ok && rename(w->tmp, w->path) != 0) ok = fail_errno(err, "cannot publish", w->path);
  if (ok && sync_parent(w->path) != 0) ok = fail_errno(err, "cannot sync the directory of", w->path);
  if (!ok) unlink(w->tmp);
  free_writer(w);
  return ok;
}

static storage_reader *fs_open_reader(void *self, const char *key, int64_t offset, int64_t length,
                                      storage_error *err) {
  fs_store *s = self;
  storage_reader *r;
  char *path;
  int fd;
  if (!storage_check_key(key, err)) return NULL;
  path = join(s->root, key);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail_errno(err, "cannot open", path);
    free(path);
    return NULL;
  }
  if (offset > 0 && lseek(fd, offset, SEEK_SET) < 0) {
    fail_errno(err, "cannot seek in", path);
    close(fd);
    free(path);
    return NULL;
  }
  free(path);
  r = calloc(1, sizeof *r);
  r->fd = fd;
  r->remaining = length;
  return r;
}

static int64_t fs_read(storage_reader *r, void *buf, size_t len, storage_error *err) {
  ssize_t n;
  if (r->remaining == 0) return 0;
  if (r->remaining > 0 && (int64_t)len > r->remaining) len = (size_t)r->remaining;
  do n = read(r->fd, buf, len); while (n < 0 && errno == EINTR);
  if (n < 0) {
    fail_errno(err, "cannot read", "object");
    return -1;
  }
  if (r->remaining > 0) r->remaining -= n;
  return n;
}

static void fs_close_reader(storage_reader *r) {
  close(r->fd);
  free(r);
}

const storage_backend storage_fs_backend = {
  "filesystem", fs_destroy, fs_stat, fs_list, fs_remove,
  fs_open_writer, fs_write, fs_commit, fs_abort,
  fs_open_reader, fs_read, fs_close_reader,
};
