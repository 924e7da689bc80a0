/* Byte-level pieces of the segment format: buffers, integers, records. */
#include <stdlib.h>
#include <string.h>

#include "segment/segment.h"

int seg_buf_reserve(seg_buf *b, size_t more) {
  size_t cap;
  unsigned char *p;
  if (b->len + more <= b->cap) return 1;
  cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  p = realloc(b->data, cap);
  if (!p) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

void seg_buf_free(seg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

void put_i64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int64_t get_i64(const unsigned char *p) {
  uint64_t u = 0;
  int i;
  for (i = 7; i >= 0; i--) u = u << 8 | p[i];
  return (int64_t)u;
}

/* A length-prefixed byte string (length -1 is null); 0 if out of bounds. */
static int take_bytes(const unsigned char *data, size_t len, size_t *pos, const unsigned char **out, int32_t *n) {
  int32_t l;
  if (len - *pos < 4) return 0;
  l = (int32_t)get_u32(data + *pos);
  *pos += 4;
  if (l == -1) {
    *out = NULL;
    *n = -1;
    return 1;
  }
  if (l < 0 || (size_t)l > len - *pos) return 0;
  *out = data + *pos;
  *n = l;
  *pos += (size_t)l;
  return 1;
}

int segment_decode_record(const unsigned char *data, size_t len, size_t *pos, segment_record *r) {
  uint32_t i;
  size_t start;
  if (*pos > len || len - *pos < 17) return 0;
  r->offset = get_i64(data + *pos);
  r->timestamp = get_i64(data + *pos + 8);
  r->timestamp_type = data[*pos + 16];
  if (r->timestamp_type > 2) return 0;
  *pos += 17;
  if (!take_bytes(data, len, pos, &r->key, &r->key_len)) return 0;
  if (!take_bytes(data, len, pos, &r->value, &r->value_len)) return 0;
  if (len - *pos < 4) return 0;
  r->header_count = get_u32(data + *pos);
  *pos += 4;
  start = *pos;
  for (i = 0; i < r->header_count; i++) {
    const unsigned char *p;
    int32_t n;
    if (!take_bytes(data, len, pos, &p, &n) || n < 0) return 0; /* names are never null */
    if (!take_bytes(data, len, pos, &p, &n)) return 0;
  }
  r->headers = data + start;
  r->headers_len = *pos - start;
  return 1;
}

int segment_next_header(const unsigned char **p, const unsigned char *end, const unsigned char **name,
                        uint32_t *name_len, const unsigned char **value, int32_t *value_len) {
  size_t pos = 0, len = (size_t)(end - *p);
  int32_t n;
  if (!take_bytes(*p, len, &pos, name, &n) || n < 0) return 0;
  *name_len = (uint32_t)n;
  if (!take_bytes(*p, len, &pos, value, value_len)) return 0;
  *p += pos;
  return 1;
}
