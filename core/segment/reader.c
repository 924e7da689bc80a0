/* kalua.segment.Reader: a segment in a kalua.storage Store, read from its
 * trailer and index so one block is fetched at a time.
 *
 *   local r = assert(segment.open(store, key))
 *   r:info()                    -- records, blocks, offsets, times, codec, bytes
 *   r:index()                   -- one entry per block
 *   r:find_offset(o), r:find_time(ms)   -- the block to start from
 *   for rec in r:records([from_offset]) do ... end
 *   r:verify([deep])            -- every CRC; deep also decodes every record
 *
 * Damage is reported as nil, "<key>: block N at byte P: <what>", "CORRUPT". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "common/crc32c.h"
#include "kafka/kafka_internal.h"
#include "kalua_util.h"
#include "segment/segment.h"
#include "storage/storage.h"

typedef struct {
  store_ud *store; /* kept alive through uservalue 1 */
  char *key;
  int64_t size, index_position;
  int codec;
  uint32_t blocks;
  segment_index_entry *index;
  int64_t records;
} seg_reader;

static int corrupt(lua_State *L, seg_reader *r, long block, int64_t at, const char *what) {
  if (block > 0)
    lua_pushfstring(L, "%s: block %d at byte %I: %s", r->key, (int)block, (lua_Integer)at, what);
  else
    lua_pushfstring(L, "%s: %s", r->key, what);
  return kalua_fail(L, lua_tostring(L, -1), "CORRUPT");
}

/* Reads [offset, offset+len) of key into out; 0 with nil, msg, name pushed. */
static int read_range(lua_State *L, store_ud *s, const char *key, int64_t offset, int64_t len, seg_buf *out) {
  storage_error err = {"", NULL};
  storage_reader *rd = s->backend->open_reader(s->self, key, offset, len, &err);
  int64_t n = 0;
  out->len = 0;
  if (!rd) {
    kalua_fail(L, err.message, err.name);
    return 0;
  }
  if (!seg_buf_reserve(out, (size_t)len)) {
    s->backend->close_reader(rd);
    return luaL_error(L, "out of memory reading %s", key);
  }
  while (out->len < (size_t)len && (n = s->backend->read(rd, out->data + out->len, (size_t)len - out->len, &err)) > 0)
    out->len += (size_t)n;
  s->backend->close_reader(rd);
  if (n < 0) {
    kalua_fail(L, err.message, err.name);
    return 0;
  }
  return 1;
}

static seg_reader *check_reader(lua_State *L) {
  seg_reader *r = luaL_checkudata(L, 1, SEGMENT_READER_MT);
  if (r->key == NULL) luaL_error(L, "segment reader is closed");
  return r;
}

static int reader_close(lua_State *L) {
  seg_reader *r = luaL_checkudata(L, 1, SEGMENT_READER_MT);
  free(r->key);
  free(r->index);
  r->key = NULL;
  r->index = NULL;
  return 0;
}

