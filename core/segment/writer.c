/* kalua.segment.Writer: records in, blocks out to a kalua.storage Writer.
 *
 *   local w = segment.writer(store:open_writer(key), {codec="zstd", level=3, block_bytes=1<<20})
 *   w:add_batch(batch)          -- a kalua.kafka Batch, no Lua table per record
 *   w:add{offset=, timestamp=, timestamp_type=, key=, value=, headers=}
 *   local stats = w:finish()    -- index + trailer, then the storage write is committed
 *
 * Until finish() succeeds nothing is published: closing or collecting an
 * unfinished writer aborts the storage write.
 *
 * A full block is compressed and written by a worker thread while the next
 * one fills, so zstd runs beside the Kafka reads instead of after them (on
 * a 1 GiB backup it was most of the time). One block is in flight at most;
 * the Lua state is never touched off the main thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/crc32c.h"
#include "kafka/kafka_internal.h"
#include "kalua_util.h"
#include "segment/segment.h"
#include "storage/storage.h"

/* A block on its way out: compressed and written off the main thread. */
typedef struct {
  seg_buf raw, out;
  ZSTD_CCtx *cctx;
  int codec, level;
  uint32_t records;
  int64_t first_offset;
  storage_writer *sink;
  const storage_backend *backend;
  pthread_t thread;
  int pending; /* handed out and not yet collected by finish_job */
  int running; /* on its own thread, to be joined */
  int64_t written; /* bytes it wrote: header and payload */
  int failed;
  char message[STORAGE_ERR_MAX];
  const char *name;
} block_job;

typedef struct {
  /* The storage write, taken over from its userdata so that nothing in Lua
   * can commit or abort it under a block in flight. */
  storage_writer *dest;
  const storage_backend *backend;
  int codec, level;
  size_t block_bytes;
  seg_buf block, index;
  ZSTD_CCtx *cctx;
  int64_t position;
  uint32_t block_records, blocks;
  int64_t block_first_offset, block_last_offset, block_first_ts, block_max_ts;
  int64_t records, first_offset, last_offset, first_ts, max_ts, raw_bytes;
  block_job job;
  int done; /* finished or aborted */
} seg_writer;

static seg_writer *check_open(lua_State *L) {
  seg_writer *w = luaL_checkudata(L, 1, SEGMENT_WRITER_MT);
  if (w->done) luaL_error(L, "segment writer is finished or aborted");
  return w;
}

static void join_job(block_job *job) {
  if (job->running) pthread_join(job->thread, NULL);
  job->running = 0;
}

static void release(seg_writer *w) {
  join_job(&w->job);
  seg_buf_free(&w->job.raw);
  seg_buf_free(&w->job.out);
  seg_buf_free(&w->block);
  seg_buf_free(&w->index);
  if (w->cctx) ZSTD_freeCCtx(w->cctx);
  w->cctx = NULL;
}

static void abort_writer(seg_writer *w) {
  join_job(&w->job); /* it may be writing to the sink */
  if (w->dest) { /* also a writer that failed while being set up */
    w->backend->abort(w->dest);
    w->dest = NULL;
  }
  w->done = 1;
  release(w);
}

static int sink_write(lua_State *L, seg_writer *w, const void *p, size_t n) {
  storage_error err = {"", NULL};
  if (!w->backend->write(w->dest, p, n, &err)) {
    abort_writer(w);
    kalua_fail(L, err.message, err.name);
    return 0;
  }
  w->position += (int64_t)n;
  return 1;
}

static void *run_job(void *arg) {
  block_job *job = arg;
  unsigned char hdr[SEGMENT_BLOCK_HEADER_SIZE];
  const unsigned char *payload = job->raw.data;
  size_t payload_len = job->raw.len;
  storage_error err = {"", NULL};
  if (job->codec == SEGMENT_CODEC_ZSTD) {
    size_t bound = ZSTD_compressBound(job->raw.len), n;
    if (!seg_buf_reserve(&job->out, bound)) {
      snprintf(job->message, sizeof job->message, "out of memory for a segment block");
      job->failed = 1;
      return NULL;
    }
    n = ZSTD_compressCCtx(job->cctx, job->out.data, bound, job->raw.data, job->raw.len, job->level);
    if (ZSTD_isError(n)) {
      snprintf(job->message, sizeof job->message, "zstd: %s", ZSTD_getErrorName(n));
      job->failed = 1;
      return NULL;
    }
    payload = job->out.data;
    payload_len = n;
  }
  put_u32(hdr, (uint32_t)payload_len);
  put_u32(hdr + 4, (uint32_t)job->raw.len);
  put_u32(hdr + 8, job->records);
  put_u32(hdr + 12, codec_crc32c(0, payload, payload_len));
  put_i64(hdr + 16, job->first_offset);
  if (!job->backend->write(job->sink, hdr, sizeof hdr, &err) ||
      !job->backend->write(job->sink, payload, payload_len, &err)) {
    memcpy(job->message, err.message, sizeof job->message);
    job->name = err.name;
    job->failed = 1;
    return NULL;
  }
  job->written = (int64_t)(sizeof hdr + payload_len);
  return NULL;
}

