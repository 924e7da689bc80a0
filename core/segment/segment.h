/* The kalua segment format, version 1. All integers little-endian.
 *
 *   file    = header block* index trailer
 *   header  = "KSEG" u16 version(1) u8 codec(0 none, 1 zstd) u8 0 u64 0          16 bytes
 *   block   = u32 payload_len u32 raw_len u32 record_count u32 crc32c(payload)
 *             i64 first_offset payload                                         24 + payload
 *   payload = the records, zstd-compressed as one frame when codec is 1
 *   record  = i64 offset i64 timestamp i8 timestamp_type(0 none, 1 create, 2 log_append)
 *             i32 key_len key i32 value_len value u32 header_count
 *             (u32 name_len name i32 value_len value)*       (length -1 = null)
 *   index   = per block: i64 position i64 first_offset i64 last_offset
 *             i64 first_timestamp i64 max_timestamp u32 record_count u32 0     48 bytes each
 *   trailer = u64 index_position u32 block_count u32 crc32c(index) "KEND" u32 0  24 bytes
 *
 * A reader starts from the trailer, so it can seek to an offset or a time
 * by reading the index and one block, without reading the whole file. */
#ifndef KALUA_SEGMENT_H
#define KALUA_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define SEGMENT_MAGIC "KSEG"
#define SEGMENT_END_MAGIC "KEND"
#define SEGMENT_VERSION 1
#define SEGMENT_HEADER_SIZE 16
#define SEGMENT_BLOCK_HEADER_SIZE 24
#define SEGMENT_INDEX_ENTRY_SIZE 48
#define SEGMENT_TRAILER_SIZE 24
#define SEGMENT_CODEC_NONE 0
#define SEGMENT_CODEC_ZSTD 1
#define SEGMENT_MAX_BLOCK_RAW (256u << 20) /* refuse blocks that claim more */

#define SEGMENT_WRITER_MT "kalua.segment.Writer"
#define SEGMENT_READER_MT "kalua.segment.Reader"

typedef struct {
  int64_t position, first_offset, last_offset, first_timestamp, max_timestamp;
  uint32_t records;
} segment_index_entry;

/* A growable byte buffer. */
typedef struct {
  unsigned char *data;
  size_t len, cap;
} seg_buf;

int seg_buf_reserve(seg_buf *b, size_t more);
void seg_buf_free(seg_buf *b);
void put_u32(unsigned char *p, uint32_t v);
void put_i64(unsigned char *p, int64_t v);
uint32_t get_u32(const unsigned char *p);
int64_t get_i64(const unsigned char *p);

/* One decoded record, pointing into the block's bytes. */
typedef struct {
  int64_t offset, timestamp;
  int timestamp_type;
  const unsigned char *key, *value; /* NULL: null */
  int32_t key_len, value_len;
  uint32_t header_count;
  const unsigned char *headers; /* header_count encoded headers */
  size_t headers_len;
} segment_record;

/* Decodes the record at *pos in [data, data+len); advances *pos.
 * Returns 0 when the bytes do not hold a whole, well-formed record. */
int segment_decode_record(const unsigned char *data, size_t len, size_t *pos, segment_record *r);

/* Iterates the encoded headers of r; returns 0 at the end or on bad bytes. */
int segment_next_header(const unsigned char **p, const unsigned char *end, const unsigned char **name,
                        uint32_t *name_len, const unsigned char **value, int32_t *value_len);

void segment_open_writer(lua_State *L);
void segment_open_reader(lua_State *L);

#endif