/* Checks header, trailer and index. Returns 1, or 3 (nil, msg, name pushed). */
static int load_layout(lua_State *L, seg_reader *r) {
  seg_buf b = {0};
  storage_entry st;
  storage_error err = {"", NULL};
  uint32_t i;
  int64_t index_len, prev_end = SEGMENT_HEADER_SIZE;
  if (!r->store->backend->stat(r->store->self, r->key, &st, &err)) return kalua_fail(L, err.message, err.name);
  r->size = st.size;
  if (r->size < SEGMENT_HEADER_SIZE + SEGMENT_TRAILER_SIZE) return corrupt(L, r, 0, 0, "too short to be a segment (truncated?)");
  if (!read_range(L, r->store, r->key, 0, SEGMENT_HEADER_SIZE, &b)) goto fail;
  if (b.len != SEGMENT_HEADER_SIZE || memcmp(b.data, SEGMENT_MAGIC, 4) != 0) {
    seg_buf_free(&b);
    return corrupt(L, r, 0, 0, "not a kalua segment (bad magic)");
  }
  if (b.data[4] != SEGMENT_VERSION || b.data[5] != 0 || b.data[6] > SEGMENT_CODEC_ZSTD) {
    seg_buf_free(&b);
    return corrupt(L, r, 0, 0, "unsupported segment version or codec");
  }
  r->codec = b.data[6];
  if (!read_range(L, r->store, r->key, r->size - SEGMENT_TRAILER_SIZE, SEGMENT_TRAILER_SIZE, &b)) goto fail;
  if (b.len != SEGMENT_TRAILER_SIZE || memcmp(b.data + 16, SEGMENT_END_MAGIC, 4) != 0) {
    seg_buf_free(&b);
    return corrupt(L, r, 0, 0, "no trailer: the segment is truncated");
  }
  r->index_position = get_i64(b.data);
  r->blocks = get_u32(b.data + 8);
  index_len = (int64_t)r->blocks * SEGMENT_INDEX_ENTRY_SIZE;
  if (r->index_position < SEGMENT_HEADER_SIZE || r->index_position + index_len != r->size - SEGMENT_TRAILER_SIZE) {
    seg_buf_free(&b);
    return corrupt(L, r, 0, 0, "trailer does not match the file size");
  }
  {
    uint32_t want = get_u32(b.data + 12);
    if (!read_range(L, r->store, r->key, r->index_position, index_len, &b)) goto fail;
    if ((int64_t)b.len != index_len || codec_crc32c(0, b.data, b.len) != want) {
      seg_buf_free(&b);
      return corrupt(L, r, 0, 0, "index checksum mismatch");
    }
  }
  r->index = calloc(r->blocks ? r->blocks : 1, sizeof *r->index);
  for (i = 0; i < r->blocks; i++) {
    const unsigned char *e = b.data + (size_t)i * SEGMENT_INDEX_ENTRY_SIZE;
    segment_index_entry *x = &r->index[i];
    x->position = get_i64(e);
    x->first_offset = get_i64(e + 8);
    x->last_offset = get_i64(e + 16);
    x->first_timestamp = get_i64(e + 24);
    x->max_timestamp = get_i64(e + 32);
    x->records = get_u32(e + 40);
    /* Blocks start right after the header and follow each other; their
     * lengths are checked when a block is read. */
    if ((i == 0 && x->position != prev_end) || (i > 0 && x->position <= r->index[i - 1].position) ||
        x->position + SEGMENT_BLOCK_HEADER_SIZE > r->index_position) {
      seg_buf_free(&b);
      return corrupt(L, r, (long)i + 1, x->position, "index points outside the blocks");
    }
    r->records += x->records;
  }
  seg_buf_free(&b);
  return 1;
fail:
  seg_buf_free(&b);
  return 3;
}

/* segment.open(store, key) */
static int segment_open(lua_State *L) {
  store_ud *s = luaL_checkudata(L, 1, STORE_MT);
  const char *key = luaL_checkstring(L, 2);
  seg_reader *r;
  int ud, n;
  if (s->self == NULL) return luaL_argerror(L, 1, "storage is closed");
  r = lua_newuserdatauv(L, sizeof *r, 1);
  memset(r, 0, sizeof *r);
  ud = lua_gettop(L);
  luaL_setmetatable(L, SEGMENT_READER_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, ud, 1);
  r->store = s;
  r->key = strdup(key);
  n = load_layout(L, r);
  if (n != 1) return n;
  lua_pushvalue(L, ud);
  return 1;
}

/* Reads, checks and decompresses block i (0-based) into raw. */
static int load_block(lua_State *L, seg_reader *r, uint32_t i, seg_buf *raw) {
  seg_buf b = {0};
  const segment_index_entry *x = &r->index[i];
  int64_t end = i + 1 < r->blocks ? r->index[i + 1].position : r->index_position;
  uint32_t payload_len, raw_len, count;
  if (!read_range(L, r->store, r->key, x->position, end - x->position, &b)) {
    seg_buf_free(&b);
    return 0;
  }
  if ((int64_t)b.len != end - x->position || b.len < SEGMENT_BLOCK_HEADER_SIZE) {
    seg_buf_free(&b);
    { corrupt(L, r, (long)i + 1, x->position, "block is truncated"); return 0; }
  }
  payload_len = get_u32(b.data);
  raw_len = get_u32(b.data + 4);
  count = get_u32(b.data + 8);
  if ((int64_t)payload_len + SEGMENT_BLOCK_HEADER_SIZE != end - x->position || raw_len > SEGMENT_MAX_BLOCK_RAW ||
      count != x->records || get_i64(b.data + 16) != x->first_offset) {
    seg_buf_free(&b);
    { corrupt(L, r, (long)i + 1, x->position, "block header does not match the index"); return 0; }
  }
  if (codec_crc32c(0, b.data + SEGMENT_BLOCK_HEADER_SIZE, payload_len) != get_u32(b.data + 12)) {
    seg_buf_free(&b);
    { corrupt(L, r, (long)i + 1, x->position, "checksum mismatch"); return 0; }
  }
  raw->len = 0;
  if (!seg_buf_reserve(raw, raw_len ? raw_len : 1)) {
    seg_buf_free(&b);
    return luaL_error(L, "out of memory for a segment block");
  }
  if (r->codec == SEGMENT_CODEC_ZSTD) {
    size_t n = ZSTD_decompress(raw->data, raw_len, b.data + SEGMENT_BLOCK_HEADER_SIZE, payload_len);
    if (ZSTD_isError(n) || n != raw_len) {
      seg_buf_free(&b);
      { corrupt(L, r, (long)i + 1, x->position, "block does not decompress to its recorded size"); return 0; }
    }
  } else {
    if (payload_len != raw_len) {
      seg_buf_free(&b);
      { corrupt(L, r, (long)i + 1, x->position, "stored and raw sizes differ"); return 0; }
    }
    memcpy(raw->data, b.data + SEGMENT_BLOCK_HEADER_SIZE, raw_len);
  }
  raw->len = raw_len;
  seg_buf_free(&b);
  return 1;
}