/* Waits for the block in flight; its bytes now count. On failure the
 * writer is aborted and nil, message, name pushed: returns 0. */
static int finish_job(lua_State *L, seg_writer *w) {
  block_job *job = &w->job;
  if (!job->pending) return 1;
  join_job(job);
  job->pending = 0;
  if (job->failed) {
    char message[STORAGE_ERR_MAX];
    const char *name = job->name;
    memcpy(message, job->message, sizeof message);
    abort_writer(w);
    kalua_fail(L, message, name);
    return 0;
  }
  w->position += job->written;
  return 1;
}

/* Indexes the pending block and hands it to a worker thread to compress
 * and write, after the one before it is done. */
static int flush_block(lua_State *L, seg_writer *w) {
  unsigned char *e;
  block_job *job = &w->job;
  seg_buf swap;
  if (w->block_records == 0) return 1;
  if (!finish_job(L, w)) return 0;
  if (!seg_buf_reserve(&w->index, SEGMENT_INDEX_ENTRY_SIZE)) return luaL_error(L, "out of memory for the index");
  e = w->index.data + w->index.len;
  put_i64(e, w->position);
  put_i64(e + 8, w->block_first_offset);
  put_i64(e + 16, w->block_last_offset);
  put_i64(e + 24, w->block_first_ts);
  put_i64(e + 32, w->block_max_ts);
  put_u32(e + 40, w->block_records);
  put_u32(e + 44, 0);
  w->index.len += SEGMENT_INDEX_ENTRY_SIZE;
  w->blocks++;
  swap = job->raw; /* the two raw buffers take turns */
  job->raw = w->block;
  w->block = swap;
  w->block.len = 0;
  job->records = w->block_records;
  job->first_offset = w->block_first_offset;
  job->codec = w->codec;
  job->level = w->level;
  job->cctx = w->cctx;
  job->sink = w->dest;
  job->backend = w->backend;
  job->failed = 0;
  job->written = 0;
  w->block_records = 0;
  job->pending = 1;
  if (pthread_create(&job->thread, NULL, run_job, job) == 0)
    job->running = 1;
  else
    run_job(job); /* no thread to be had: do the work here */
  return 1;
}

static int append_bytes(seg_buf *b, const void *p, int64_t len) {
  /* len -1 is null */
  if (!seg_buf_reserve(b, 4 + (len > 0 ? (size_t)len : 0))) return 0;
  put_u32(b->data + b->len, (uint32_t)(int32_t)len);
  b->len += 4;
  if (len > 0) {
    memcpy(b->data + b->len, p, (size_t)len);
    b->len += (size_t)len;
  }
  return 1;
}

/* Starts a record in the block; headers follow with append_header. */
static int begin_record(lua_State *L, seg_writer *w, int64_t offset, int64_t ts, int tstype,
                        const void *key, int64_t klen, const void *value, int64_t vlen, uint32_t nheaders) {
  seg_buf *b = &w->block;
  if (!seg_buf_reserve(b, 17)) return luaL_error(L, "out of memory for a segment block");
  put_i64(b->data + b->len, offset);
  put_i64(b->data + b->len + 8, ts);
  b->data[b->len + 16] = (unsigned char)tstype;
  b->len += 17;
  if (!append_bytes(b, key, key ? klen : -1) || !append_bytes(b, value, value ? vlen : -1) ||
      !seg_buf_reserve(b, 4))
    return luaL_error(L, "out of memory for a segment block");
  put_u32(b->data + b->len, nheaders);
  b->len += 4;
  if (w->block_records == 0) {
    w->block_first_offset = offset;
    w->block_first_ts = ts;
    w->block_max_ts = ts;
  }
  if (w->records == 0) {
    w->first_offset = offset;
    w->first_ts = ts;
    w->max_ts = ts;
  }
  if (ts > w->block_max_ts) w->block_max_ts = ts;
  if (ts > w->max_ts) w->max_ts = ts;
  w->block_last_offset = offset;
  w->last_offset = offset;
  w->block_records++;
  w->records++;
  w->raw_bytes += (key ? klen : 0) + (value ? vlen : 0);
  return 1;
}

