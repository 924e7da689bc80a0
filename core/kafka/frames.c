/* See frames.h. */
#include "kafka/frames.h"

#include <string.h>

uint32_t frames_get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frames_put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

void frames_put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

void frames_feed(frame_reader *f, const unsigned char *p, size_t n, frame_fn fn, void *ud) {
  while (n > 0) {
    size_t k;
    if (f->head_want == 0 && f->left == 0) { /* reading the 4-byte size */
      k = 4 - f->head_len < n ? 4 - f->head_len : n;
      memcpy(f->head + f->head_len, p, k);
      f->head_len += k, p += k, n -= k;
      if (f->head_len == 4) {
        f->left = frames_get32(f->head);
        f->head_want = f->left < sizeof f->head ? f->left : sizeof f->head;
        f->head_len = 0;
      }
      continue;
    }
    k = f->left < n ? f->left : n;
    if (f->head_len < f->head_want) {
      size_t c = f->head_want - f->head_len < k ? f->head_want - f->head_len : k;
      memcpy(f->head + f->head_len, p, c);
      f->head_len += c;
    }
    f->left -= (uint32_t)k, p += k, n -= k;
    if (f->left == 0) {
      fn(ud, f->head, f->head_len);
      f->head_len = f->head_want = 0;
    }
  }
}

size_t frames_to_boundary(const frame_reader *f) {
  if (f->head_want == 0 && f->left == 0) return f->head_len == 0 ? 0 : 4 - f->head_len;
  return f->left;
}

const unsigned char *kr_take(kreader *rd, size_t n) {
  const unsigned char *p = rd->p;
  if (rd->bad || rd->n < n) {
    rd->bad = 1;
    return NULL;
  }
  rd->p += n;
  rd->n -= n;
  return p;
}

int16_t kr_int16(kreader *rd) {
  const unsigned char *p = kr_take(rd, 2);
  return p ? (int16_t)((uint16_t)p[0] << 8 | p[1]) : 0;
}

int32_t kr_int32(kreader *rd) {
  const unsigned char *p = kr_take(rd, 4);
  return p ? (int32_t)frames_get32(p) : 0;
}

int64_t kr_int64(kreader *rd) {
  const unsigned char *p = kr_take(rd, 8);
  return p ? (int64_t)((uint64_t)frames_get32(p) << 32 | frames_get32(p + 4)) : 0;
}

const unsigned char *kr_bytes(kreader *rd, int32_t n) {
  return n < 0 ? NULL : kr_take(rd, (size_t)n);
}

int kr_uvarint(kreader *rd, uint32_t *v) {
  int shift;
  *v = 0;
  for (shift = 0; shift < 35; shift += 7) {
    const unsigned char *b = kr_take(rd, 1);
    if (b == NULL) return 0;
    *v |= (uint32_t)(*b & 0x7f) << shift;
    if (!(*b & 0x80)) return 1;
  }
  rd->bad = 1;
  return 0;
}

int frames_request_api(const unsigned char *h, size_t n, int16_t *api_key, int16_t *version, int32_t *correlation) {
  kreader rd = {h, n, 0};
  *api_key = kr_int16(&rd);
  *version = kr_int16(&rd);
  *correlation = kr_int32(&rd);
  return !rd.bad;
}

int frames_produce_without_response(const unsigned char *h, size_t n) {
  kreader rd = {h, n, 0};
  int16_t api_key, version, acks;
  api_key = kr_int16(&rd);
  version = kr_int16(&rd);
  kr_int32(&rd);               /* correlation id */
  kr_bytes(&rd, kr_int16(&rd)); /* client id */
  if (api_key != 0 /* Produce */) return 0;
  if (version >= 9) { /* flexible: tagged fields, then a compact string */
    uint32_t tags, len;
    if (!kr_uvarint(&rd, &tags) || tags != 0) return 0;
    if (!kr_uvarint(&rd, &len)) return 0;
    if (len > 0) kr_take(&rd, len - 1);
  } else if (version >= 3) {
    kr_bytes(&rd, kr_int16(&rd)); /* transactional id */
  }
  acks = kr_int16(&rd);
  return !rd.bad && acks == 0;
}