static void push_bytes(lua_State *L, const unsigned char *p, int32_t n) {
  if (p == NULL)
    lua_pushnil(L);
  else
    lua_pushlstring(L, (const char *)p, (size_t)n);
}

static void push_record(lua_State *L, const segment_record *rec) {
  static const char *const types[] = {NULL, "create", "log_append"};
  const unsigned char *p = rec->headers, *end = rec->headers + rec->headers_len;
  const unsigned char *name, *value;
  uint32_t name_len, i = 0;
  int32_t value_len;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, rec->offset);
  lua_setfield(L, -2, "offset");
  if (rec->timestamp_type) {
    lua_pushinteger(L, rec->timestamp);
    lua_setfield(L, -2, "timestamp");
    lua_pushstring(L, types[rec->timestamp_type]);
    lua_setfield(L, -2, "timestamp_type");
  }
  push_bytes(L, rec->key, rec->key_len);
  lua_setfield(L, -2, "key");
  push_bytes(L, rec->value, rec->value_len);
  lua_setfield(L, -2, "value");
  lua_createtable(L, (int)rec->header_count, 0);
  while (segment_next_header(&p, end, &name, &name_len, &value, &value_len)) {
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, (const char *)name, name_len);
    lua_rawseti(L, -2, 1);
    push_bytes(L, value, value_len);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "headers");
}

/* Decodes every record of a loaded block, checking count and offsets. */
static int check_block_records(lua_State *L, seg_reader *r, uint32_t i, const seg_buf *raw) {
  size_t pos = 0;
  uint32_t n = 0;
  int64_t prev = INT64_MIN;
  segment_record rec;
  while (pos < raw->len) {
    if (!segment_decode_record(raw->data, raw->len, &pos, &rec))
      { corrupt(L, r, (long)i + 1, r->index[i].position, "a record is malformed"); return 0; }
    if (rec.offset <= prev) { corrupt(L, r, (long)i + 1, r->index[i].position, "offsets go backwards"); return 0; }
    prev = rec.offset;
    n++;
  }
  if (n != r->index[i].records || (n && prev != r->index[i].last_offset))
    { corrupt(L, r, (long)i + 1, r->index[i].position, "records do not match the index"); return 0; }
  return 1;
}

/* r:verify([deep]) */
static int reader_verify(lua_State *L) {
  seg_reader *r = check_reader(L);
  int deep = lua_toboolean(L, 2);
  seg_buf raw = {0};
  uint32_t i;
  for (i = 0; i < r->blocks; i++) {
    if (!load_block(L, r, i, &raw) || (deep && !check_block_records(L, r, i, &raw))) {
      seg_buf_free(&raw);
      return 3;
    }
  }
  seg_buf_free(&raw);
  lua_pushboolean(L, 1);
  return 1;
}

/* Iterator state: a userdata holding the current block. */
typedef struct {
  seg_buf raw;
  size_t pos;
  uint32_t next_block;
  int64_t from;
} seg_cursor;

static int cursor_gc(lua_State *L) {
  seg_cursor *c = lua_touserdata(L, 1);
  seg_buf_free(&c->raw);
  return 0;
}