static int append_header(lua_State *L, seg_writer *w, const void *name, size_t nlen, const void *value, int64_t vlen) {
  if (!append_bytes(&w->block, name, (int64_t)nlen) || !append_bytes(&w->block, value, value ? vlen : -1))
    return luaL_error(L, "out of memory for a segment block");
  return 1;
}

static int end_record(lua_State *L, seg_writer *w) {
  return w->block.len >= w->block_bytes ? flush_block(L, w) : 1;
}

/* segment.writer(storage_writer [, {codec=, level=, block_bytes=}]) */
static int segment_writer_new(lua_State *L) {
  writer_ud *sink = luaL_checkudata(L, 1, WRITER_MT);
  seg_writer *w;
  unsigned char hdr[SEGMENT_HEADER_SIZE] = {0};
  const char *codec = "zstd";
  int ud;
  if (sink->w == NULL) return luaL_argerror(L, 1, "storage writer is committed or closed");
  w = lua_newuserdatauv(L, sizeof *w, 1);
  ud = lua_gettop(L);
  memset(w, 0, sizeof *w);
  w->done = 1; /* nothing to abort until set up */
  luaL_setmetatable(L, SEGMENT_WRITER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  w->dest = sink->w;
  w->backend = sink->backend;
  sink->w = NULL;
  w->level = 3;
  w->block_bytes = 1 << 20;
  if (lua_istable(L, 2)) {
    if (lua_getfield(L, 2, "codec") == LUA_TSTRING) codec = lua_tostring(L, -1);
    lua_pop(L, 1);
    w->level = (int)kalua_optfield_int(L, 2, "level", 3);
    w->block_bytes = (size_t)kalua_optfield_int(L, 2, "block_bytes", 1 << 20);
  }
  if (strcmp(codec, "zstd") == 0)
    w->codec = SEGMENT_CODEC_ZSTD;
  else if (strcmp(codec, "none") == 0)
    w->codec = SEGMENT_CODEC_NONE;
  else
    return luaL_error(L, "unknown segment codec '%s' (none or zstd)", codec);
  if (w->level < ZSTD_minCLevel() || w->level > ZSTD_maxCLevel()) return luaL_error(L, "bad zstd level %d", w->level);
  if (w->block_bytes < 1024 || w->block_bytes > SEGMENT_MAX_BLOCK_RAW / 2)
    return luaL_error(L, "block_bytes must be within 1 KiB .. 128 MiB");
  if (w->codec == SEGMENT_CODEC_ZSTD && (w->cctx = ZSTD_createCCtx()) == NULL) return luaL_error(L, "zstd: out of memory");
  w->done = 0;
  memcpy(hdr, SEGMENT_MAGIC, 4);
  hdr[4] = SEGMENT_VERSION;
  hdr[6] = (unsigned char)w->codec;
  if (!sink_write(L, w, hdr, sizeof hdr)) return 3;
  lua_pushvalue(L, ud);
  return 1;
}

static int timestamp_type_code(const char *s) {
  if (s == NULL) return 0;
  if (strcmp(s, "create") == 0) return 1;
  if (strcmp(s, "log_append") == 0) return 2;
  return 0;
}

/* w:add{offset=, timestamp=, timestamp_type=, key=, value=, headers={{name, value}...}} */
static int segment_writer_add(lua_State *L) {
  seg_writer *w = check_open(L);
  size_t klen = 0, vlen = 0;
  const char *key, *value;
  lua_Integer offset, ts, i, n = 0;
  int tstype;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_getfield(L, 2, "offset") != LUA_TNUMBER) return luaL_error(L, "record needs an integer offset");
  offset = lua_tointeger(L, -1);
  ts = kalua_optfield_int(L, 2, "timestamp", -1);
  lua_getfield(L, 2, "timestamp_type");
  tstype = timestamp_type_code(lua_tostring(L, -1));
  lua_getfield(L, 2, "key");
  key = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &klen);
  lua_getfield(L, 2, "value");
  value = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &vlen);
  if (lua_getfield(L, 2, "headers") == LUA_TTABLE) n = luaL_len(L, -1);
  for (i = 1; i <= n; i++) { /* check before writing anything */
    if (lua_rawgeti(L, -1, i) != LUA_TTABLE) return luaL_error(L, "header %d must be a {name, value} pair", (int)i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (!lua_isstring(L, -2) || !(lua_isnil(L, -1) || lua_isstring(L, -1)))
      return luaL_error(L, "header %d must be a {name, value} pair", (int)i);
    lua_pop(L, 3);
  }
  if (!begin_record(L, w, offset, ts, tstype, key, (int64_t)klen, value, (int64_t)vlen, (uint32_t)n)) return 3;
  for (i = 1; i <= n; i++) {
    size_t nl, hl = 0;
    const char *name, *hv;
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    name = lua_tolstring(L, -2, &nl);
    hv = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &hl);
    append_header(L, w, name, nl, hv, (int64_t)hl);
    lua_pop(L, 3);
  }
  if (!end_record(L, w)) return 3;
  lua_pushboolean(L, 1);
  return 1;
}