static int records_next(lua_State *L) {
  seg_reader *r = luaL_checkudata(L, lua_upvalueindex(1), SEGMENT_READER_MT);
  seg_cursor *c = lua_touserdata(L, lua_upvalueindex(2));
  segment_record rec;
  for (;;) {
    if (c->pos >= c->raw.len) {
      if (r->key == NULL || c->next_block >= r->blocks) return 0;
      /* A damaged block stops the loop loudly: raise its message. */
      if (!load_block(L, r, c->next_block, &c->raw) || !check_block_records(L, r, c->next_block, &c->raw)) {
        lua_pop(L, 1);
        return lua_error(L);
      }
      c->pos = 0;
      c->next_block++;
      continue;
    }
    if (!segment_decode_record(c->raw.data, c->raw.len, &c->pos, &rec)) return luaL_error(L, "%s: malformed record", r->key);
    if (rec.offset < c->from) continue;
    push_record(L, &rec);
    return 1;
  }
}

static uint32_t block_for_offset(const seg_reader *r, int64_t o) {
  uint32_t lo = 0, hi = r->blocks;
  while (lo < hi) { /* first block whose last offset >= o */
    uint32_t mid = lo + (hi - lo) / 2;
    if (r->index[mid].last_offset < o) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/* for rec in r:records([from_offset]) do ... end */
static int reader_records(lua_State *L) {
  seg_reader *r = check_reader(L);
  lua_Integer from = luaL_optinteger(L, 2, INT64_MIN);
  seg_cursor *c;
  lua_pushvalue(L, 1);
  c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->from = from;
  c->next_block = from == INT64_MIN ? 0 : block_for_offset(r, from);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, cursor_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, records_next, 2);
  return 1;
}

/* r:find_offset(o) -> 1-based block holding o (or the next one), or nil */
static int reader_find_offset(lua_State *L) {
  seg_reader *r = check_reader(L);
  uint32_t b = block_for_offset(r, luaL_checkinteger(L, 2));
  if (b >= r->blocks) return 0;
  lua_pushinteger(L, (lua_Integer)b + 1);
  return 1;
}

/* r:find_time(ms) -> 1-based first block holding a record at or after ms */
static int reader_find_time(lua_State *L) {
  seg_reader *r = check_reader(L);
  lua_Integer ts = luaL_checkinteger(L, 2);
  uint32_t i;
  for (i = 0; i < r->blocks; i++) {
    if (r->index[i].max_timestamp >= ts) {
      lua_pushinteger(L, (lua_Integer)i + 1);
      return 1;
    }
  }
  return 0;
}

static void push_index_entry(lua_State *L, const segment_index_entry *x) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, x->position);
  lua_setfield(L, -2, "position");
  lua_pushinteger(L, x->first_offset);
  lua_setfield(L, -2, "first_offset");
  lua_pushinteger(L, x->last_offset);
  lua_setfield(L, -2, "last_offset");
  lua_pushinteger(L, x->first_timestamp);
  lua_setfield(L, -2, "first_timestamp");
  lua_pushinteger(L, x->max_timestamp);
  lua_setfield(L, -2, "max_timestamp");
  lua_pushinteger(L, x->records);
  lua_setfield(L, -2, "records");
}