/* w:add_batch(batch [, before_offset]) -> number of records added. Records
 * at or past before_offset are left out (a snapshot's end). */
static int segment_writer_add_batch(lua_State *L) {
  seg_writer *w = check_open(L);
  kalua_batch *b = luaL_checkudata(L, 2, KAFKA_BATCH_MT);
  lua_Integer before = luaL_optinteger(L, 3, INT64_MAX);
  int i, added = 0;
  for (i = 0; i < b->n; i++) {
    const rd_kafka_message_t *m = b->msgs[i];
    rd_kafka_headers_t *hdrs = NULL;
    if (m->offset >= before) break;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    size_t count = 0, j;
    const char *name;
    const void *hv;
    size_t hl;
    if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
      count = rd_kafka_header_cnt(hdrs);
    if (!begin_record(L, w, m->offset, ts, tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 1
                                           : tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 2 : 0,
                      m->key, (int64_t)m->key_len, m->payload, (int64_t)m->len, (uint32_t)count))
      return 3;
    for (j = 0; j < count && rd_kafka_header_get_all(hdrs, j, &name, &hv, &hl) == RD_KAFKA_RESP_ERR_NO_ERROR; j++)
      append_header(L, w, name, strlen(name), hv, (int64_t)hl);
    if (!end_record(L, w)) return 3;
    added++;
  }
  lua_pushinteger(L, added);
  return 1;
}

/* w:finish() -> stats; the segment is published under its key */
static int segment_writer_finish(lua_State *L) {
  seg_writer *w = check_open(L);
  unsigned char trailer[SEGMENT_TRAILER_SIZE] = {0};
  storage_error err = {"", NULL};
  int64_t index_position;
  storage_writer *inner;
  if (!flush_block(L, w) || !finish_job(L, w)) return 3;
  index_position = w->position;
  put_i64(trailer, index_position);
  put_u32(trailer + 8, w->blocks);
  put_u32(trailer + 12, codec_crc32c(0, w->index.data, w->index.len));
  memcpy(trailer + 16, SEGMENT_END_MAGIC, 4);
  if ((w->index.len && !sink_write(L, w, w->index.data, w->index.len)) || !sink_write(L, w, trailer, sizeof trailer))
    return 3;
  inner = w->dest;
  w->dest = NULL;
  w->done = 1;
  if (!w->backend->commit(inner, &err)) {
    release(w);
    return kalua_fail(L, err.message, err.name);
  }
  release(w);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, w->records);
  lua_setfield(L, -2, "records");
  lua_pushinteger(L, w->blocks);
  lua_setfield(L, -2, "blocks");
  lua_pushinteger(L, w->position);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, w->raw_bytes);
  lua_setfield(L, -2, "raw_bytes");
  if (w->records) {
    lua_pushinteger(L, w->first_offset);
    lua_setfield(L, -2, "first_offset");
    lua_pushinteger(L, w->last_offset);
    lua_setfield(L, -2, "last_offset");
    lua_pushinteger(L, w->first_ts);
    lua_setfield(L, -2, "first_timestamp");
    lua_pushinteger(L, w->max_ts);
    lua_setfield(L, -2, "max_timestamp");
  }
  return 1;
}

/* w:size() -> records so far, and bytes so far (written blocks plus the
 * open block's raw bytes): what segment_max_bytes is held against. */
static int segment_writer_size(lua_State *L) {
  seg_writer *w = check_open(L);
  lua_pushinteger(L, w->records);
  lua_pushinteger(L, w->position + (lua_Integer)w->block.len + (w->job.pending ? (lua_Integer)w->job.raw.len : 0));
  return 2;
}

static int segment_writer_abort(lua_State *L) {
  seg_writer *w = luaL_checkudata(L, 1, SEGMENT_WRITER_MT);
  abort_writer(w);
  return 0;
}

static const luaL_Reg writer_methods[] = {
  {"add", segment_writer_add},
  {"add_batch", segment_writer_add_batch},
  {"finish", segment_writer_finish},
  {"size", segment_writer_size},
  {"abort", segment_writer_abort},
  {NULL, NULL}
};

void segment_open_writer(lua_State *L) {
  kalua_newtype(L, SEGMENT_WRITER_MT, writer_methods, segment_writer_abort, NULL);
  lua_pushcfunction(L, segment_writer_new);
  lua_setfield(L, -2, "writer");
}