static int reader_index(lua_State *L) {
  seg_reader *r = check_reader(L);
  uint32_t i;
  lua_createtable(L, (int)r->blocks, 0);
  for (i = 0; i < r->blocks; i++) {
    push_index_entry(L, &r->index[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int reader_info(lua_State *L) {
  seg_reader *r = check_reader(L);
  uint32_t i;
  int64_t max_ts = INT64_MIN;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, r->records);
  lua_setfield(L, -2, "records");
  lua_pushinteger(L, r->blocks);
  lua_setfield(L, -2, "blocks");
  lua_pushinteger(L, r->size);
  lua_setfield(L, -2, "bytes");
  lua_pushstring(L, r->codec == SEGMENT_CODEC_ZSTD ? "zstd" : "none");
  lua_setfield(L, -2, "codec");
  if (r->blocks) {
    for (i = 0; i < r->blocks; i++)
      if (r->index[i].max_timestamp > max_ts) max_ts = r->index[i].max_timestamp;
    lua_pushinteger(L, r->index[0].first_offset);
    lua_setfield(L, -2, "first_offset");
    lua_pushinteger(L, r->index[r->blocks - 1].last_offset);
    lua_setfield(L, -2, "last_offset");
    lua_pushinteger(L, r->index[0].first_timestamp);
    lua_setfield(L, -2, "first_timestamp");
    lua_pushinteger(L, max_ts);
    lua_setfield(L, -2, "max_timestamp");
  }
  return 1;
}

/* What r:produce sends and how. */
typedef struct {
  const char *topic;
  int32_t partition;
  int64_t from, to;               /* offsets, inclusive */
  int64_t start_time, end_time;   /* ms, inclusive */
  int original_headers;           /* add kalua.original.offset/timestamp[/cluster] */
  const char *cluster;            /* the source cluster's id, or NULL */
  int timeout_ms;
  int64_t skip;                   /* in-window records already delivered by an earlier run */
  int64_t rate;                   /* records per second, 0 = unlimited */
  double rate_epoch;              /* when the rate's clock started (seconds) */
  int64_t rate_base;              /* records already sent on that clock */
} produce_opts;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps until sending one more record keeps the rate at or under o->rate,
 * serving delivery reports meanwhile. */
static void pace(kafka_client *c, const produce_opts *o, int64_t sent) {
  double due;
  if (o->rate <= 0) return;
  due = o->rate_epoch + (double)(o->rate_base + sent) / (double)o->rate;
  for (;;) {
    double wait = due - now_seconds();
    if (wait <= 0) return;
    rd_kafka_poll(c->rk, wait > 0.1 ? 100 : (int)(wait * 1000) + 1);
  }
}

/* Contiguous runs of source offsets sent, for offset translation:
 * { {source_first, count}, ... } appended to the table at index t. */
typedef struct {
  int t; /* stack index of the runs table, 0 = not asked */
  int64_t first, count;
} offset_runs;

static void runs_flush(lua_State *L, offset_runs *runs) {
  if (!runs->t || runs->count == 0) return;
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, runs->first);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, runs->count);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, runs->t, (lua_Integer)lua_rawlen(L, runs->t) + 1);
  runs->count = 0;
}

static void runs_add(lua_State *L, offset_runs *runs, int64_t offset) {
  if (!runs->t) return;
  if (runs->count && offset == runs->first + runs->count) {
    runs->count++;
    return;
  }
  runs_flush(L, runs);
  runs->first = offset;
  runs->count = 1;
}

static void add_original_headers(rd_kafka_headers_t *hdrs, const produce_opts *o, const segment_record *rec) {
  char num[32];
  snprintf(num, sizeof num, "%lld", (long long)rec->offset);
  rd_kafka_header_add(hdrs, "kalua.original.offset", -1, num, -1);
  snprintf(num, sizeof num, "%lld", (long long)rec->timestamp);
  rd_kafka_header_add(hdrs, "kalua.original.timestamp", -1, num, -1);
  if (o->cluster) rd_kafka_header_add(hdrs, "kalua.original.cluster", -1, o->cluster, -1);
}

/* Produces one record, waiting on a full queue. Returns the error. */
static rd_kafka_resp_err_t produce_record(kafka_client *c, const produce_opts *o, const segment_record *rec) {
  rd_kafka_headers_t *hdrs = NULL;
  const unsigned char *p = rec->headers, *end = rec->headers + rec->headers_len, *name, *value;
  uint32_t name_len;
  int32_t value_len;
  int waited = 0;
  rd_kafka_resp_err_t err;
  if (rec->header_count || o->original_headers) {
    hdrs = rd_kafka_headers_new(rec->header_count + 2);
    while (segment_next_header(&p, end, &name, &name_len, &value, &value_len))
      rd_kafka_header_add(hdrs, (const char *)name, (ssize_t)name_len, value, value ? value_len : 0);
    if (o->original_headers) add_original_headers(hdrs, o, rec);
  }
  for (;;) {
    err = rd_kafka_producev(c->rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(o->partition),
                            RD_KAFKA_V_KEY(rec->key, rec->key ? (size_t)rec->key_len : 0),
                            RD_KAFKA_V_VALUE((void *)rec->value, rec->value ? (size_t)rec->value_len : 0),
                            RD_KAFKA_V_TIMESTAMP(rec->timestamp_type ? rec->timestamp : 0),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || waited >= o->timeout_ms) break;
    rd_kafka_poll(c->rk, 100);
    waited += 100;
  }
  if (err && hdrs) rd_kafka_headers_destroy(hdrs);
  return err;
}

static int in_window(const produce_opts *o, const segment_record *rec) {
  return rec->offset >= o->from && rec->offset <= o->to &&
         (!rec->timestamp_type || (rec->timestamp >= o->start_time && rec->timestamp <= o->end_time));
}

/* r:produce(producer, {topic=, partition=, from_offset=, to_offset=,
 *   start_time=, end_time=, original_headers=, cluster=, skip=, rate=, rate_epoch=,
 *   rate_base=, offset_runs=}) -> records sent[, runs, skip left].
 * Records go from the segment's blocks straight into librdkafka: no Lua
 * table per record. A damaged block stops before any of its records.
 * skip passes over the first in-window records (a resumed restore whose
 * earlier run delivered them); rate caps records per second, measured from
 * rate_epoch (kalua.clock.now(): the same CLOCK_MONOTONIC) with rate_base records already sent,
 * so one budget spans many calls; offset_runs also returns the source
 * offsets delivered (skipped ones included) as { {first, count}, ... }
 * and how much of skip this segment did not use up. */
static int reader_produce(lua_State *L) {
  seg_reader *r = check_reader(L);
  kafka_client *c = luaL_checkudata(L, 2, KAFKA_PRODUCER_MT);
  produce_opts o;
  seg_buf raw = {0};
  lua_Integer sent = 0;
  offset_runs runs = {0, 0, 0};
  uint32_t i;
  if (c->rk == NULL) return luaL_error(L, "producer is closed");
  luaL_checktype(L, 3, LUA_TTABLE);
  if (lua_getfield(L, 3, "topic") != LUA_TSTRING) return luaL_error(L, "produce needs a target 'topic'");
  o.topic = lua_tostring(L, -1);
  o.partition = (int32_t)kalua_optfield_int(L, 3, "partition", RD_KAFKA_PARTITION_UA);
  o.from = kalua_optfield_int(L, 3, "from_offset", INT64_MIN);
  o.to = kalua_optfield_int(L, 3, "to_offset", INT64_MAX);
  o.start_time = kalua_optfield_int(L, 3, "start_time", INT64_MIN);
  o.end_time = kalua_optfield_int(L, 3, "end_time", INT64_MAX);
  lua_getfield(L, 3, "original_headers");
  o.original_headers = lua_toboolean(L, -1);
  o.cluster = lua_getfield(L, 3, "cluster") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  o.timeout_ms = c->timeout_ms;
  o.skip = kalua_optfield_int(L, 3, "skip", 0);
  o.rate = kalua_optfield_int(L, 3, "rate", 0);
  o.rate_base = kalua_optfield_int(L, 3, "rate_base", 0);
  lua_getfield(L, 3, "rate_epoch");
  o.rate_epoch = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : now_seconds();
  if (lua_getfield(L, 3, "offset_runs") != LUA_TNIL && lua_toboolean(L, -1)) {
    lua_newtable(L);
    runs.t = lua_gettop(L);
  }
  for (i = o.from == INT64_MIN ? 0 : block_for_offset(r, o.from); i < r->blocks; i++) {
    size_t pos = 0;
    segment_record rec;
    if (r->index[i].first_offset > o.to) break;
    if (r->index[i].max_timestamp < o.start_time) continue;
    if (!load_block(L, r, i, &raw) || !check_block_records(L, r, i, &raw)) {
      seg_buf_free(&raw);
      return 3;
    }
    while (segment_decode_record(raw.data, raw.len, &pos, &rec)) {
      rd_kafka_resp_err_t err;
      if (!in_window(&o, &rec)) continue;
      if (o.skip > 0) { /* delivered before, so still part of the offset runs */
        runs_add(L, &runs, rec.offset);
        o.skip--;
        continue;
      }
      pace(c, &o, sent);
      err = produce_record(c, &o, &rec);
      if (err) {
        seg_buf_free(&raw);
        lua_pushfstring(L, "%s: %s", o.topic, rd_kafka_err2str(err));
        return kalua_fail(L, lua_tostring(L, -1), rd_kafka_err2name(err));
      }
      runs_add(L, &runs, rec.offset);
      sent++;
    }
    rd_kafka_poll(c->rk, 0);
  }
  seg_buf_free(&raw);
  lua_pushinteger(L, sent);
  if (!runs.t) return 1;
  runs_flush(L, &runs);
  lua_pushvalue(L, runs.t);
  lua_pushinteger(L, o.skip);
  return 3;
}


static const luaL_Reg reader_methods[] = {
  {"produce", reader_produce},
  {"info", reader_info},
  {"index", reader_index},
  {"records", reader_records},
  {"find_offset", reader_find_offset},
  {"find_time", reader_find_time},
  {"verify", reader_verify},
  {NULL, NULL}
};

void segment_open_reader(lua_State *L) {
  kalua_newtype(L, SEGMENT_READER_MT, reader_methods, reader_close, NULL);
  lua_pushcfunction(L, segment_open);
  lua_setfield(L, -2, "open");
}
